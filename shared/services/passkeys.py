"""Passkeys (WebAuthn, with py_webauthn): register one, list and remove them, sign in with
one (a discoverable credential: no username typed), use one as the second step of a
two-factor sign-in, or re-authenticate with one. Each ceremony's challenge is kept and taken
once by :mod:`shared.services.ceremonies`.

Adding a passkey adds a way in, so it needs a fresh proof (a recent authentication:
:mod:`shared.services.proof`), and the passkey remembers the sign-in
that added it ("this wasn't me" about that sign-in removes it). A passkey whose
authenticator verified the person (PIN, biometrics: the UV flag) is two factors; one that
only saw someone present is one, and on a two-factor account the second step follows it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    options_to_json,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.authentication.verify_authentication_response import VerifiedAuthentication
from webauthn.helpers import base64url_to_bytes
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import (
    AuthenticatorSelectionCriteria,
    CredentialDeviceType,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from shared import assurance
from shared.assurance import Method
from shared.i18n import N_
from shared.models import Passkey, User
from shared.ratelimit import Limit
from shared.services import (
    ceremonies,
    events,
    factors,
    proof,
    reauthentication,
    second_step,
    sessions,
    signin,
    users,
)
from shared.services.context import ServiceContext
from shared.services.events import Kind
from shared.services.refusals import Locked, NotAccepted, NotApplicable, NotFound

SITE_NAME = "Accounts"
BIGINT_MAX = 2**63 - 1
# What a malformed answer from a browser or an API client can raise inside py_webauthn's
# parsing (it checks the structure as it goes): each is a refusal, never an error.
MALFORMED = (WebAuthnException, ValueError, KeyError, TypeError, AttributeError, IndexError)


def attempt_limit(ctx: ServiceContext) -> Limit:
    settings = ctx.settings
    return Limit("passkey", settings.LOGIN_FAILURES_BEFORE_LOCK, settings.LOGIN_LOCK_SECONDS)


@dataclass(frozen=True, slots=True)
class Result:
    """What a passkey operation that worked leaves (refusals are raised:
    :mod:`shared.services.refusals`)."""

    user: User | None = None
    device_cookie: str | None = None
    passkey_id: int | None = None
    second_step: str | None = None  # signed in with one factor: the pending sign-in
    session_id: str | None = None  # the sign-in's id: a new sign-in's, or a rotated one's


EXPIRED = N_("The passkey request has expired. Try again.")


async def _count(ctx: ServiceContext, limit: Limit, subject: str) -> None:
    verdict = await ctx.limits.hit(limit, subject)
    if not verdict.allowed:
        raise Locked(verdict.retry_after, N_("attempts"))


async def registration_options(
    ctx: ServiceContext, user_id: int, offered: proof.Proof
) -> ceremonies.Ceremony:
    """Options for adding a passkey, once ``offered`` proves it is the owner."""
    await _count(ctx, ceremonies.limit(), f"uid {user_id}")
    rp_id, _ = ceremonies.relying_party(ctx)
    async with proof.proven(ctx, user_id, offered) as (session, user):
        existing = list(
            await session.scalars(select(Passkey.credential_id).where(Passkey.user_id == user_id))
        )
    options = generate_registration_options(
        rp_id=rp_id,
        rp_name=SITE_NAME,
        user_id=str(user.id).encode(),
        user_name=user.email,
        user_display_name=user.username,
        exclude_credentials=[PublicKeyCredentialDescriptor(id=cid) for cid in existing],
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.REQUIRED,
            user_verification=UserVerificationRequirement.PREFERRED,
        ),
    )
    about = {"uid": user_id, "kind": "register"}
    ceremony = await ceremonies.keep(ctx, options.challenge, about)
    return ceremonies.Ceremony(ceremony=ceremony, options=json.loads(options_to_json(options)))


async def register(
    ctx: ServiceContext,
    user_id: int,
    ceremony: str,
    name: str,
    credential: dict[str, Any],
    *,
    sign_in: str | None = None,
) -> Result:
    """Add the passkey a registration ceremony created. ``sign_in`` (the session asking)
    gets a new id and is remembered with the passkey: "this wasn't me" about it removes the
    passkey."""
    facts = await ceremonies.take(ctx, ceremony)
    if facts is None or facts.get("kind") != "register" or facts.get("uid") != user_id:
        raise NotAccepted(EXPIRED)
    rp_id, origin = ceremonies.relying_party(ctx)
    try:
        verified = verify_registration_response(
            credential=credential,
            expected_challenge=bytes.fromhex(facts["challenge"]),
            expected_rp_id=rp_id,
            expected_origin=origin,
        )
    except MALFORMED as error:
        raise NotAccepted(f"The passkey was not accepted ({error}).") from None
    async with ctx.unit_of_work() as session:
        user = await users.by_id(session, user_id, lock=True)
        if user is None:
            raise NotApplicable(N_("There is no such account."))
        name = name.strip()[:60] or "Passkey"
        # A credential id is one authenticator's: if another account has it, it is not this
        # one's to add (and the unique index would refuse it at commit).
        passkey_id = await session.scalar(
            insert(Passkey)
            .values(
                user_id=user.id,
                credential_id=verified.credential_id,
                public_key=verified.credential_public_key,
                sign_count=verified.sign_count,
                name=name,
                added_in_session=sessions.public_id_of(sign_in).scalar_subquery(),
            )
            .on_conflict_do_nothing(index_elements=[Passkey.credential_id])
            .returning(Passkey.id)
        )
        if passkey_id is None:
            raise NotAccepted(N_("This passkey is registered already."))
        rotated = await sessions.rotate(session, sign_in)
        by = rotated.public_id if rotated is not None else None
        await events.record(session, Kind.PASSKEY_ADDED, user.id, name=name)
        await factors.tell_owner(session, user, N_("passkey added"), by=by)
    return Result(
        passkey_id=passkey_id, session_id=rotated.session_id if rotated is not None else None
    )


async def listed(ctx: ServiceContext, user_id: int) -> list[Passkey]:
    async with ctx.reading() as session:
        return list(
            await session.scalars(
                select(Passkey).where(Passkey.user_id == user_id).order_by(Passkey.created_at)
            )
        )


async def remove(
    ctx: ServiceContext,
    user_id: int,
    passkey_id: int,
    password: str = "",
    *,
    sign_in: str | None = None,
) -> Result:
    """Remove one of the account's passkeys; needs a fresh proof (a recent authentication
    of ``sign_in``, the session asking, which gets a new id; or the password)."""
    if not 0 < passkey_id <= BIGINT_MAX:
        raise NotFound(N_("No such passkey."))
    offered = proof.Proof(sign_in=sign_in, password=password)
    async with proof.proven(ctx, user_id, offered) as (session, user):
        gone = await session.scalar(
            delete(Passkey)
            .where(Passkey.id == passkey_id, Passkey.user_id == user_id)
            .returning(Passkey.id)
        )
        if gone is None:
            raise NotFound(N_("No such passkey: it may have been removed already."))
        rotated = await sessions.rotate(session, sign_in)
        await events.record(session, Kind.PASSKEY_REMOVED, user.id)
        await factors.tell_owner(session, user, N_("passkey removed"), by=None)
    return Result(session_id=rotated.session_id if rotated is not None else None)


async def sign_in_options(
    ctx: ServiceContext, *, client: str, second_step: str | None = None
) -> ceremonies.Ceremony:
    """Options for signing in with a passkey: any of the site's (discoverable credentials),
    or, as the second step of a two-factor sign-in, one of that account's."""
    await _count(ctx, ceremonies.limit(), f"client {client}")
    rp_id, _ = ceremonies.relying_party(ctx)
    allowed: list[PublicKeyCredentialDescriptor] = []
    about: dict[str, Any] = {"kind": "sign-in"}
    if second_step is not None:
        about = {"kind": "second-step", "pending": second_step}
    options = generate_authentication_options(
        rp_id=rp_id,
        allow_credentials=allowed,
        user_verification=UserVerificationRequirement.PREFERRED,
    )
    ceremony = await ceremonies.keep(ctx, options.challenge, about)
    return ceremonies.Ceremony(ceremony=ceremony, options=json.loads(options_to_json(options)))


