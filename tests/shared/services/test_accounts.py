"""Registration, confirmation and the Texts, as use cases on the real database (inside a
rolled-back transaction)."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import event, func, select, text

from shared.db import create_engine
from shared.jobs import EmailKind
from shared.models import TextPost, User
from shared.services import accounts, texts
from shared.services.accounts import ConfirmOutcome, Resend, UsernameTaken
from shared.services.context import ServiceContext
from shared.settings import Settings
from shared.tokens import Purpose
from shared.validation import PERSONAL_PASSWORD, WEAK_PASSWORD, InvalidInput
from tests.shared.services.helpers import (
    PASSWORD,
    after_the_answer,
    emails,
    register_alice,
)


async def test_registration_creates_the_account_and_queues_its_confirmation(
    services_ctx: ServiceContext,
) -> None:
    alice = await register_alice(services_ctx)
    assert alice.username == "alice" and alice.confirmed_at is None
    assert alice.password_hash.startswith("$argon2id$")
    assert await emails(services_ctx) == [(EmailKind.CONFIRM, "alice@example.com")]


async def test_a_known_address_gets_its_owner_a_notice_and_no_second_account(
    services_ctx: ServiceContext,
) -> None:
    await register_alice(services_ctx, confirmed=True)
    await accounts.register(services_ctx, "mallory", "ALICE@example.com", PASSWORD)
    await accounts.register(services_ctx, "mallory2", "alice@example.com", PASSWORD)
    await after_the_answer(services_ctx)
    assert await emails(services_ctx) == [
        (EmailKind.CONFIRM, "alice@example.com"),
        (EmailKind.ALREADY_REGISTERED, "alice@example.com"),  # one per interval, not two
    ]
    async with services_ctx.reading() as session:
        assert await session.scalar(select(func.count()).select_from(User)) == 1


async def test_usernames_are_unique_whatever_their_case_or_width(
    services_ctx: ServiceContext,
) -> None:
    await register_alice(services_ctx)
    with pytest.raises(UsernameTaken):
        await accounts.register(services_ctx, "ＡＬＩＣＥ", "other@example.com", PASSWORD)


async def test_a_password_equal_to_the_address_is_refused_before_any_work(
    services_ctx: ServiceContext,
) -> None:
    with pytest.raises(InvalidInput) as refused:
        await accounts.register(services_ctx, "alice", "alice@example.com", "Alice@Example.com")
    assert (refused.value.field, refused.value.message) == ("password", PERSONAL_PASSWORD)
    assert await emails(services_ctx) == []


async def test_only_the_latest_confirmation_link_confirms(services_ctx: ServiceContext) -> None:
    alice = await register_alice(services_ctx)
    tokens = services_ctx.tokens
    first = tokens.dumps(Purpose.CONFIRM_EMAIL, {"uid": alice.id, "gen": 1})
    assert (await accounts.resend_confirmation(services_ctx, alice.id)).result is Resend.TOO_SOON
    async with services_ctx.unit_of_work() as session:
        locked = await session.get(User, alice.id)
        assert locked is not None
        locked.confirm_generation = 2  # as a resend after the interval would
    assert await accounts.confirm(services_ctx, first) is ConfirmOutcome.INVALID
    second = tokens.dumps(Purpose.CONFIRM_EMAIL, {"uid": alice.id, "gen": 2})
    assert await accounts.confirm(services_ctx, second) is ConfirmOutcome.CONFIRMED
    assert await accounts.confirm(services_ctx, second) is ConfirmOutcome.ALREADY_CONFIRMED
    assert await accounts.confirm(services_ctx, "not-a-token") is ConfirmOutcome.INVALID


@pytest.mark.parametrize("weak", ["password123", "qwertyuiop", "aliceAlice1", "Summer2024!"])
async def test_easily_guessed_passwords_are_refused(
    services_ctx: ServiceContext, weak: str
) -> None:
    with pytest.raises(InvalidInput) as refused:
        await accounts.register(services_ctx, "alice", "alice@example.com", weak)
    assert refused.value.field == "password"
    assert refused.value.message.startswith(WEAK_PASSWORD)


async def test_texts_need_a_confirmed_address(services_ctx: ServiceContext) -> None:
    alice = await register_alice(services_ctx)  # unconfirmed
    with pytest.raises(texts.NotConfirmed):
        await texts.create_text(services_ctx, alice.id, "Hello", "world")
    confirm = services_ctx.tokens.dumps(Purpose.CONFIRM_EMAIL, {"uid": alice.id, "gen": 1})
    assert await accounts.confirm(services_ctx, confirm) is ConfirmOutcome.CONFIRMED
    await texts.create_text(services_ctx, alice.id, "Hello", "world")
    page = await texts.newest_texts(services_ctx, 10**12)  # clamped, not an overflow
    assert page.texts == [] and page.pages == 1
    first = await texts.newest_texts(services_ctx, 1)
    assert [(text.title, text.author.username) for text in first.texts] == [("Hello", "alice")]
    async with services_ctx.reading() as session:
        assert await session.scalar(select(func.count()).select_from(TextPost)) == 1


async def test_pooled_connections_the_server_closed_are_replaced_without_a_round_trip(
    settings: Settings,
) -> None:
    """After a PostgreSQL restart (here: its backends terminated) the next transaction gets a
    fresh connection instead of failing; no ping statement is sent per checkout."""
    engine = create_engine(settings.DATABASE_URL, application_name="tests-liveness", pool_size=2)
    statements: list[str] = []
    event.listen(
        engine.sync_engine, "before_cursor_execute", lambda *args: statements.append(args[2])
    )
    try:
        async with engine.connect() as connection:
            assert await connection.scalar(text("SELECT 1")) == 1
        admin = create_engine(settings.DATABASE_URL, application_name="tests-admin", pool_size=1)
        async with admin.connect() as connection:
            terminated = await connection.scalar(
                text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                    " WHERE application_name = 'tests-liveness'"
                )
            )
        await admin.dispose()
        assert terminated == 1
        await asyncio.sleep(0.2)  # the event loop reads the server's goodbye
        for _ in range(3):
            async with engine.connect() as connection:
                assert await connection.scalar(text("SELECT 2")) == 2
        assert statements == ["SELECT 1", "SELECT 2", "SELECT 2", "SELECT 2"]
    finally:
        await engine.dispose()
