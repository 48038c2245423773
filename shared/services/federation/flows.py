"""Signing in with another identity provider, and linking that can never hand an account to a
stranger.

* The identity is the provider's issuer and subject, never the email. An identity already
  linked signs in, through the one assurance rule (:func:`shared.services.signin.conclude`):
  an account with two-factor sign-in still needs its second step, unless the provider
  asserted an ``amr`` the configuration trusts (``trusted_amr``).
* An unknown identity whose email matches an account here is **never linked by that
  alone**, whatever ``email_verified`` says: the person must sign in to that account, by any
  of its methods, in the same browser, and then confirm the link (:func:`link`); the owner is
  emailed about every new link with "this wasn't me".
* An unknown identity with a verified email that no account has may create one (a username
  is asked for); an unverified email creates nothing.

The flow's state is single use (taken from Redis) and bound to the browser that started it
(a cookie whose SHA-256 the state keeps): a replayed or forged ``state``, or a callback
opened in another browser (login CSRF), is refused.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Literal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from shared import i18n, passwords
from shared.assurance import Method
from shared.federation import Provider
from shared.i18n import N_
from shared.jobs import IdentityLinked
from shared.models import FederatedIdentity, SignInSession
from shared.outbox import email_user
from shared.services import events, sessions, signin, users
from shared.services.accounts import TooManyRegistrations, UsernameTaken, registration_limit
from shared.services.context import ServiceContext
from shared.services.federation import client
from shared.services.federation.client import Identity
from shared.services.refusals import NotApplicable, ReauthenticationRequired
from shared.tokens import Purpose
from shared.validation import InvalidInput, check_username, normalize_username

STATE_TTL = 600  # seconds from leaving for the provider to coming back
PENDING_TTL = 900  # seconds to sign in to the existing account, or to choose a username

Intent = Literal["sign_in", "link"]


class Refused(Exception):
    """The flow ends here, with a message a person understands (and the reason for logs)."""

    def __init__(self, message: str, reason: str = "", *, status: int = 400) -> None:
        super().__init__(reason or message)
        self.message, self.status = i18n.gettext(message), status


@dataclass(frozen=True, slots=True)
class Flow:
    provider: str
    nonce: str
    verifier: str
    intent: Intent
    next_url: str
    browser: str  # SHA-256 of the cookie the starting browser holds
    user_id: int | None = None  # "link": the account asking


@dataclass(frozen=True, slots=True)
class Started:
    url: str  # where the browser goes
    browser: str  # the cookie that binds the flow to this browser


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _state_key(ctx: ServiceContext, state: str) -> str:
    return f"{ctx.settings.REDIS_KEY_PREFIX}federation:state:{_digest(state)}"


def redirect_uri(ctx: ServiceContext, provider: Provider) -> str:
    return f"{ctx.settings.base_url}/login/federated/{provider.id}/callback"


def provider_named(ctx: ServiceContext, provider_id: str) -> Provider | None:
    return next((p for p in ctx.settings.federation_providers if p.id == provider_id), None)


async def start(
    ctx: ServiceContext,
    provider: Provider,
    *,
    intent: Intent = "sign_in",
    next_url: str = "/",
    user_id: int | None = None,
) -> Started:
    """Where to send the browser, with PKCE, a nonce and a single-use state kept for
    STATE_TTL (raises client.ProviderDown when discovery fails)."""
    meta = await client.metadata(ctx, provider)
    state, nonce, browser = (secrets.token_urlsafe(32) for _ in range(3))
    verifier, challenge = client.pkce_pair()
    flow = Flow(provider.id, nonce, verifier, intent, next_url, _digest(browser), user_id)
    await ctx.redis.set(_state_key(ctx, state), json.dumps(asdict(flow)), ex=STATE_TTL)
    url = client.authorization_url(
        meta, provider, redirect_uri=redirect_uri(ctx, provider), state=state, nonce=nonce,
        challenge=challenge,
    )  # fmt: skip
    return Started(url, browser)


async def take_flow(ctx: ServiceContext, state: str, browser: str | None) -> Flow:
    """The flow ``state`` names, taken (a second use finds nothing), if this browser
    started it."""
    if not state or len(state) > 128:
        raise Refused(N_("This sign-in link is not valid. Start again."), "no or malformed state")
    raw = await ctx.redis.getdel(_state_key(ctx, state))
    if raw is None:
        raise Refused(
            N_("This sign-in took too long, or was already used. Start again."), "unknown state"
        )
    flow = Flow(**json.loads(raw))
    if browser is None or not secrets.compare_digest(flow.browser, _digest(browser)):
        raise Refused(
            N_("This sign-in was started in another browser. Start again here."),
            "browser mismatch",
        )
    return flow


@dataclass(frozen=True, slots=True)
class Pending:
    """An identity that came back but is not linked yet: signed into a cookie while the
    person signs in to the existing account, or chooses a username."""

    provider: str
    issuer: str
    subject: str
    email: str | None
    email_verified: bool
    amr: tuple[str, ...] = ()

    def sealed(self, ctx: ServiceContext) -> str:
        return ctx.tokens.dumps(Purpose.FEDERATION_PENDING, asdict(self))

    @classmethod
    def opened(cls, ctx: ServiceContext, value: str | None) -> Pending | None:
        payload = ctx.tokens.loads(Purpose.FEDERATION_PENDING, value or "", max_age=PENDING_TTL)
        if payload is None:
            return None
        try:
            return cls(**{**payload, "amr": tuple(payload.get("amr", ()))})
        except TypeError:
            return None


@dataclass(frozen=True, slots=True)
class Arrived:
    """What the callback came to: signed in (or a second step to take), an identity
    waiting for proof or a username, or a link made."""

    concluded: signin.Concluded | None = None
    needs_proof: Pending | None = None  # the email matches an account: sign in to it first
    needs_username: Pending | None = None  # a new account may be made
    linked: str | None = None  # the provider's name: linked to the signed-in account
    next_url: str = "/"


async def finish(
    ctx: ServiceContext,
    provider: Provider,
    flow: Flow,
    *,
    code: str | None,
    error: str | None,
    iss: str | None,
    attempt: signin.Attempt,
    current_user: int | None,
) -> Arrived:
    """The provider's answer for ``flow``: checked, exchanged, verified, then arrived."""
    if error:
        if error == "access_denied":
            raise Refused(
                i18n.gettext("You cancelled signing in with %(name)s.") % {"name": provider.name},
                error,
            )
        raise Refused(
            i18n.gettext("%(name)s did not sign you in. Try again later.")
            % {"name": provider.name},
            error[:60],
        )
    meta = await client.metadata(ctx, provider)
    # RFC 9207: an answer must come from the provider this flow went to (mix-up attacks).
    if iss is not None and iss != provider.issuer:
        raise Refused(N_("This answer came from another provider. Start again."), f"iss {iss!r}")
    if iss is None and meta.iss_parameter_supported:
        raise Refused(N_("This answer did not say which provider sent it. Start again."), "no iss")
    if not code or len(code) > 2048:
        raise Refused(
            i18n.gettext("%(name)s sent no sign-in code. Start again.") % {"name": provider.name},
            "no code",
        )
    tokens = await client.exchange(
        ctx, provider, meta, code=code, redirect_uri=redirect_uri(ctx, provider),
        verifier=flow.verifier,
    )  # fmt: skip
    who = await client.identity(ctx, provider, meta, tokens, nonce=flow.nonce)
    return await arrive(ctx, provider, who, flow, attempt, current_user=current_user)


