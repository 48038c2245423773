"""Where an account is signed in: one record per sign-in, listed for its owner, ended one at
a time, all but this one, or all at once (a password change, a reset, "this wasn't me")."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Select, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from shared.assurance import Method
from shared.devices import USER_AGENT_MAX, device_name
from shared.models import SignInSession, User
from shared.services import events, trusted_browsers
from shared.services.context import ServiceContext
from shared.services.identity import logout
from shared.services.refusals import ReauthenticationRequired

TOUCH_EVERY = timedelta(minutes=5)  # last_seen_at moves at most this often


async def add(
    session: AsyncSession,
    user: User,
    *,
    lifetime: int,
    client: str,
    user_agent: str,
    methods: Sequence[Method],
) -> str:
    """Record a sign-in in the caller's transaction (the one that checked its factors and
    records its event), with the methods that made it; returns its id, for the session
    cookie."""
    record = SignInSession(
        amr=[str(m) for m in methods],
        authenticated_at=datetime.now(UTC),
        id=secrets.token_urlsafe(32),
        public_id=secrets.token_urlsafe(12),
        user_id=user.id,
        expires_at=datetime.now(UTC) + timedelta(seconds=lifetime),
        client_address=client[:64],
        user_agent=user_agent[:USER_AGENT_MAX],
        device=await device_name(user_agent),
    )
    session.add(record)
    return record.id


async def start(
    ctx: ServiceContext,
    user: User,
    *,
    lifetime: int,
    client: str,
    user_agent: str,
    methods: Sequence[Method],
) -> str:
    """Record a sign-in in a transaction of its own (what the sign-in use cases do inside
    theirs, with :func:`add`); returns its id."""
    async with ctx.unit_of_work() as session:
        return await add(
            session, user, lifetime=lifetime, client=client, user_agent=user_agent, methods=methods
        )


@dataclass(frozen=True, slots=True)
class Current:
    user: User
    session: SignInSession


async def resolve(ctx: ServiceContext, session_id: str) -> Current | None:
    """The account and sign-in a session cookie names, if the sign-in is still live (not
    revoked, not expired) and the account's address is confirmed. One query; the last-seen
    time is touched at most every TOUCH_EVERY."""
    async with ctx.reading() as session:
        row = (
            await session.execute(
                select(SignInSession, User)
                .join(User, User.id == SignInSession.user_id)
                .where(
                    SignInSession.id == session_id,
                    SignInSession.revoked_at.is_(None),
                    SignInSession.expires_at > func.now(),
                    User.confirmed_at.is_not(None),
                )
            )
        ).first()
        if row is None:
            return None
        record, user = row
        if record.last_seen_at < datetime.now(UTC) - TOUCH_EVERY:
            await session.execute(
                update(SignInSession)
                .where(SignInSession.id == record.id)
                .values(last_seen_at=func.now())
            )
            await session.commit()
    return Current(user=user, session=record)


async def end(ctx: ServiceContext, session_id: str) -> None:
    """Sign-out: this sign-in ends on the server (a copy of its cookie stops working)."""
    async with ctx.unit_of_work() as session:
        ended = await session.scalar(
            update(SignInSession)
            .where(SignInSession.id == session_id, SignInSession.revoked_at.is_(None))
            .values(revoked_at=func.now())
            .returning(SignInSession.id)
        )
        if ended is not None:
            await logout.sign_ins_ended(session, [ended], why="signed out")


async def active(ctx: ServiceContext, user_id: int) -> list[SignInSession]:
    """The account's live sign-ins, most recently seen first."""
    async with ctx.reading() as session:
        return list(
            await session.scalars(
                select(SignInSession)
                .where(
                    SignInSession.user_id == user_id,
                    SignInSession.revoked_at.is_(None),
                    SignInSession.expires_at > func.now(),
                )
                .order_by(SignInSession.last_seen_at.desc(), SignInSession.created_at.desc())
            )
        )


async def revoke(ctx: ServiceContext, user_id: int, public_id: str, *, by: str | None) -> bool:
    """End one of the account's own sign-ins, named by its public id; False if that names
    none of the account's live ones. Asked by sign-in ``by``, which must have authenticated
    recently (a stolen session must not sign its owner out)."""
    async with ctx.unit_of_work() as session:
        await _recent_or_refuse(session, ctx, by, user_id)
        ended = await session.scalar(
            update(SignInSession)
            .where(
                SignInSession.public_id == public_id,
                SignInSession.user_id == user_id,
                SignInSession.revoked_at.is_(None),
            )
            .values(revoked_at=func.now())
            .returning(SignInSession.id)
        )
        if ended is not None:
            await logout.sign_ins_ended(session, [ended], why="session ended")
            await events.record(session, events.Kind.SESSION_REVOKED, user_id)
    return ended is not None


