"""Browsers their owner asked to remember ("Remember this browser" on the second step of a
sign-in): from one of them, a sign-in to that account needs its first factor only, for
TRUSTED_BROWSER_DAYS. A browser is named by the id in its signed device cookie
(:mod:`shared.services.signin`), which stays the same across its sign-ins.

Trust is the weakening of a second factor, so it is ended wholesale by whatever says the
account may be in someone else's hands, or that its factors changed: "sign out everywhere
else", a password change or reset, "this wasn't me", and turning two-factor sign-in on or off
(``sessions.end_all`` forgets them with the sign-ins; two-factor calls :func:`end_all`
itself). Its owner can end it one browser at a
time on the sessions page.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from shared.devices import device_name
from shared.models import TrustedBrowser, User
from shared.services import events
from shared.services.context import ServiceContext
from shared.services.events import Kind

BIGINT_MAX = 2**63 - 1


async def trusts(session: AsyncSession, user_id: int, device_id: str | None) -> bool:
    """Whether the account's owner trusts this browser, now."""
    if device_id is None:
        return False
    found = await session.scalar(
        select(TrustedBrowser.id).where(
            TrustedBrowser.user_id == user_id,
            TrustedBrowser.device_id == device_id,
            TrustedBrowser.expires_at > func.now(),
        )
    )
    return found is not None


async def trust(
    session: AsyncSession,
    ctx: ServiceContext,
    user: User,
    device_id: str,
    *,
    client: str,
    user_agent: str,
) -> None:
    """Remember this browser for the account, in the sign-in's transaction (asked again, its
    time starts again)."""
    days = ctx.settings.TRUSTED_BROWSER_DAYS
    expires_at = datetime.now(UTC) + timedelta(days=days)
    device = await device_name(user_agent)
    statement = insert(TrustedBrowser).values(
        user_id=user.id,
        device_id=device_id,
        device=device,
        client_address=client[:64],
        expires_at=expires_at,
    )
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=[TrustedBrowser.user_id, TrustedBrowser.device_id],
            set_={
                "expires_at": expires_at,
                "device": device,
                "client_address": client[:64],
                "created_at": func.now(),
            },
        )
    )
    await events.record(session, Kind.DEVICE_TRUSTED, user.id, device=device, days=days)


async def end_all(session: AsyncSession, user_id: int, *, why: str) -> int:
    """Forget every browser the account trusts, in the caller's transaction; how many."""
    ended = len(
        (
            await session.scalars(
                delete(TrustedBrowser)
                .where(TrustedBrowser.user_id == user_id)
                .returning(TrustedBrowser.id)
            )
        ).all()
    )
    if ended:
        await events.record(session, Kind.DEVICE_UNTRUSTED, user_id, ended=ended, why=why)
    return ended


async def end(ctx: ServiceContext, user_id: int, browser_id: int) -> bool:
    """Forget one of the account's trusted browsers; False if it names none of them."""
    if not 0 < browser_id <= BIGINT_MAX:
        return False
    async with ctx.unit_of_work() as session:
        device = await session.scalar(
            delete(TrustedBrowser)
            .where(TrustedBrowser.id == browser_id, TrustedBrowser.user_id == user_id)
            .returning(TrustedBrowser.device)
        )
        if device is not None:
            await events.record(
                session, Kind.DEVICE_UNTRUSTED, user_id, ended=1, why="ended", device=device
            )
    return device is not None


async def listed(ctx: ServiceContext, user_id: int) -> list[TrustedBrowser]:
    """The account's trusted browsers whose trust has not run out, newest first."""
    async with ctx.reading() as session:
        return list(
            await session.scalars(
                select(TrustedBrowser)
                .where(TrustedBrowser.user_id == user_id, TrustedBrowser.expires_at > func.now())
                .order_by(TrustedBrowser.created_at.desc())
            )
        )