def methods_of(provider: Provider, who: Identity | Pending) -> list[Method]:
    """What a sign-in through ``provider`` counts as: one method, or two when the provider
    asserted an ``amr`` its configuration trusts as a second factor (a hardware key)."""
    if provider.trusted_amr & set(who.amr):
        return [Method.FEDERATED, Method.HARDWARE_KEY, Method.MULTIPLE_FACTORS]
    return [Method.FEDERATED]


async def arrive(
    ctx: ServiceContext,
    provider: Provider,
    who: Identity,
    flow: Flow,
    attempt: signin.Attempt,
    *,
    current_user: int | None,
) -> Arrived:
    pending = Pending(provider.id, who.issuer, who.subject, who.email, who.email_verified, who.amr)
    async with ctx.unit_of_work() as session:
        linked = await session.scalar(
            select(FederatedIdentity)
            .where(FederatedIdentity.issuer == who.issuer, FederatedIdentity.subject == who.subject)
            .with_for_update()
        )
        if flow.intent == "link":
            if flow.user_id is None or current_user != flow.user_id:
                raise Refused(N_("Sign in again, then connect the account."), "link: not the asker")
            if linked is not None and linked.user_id != flow.user_id:
                raise Refused(
                    i18n.gettext("That %(name)s account is connected to another account here.")
                    % {"name": provider.name},
                    "link: taken",
                )
            if linked is None:
                await _link(session, ctx, flow.user_id, pending, by=None)
            return Arrived(linked=provider.name, next_url=flow.next_url)
        if linked is not None:
            user = await users.by_id(session, linked.user_id, lock=True)
            assert user is not None  # the row cascades with its account
            linked.last_used_at = datetime.now(UTC)
            concluded = await signin.conclude(
                session, ctx, user, attempt, method=f"federated:{provider.id}",
                methods=methods_of(provider, who),
            )  # fmt: skip
            return Arrived(concluded=concluded, next_url=flow.next_url)
        if who.email and await users.by_email(session, who.email) is not None:
            return Arrived(needs_proof=pending, next_url=flow.next_url)
    if who.email and who.email_verified:
        return Arrived(needs_username=pending, next_url=flow.next_url)
    raise Refused(
        i18n.gettext(
            "Your %(name)s account has no verified email address. Verify it there, or sign up "
            "here with your address."
        )
        % {"name": provider.name},
        "unverified email",
    )