async def revoke_others(ctx: ServiceContext, user_id: int, keep: str) -> int:
    """ "Sign out everywhere else": how many sign-ins were ended. ``keep`` must have
    authenticated recently."""
    async with ctx.unit_of_work() as session:
        await _recent_or_refuse(session, ctx, keep, user_id)
        ended = await end_all(session, user_id, keep=keep, why="signed out everywhere else")
        await events.record(session, events.Kind.SESSIONS_REVOKED_ELSEWHERE, user_id, ended=ended)
    return ended


async def _recent_or_refuse(
    session: AsyncSession, ctx: ServiceContext, sign_in: str | None, user_id: int
) -> None:
    within = ctx.settings.REAUTHENTICATION_TIMEOUT
    if not await recently_authenticated(session, sign_in, user_id, within=within):
        raise ReauthenticationRequired


async def end_all(session: AsyncSession, user_id: int, *, why: str, keep: str | None = None) -> int:
    """End every live sign-in of the account (but ``keep``), in the caller's transaction:
    what a password change, a reset, "this wasn't me" and "sign out everywhere else" do.
    Whatever says the account may be in other hands says it of its remembered browsers
    too: they are forgotten with the sign-ins (``why`` goes in their event)."""
    await trusted_browsers.end_all(session, user_id, why=why)
    statement = (
        update(SignInSession)
        .where(SignInSession.user_id == user_id, SignInSession.revoked_at.is_(None))
        .values(revoked_at=func.now())
        .returning(SignInSession.id)
    )
    if keep is not None:
        statement = statement.where(SignInSession.id != keep)
    ended = list((await session.scalars(statement)).all())
    await logout.sign_ins_ended(session, ended, why=why)
    return len(ended)


async def recently_authenticated(
    session: AsyncSession, session_id: str | None, user_id: int, *, within: int
) -> bool:
    """Whether sign-in ``session_id``, live and ``user_id``'s, authenticated its person
    (signed in, or re-authenticated) within the last ``within`` seconds."""
    if session_id is None:
        return False
    found = await session.scalar(
        select(SignInSession.id).where(
            SignInSession.id == session_id,
            SignInSession.user_id == user_id,
            SignInSession.revoked_at.is_(None),
            SignInSession.expires_at > func.now(),
            SignInSession.authenticated_at > func.now() - timedelta(seconds=within),
        )
    )
    return found is not None


def is_recent(record: SignInSession, within: int) -> bool:
    """The same, for a record already read (what a page checks before showing a form)."""
    return record.authenticated_at > datetime.now(UTC) - timedelta(seconds=within)


async def renew(session: AsyncSession, session_id: str, user_id: int) -> bool:
    """Its person proved who they are again: the sign-in's authentication is now."""
    renewed = await session.scalar(
        update(SignInSession)
        .where(
            SignInSession.id == session_id,
            SignInSession.user_id == user_id,
            SignInSession.revoked_at.is_(None),
        )
        .values(authenticated_at=func.now())
        .returning(SignInSession.id)
    )
    return renewed is not None


@dataclass(frozen=True, slots=True)
class Rotated:
    """A sign-in under a new id (its cookie must be replaced): the same sign-in to its owner
    (same public id, same lifetime), but a copy of the cookie from before stops working."""

    session_id: str
    public_id: str


def public_id_of(session_id: str | None) -> Select[str]:
    """The public id of a sign-in (a query: run it, or store it beside what the sign-in
    adds as a subquery)."""
    return select(SignInSession.public_id).where(SignInSession.id == (session_id or ""))


async def rotate(session: AsyncSession, session_id: str | None) -> Rotated | None:
    """Give a live sign-in a new id, in the caller's transaction: what a change of
    credentials does to the sign-in that made it, as signing in does. None if there is no
    such live sign-in (then nothing changes)."""
    if session_id is None:
        return None
    new_id = secrets.token_urlsafe(32)
    public_id = await session.scalar(
        update(SignInSession)
        .where(SignInSession.id == session_id, SignInSession.revoked_at.is_(None))
        .values(id=new_id)
        .returning(SignInSession.public_id)
    )
    return Rotated(new_id, public_id) if public_id is not None else None