async def sign_in(
    ctx: ServiceContext,
    ceremony: str,
    credential: dict[str, Any],
    attempt: signin.Attempt,
) -> Result:
    """Sign in with a passkey: the whole sign-in, or the second step of a two-factor one.
    A passkey verified by its authenticator (UV) is two factors and completes any sign-in;
    one without user verification is one factor, and on an account with two-factor sign-in
    the second step follows (SECOND_STEP). Attempts are counted per client before they are
    checked."""
    await _count(ctx, attempt_limit(ctx), f"client {attempt.client}")
    facts = await ceremonies.take(ctx, ceremony)
    if facts is None or facts.get("kind") not in ("sign-in", "second-step"):
        raise NotAccepted(EXPIRED)
    async with ctx.unit_of_work() as session:
        passkey, verified = await _assertion(session, ctx, facts, credential)
        user = await users.by_id(session, passkey.user_id, lock=True)
        if user is None or user.confirmed_at is None:
            raise NotAccepted(N_("This passkey's account cannot sign in yet."))
        earlier: list[Method] = []  # what a first step showed, when this is the second
        if facts["kind"] == "second-step":
            first = _pending_for(ctx, facts, user)
            if first is None:
                raise NotAccepted(
                    "That passkey is not this account's, or it was the first step already: "
                    "use a code from your authenticator app."
                )
            earlier = first
        passkey.sign_count = verified.new_sign_count
        passkey.last_used_at = datetime.now(UTC)
        shown = assurance.passkey(
            synced=verified.credential_device_type == CredentialDeviceType.MULTI_DEVICE,
            user_verified=verified.user_verified,
        )
        # Without user verification, something you have and nothing more: on an account
        # with a second factor, the rule asks for it (the passkey's use is kept all the same).
        concluded = await signin.conclude(
            session,
            ctx,
            user,
            attempt,
            method="passkey",
            methods=assurance.combine(earlier, shown),
        )
    if concluded.second_step is not None:
        return Result(second_step=concluded.second_step)
    return Result(user=user, device_cookie=concluded.device_cookie, session_id=concluded.session_id)


