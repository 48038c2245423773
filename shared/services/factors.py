"""The second factors themselves: an authenticator app's codes (TOTP, RFC 6238) and the
single-use recovery codes. Checking one is shared by the second step of a sign-in
(:mod:`shared.services.two_factor`) and by a fresh proof of who you are
(:mod:`shared.services.proof`).

The secret is stored encrypted (Fernet, with a key derived from SECRET_KEY) and never
logged. A code is accepted once: the last accepted time step is stored, and only later steps
pass.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time

import pyotp
from sqlalchemy import func, update
from sqlalchemy.ext.asyncio import AsyncSession

from shared.i18n import N_
from shared.jobs import TwoFactorChanged
from shared.models import RecoveryCode, User
from shared.outbox import email_user
from shared.sealing import Sealer
from shared.services import events
from shared.services.context import ServiceContext
from shared.services.events import Kind

STEP = 30  # seconds per code (RFC 6238's default, what every authenticator app uses)
RECOVERY_CODE_COUNT = 10


def _sealer(ctx: ServiceContext) -> Sealer:
    return Sealer(ctx.secret, "accounts.totp-secret")


def seal(ctx: ServiceContext, secret: str) -> str:
    return _sealer(ctx).seal(secret)


def unseal(ctx: ServiceContext, sealed: str | None) -> str | None:
    # None when SECRET_KEY changed: the secret is unreadable; the owner re-enrols.
    return _sealer(ctx).open(sealed)


def _digest(code: str) -> str:
    return hashlib.sha256(code.encode()).hexdigest()


def _normalize(code: str) -> str:
    return "".join(code.split()).replace("-", "").lower()


def _new_recovery_code() -> str:
    raw = base64.b32encode(secrets.token_bytes(10)).decode().lower()  # 16 characters
    return f"{raw[:4]}-{raw[4:8]}-{raw[8:12]}-{raw[12:16]}"


def check_totp(secret: str, code: str, last_step: int) -> int | None:
    """The time step ``code`` is valid for (this one, or one either side of it for clock
    skew), if later than the last accepted one: a code is accepted once."""
    code = _normalize(code)
    if not (code.isascii() and code.isdigit() and len(code) == 6):
        return None
    totp, now = pyotp.TOTP(secret), int(time.time()) // STEP
    for step in (now - 1, now, now + 1):
        if step > last_step and secrets.compare_digest(totp.at(step * STEP), code):
            return step
    return None


async def issue_recovery_codes(session: AsyncSession, user: User) -> list[str]:
    """A new set of recovery codes (shown once); the unused old ones stop working."""
    await revoke_recovery_codes(session, user)
    codes = [_new_recovery_code() for _ in range(RECOVERY_CODE_COUNT)]
    session.add_all(RecoveryCode(user_id=user.id, code_hash=_digest(_normalize(c))) for c in codes)
    return codes


async def revoke_recovery_codes(session: AsyncSession, user: User) -> None:
    await session.execute(
        update(RecoveryCode)
        .where(RecoveryCode.user_id == user.id, RecoveryCode.used_at.is_(None))
        .values(used_at=func.now())
    )


async def tell_owner(session: AsyncSession, user: User, change: str, *, by: str | None) -> None:
    """Email the owner about a change to how the account is signed in to, with a "this
    wasn't me" link that undoes what sign-in ``by`` (a public id) added."""
    await email_user(
        session,
        user,
        TwoFactorChanged(
            user_id=user.id, session_version=user.session_version, change=change, session=by
        ),
    )


async def check_code(
    session: AsyncSession, ctx: ServiceContext, user: User, code: str
) -> str | None:
    """Check ``code`` (an authenticator code, or an unused recovery code) for ``user``, whose
    row the caller holds locked: "totp", "recovery", or None. Both are spent on success."""
    secret = unseal(ctx, user.totp_secret)
    if secret is not None:
        step = check_totp(secret, code, user.totp_last_step)
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
        await tell_owner(session, user, N_("recovery code used"), by=None)
        await events.record(session, Kind.RECOVERY_CODE_USED, user.id)
        return "recovery"
    return None


def turn_off(user: User) -> None:
    """Forget the authenticator (the caller revokes the recovery codes and tells the owner)."""
    user.totp_secret = user.totp_pending_secret = None
    user.totp_enabled_at = None
    user.totp_enabled_in_session = None
    user.totp_last_step = 0
