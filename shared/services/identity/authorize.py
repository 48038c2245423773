"""From a judged authorization request (:mod:`.requests`) and the browser's sign-in to what
happens next: sign in, prove it is you again, ask for consent, or answer with a code.

The order is OpenID Connect Core's (§3.1.2.3 to §3.1.2.4): authenticate (a sign-in through this
service's own pages, with its second factor and assurance rule), then re-authenticate if the
application asked for it (``prompt=login``, or a sign-in older than ``max_age``), then
consent. ``prompt=none`` turns every one of those steps into its error
(``login_required``, ``consent_required``) instead of a page.

The consent page needs a recent authentication (a stolen session cookie must not hand an
account to a new application); a consent is remembered per application and scopes, and
first-party applications skip it (a flag the operator sets on the client).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from shared.models import Consent, Grant
from shared.services import events, sessions
from shared.services.context import ServiceContext
from shared.services.identity.requests import AuthorizationRequest, Refusal
from shared.services.refusals import ReauthenticationRequired


class Step(StrEnum):
    SIGN_IN = "sign_in"  # nobody is signed in: the sign-in page, then back
    REAUTHENTICATE = "reauthenticate"  # prove it is you again, then back
    CONSENT = "consent"  # show the consent page
    CODE = "code"  # answer the application with a code


@dataclass(frozen=True, slots=True)
class Next:
    step: Step
    code: str | None = None  # with Step.CODE


def _refuse(request: AuthorizationRequest, error: str, description: str) -> Refusal:
    return Refusal(error, description, request.redirect_uri, request.state)


def needs_fresh_sign_in(
    request: AuthorizationRequest, authenticated_at: datetime, asked_at: datetime | None
) -> bool:
    """Whether the application's ``prompt=login`` or ``max_age`` still asks for a sign-in
    newer than the one there is. ``asked_at``: when this request first sent the person to
    prove it again (the proof must be newer than that; without it ``prompt=login`` would
    loop)."""
    if asked_at is not None and authenticated_at >= asked_at:
        return False
    if "login" in request.prompt:
        return True
    if request.max_age is None:
        return False
    return datetime.now(UTC) - authenticated_at > timedelta(seconds=request.max_age)


async def decide(
    ctx: ServiceContext,
    request: AuthorizationRequest,
    current: sessions.Current | None,
    *,
    asked_at: datetime | None = None,
) -> Next:
    """What the authorize endpoint does with ``request`` for this browser's sign-in
    (``current``); a :class:`Refusal` is raised for ``prompt=none`` when a page is needed."""
    silent = "none" in request.prompt
    if current is None:
        if silent:
            raise _refuse(request, "login_required", "nobody is signed in")
        return Next(Step.SIGN_IN)
    if needs_fresh_sign_in(request, current.session.authenticated_at, asked_at):
        if silent:
            raise _refuse(request, "login_required", "the sign-in is older than max_age")
        return Next(Step.REAUTHENTICATE)
    async with ctx.unit_of_work() as session:
        if not request.client.first_party and not await _consented(session, request, current):
            if silent:
                raise _refuse(request, "consent_required", "the person has not consented")
            recent = await sessions.recently_authenticated(
                session,
                current.session.id,
                current.user.id,
                within=ctx.settings.REAUTHENTICATION_TIMEOUT,
            )
            return Next(Step.CONSENT if recent else Step.REAUTHENTICATE)
        code = await _issue_code(session, ctx, request, current)
    return Next(Step.CODE, code)


async def _consented(
    session: AsyncSession, request: AuthorizationRequest, current: sessions.Current
) -> bool:
    if "consent" in request.prompt:
        return False
    given = await session.scalar(
        select(Consent.scopes).where(
            Consent.user_id == current.user.id, Consent.client_id == request.client.client_id
        )
    )
    return given is not None and set(request.scopes) <= set(given)


async def consent(
    ctx: ServiceContext, request: AuthorizationRequest, current: sessions.Current
) -> str:
    """The person allowed the application what it asked: remember it (the scopes add to
    what was allowed before) and answer with a code. Only within REAUTHENTICATION_TIMEOUT
    of a sign-in or re-authentication (else :class:`ReauthenticationRequired`)."""
    user_id, client_id = current.user.id, request.client.client_id
    async with ctx.unit_of_work() as session:
        if not await sessions.recently_authenticated(
            session, current.session.id, user_id, within=ctx.settings.REAUTHENTICATION_TIMEOUT
        ):
            raise ReauthenticationRequired
        before = await session.scalar(
            select(Consent.scopes)
            .where(Consent.user_id == user_id, Consent.client_id == client_id)
            .with_for_update()
        )
        scopes = sorted(set(before or ()) | set(request.scopes))
        await session.execute(
            insert(Consent)
            .values(user_id=user_id, client_id=client_id, scopes=scopes)
            .on_conflict_do_update(
                index_elements=[Consent.user_id, Consent.client_id],
                set_={"scopes": scopes, "granted_at": datetime.now(UTC)},
            )
        )
        await events.record(
            session,
            events.Kind.APP_AUTHORIZED,
            user_id,
            client_id=client_id,
            client_name=request.client.name,
            scopes=scopes,
        )
        return await _issue_code(session, ctx, request, current)


def code_digest(code: str) -> str:
    return hashlib.sha256(code.encode()).hexdigest()


async def _issue_code(
    session: AsyncSession,
    ctx: ServiceContext,
    request: AuthorizationRequest,
    current: sessions.Current,
) -> str:
    """A grant for this sign-in and application, holding a new code (its SHA-256: the code
    itself exists only in the redirect)."""
    settings = ctx.settings
    now = datetime.now(UTC)
    code = secrets.token_urlsafe(32)
    refreshable = "refresh_token" in request.client.grants
    lifetime = settings.OIDC_REFRESH_TOKEN_LIFETIME if refreshable else 0
    session.add(
        Grant(
            id=secrets.token_urlsafe(18),
            client_id=request.client.client_id,
            user_id=current.user.id,
            session_id=current.session.id,
            scopes=list(request.scopes),
            redirect_uri=request.redirect_uri,
            nonce=request.nonce,
            code_hash=code_digest(code),
            code_challenge=request.code_challenge,
            code_expires_at=now + timedelta(seconds=settings.OIDC_CODE_LIFETIME),
            offline="offline_access" in request.scopes,
            expires_at=now + timedelta(seconds=max(lifetime, settings.OIDC_ACCESS_TOKEN_LIFETIME)),
        )
    )
    return code
