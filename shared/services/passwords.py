"""Password reset by email, password change, and "this wasn't me"."""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from sqlalchemy import delete, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from shared import passwords
from shared.group_commit import Together
from shared.i18n import N_
from shared.jobs import EmailKind, PasswordChanged, ResetEmail
from shared.models import FederatedIdentity, Passkey, User
from shared.outbox import add_emails, email_user
from shared.ratelimit import Limit
from shared.services import events, factors, proof, sessions, signin, users
from shared.services.context import ServiceContext
from shared.services.events import Kind
from shared.services.identity import logout
from shared.services.refusals import NotApplicable
from shared.tokens import NotMeLink, ResetLink, from_unix_microseconds, password_fingerprint
from shared.validation import InvalidInput, check_new_password, email_key

HOUR = 3600
UNUSABLE_PASSWORD_PREFIX = passwords.UNUSABLE_PREFIX


def reset_email_limit(ctx: ServiceContext) -> Limit:
    """Reset emails per account (keyed like the account: look-alike addresses that are not
    the same account do not share it, and ones that are cannot multiply it)."""
    return Limit("reset-emails", ctx.settings.RESET_EMAILS_PER_HOUR, HOUR)


async def request_reset(ctx: ServiceContext, email: str) -> None:
    """Queue a reset link if the address has an account and is within its hourly budget.

    Nothing observable differs between the cases, to prevent account enumeration, timing
    included: this only counts the attempt (per address typed, known or not) and defers the
    rest until after the answer, so known and unknown addresses answer in the same time.
    """
    verdict = await ctx.limits.hit(reset_email_limit(ctx), email_key(email))
    if verdict.allowed:
        ctx.defer(_issue_reset_if_known, ctx, _ResetRequest(email, events.current_origin()))


@dataclass(frozen=True, slots=True)
class _ResetRequest:
    email: str
    origin: events.Origin  # where it came from, for its security event


async def _issue_reset_if_known(ctx: ServiceContext, request: _ResetRequest) -> None:
    # Under a flood of requests the deferred writes are mostly these: written together.
    await ctx.commit_together(Together(_issue_resets, request), lock_key=email_key(request.email))


async def _issue_resets(session: AsyncSession, requests: list[_ResetRequest]) -> None:
    """Reset links for the requests whose addresses have accounts, in three statements
    whatever their number: one UPDATE finds the accounts and moves each one's link
    generation on by its number of requests (holding their rows until commit, so every
    request gets a generation of its own: the latest link wins), one INSERT queues an email
    per request, one records an event per request."""
    asked: dict[str, list[_ResetRequest]] = {}
    for request in requests:
        asked.setdefault(email_key(request.email), []).append(request)
    accounts = await users.next_reset_generations(
        session, {key: len(mine) for key, mine in asked.items()}
    )
    links: list[tuple[str, ResetEmail, int]] = []
    recorded: list[events.Event] = []
    for account in accounts:
        mine = asked[account.email_key]
        first = account.reset_generation - len(mine) + 1
        for generation, request in enumerate(mine, start=first):
            links.append(
                (account.email, ResetEmail(user_id=account.id, generation=generation), account.id)
            )
            recorded.append(events.Event(Kind.RESET_REQUESTED, account.id, request.origin, {}))
    await add_emails(session, EmailKind.RESET, links)
    await events.record_many(session, recorded)


async def _issue_reset(session: AsyncSession, user: User) -> None:
    """Queue a reset link; it supersedes every earlier one ("latest link wins"). The caller
    holds ``user``'s row lock, so concurrent requests get distinct generations."""
    user.reset_generation += 1
    await session.flush()
    await email_user(session, user, ResetEmail(user_id=user.id, generation=user.reset_generation))


def _reset_link(ctx: ServiceContext, token: str) -> ResetLink | None:
    return ctx.tokens.read(ResetLink, token, max_age=ctx.settings.RESET_TOKEN_MAX_AGE)


async def _still_valid(
    session: AsyncSession, link: ResetLink, secret: str, *, lock: bool
) -> User | None:
    """The user a reset link is for, if it is still the latest link and the password has
    not changed since it was issued (which makes every link single-use)."""
    user = await users.by_id(session, link.user_id, lock=lock)
    if user is None or user.reset_generation != link.generation:
        return None
    if not hmac.compare_digest(link.fingerprint, password_fingerprint(user.password_hash, secret)):
        return None
    return user


