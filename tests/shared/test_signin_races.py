"""Sign-in limits under concurrency, on real connections: every attempt is counted before
its password is checked, so no burst of simultaneous guesses gets more than the limit
through, whatever order they arrive in."""

from __future__ import annotations

import asyncio

import pytest
from arq.connections import ArqRedis
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.db import SessionMaker
from shared.jobs import EmailKind
from shared.models import Email, LoginCode, User
from shared.services import accounts, email_change, login_codes, passwords, signin
from shared.services.context import ServiceContext
from shared.services.signin import Attempt
from shared.settings import Settings
from shared.tokens import ChangeEmailLink, Purpose, login_code
from tests.support import committing_context

PASSWORD = "correct horse battery"
BURST = 40


@pytest.fixture
async def ctx(
    settings: Settings,
    engine: AsyncEngine,
    sessionmaker: SessionMaker,
    queue: ArqRedis,
    clean_db: None,
) -> ServiceContext:
    tight = settings.with_values(LOGIN_ACCOUNT_CEILING=10, LOGIN_FAILURES_BEFORE_LOCK=10)
    context = committing_context(tight, engine, sessionmaker, queue)
    await accounts.register(context, "alice", "alice@example.com", PASSWORD)
    await context.defer.drain()  # type: ignore[attr-defined]
    async with sessionmaker() as session, session.begin():
        await session.execute(update(User).values(confirmed_at=func.now()))
    return context


async def test_simultaneous_guesses_from_many_clients_stop_at_the_ceiling(
    ctx: ServiceContext,
) -> None:
    # Every guess is right, each from its own address (under its per-client limit): only
    # the account-wide ceiling stands between them and the account.
    outcomes = await asyncio.gather(
        *(
            signin.login(ctx, "alice@example.com", PASSWORD, Attempt(client=f"10.0.0.{n}"))
            for n in range(BURST)
        )
    )
    signed_in = [outcome for outcome in outcomes if outcome.user is not None]
    locked = [outcome for outcome in outcomes if outcome.locked_for]
    assert len(signed_in) == ctx.settings.LOGIN_ACCOUNT_CEILING
    assert len(locked) == BURST - ctx.settings.LOGIN_ACCOUNT_CEILING


async def test_simultaneous_guesses_from_one_client_stop_at_its_limit(
    ctx: ServiceContext,
) -> None:
    outcomes = await asyncio.gather(
        *(
            signin.login(ctx, "alice@example.com", f"guess {n}", Attempt(client="10.0.0.1"))
            for n in range(BURST - 1)
        ),
        signin.login(ctx, "alice@example.com", PASSWORD, Attempt(client="10.0.0.1")),
    )
    checked = [outcome for outcome in outcomes if not outcome.locked_for]
    assert len(checked) == ctx.settings.LOGIN_FAILURES_BEFORE_LOCK


async def test_two_simultaneous_changes_with_one_old_password_let_one_win(
    ctx: ServiceContext, sessionmaker: SessionMaker
) -> None:
    async with sessionmaker() as session:
        alice = await session.scalar(select(User))
    assert alice is not None
    results = await asyncio.gather(
        passwords.change_password(ctx, alice.id, PASSWORD, "first new secret 1"),
        passwords.change_password(ctx, alice.id, PASSWORD, "second new secret 2"),
        return_exceptions=True,
    )
    outcomes = sorted(type(result).__name__ for result in results)
    assert outcomes == ["Changed", "WrongPassword"]


async def test_simultaneous_address_changes_leave_exactly_the_latest_one_pending(
    ctx: ServiceContext, sessionmaker: SessionMaker
) -> None:
    async with sessionmaker() as session:
        alice = await session.scalar(select(User))
    assert alice is not None
    await asyncio.gather(
        *(
            email_change.request_change(ctx, alice.id, f"new{n}@example.com", PASSWORD)
            for n in range(5)
        )
    )
    await ctx.defer.drain()  # type: ignore[attr-defined]
    async with sessionmaker() as session:
        alice = await session.scalar(select(User))
    assert alice is not None and alice.email_change_generation == 5  # each got its own
    links = [
        ctx.tokens.dumps(
            Purpose.CHANGE_EMAIL,
            ChangeEmailLink(alice.id, generation, f"new{n}@example.com").payload(),
        )
        for generation in range(1, 6)
        for n in range(5)
    ]
    outcomes = [await email_change.confirm_change(ctx, token) for token in links]
    assert outcomes.count(email_change.ConfirmOutcome.CHANGED) == 1
    async with sessionmaker() as session:
        assert (await session.scalar(select(User.email))) == alice.pending_email


