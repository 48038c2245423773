"""Two-factor sign-in with an authenticator app (TOTP, RFC 6238) and single-use recovery
codes: enrolment, the second step of a sign-in, regenerating the codes, turning it off.

The secret is stored encrypted (Fernet, with a key derived from SECRET_KEY) and never
logged. A code is accepted once: the last accepted time step is stored, and only later steps
pass. Every attempt is counted before it is checked, like a password.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pyotp
import segno
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from shared import passwords
from shared.jobs import TwoFactorChanged
from shared.models import RecoveryCode, User
from shared.outbox import email_user
from shared.ratelimit import Limit
from shared.sealing import Sealer
from shared.services import events, signin, users
from shared.services.context import ServiceContext
from shared.services.events import Kind

ISSUER = "Accounts"
STEP = 30  # seconds per code (RFC 6238's default, what every authenticator app uses)
RECOVERY_CODE_COUNT = 10


def code_limit(ctx: ServiceContext) -> Limit:
    """Code attempts per account, counted before each check, like sign-in failures."""
    settings = ctx.settings
    return Limit("two-factor", settings.LOGIN_FAILURES_BEFORE_LOCK, settings.LOGIN_LOCK_SECONDS)


def _sealer(ctx: ServiceContext) -> Sealer:
    return Sealer(ctx.secret, "accounts.totp-secret")


def _seal(ctx: ServiceContext, secret: str) -> str:
    return _sealer(ctx).seal(secret)


def _open(ctx: ServiceContext, sealed: str | None) -> str | None:
    # None when SECRET_KEY changed: the secret is unreadable; the owner re-enrols.
    return _sealer(ctx).open(sealed)


def _digest(code: str) -> str:
    return hashlib.sha256(code.encode()).hexdigest()


def _normalize(code: str) -> str:
    return "".join(code.split()).replace("-", "").lower()


def _new_recovery_code() -> str:
    raw = base64.b32encode(secrets.token_bytes(10)).decode().lower()  # 16 characters
    return f"{raw[:4]}-{raw[4:8]}-{raw[8:12]}-{raw[12:16]}"


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
        secret = _open(ctx, user.totp_pending_secret)
        if secret is None:
            secret = pyotp.random_base32()
            user.totp_pending_secret = _seal(ctx, secret)
        label = user.email
    uri = pyotp.TOTP(secret).provisioning_uri(name=label, issuer_name=ISSUER)
    svg = segno.make(uri, error="m").svg_data_uri(scale=5, border=2)
    return Enrolment(secret=secret, uri=uri, qr_svg=svg)


class Outcome(enum.Enum):
    DONE = "done"
    WRONG_CODE = "wrong code"
    WRONG_PASSWORD = "wrong password"  # noqa: S105 (an outcome)
    LOCKED = "locked"
    NOT_APPLICABLE = "not applicable"  # not enrolling / not enabled / no pending sign-in


@dataclass(frozen=True, slots=True)
class Result:
    outcome: Outcome
    recovery_codes: list[str] = field(default_factory=list)  # shown once
    user: User | None = None
    retry_after: int = 0
    device_cookie: str | None = None


def _check_totp(secret: str, code: str, last_step: int) -> int | None:
    """The time step ``code`` is valid for (this one, or one either side of it for clock
    skew), if later than the last accepted one: a code is accepted once."""
    code = _normalize(code)
    if not (code.isdigit() and len(code) == 6):
        return None
    totp, now = pyotp.TOTP(secret), int(time.time()) // STEP
    for step in (now - 1, now, now + 1):
        if step > last_step and secrets.compare_digest(totp.at(step * STEP), code):
            return step
    return None


async def _issue_recovery_codes(session: AsyncSession, user: User) -> list[str]:
    await session.execute(
        update(RecoveryCode)
        .where(RecoveryCode.user_id == user.id, RecoveryCode.used_at.is_(None))
        .values(used_at=func.now())
    )
    codes = [_new_recovery_code() for _ in range(RECOVERY_CODE_COUNT)]
    session.add_all(RecoveryCode(user_id=user.id, code_hash=_digest(_normalize(c))) for c in codes)
    return codes


async def confirm_enrolment(ctx: ServiceContext, user_id: int, code: str) -> Result:
    """Turn two-factor sign-in on, if ``code`` comes from the pending secret; the recovery
    codes are returned to show once, and the owner is emailed."""
    verdict = await ctx.limits.hit(code_limit(ctx), str(user_id))
    if not verdict.allowed:
        return Result(Outcome.LOCKED, retry_after=verdict.retry_after)
    async with ctx.unit_of_work() as session:
        user = await users.by_id(session, user_id, lock=True)
        secret = _open(ctx, user.totp_pending_secret) if user is not None else None
        if user is None or secret is None or user.totp_enabled_at is not None:
            return Result(Outcome.NOT_APPLICABLE)
        step = _check_totp(secret, code, 0)
        if step is None:
            return Result(Outcome.WRONG_CODE)
        user.totp_secret, user.totp_pending_secret = user.totp_pending_secret, None
        user.totp_last_step = step
        user.totp_enabled_at = datetime.now(UTC)
        codes = await _issue_recovery_codes(session, user)
        await _tell_owner(session, user, "enabled")
        await events.record(session, Kind.TWO_FACTOR_ENABLED, user.id)
    return Result(Outcome.DONE, recovery_codes=codes)


async def _tell_owner(session: AsyncSession, user: User, change: str) -> None:
    await email_user(
        session,
        user,
        TwoFactorChanged(user_id=user.id, session_version=user.session_version, change=change),
    )


async def _second_factor(
    session: AsyncSession, ctx: ServiceContext, user: User, code: str
) -> str | None:
    """Check ``code`` (an authenticator code, or an unused recovery code) for ``user``, whose
    row the caller holds locked: "totp", "recovery", or None."""
    secret = _open(ctx, user.totp_secret)
    if secret is not None:
        step = _check_totp(secret, code, user.totp_last_step)
        if step is not None:
            user.totp_last_step = step
            return "totp"
    used = await session.scalar(
        update(RecoveryCode)
        .where(
            RecoveryCode.user_id == user.id,
            RecoveryCode.code_hash == _digest(_normalize(code)),
            RecoveryCode.used_at.is_(None),
        )
        .values(used_at=func.now())
        .returning(RecoveryCode.id)
    )
    if used is not None:
        await _tell_owner(session, user, "recovery code used")
        await events.record(session, Kind.RECOVERY_CODE_USED, user.id)
        return "recovery"
    return None


async def complete_sign_in(
    ctx: ServiceContext,
    pending: str,
    code: str,
    *,
    client: str,
    device_cookie: str | None = None,
    user_agent: str = "",
) -> Result:
    """The second step of a sign-in: ``pending`` is what the password step handed out (it
    lapses after signin.SECOND_STEP_MAX_AGE, and with any password change). Wrong codes count
    toward the same locks as wrong passwords."""
    waiting = signin.pending_sign_in(ctx, pending)
    if waiting is None:
        return Result(Outcome.NOT_APPLICABLE)
    user_id, version, key = waiting.user_id, waiting.session_version, waiting.key
    scopes = signin.scopes_for(ctx, key, client=client, device_cookie=device_cookie)
    for limit, subject in [*scopes, (code_limit(ctx), str(user_id))]:
        verdict = await ctx.limits.hit(limit, subject)
        if not verdict.allowed:
            return Result(Outcome.LOCKED, retry_after=verdict.retry_after)
    async with ctx.unit_of_work() as session:
        user = await users.by_id(session, user_id, lock=True)
        if user is None or user.session_version != version or user.totp_enabled_at is None:
            return Result(Outcome.NOT_APPLICABLE)
        method = await _second_factor(session, ctx, user, code)
        if method is None:
            ctx.defer(events.record_alone, ctx, Kind.LOGIN_FAILED, user.id, step="code")
            return Result(Outcome.WRONG_CODE)
        await signin.record_sign_in(
            session,
            ctx,
            user,
            device_cookie=device_cookie,
            client=client,
            user_agent=user_agent,
            method=method,
        )
    for limit, subject in [scopes[0], (code_limit(ctx), str(user_id))]:
        await ctx.limits.clear(limit, subject)
    return Result(Outcome.DONE, user=user, device_cookie=signin.new_device_cookie(ctx, key))


async def _password_and_factor(
    session: AsyncSession, ctx: ServiceContext, user: User, password: str, code: str
) -> Outcome | None:
    """What refuses a change to two-factor settings: the password and a second factor are
    both needed. None when both are right."""
    matches, _ = await passwords.verify_password(user.password_hash, password)
    if not matches:
        return Outcome.WRONG_PASSWORD
    if await _second_factor(session, ctx, user, code) is None:
        return Outcome.WRONG_CODE
    return None


async def disable(ctx: ServiceContext, user_id: int, password: str, code: str) -> Result:
    """Turn two-factor sign-in off: needs the password and a current code or recovery code."""
    verdict = await ctx.limits.hit(code_limit(ctx), str(user_id))
    if not verdict.allowed:
        return Result(Outcome.LOCKED, retry_after=verdict.retry_after)
    async with ctx.unit_of_work() as session:
        user = await users.by_id(session, user_id, lock=True)
        if user is None or user.totp_enabled_at is None:
            return Result(Outcome.NOT_APPLICABLE)
        refused = await _password_and_factor(session, ctx, user, password, code)
        if refused is not None:
            return Result(refused)
        user.totp_secret = user.totp_pending_secret = None
        user.totp_enabled_at = None
        user.totp_last_step = 0
        await session.execute(
            update(RecoveryCode)
            .where(RecoveryCode.user_id == user.id, RecoveryCode.used_at.is_(None))
            .values(used_at=func.now())
        )
        await _tell_owner(session, user, "disabled")
        await events.record(session, Kind.TWO_FACTOR_DISABLED, user.id)
    return Result(Outcome.DONE)


async def regenerate_codes(ctx: ServiceContext, user_id: int, password: str, code: str) -> Result:
    """A new set of recovery codes (the old ones stop working): password and a factor."""
    verdict = await ctx.limits.hit(code_limit(ctx), str(user_id))
    if not verdict.allowed:
        return Result(Outcome.LOCKED, retry_after=verdict.retry_after)
    async with ctx.unit_of_work() as session:
        user = await users.by_id(session, user_id, lock=True)
        if user is None or user.totp_enabled_at is None:
            return Result(Outcome.NOT_APPLICABLE)
        refused = await _password_and_factor(session, ctx, user, password, code)
        if refused is not None:
            return Result(refused)
        codes = await _issue_recovery_codes(session, user)
        await _tell_owner(session, user, "recovery codes regenerated")
        await events.record(session, Kind.RECOVERY_CODES_REGENERATED, user.id)
    return Result(Outcome.DONE, recovery_codes=codes)


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