async def reset_link_works(ctx: ServiceContext, token: str) -> bool:
    """Whether a reset link is still good (not used, not superseded, not expired, not
    tampered with, and of the right purpose)."""
    link = _reset_link(ctx, token)
    if link is None:
        return False
    async with ctx.reading() as session:
        return await _still_valid(session, link, ctx.secret, lock=False) is not None


async def reset_password(
    ctx: ServiceContext, token: str, password: str, *, client: str | None = None
) -> bool:
    """Set a new password through a reset link; False if the link is no good (any reason).
    Raises :class:`InvalidInput` for a password the rules refuse. The sign-in locks of the
    account (and of ``client``, the address resetting) are lifted.

    Checked under the row lock: of two concurrent uses of one link, one wins.
    """
    link = _reset_link(ctx, token)
    if link is None:
        return False  # forged or expired: no database work for it
    async with ctx.unit_of_work() as session:
        user = await _still_valid(session, link, ctx.secret, lock=True)
        if user is None:
            return False
        await _check_new_password(password, user)
        await _set_password(session, user, await passwords.hash_password(password))
        await events.record(session, Kind.PASSWORD_RESET, user.id)
        if user.confirmed_at is None:
            user.confirmed_at = datetime.now(UTC)  # the link came by email: address proven
    await signin.lift_locks(ctx, user, client=client)
    return True


async def _check_new_password(password: str, user: User) -> None:
    try:
        await check_new_password(password, user.username, user.email)
    except ValueError as error:
        raise InvalidInput("password", str(error)) from None


@dataclass(frozen=True, slots=True)
class Changed:
    user: User  # the account, with its new session version
    session_id: str | None = None  # the asking sign-in's new id (a new cookie)


async def change_password(
    ctx: ServiceContext,
    user_id: int,
    current_password: str,
    new_password: str,
    *,
    keep_session: str | None = None,
) -> Changed:
    """Change a signed-in account's password, given its current one. Every other sign-in
    ends; ``keep_session``, the one asking, carries on under a new id (a copy of its cookie
    from before stops working, as at sign-in).
    Raises :class:`InvalidInput` for a new password the rules refuse, and the refusals of
    :func:`shared.services.proof.proven` (the current password is checked like any proof:
    counted first, under the row lock, so of two concurrent changes made with the same old
    password only one succeeds).
    """
    offered = proof.Proof(sign_in=keep_session, password=current_password, field="current_password")
    async with proof.proven(ctx, user_id, offered) as (session, user):
        await _check_new_password(new_password, user)
        new_hash = await passwords.hash_password(new_password)
        rotated = await _set_password(session, user, new_hash, keep=keep_session)
        await events.record(session, Kind.PASSWORD_CHANGED, user.id)
    return Changed(user, session_id=rotated.session_id if rotated is not None else None)


async def remove_password(ctx: ServiceContext, user_id: int, *, sign_in: str | None) -> Changed:
    """Remove the account's password (sudo): it then signs in with a passkey or a code by
    email, so it must have a passkey first (:class:`NotApplicable` otherwise). Like a
    change: every other sign-in ends, remembered browsers are forgotten, the owner is told;
    ``sign_in`` carries on under a new id."""
    async with proof.proven(ctx, user_id, proof.Proof(sign_in=sign_in)) as (session, user):
        if not passwords.is_usable(user.password_hash):
            raise NotApplicable(N_("This account has no password."))
        keys = await session.scalar(
            select(func.count()).select_from(Passkey).where(Passkey.user_id == user.id)
        )
        if not keys:
            raise NotApplicable(
                N_(
                    "Add a passkey first: without a password, you sign in with a passkey or a "
                    "code we email you."
                )
            )
        unusable = UNUSABLE_PASSWORD_PREFIX + secrets.token_urlsafe(24)
        rotated = await _set_password(session, user, unusable, keep=sign_in)
        await events.record(session, Kind.PASSWORD_REMOVED, user.id, why="removed")
    return Changed(user, session_id=rotated.session_id if rotated is not None else None)