async def test_simultaneous_registrations_of_one_new_address_make_one_account(
    ctx: ServiceContext, sessionmaker: SessionMaker
) -> None:
    # Different usernames, one new address, all at once: one account and one confirmation
    # email; the others find the account made (or lose the insert) and do not fail.
    names = [f"bob{n}" for n in range(8)]
    await asyncio.gather(
        *(accounts.register(ctx, name, "bob@example.com", PASSWORD) for name in names)
    )
    await ctx.defer.drain()  # type: ignore[attr-defined]
    async with sessionmaker() as session:
        bobs = (await session.scalars(select(User).where(User.email == "bob@example.com"))).all()
        kinds = (
            await session.scalars(
                select(Email.kind).where(Email.recipient == "bob@example.com").order_by(Email.id)
            )
        ).all()
    assert len(bobs) == 1 and bobs[0].username in names
    assert bobs[0].confirm_generation == accounts.FIRST_LINK
    assert kinds[0] == EmailKind.CONFIRM
    assert kinds.count(EmailKind.CONFIRM) == 1


async def test_two_accounts_confirming_one_free_address_at_once(
    ctx: ServiceContext, sessionmaker: SessionMaker
) -> None:
    """Each holds a valid link for the same free address: one gets it, the other a refusal
    (an address taken since), never an error."""
    await accounts.register(ctx, "bob", "bob@example.com", PASSWORD)
    await ctx.defer.drain()  # type: ignore[attr-defined]
    async with sessionmaker() as session, session.begin():
        await session.execute(update(User).values(confirmed_at=func.now()))
        ids = list(await session.scalars(select(User.id).order_by(User.id)))
    tokens = []
    for user_id in ids:
        await email_change.request_change(ctx, user_id, "free@example.com", PASSWORD)
        async with sessionmaker() as session:
            generation = await session.scalar(
                select(User.email_change_generation).where(User.id == user_id)
            )
        payload = ChangeEmailLink(user_id, generation or 0, "free@example.com").payload()
        tokens.append(ctx.tokens.dumps(Purpose.CHANGE_EMAIL, payload))
    await ctx.defer.drain()  # type: ignore[attr-defined]
    outcomes = await asyncio.gather(*(email_change.confirm_change(ctx, t) for t in tokens))
    assert sorted(o.value for o in outcomes) == ["changed", "invalid"]


async def test_strangers_refused_attempts_are_counted_not_listed(
    ctx: ServiceContext, sessionmaker: SessionMaker
) -> None:
    """40 client addresses x 10 wrong passwords: one row per kind with the count, and one
    webhook delivery per kind (the window's first), not 400 of each."""
    from shared.models import SecurityEvent, WebhookDelivery
    from shared.services import events, webhooks

    await webhooks.add_endpoint(ctx, "https://hooks.example.com/all", ["*"])

    async def guess(n: int, round_: int) -> None:
        events.set_origin(f"10.0.0.{n}", "curl/8.0")  # as the web layer does per request
        await signin.login(
            ctx, "alice@example.com", f"guess {round_}", Attempt(client=f"10.0.0.{n}")
        )

    for round_ in range(10):
        await asyncio.gather(*(guess(n, round_) for n in range(40)))
    await ctx.defer.drain()  # type: ignore[attr-defined]
    async with sessionmaker() as session:
        rows = list(
            await session.scalars(
                select(SecurityEvent)
                .where(SecurityEvent.kind != "user.registered")
                .order_by(SecurityEvent.kind)
            )
        )
        owed = await session.scalar(select(func.count()).select_from(WebhookDelivery))
    assert [(row.kind, row.attempts) for row in rows] == [
        ("user.locked", 400 - ctx.settings.LOGIN_ACCOUNT_CEILING),
        ("user.login_failed", ctx.settings.LOGIN_ACCOUNT_CEILING),
    ]
    assert owed == 2
    assert events.in_words(rows[0]).startswith("390 sign-in attempts held back from 40 addresses")


async def test_one_emailed_code_signs_in_once_whatever_the_burst(ctx: ServiceContext) -> None:
    await login_codes.request(ctx, "alice@example.com")
    await ctx.defer.drain()  # type: ignore[attr-defined]
    async with ctx.reading() as session:
        held = await session.scalar(select(LoginCode))
    assert held is not None
    code = login_code(ctx.secret, held.user_id, held.generation, held.salt)
    outcomes = await asyncio.gather(
        *(
            login_codes.with_code(ctx, "alice@example.com", code, Attempt(client=f"10.0.1.{n}"))
            for n in range(BURST)
        ),
        return_exceptions=True,
    )
    kinds = [type(outcome).__name__ for outcome in outcomes]
    assert kinds.count("Result") == 1, kinds
    assert set(kinds) <= {"Result", "WrongCode", "CodeSpent"}
