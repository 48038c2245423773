"""Passkeys (WebAuthn, with py_webauthn): register one, list and remove them, sign in with
one (a discoverable credential: no username typed), or use one as the second step of a
two-factor sign-in.

Every ceremony's challenge is kept server-side, in Redis, under a random ceremony id, and
taken (read and deleted at once) when the answer comes: a challenge is answered once. The
relying party is the host of BASE_URL, the origin BASE_URL itself.
"""

from __future__ import annotations

import enum
import json
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from redis.exceptions import RedisError
from sqlalchemy import delete, select
from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    options_to_json,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import base64url_to_bytes
from webauthn.helpers.exceptions import InvalidAuthenticationResponse, InvalidRegistrationResponse
from webauthn.helpers.structs import (
    AuthenticatorSelectionCriteria,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from shared import passwords
from shared.jobs import TwoFactorChanged
from shared.models import Passkey, User
from shared.outbox import email_user
from shared.ratelimit import Limit
from shared.services import events, signin, users
from shared.services.context import ServiceContext
from shared.services.events import Kind

CEREMONY_SECONDS = 300
SITE_NAME = "Accounts"


def attempt_limit(ctx: ServiceContext) -> Limit:
    settings = ctx.settings
    return Limit("passkey", settings.LOGIN_FAILURES_BEFORE_LOCK, settings.LOGIN_LOCK_SECONDS)


def _relying_party(ctx: ServiceContext) -> tuple[str, str]:
    base = ctx.settings.base_url
    return urlsplit(base).hostname or "localhost", base


def _ceremony_key(ctx: ServiceContext, ceremony: str) -> str:
    return f"{ctx.settings.REDIS_KEY_PREFIX}webauthn:{ceremony}"


async def _keep(ctx: ServiceContext, challenge: bytes, about: dict[str, Any]) -> str:
    ceremony = secrets.token_urlsafe(18)
    value = json.dumps({"challenge": challenge.hex(), **about})
    await ctx.redis.set(_ceremony_key(ctx, ceremony), value, ex=CEREMONY_SECONDS)
    return ceremony


async def _take(ctx: ServiceContext, ceremony: str) -> dict[str, Any] | None:
    """The ceremony's challenge and facts, once: reading deletes it."""
    if not ceremony or len(ceremony) > 64:
        return None
    try:
        raw = await ctx.redis.getdel(_ceremony_key(ctx, ceremony))
    except (RedisError, OSError):
        return None
    if raw is None:
        return None
    data: dict[str, Any] = json.loads(raw)
    return data


@dataclass(frozen=True, slots=True)
class Ceremony:
    ceremony: str  # the id the answer must come back with
    options: dict[str, Any]  # for navigator.credentials.create/get (base64url, as JSON)


async def registration_options(ctx: ServiceContext, user_id: int) -> Ceremony | None:
    rp_id, _ = _relying_party(ctx)
    async with ctx.reading() as session:
        user = await users.by_id(session, user_id)
        if user is None:
            return None
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
    ceremony = await _keep(ctx, options.challenge, {"uid": user_id, "kind": "register"})
    return Ceremony(ceremony=ceremony, options=json.loads(options_to_json(options)))


class Outcome(enum.Enum):
    DONE = "done"
    REFUSED = "refused"  # expired or replayed ceremony, or the authenticator's answer is bad
    WRONG_PASSWORD = "wrong password"  # noqa: S105 (an outcome)
    LOCKED = "locked"


@dataclass(frozen=True, slots=True)
class Result:
    outcome: Outcome
    user: User | None = None
    retry_after: int = 0
    device_cookie: str | None = None
    passkey_id: int | None = None
    detail: str = field(default="")


async def register(
    ctx: ServiceContext, user_id: int, ceremony: str, name: str, credential: dict[str, Any]
) -> Result:
    facts = await _take(ctx, ceremony)
    if facts is None or facts.get("kind") != "register" or facts.get("uid") != user_id:
        return Result(Outcome.REFUSED, detail="The passkey request has expired. Try again.")
    rp_id, origin = _relying_party(ctx)
    try:
        verified = verify_registration_response(
            credential=credential,
            expected_challenge=bytes.fromhex(facts["challenge"]),
            expected_rp_id=rp_id,
            expected_origin=origin,
        )
    except (InvalidRegistrationResponse, ValueError, KeyError, TypeError) as error:
        return Result(Outcome.REFUSED, detail=f"The passkey was not accepted ({error}).")
    async with ctx.unit_of_work() as session:
        user = await users.by_id(session, user_id, lock=True)
        if user is None:
            return Result(Outcome.REFUSED)
        passkey = Passkey(
            user_id=user.id,
            credential_id=verified.credential_id,
            public_key=verified.credential_public_key,
            sign_count=verified.sign_count,
            name=name.strip()[:60] or "Passkey",
        )
        session.add(passkey)
        await session.flush()
        await events.record(session, Kind.PASSKEY_ADDED, user.id, name=passkey.name)
        await email_user(
            session,
            user,
            TwoFactorChanged(
                user_id=user.id, session_version=user.session_version, change="passkey added"
            ),
        )
    return Result(Outcome.DONE, passkey_id=passkey.id)


async def listed(ctx: ServiceContext, user_id: int) -> list[Passkey]:
    async with ctx.reading() as session:
        return list(
            await session.scalars(
                select(Passkey).where(Passkey.user_id == user_id).order_by(Passkey.created_at)
            )
        )


async def remove(ctx: ServiceContext, user_id: int, passkey_id: int, password: str) -> Result:
    """Remove one of the account's passkeys; needs the password."""
    verdict = await ctx.limits.hit(attempt_limit(ctx), str(user_id))
    if not verdict.allowed:
        return Result(Outcome.LOCKED, retry_after=verdict.retry_after)
    async with ctx.unit_of_work() as session:
        user = await users.by_id(session, user_id, lock=True)
        if user is None:
            return Result(Outcome.REFUSED)
        matches, _ = await passwords.verify_password(user.password_hash, password)
        if not matches:
            return Result(Outcome.WRONG_PASSWORD)
        gone = await session.scalar(
            delete(Passkey)
            .where(Passkey.id == passkey_id, Passkey.user_id == user_id)
            .returning(Passkey.id)
        )
        if gone is None:
            return Result(Outcome.REFUSED, detail="No such passkey.")
        await events.record(session, Kind.PASSKEY_REMOVED, user.id)
        await email_user(
            session,
            user,
            TwoFactorChanged(
                user_id=user.id, session_version=user.session_version, change="passkey removed"
            ),
        )
    return Result(Outcome.DONE)


async def sign_in_options(ctx: ServiceContext, *, second_step: str | None = None) -> Ceremony:
    """Options for signing in with a passkey: any of the site's (discoverable credentials),
    or, as the second step of a two-factor sign-in, one of that account's."""
    rp_id, _ = _relying_party(ctx)
    allowed: list[PublicKeyCredentialDescriptor] = []
    about: dict[str, Any] = {"kind": "sign-in"}
    if second_step is not None:
        about = {"kind": "second-step", "pending": second_step}
    options = generate_authentication_options(
        rp_id=rp_id,
        allow_credentials=allowed,
        user_verification=UserVerificationRequirement.PREFERRED,
    )
    ceremony = await _keep(ctx, options.challenge, about)
    return Ceremony(ceremony=ceremony, options=json.loads(options_to_json(options)))


async def sign_in(
    ctx: ServiceContext,
    ceremony: str,
    credential: dict[str, Any],
    *,
    client: str,
    device_cookie: str | None = None,
    user_agent: str = "",
) -> Result:
    """Sign in with a passkey: the whole sign-in (something you have, verified by the
    authenticator), or the second step of a two-factor one. Attempts are counted per client
    before they are checked."""
    verdict = await ctx.limits.hit(attempt_limit(ctx), f"client {client}")
    if not verdict.allowed:
        return Result(Outcome.LOCKED, retry_after=verdict.retry_after)
    facts = await _take(ctx, ceremony)
    if facts is None or facts.get("kind") not in ("sign-in", "second-step"):
        return Result(Outcome.REFUSED, detail="The passkey request has expired. Try again.")
    raw_id = credential.get("rawId") if isinstance(credential, dict) else None
    if not isinstance(raw_id, str):
        return Result(Outcome.REFUSED)
    try:
        credential_id = base64url_to_bytes(raw_id)
    except (ValueError, TypeError):
        return Result(Outcome.REFUSED)
    rp_id, origin = _relying_party(ctx)
    async with ctx.unit_of_work() as session:
        passkey = await session.scalar(
            select(Passkey).where(Passkey.credential_id == credential_id).with_for_update()
        )
        if passkey is None:
            return Result(Outcome.REFUSED, detail="This passkey is not registered here.")
        try:
            verified = verify_authentication_response(
                credential=credential,
                expected_challenge=bytes.fromhex(facts["challenge"]),
                expected_rp_id=rp_id,
                expected_origin=origin,
                credential_public_key=passkey.public_key,
                credential_current_sign_count=passkey.sign_count,
            )
        except (InvalidAuthenticationResponse, ValueError, KeyError, TypeError) as error:
            return Result(Outcome.REFUSED, detail=f"The passkey was not accepted ({error}).")
        user = await users.by_id(session, passkey.user_id, lock=True)
        if user is None or user.confirmed_at is None:
            return Result(Outcome.REFUSED)
        if facts["kind"] == "second-step" and not _pending_is_for(ctx, facts, user):
            return Result(Outcome.REFUSED, detail="That passkey is not this account's.")
        passkey.sign_count = verified.new_sign_count
        passkey.last_used_at = datetime.now(UTC)
        await signin.record_sign_in(
            session,
            ctx,
            user,
            device_cookie=device_cookie,
            client=client,
            user_agent=user_agent,
            method="passkey",
        )
    return Result(
        Outcome.DONE,
        user=user,
        device_cookie=signin.new_device_cookie(ctx, user.email_key),
    )


def _pending_is_for(ctx: ServiceContext, facts: dict[str, Any], user: User) -> bool:
    waiting = signin.pending_sign_in(ctx, str(facts.get("pending", "")))
    return (
        waiting is not None
        and waiting.user_id == user.id
        and waiting.session_version == user.session_version
    )