async def reauthentication_options(ctx: ServiceContext, user_id: int) -> ceremonies.Ceremony:
    """Options for re-authenticating with one of the account's own passkeys."""
    await _count(ctx, ceremonies.limit(), f"uid {user_id}")
    rp_id, _ = ceremonies.relying_party(ctx)
    async with ctx.reading() as session:
        mine = list(
            await session.scalars(select(Passkey.credential_id).where(Passkey.user_id == user_id))
        )
    options = generate_authentication_options(
        rp_id=rp_id,
        allow_credentials=[PublicKeyCredentialDescriptor(id=cid) for cid in mine],
        user_verification=UserVerificationRequirement.PREFERRED,
    )
    ceremony = await ceremonies.keep(
        ctx, options.challenge, {"kind": "reauthenticate", "uid": user_id}
    )
    return ceremonies.Ceremony(ceremony=ceremony, options=json.loads(options_to_json(options)))


async def reauthenticate(
    ctx: ServiceContext,
    user_id: int,
    sign_in: str | None,
    ceremony: str,
    credential: dict[str, Any],
) -> None:
    """Re-authenticate sign-in ``sign_in`` with one of its account's passkeys (any: the
    person shows again that they hold it; counted, as sign-in attempts are)."""
    await _count(ctx, attempt_limit(ctx), f"uid {user_id}")
    facts = await ceremonies.take(ctx, ceremony)
    if facts is None or facts.get("kind") != "reauthenticate" or facts.get("uid") != user_id:
        raise NotAccepted(EXPIRED)
    async with ctx.unit_of_work() as session:
        passkey, verified = await _assertion(session, ctx, facts, credential)
        user = await users.by_id(session, user_id, lock=True)
        if user is None or passkey.user_id != user_id:
            raise NotAccepted(N_("That passkey is not this account's."))
        passkey.sign_count = verified.new_sign_count
        passkey.last_used_at = datetime.now(UTC)
        await reauthentication.renew(session, user, sign_in, "passkey")


async def _assertion(
    session: AsyncSession, ctx: ServiceContext, facts: dict[str, Any], credential: dict[str, Any]
) -> tuple[Passkey, VerifiedAuthentication]:
    """The registered passkey an assertion names (its row locked), and py_webauthn's
    verification of the assertion against the ceremony's challenge; refused otherwise."""
    raw_id = credential.get("rawId") if isinstance(credential, dict) else None
    try:
        credential_id = base64url_to_bytes(raw_id if isinstance(raw_id, str) else "")
    except MALFORMED:
        credential_id = b""
    if not credential_id:
        raise NotAccepted(N_("The passkey was not accepted (no credential id)."))
    rp_id, origin = ceremonies.relying_party(ctx)
    passkey = await session.scalar(
        select(Passkey).where(Passkey.credential_id == credential_id).with_for_update()
    )
    if passkey is None:
        raise NotAccepted(N_("This passkey is not registered here."))
    try:
        verified = verify_authentication_response(
            credential=credential,
            expected_challenge=bytes.fromhex(facts["challenge"]),
            expected_rp_id=rp_id,
            expected_origin=origin,
            credential_public_key=passkey.public_key,
            credential_current_sign_count=passkey.sign_count,
        )
    except MALFORMED as error:
        raise NotAccepted(f"The passkey was not accepted ({error}).") from None
    return passkey, verified


def _pending_for(ctx: ServiceContext, facts: dict[str, Any], user: User) -> list[Method] | None:
    """The methods of the first step this second-step ceremony completes, if that step is
    ``user``'s and was not a passkey already (the same something-you-have twice is still one
    factor); None otherwise."""
    waiting = second_step.pending(ctx, str(facts.get("pending", "")))
    if (
        waiting is None
        or waiting.user_id != user.id
        or waiting.session_version != user.session_version
        or waiting.first == "passkey"
    ):
        return None
    return waiting.methods
