"""Two-factor sign-in with an authenticator app (TOTP, RFC 6238) and single-use recovery
codes: enrolment, the second step of a sign-in, regenerating the codes, turning it off. The
codes themselves are checked in :mod:`shared.services.factors`.

Turning it on needs the password as well as a code from the new secret (a fresh proof: a
stolen session alone must not turn it on, or its thief holds the recovery codes); changing it
afterwards needs the password and a current code. Every attempt is counted before it is
checked, like a password. Refusals are raised (:mod:`shared.services.refusals`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pyotp
import segno
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from shared import assurance
from shared.assurance import Method
from shared.i18n import N_
from shared.models import Passkey, RecoveryCode, User
from shared.ratelimit import Limit
from shared.services import (
    events,
    factors,
    proof,
    second_step,
    sessions,
    signin,
    trusted_browsers,
    users,
)
from shared.services.context import ServiceContext
from shared.services.events import Kind
from shared.services.refusals import Locked, NotApplicable, WrongCode

ISSUER = "Accounts"
STEP = factors.STEP
RECOVERY_CODE_COUNT = factors.RECOVERY_CODE_COUNT


def code_limit(ctx: ServiceContext) -> Limit:
    """Code attempts per account, counted before each check, like sign-in failures."""
    settings = ctx.settings
    return Limit("two-factor", settings.LOGIN_FAILURES_BEFORE_LOCK, settings.LOGIN_LOCK_SECONDS)


@dataclass(frozen=True, slots=True)
class Enrolment:
    secret: str  # base32, for people who type it in
    uri: str  # otpauth://, what the QR code holds
    qr_svg: str = field(repr=False)  # a data: URI of the QR code as SVG


async def begin_enrolment(ctx: ServiceContext, user_id: int) -> Enrolment | None:
    """A fresh secret to scan (kept pending until a code from it is entered); None if
    two-factor sign-in is on already."""
    async with ctx.unit_of_work() as session:
        user = await users.by_id(session, user_id, lock=True)
        if user is None or user.totp_enabled_at is not None:
            return None
        secret = factors.unseal(ctx, user.totp_pending_secret)
        if secret is None:
            secret = pyotp.random_base32()
            user.totp_pending_secret = factors.seal(ctx, secret)
        label = user.email
    uri = pyotp.TOTP(secret).provisioning_uri(name=label, issuer_name=ISSUER)
    svg = segno.make(uri, error="m").svg_data_uri(scale=5, border=2)
    return Enrolment(secret=secret, uri=uri, qr_svg=svg)


@dataclass(frozen=True, slots=True)
class Result:
    """What a change that worked leaves to show or to keep (refusals are raised:
    :mod:`shared.services.refusals`)."""

    recovery_codes: list[str] = field(default_factory=list)  # shown once
    user: User | None = None
    device_cookie: str | None = None
    session_id: str | None = None  # the sign-in's id: a new sign-in's, or a rotated one's


async def _count_code(ctx: ServiceContext, user_id: int) -> None:
    verdict = await ctx.limits.hit(code_limit(ctx), str(user_id))
    if not verdict.allowed:
        raise Locked(verdict.retry_after, N_("wrong codes"))


async def confirm_enrolment(
    ctx: ServiceContext,
    user_id: int,
    code: str,
    password: str = "",
    *,
    sign_in: str | None = None,
) -> Result:
    """Turn two-factor sign-in on, with a fresh proof (a recent authentication of
    ``sign_in``, the session asking, or ``password``) and ``code`` from the pending secret;
    the recovery codes are returned to show once, and the owner is emailed. ``sign_in``
    gets a new id, and is remembered: "this wasn't me" about it turns two-factor off
    again."""
    await _count_code(ctx, user_id)
    offered = proof.Proof(sign_in=sign_in, password=password)
    async with proof.proven(ctx, user_id, offered) as (session, user):
        secret = factors.unseal(ctx, user.totp_pending_secret)
        if secret is None or user.totp_enabled_at is not None:
            raise NotApplicable(N_("Two-factor sign-in is on already, or not being set up."))
        step = factors.check_totp(secret, code, 0)
        if step is None:
            raise WrongCode
        user.totp_secret, user.totp_pending_secret = user.totp_pending_secret, None
        user.totp_last_step = step
        rotated = await sessions.rotate(session, sign_in)
        by = rotated.public_id if rotated is not None else None
        user.totp_enabled_at = datetime.now(UTC)
        user.totp_enabled_in_session = by
        await trusted_browsers.end_all(session, user.id, why="two-factor turned on")
        codes = await factors.issue_recovery_codes(session, user)
        await factors.tell_owner(session, user, N_("enabled"), by=by)
        await events.record(session, Kind.TWO_FACTOR_ENABLED, user.id)
    return Result(recovery_codes=codes, session_id=rotated.session_id if rotated else None)


async def pending_has_passkey(ctx: ServiceContext, pending: str) -> bool:
    """Whether the account a waiting second step is for has a passkey (the page offers
    "use a passkey instead" only then; the first factor was right, so this tells nothing
    to a stranger)."""
    waiting = second_step.pending(ctx, pending)
    if waiting is None:
        return False
    async with ctx.reading() as session:
        count = await session.scalar(
            select(func.count()).select_from(Passkey).where(Passkey.user_id == waiting.user_id)
        )
    return bool(count)


async def complete_sign_in(
    ctx: ServiceContext,
    pending: str,
    code: str,
    attempt: signin.Attempt,
) -> Result:
    """The second step of a sign-in: ``pending`` is what the first step handed out (it
    lapses after second_step.SECOND_STEP_MAX_AGE, and with any password change). Wrong codes count
    toward the same locks as wrong passwords. :class:`NotApplicable` when the sign-in it
    completes has lapsed."""
    waiting = second_step.pending(ctx, pending)
    if waiting is None:
        raise NotApplicable(N_("Your sign-in has expired. Please sign in again."))
    user_id, version, key = waiting.user_id, waiting.session_version, waiting.key
    scopes = signin.scopes_for(
        ctx, key, client=attempt.client, device_cookie=attempt.device_cookie, user_id=user_id
    )
    # As with wrong passwords, strangers' wrong codes lock strangers out, never the owner's
    # trusted browser: the per-account code limit spares it (its own device lock holds).
    trusted = len(scopes) == 1
    account_wide = [] if trusted else [(code_limit(ctx), str(user_id))]
    verdict = await ctx.limits.hit_all(*scopes, *account_wide)
    if not verdict.allowed:
        raise Locked(verdict.retry_after, N_("wrong codes"))
    async with ctx.unit_of_work() as session:
        user = await users.by_id(session, user_id, lock=True)
        if user is None or user.session_version != version or user.totp_enabled_at is None:
            raise NotApplicable(N_("Your sign-in has expired. Please sign in again."))
        method = await factors.check_code(session, ctx, user, code)
        if method is None:
            ctx.defer(events.record_alone, ctx, Kind.LOGIN_FAILED, user.id, step="code")
            raise WrongCode
        concluded = await signin.conclude(
            session,
            ctx,
            user,
            attempt,
            method=method,
            # A recovery code is a one-time code too: the event's method tells them apart.
            methods=assurance.combine(waiting.methods, [Method.ONE_TIME_CODE]),
        )
    for limit, subject in [scopes[0], *account_wide]:
        await ctx.limits.clear(limit, subject)
    return Result(user=user, device_cookie=concluded.device_cookie, session_id=concluded.session_id)


async def disable(
    ctx: ServiceContext,
    user_id: int,
    password: str = "",
    code: str = "",
    *,
    sign_in: str | None = None,
) -> Result:
    """Turn two-factor sign-in off: needs a fresh proof (a recent authentication of
    ``sign_in``, the session asking, which gets a new id; or the password), and ``code``,
    if one is given, must be a current code or recovery code."""
    async with _changing(ctx, user_id, password, code, sign_in) as (session, user):
        factors.turn_off(user)
        await factors.revoke_recovery_codes(session, user)
        await trusted_browsers.end_all(session, user.id, why="two-factor turned off")
        rotated = await sessions.rotate(session, sign_in)
        await factors.tell_owner(session, user, N_("disabled"), by=None)
        await events.record(session, Kind.TWO_FACTOR_DISABLED, user.id)
    return Result(session_id=rotated.session_id if rotated is not None else None)


async def regenerate_codes(
    ctx: ServiceContext,
    user_id: int,
    password: str = "",
    code: str = "",
    *,
    sign_in: str | None = None,
) -> Result:
    """A new set of recovery codes (the old ones stop working): a fresh proof, as for
    :func:`disable`."""
    async with _changing(ctx, user_id, password, code, sign_in) as (session, user):
        codes = await factors.issue_recovery_codes(session, user)
        await factors.tell_owner(session, user, N_("recovery codes regenerated"), by=None)
        await events.record(session, Kind.RECOVERY_CODES_REGENERATED, user.id)
    return Result(recovery_codes=codes)


@asynccontextmanager
async def _changing(
    ctx: ServiceContext, user_id: int, password: str, code: str, sign_in: str | None
) -> AsyncIterator[tuple[AsyncSession, User]]:
    """What a change to two-factor settings needs, in the transaction it runs in: a fresh
    proof (:func:`shared.services.proof.proven`), two-factor on, and ``code``, if one is
    given, a current code or an unused recovery code (counted first)."""
    if code:
        await _count_code(ctx, user_id)
    offered = proof.Proof(sign_in=sign_in, password=password)
    async with proof.proven(ctx, user_id, offered) as (session, user):
        if user.totp_enabled_at is None:
            raise NotApplicable(N_("Two-factor sign-in is not on."))
        if code and await factors.check_code(session, ctx, user, code) is None:
            raise WrongCode
        yield session, user


@dataclass(frozen=True, slots=True)
class Status:
    enabled: bool
    recovery_codes_left: int


async def status(ctx: ServiceContext, user_id: int) -> Status:
    async with ctx.reading() as session:
        user = await users.by_id(session, user_id)
        left = await session.scalar(
            select(func.count())
            .select_from(RecoveryCode)
            .where(RecoveryCode.user_id == user_id, RecoveryCode.used_at.is_(None))
        )
    return Status(enabled=bool(user and user.totp_enabled_at), recovery_codes_left=left or 0)