async def sign_up(
    ctx: ServiceContext, pending: Pending, username: str, attempt: signin.Attempt
) -> signin.Concluded:
    """A new account for an identity whose verified address no account has: confirmed (the
    provider verified it), without a password (it can set one later), linked, signed in.
    Raises UsernameTaken, InvalidInput, TooManyRegistrations, or NotApplicable when the
    address has an account by now (sign in to it and connect instead)."""
    provider = provider_named(ctx, pending.provider)
    if provider is None or not pending.email or not pending.email_verified:
        raise NotApplicable(N_("This sign-up has expired. Start again."))
    try:
        username = check_username(normalize_username(username))
    except ValueError as error:
        raise InvalidInput("username", str(error)) from None
    verdict = await ctx.limits.hit(registration_limit(ctx), "all")
    if not verdict.allowed:
        raise TooManyRegistrations(verdict.retry_after)
    unusable = passwords.UNUSABLE_PREFIX + secrets.token_urlsafe(24)
    async with ctx.unit_of_work() as session:
        seconds = ctx.settings.CONFIRM_TOKEN_MAX_AGE
        if not await users.hold_username(session, username, pending.email, seconds=seconds):
            raise UsernameTaken
        user_id = await users.create(session, username, pending.email, unusable,
                                     confirm_generation=0)  # fmt: skip
        if user_id is None:
            raise NotApplicable(N_("This address has an account now: sign in to it to connect."))
        user = await users.by_id(session, user_id, lock=True)
        assert user is not None
        user.confirmed_at = datetime.now(UTC)
        await events.record(session, events.Kind.REGISTERED, user_id, username=username,
                            email=pending.email, via=provider.id)  # fmt: skip
        await _link(session, ctx, user_id, pending, by=None, notify=False)
        return await signin.conclude(
            session, ctx, user, attempt, method=f"federated:{provider.id}",
            methods=methods_of(provider, pending),
        )  # fmt: skip


async def link(ctx: ServiceContext, pending: Pending, *, user_id: int, sign_in: str) -> str:
    """The person signed in to the account whose address the identity carried (or asked
    from their account page), and confirms: link it. Needs a recent authentication of
    ``sign_in``. The provider's name, for the page."""
    provider = provider_named(ctx, pending.provider)
    if provider is None:
        raise NotApplicable(N_("That provider is not configured here any more."))
    async with ctx.unit_of_work() as session:
        within = ctx.settings.REAUTHENTICATION_TIMEOUT
        if not await sessions.recently_authenticated(session, sign_in, user_id, within=within):
            raise ReauthenticationRequired
        linked = await session.scalar(
            select(FederatedIdentity).where(
                FederatedIdentity.issuer == pending.issuer,
                FederatedIdentity.subject == pending.subject,
            )
        )
        if linked is not None and linked.user_id != user_id:
            raise NotApplicable(
                i18n.gettext("That %(name)s account is connected to another account.")
                % {"name": provider.name}
            )
        if linked is None:
            by = await session.scalar(
                select(SignInSession.public_id).where(SignInSession.id == sign_in)
            )
            await _link(session, ctx, user_id, pending, by=by)
    return provider.name


async def _link(
    session: AsyncSession,
    ctx: ServiceContext,
    user_id: int,
    pending: Pending,
    *,
    by: str | None,
    notify: bool = True,
) -> None:
    provider = provider_named(ctx, pending.provider)
    name = provider.name if provider else pending.provider
    session.add(
        FederatedIdentity(
            user_id=user_id, provider=pending.provider, issuer=pending.issuer,
            subject=pending.subject, email=pending.email, linked_in_session=by,
            last_used_at=datetime.now(UTC),
        )
    )  # fmt: skip
    await session.flush()
    await events.record(session, events.Kind.IDENTITY_LINKED, user_id, provider=pending.provider,
                        email=pending.email)  # fmt: skip
    if notify:
        user = await users.by_id(session, user_id)
        assert user is not None
        await email_user(
            session, user,
            IdentityLinked(user_id=user_id, session_version=user.session_version,
                           provider_name=name, identity_email=pending.email or "", session=by),
        )  # fmt: skip
