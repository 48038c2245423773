"""The use cases called directly, against the real database inside a rolled-back
transaction (the ``services_ctx`` fixture): each rule tested without an HTTP round trip.
The same rules are tested end to end through the forms and the API in tests/web."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from shared.jobs import EmailKind
from shared.models import Email, TextPost, User
from shared.services import accounts, passwords, signin, texts
from shared.services.accounts import ConfirmOutcome, Resend, UsernameTaken
from shared.services.context import ServiceContext
from shared.services.passwords import ChangeOutcome, reset_token_payload
from shared.tokens import Purpose
from shared.validation import PERSONAL_PASSWORD, InvalidInput

PASSWORD = "correct horse battery"


async def emails(ctx: ServiceContext) -> list[tuple[str, str]]:
    async with ctx.reading() as session:
        rows = await session.execute(select(Email.kind, Email.recipient).order_by(Email.id))
        return [(kind, recipient) for kind, recipient in rows.all()]


async def user(ctx: ServiceContext, email: str = "alice@example.com") -> User:
    async with ctx.reading() as session:
        found = await session.scalar(select(User).where(User.email == email))
    assert found is not None
    return found


async def register_alice(ctx: ServiceContext) -> User:
    await accounts.register(ctx, "alice", "alice@example.com", PASSWORD)
    return await user(ctx)


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
    await register_alice(services_ctx)
    await accounts.register(services_ctx, "mallory", "ALICE@example.com", PASSWORD)
    await accounts.register(services_ctx, "mallory2", "alice@example.com", PASSWORD)
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


async def test_login_counts_failures_and_locks_the_address(services_ctx: ServiceContext) -> None:
    await register_alice(services_ctx)
    limit = services_ctx.settings.LOGIN_FAILURES_BEFORE_LOCK
    for _ in range(limit):
        outcome = await signin.login(services_ctx, "alice@example.com", "wrong password")
        assert outcome.user is None and not outcome.locked_for
    locked = await signin.login(services_ctx, "alice@example.com", PASSWORD)
    assert locked.user is None and locked.locked_for > 0  # even the right password waits


async def test_a_reset_link_works_once_and_lifts_the_lock(services_ctx: ServiceContext) -> None:
    alice = await register_alice(services_ctx)
    await passwords.request_reset(services_ctx, "alice@example.com")
    await passwords.request_reset(services_ctx, "nobody@example.com")
    await services_ctx.defer.drain()  # type: ignore[attr-defined]
    assert (await emails(services_ctx))[-1] == (EmailKind.RESET, "alice@example.com")

    alice = await user(services_ctx)
    token = services_ctx.tokens.dumps(
        Purpose.RESET_PASSWORD, reset_token_payload(alice, services_ctx.secret)
    )
    assert await passwords.reset_link_works(services_ctx, token)
    with pytest.raises(InvalidInput):
        await passwords.reset_password(services_ctx, token, "alice@example.com")
    assert await passwords.reset_password(services_ctx, token, "a brand new secret")
    assert not await passwords.reset_password(services_ctx, token, "another new secret")
    assert (await emails(services_ctx))[-1] == (EmailKind.PASSWORD_CHANGED, "alice@example.com")
    signed_in = await signin.login(services_ctx, "alice@example.com", "a brand new secret")
    assert signed_in.user is not None


async def test_changing_the_password_needs_the_current_one_and_ends_sessions(
    services_ctx: ServiceContext,
) -> None:
    alice = await register_alice(services_ctx)
    wrong = await passwords.change_password(services_ctx, alice.id, "nope", "a new secret 1")
    assert wrong == (ChangeOutcome.WRONG_PASSWORD, None)
    outcome, changed = await passwords.change_password(
        services_ctx, alice.id, PASSWORD, "a new secret 1"
    )
    assert outcome is ChangeOutcome.CHANGED and changed is not None
    assert changed.session_version == alice.session_version + 1
    assert await signin.session_user(services_ctx, alice.id, alice.session_version) is None
    assert await signin.session_user(services_ctx, alice.id, changed.session_version)


async def test_this_wasnt_me_ends_sessions_and_sends_a_reset_link_once(
    services_ctx: ServiceContext,
) -> None:
    alice = await register_alice(services_ctx)
    token = services_ctx.tokens.dumps(
        Purpose.NOT_ME, {"uid": alice.id, "sv": alice.session_version}
    )
    assert await passwords.disown_change(services_ctx, token)
    assert not await passwords.disown_change(services_ctx, token)  # used: the version moved
    assert (await emails(services_ctx))[-1] == (EmailKind.RESET, "alice@example.com")


async def test_texts_need_a_confirmed_address(services_ctx: ServiceContext) -> None:
    alice = await register_alice(services_ctx)
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