async def _set_password(
    session: AsyncSession, user: User, password_hash: str, *, keep: str | None = None
) -> sessions.Rotated | None:
    """Store a new password, end every sign-in but ``keep`` (the one that changed it, which
    gets a new id: returned), kill outstanding reset links, and tell the owner (with a "this
    wasn't me" link, which works while the account's session version is unchanged and
    undoes what the changing sign-in added)."""
    user.password_hash = password_hash
    await sessions.end_all(session, user.id, keep=keep, why="password changed")
    # What applications got through the sign-in that changed it ends too: whoever knew the
    # old password may have been the one signed in to them.
    if keep is not None:
        await logout.sign_ins_ended(session, [keep], why="password changed")
    rotated = await sessions.rotate(session, keep)
    user.session_version += 1
    user.reset_generation += 1
    await session.flush()
    by = rotated.public_id if rotated is not None else None
    await email_user(
        session,
        user,
        PasswordChanged(user_id=user.id, session_version=user.session_version, session=by),
    )
    return rotated


@dataclass(frozen=True, slots=True)
class Disowned:
    """What "this wasn't me" undid, for the page that says so."""

    passkeys_removed: list[str] = field(default_factory=list)  # their names
    two_factor_turned_off: bool = False
    email_change_cancelled: bool = False


async def disown_change(ctx: ServiceContext, token: str) -> Disowned | None:
    """ "This wasn't me": end every session of the account, make the password unusable and
    email a fresh reset link; and undo what the disowned sign-in could have added to keep a
    way in: the passkeys it added and two-factor sign-in if it turned it on (by the sign-in
    named in the link, or at or after the moment the link's message is about), and an
    address change in flight.
    None if the link is no good (forged, expired, already used, or sent before the account's
    address changed)."""
    link = ctx.tokens.read(NotMeLink, token, max_age=ctx.settings.NOT_ME_TOKEN_MAX_AGE)
    if link is None:
        return None
    async with ctx.unit_of_work() as session:
        user = await users.by_id(session, link.user_id, lock=True)
        if user is None or user.session_version != link.session_version:
            return None
        # Whoever changed the password knows it: it stops working until the owner sets a
        # new one through the reset link (an argon2 hash never starts with "!").
        user.password_hash = UNUSABLE_PASSWORD_PREFIX + secrets.token_urlsafe(24)
        await sessions.end_all(session, user.id, why="not me")
        await events.record(session, Kind.NOT_ME, user.id)
        undone = await _undo_ways_in(session, user, since=link.since, by=link.sign_in)
        if user.pending_email is not None:  # an address change nobody asked for: cancelled
            user.pending_email = None
            user.email_change_generation += 1
            await events.record(session, Kind.EMAIL_CHANGE_CANCELLED, user.id)
            undone = replace(undone, email_change_cancelled=True)
        user.session_version += 1
        await _issue_reset(session, user)
    return undone


async def _undo_ways_in(
    session: AsyncSession, user: User, *, since: int | None, by: str | None
) -> Disowned:
    """Remove the passkeys added by sign-in ``by`` or from ``since`` (Unix microseconds) on,
    and turn two-factor sign-in off if one of them turned it on."""
    since_at = from_unix_microseconds(since) if since is not None else None
    added = [Passkey.added_in_session == by] if by is not None else []
    if since_at is not None:
        added.append(Passkey.created_at >= since_at)
    removed: list[str] = []
    if added:
        removed = list(
            await session.scalars(
                delete(Passkey)
                .where(Passkey.user_id == user.id, or_(*added))
                .returning(Passkey.name)
            )
        )
        for _ in removed:
            await events.record(session, Kind.PASSKEY_REMOVED, user.id)
    enabled_at, enabled_by = user.totp_enabled_at, user.totp_enabled_in_session
    turned_on_then = enabled_at is not None and (
        (by is not None and enabled_by == by) or (since_at is not None and enabled_at >= since_at)
    )
    if turned_on_then:
        factors.turn_off(user)
        await factors.revoke_recovery_codes(session, user)
        await events.record(session, Kind.TWO_FACTOR_DISABLED, user.id)
    # Accounts at other providers connected by that sign-in, or since: disconnected.
    connected = [FederatedIdentity.linked_in_session == by] if by is not None else []
    if since_at is not None:
        connected.append(FederatedIdentity.created_at >= since_at)
    if connected:
        gone = await session.scalars(
            delete(FederatedIdentity)
            .where(FederatedIdentity.user_id == user.id, or_(*connected))
            .returning(FederatedIdentity.provider)
        )
        for provider in gone:
            await events.record(session, Kind.IDENTITY_UNLINKED, user.id, provider=provider)
    return Disowned(passkeys_removed=removed, two_factor_turned_off=turned_on_then)
