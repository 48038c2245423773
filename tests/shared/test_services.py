"""The use cases called directly, against the real database inside a rolled-back
transaction (the ``services_ctx`` fixture): each rule tested without an HTTP round trip.
The same rules are tested end to end through the forms and the API in tests/web."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from datetime import timedelta

import pytest
from sqlalchemy import event, func, select, text, update

from shared.db import create_engine
from shared.jobs import EmailKind
from shared.models import Email, SignInSession, TextPost, User
from shared.services import accounts, email_change, passwords, sessions, signin, texts
from shared.services.accounts import ConfirmOutcome, Resend, UsernameTaken
from shared.services.context import ServiceContext
from shared.services.refusals import Locked, WrongPassword
from shared.settings import Settings
from shared.tokens import ChangeEmailLink, Purpose, ResetLink
from shared.validation import PERSONAL_PASSWORD, WEAK_PASSWORD, InvalidInput
from tests.support import reset_payload

PASSWORD = "correct horse battery"
FIREFOX = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0"
CHROME_LINUX = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)


async def emails(ctx: ServiceContext) -> list[tuple[str, str]]:
    async with ctx.reading() as session:
        rows = await session.execute(select(Email.kind, Email.recipient).order_by(Email.id))
        return [(kind, recipient) for kind, recipient in rows.all()]


async def user(ctx: ServiceContext, email: str = "alice@example.com") -> User:
    async with ctx.reading() as session:
        found = await session.scalar(select(User).where(User.email == email))
    assert found is not None
    return found


async def after_the_answer(ctx: ServiceContext) -> None:
    await ctx.defer.run()  # type: ignore[attr-defined]


async def register_alice(ctx: ServiceContext, *, confirmed: bool = False) -> User:
    await accounts.register(ctx, "alice", "alice@example.com", PASSWORD)
    await after_the_answer(ctx)
    alice = await user(ctx)
    if confirmed:
        token = ctx.tokens.dumps(Purpose.CONFIRM_EMAIL, {"uid": alice.id, "gen": 1})
        assert await accounts.confirm(ctx, token) is ConfirmOutcome.CONFIRMED
        alice = await user(ctx)
    return alice


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


async def test_signing_in_needs_a_confirmed_address(services_ctx: ServiceContext) -> None:
    """Right password, unconfirmed address: the answer of a wrong password (registering an
    address and signing in with it must not tell a stranger the address was new), and a
    fresh confirmation link for the owner, after the answer."""
    alice = await register_alice(services_ctx)
    outcome = await signin.login(services_ctx, "alice@example.com", PASSWORD, client="a")
    assert outcome == signin.LoginOutcome()
    async with services_ctx.unit_of_work() as session:  # the first link is old enough now
        await session.execute(update(Email).values(created_at=func.now() - timedelta(hours=1)))
    outcome = await signin.login(services_ctx, "alice@example.com", PASSWORD, client="a")
    await after_the_answer(services_ctx)
    assert outcome == signin.LoginOutcome()
    assert await emails(services_ctx) == [(EmailKind.CONFIRM, "alice@example.com")] * 2
    assert (await user(services_ctx)).confirm_generation == alice.confirm_generation + 1


async def test_failures_lock_that_client_not_the_owner(services_ctx: ServiceContext) -> None:
    await register_alice(services_ctx, confirmed=True)
    limit = services_ctx.settings.LOGIN_FAILURES_BEFORE_LOCK
    for _ in range(limit):
        outcome = await signin.login(services_ctx, "alice@example.com", "wrong", client="evil")
        assert outcome.user is None and not outcome.locked_for
    locked = await signin.login(services_ctx, "alice@example.com", PASSWORD, client="evil")
    assert locked.user is None and locked.locked_for > 0  # even the right password waits
    owner = await signin.login(services_ctx, "alice@example.com", PASSWORD, client="home")
    assert owner.user is not None and owner.device_cookie


async def test_the_account_ceiling_stops_strangers_but_not_the_owners_device(
    services_ctx: ServiceContext,
) -> None:
    ctx = replace(services_ctx, settings=services_ctx.settings.with_values(LOGIN_ACCOUNT_CEILING=5))
    await register_alice(ctx, confirmed=True)
    device = (await signin.login(ctx, "alice@example.com", PASSWORD, client="home")).device_cookie
    for n in range(5):  # five clients, one guess each: under their own limits
        await signin.login(ctx, "alice@example.com", "wrong", client=f"bot{n}")
    stranger = await signin.login(ctx, "alice@example.com", PASSWORD, client="new-client")
    assert stranger.locked_for > 0  # the ceiling holds every untrusted client back
    owner = await signin.login(
        ctx, "alice@example.com", PASSWORD, client="cafe", device_cookie=device
    )
    assert owner.user is not None  # a browser that signed in before is not a stranger
    # A device cookie is bound to its account: it does not exempt guesses at another one.
    other = await signin.login(ctx, "bob@example.com", "x", client="bot0", device_cookie=device)
    assert other == signin.LoginOutcome()


async def test_a_reset_lifts_the_ceiling(services_ctx: ServiceContext) -> None:
    ctx = replace(services_ctx, settings=services_ctx.settings.with_values(LOGIN_ACCOUNT_CEILING=2))
    alice = await register_alice(ctx, confirmed=True)
    for n in range(2):
        await signin.login(ctx, "alice@example.com", "wrong", client=f"bot{n}")
    assert (await signin.login(ctx, "alice@example.com", PASSWORD, client="home")).locked_for
    token = ctx.tokens.dumps(
        Purpose.RESET_PASSWORD,
        reset_payload(alice, ctx.secret),
    )
    assert await passwords.reset_password(ctx, token, "a brand new secret", client="home")
    signed_in = await signin.login(ctx, "alice@example.com", "a brand new secret", client="home")
    assert signed_in.user is not None


async def test_a_reset_link_works_once_and_lifts_the_lock(services_ctx: ServiceContext) -> None:
    alice = await register_alice(services_ctx, confirmed=True)
    await passwords.request_reset(services_ctx, "alice@example.com")
    await passwords.request_reset(services_ctx, "nobody@example.com")
    await after_the_answer(services_ctx)
    assert (await emails(services_ctx))[-1] == (EmailKind.RESET, "alice@example.com")

    alice = await user(services_ctx)
    token = services_ctx.tokens.dumps(
        Purpose.RESET_PASSWORD,
        ResetLink.of(
            alice.id, alice.reset_generation, alice.password_hash, services_ctx.secret
        ).payload(),
    )
    assert await passwords.reset_link_works(services_ctx, token)
    with pytest.raises(InvalidInput):
        await passwords.reset_password(services_ctx, token, "alice@example.com")
    assert await passwords.reset_password(services_ctx, token, "a brand new secret")
    assert not await passwords.reset_password(services_ctx, token, "another new secret")
    assert (await emails(services_ctx))[-1] == (EmailKind.PASSWORD_CHANGED, "alice@example.com")
    signed_in = await signin.login(
        services_ctx, "alice@example.com", "a brand new secret", client="a"
    )
    assert signed_in.user is not None


async def test_changing_the_password_needs_the_current_one_and_ends_other_sessions(
    services_ctx: ServiceContext,
) -> None:
    alice = await register_alice(services_ctx, confirmed=True)
    here, elsewhere = [
        await sessions.start(services_ctx, alice, lifetime=3600, client="a", user_agent=agent)
        for agent in (FIREFOX, "curl/8.0")
    ]
    with pytest.raises(WrongPassword) as wrong:
        await passwords.change_password(services_ctx, alice.id, "nope", "a new secret 1")
    assert wrong.value.field == "current_password"
    result = await passwords.change_password(
        services_ctx, alice.id, PASSWORD, "a new secret 1", keep_session=here
    )
    assert result.user.id == alice.id
    # The one that asked carries on under a new id; a copy of its old cookie is useless.
    assert result.session_id is not None and result.session_id != here
    assert await sessions.resolve(services_ctx, result.session_id) is not None
    assert await sessions.resolve(services_ctx, here) is None
    assert await sessions.resolve(services_ctx, elsewhere) is None


async def test_sign_ins_are_listed_and_ended_one_or_all_but_this(
    services_ctx: ServiceContext,
) -> None:
    alice = await register_alice(services_ctx, confirmed=True)
    ids = [
        await sessions.start(
            services_ctx, alice, lifetime=3600, client=f"10.0.0.{n}", user_agent=agent
        )
        for n, agent in enumerate((FIREFOX, CHROME_LINUX, "curl/8.0"))
    ]
    listed = await sessions.active(services_ctx, alice.id)
    assert {record.device for record in listed} == {
        "Firefox on Windows",
        "Chrome on Linux",
        "curl",
    }
    current = await sessions.resolve(services_ctx, ids[0])
    assert current is not None and current.user.id == alice.id
    public = {record.id: record.public_id for record in listed}
    assert await sessions.revoke(services_ctx, alice.id, public[ids[1]])
    assert not await sessions.revoke(services_ctx, alice.id + 1, public[ids[2]])  # not theirs
    assert not await sessions.revoke(services_ctx, alice.id, ids[2])  # the secret id: no
    assert await sessions.resolve(services_ctx, ids[1]) is None
    assert await sessions.revoke_others(services_ctx, alice.id, keep=ids[0]) == 1
    assert [record.id for record in await sessions.active(services_ctx, alice.id)] == [ids[0]]
    await sessions.end(services_ctx, ids[0])
    assert await sessions.active(services_ctx, alice.id) == []


async def test_an_expired_sign_in_is_refused(services_ctx: ServiceContext) -> None:
    alice = await register_alice(services_ctx, confirmed=True)
    session_id = await sessions.start(services_ctx, alice, lifetime=60, client="a", user_agent="")
    async with services_ctx.unit_of_work() as session:
        await session.execute(
            update(SignInSession).values(expires_at=func.now() - timedelta(seconds=1))
        )
    assert await sessions.resolve(services_ctx, session_id) is None


async def test_current_password_checks_are_limited(services_ctx: ServiceContext) -> None:
    alice = await register_alice(services_ctx, confirmed=True)
    for _ in range(services_ctx.settings.LOGIN_FAILURES_BEFORE_LOCK):
        with pytest.raises(WrongPassword):
            await passwords.change_password(services_ctx, alice.id, "guess", "new secret 1")
    with pytest.raises(Locked) as locked:
        await passwords.change_password(services_ctx, alice.id, PASSWORD, "new secret 1")
    assert locked.value.retry_after > 0


async def test_this_wasnt_me_ends_sessions_and_sends_a_reset_link_once(
    services_ctx: ServiceContext,
) -> None:
    alice = await register_alice(services_ctx, confirmed=True)
    token = services_ctx.tokens.dumps(
        Purpose.NOT_ME, {"uid": alice.id, "sv": alice.session_version}
    )
    assert await passwords.disown_change(services_ctx, token)
    assert not await passwords.disown_change(services_ctx, token)  # used: the version moved
    assert (await emails(services_ctx))[-1] == (EmailKind.RESET, "alice@example.com")
    # Whoever changed the password knows it: it works no more until the owner sets one.
    outcome = await signin.login(services_ctx, "alice@example.com", PASSWORD, client="a")
    assert outcome.user is None
    disowned = await user(services_ctx)
    token = services_ctx.tokens.dumps(
        Purpose.RESET_PASSWORD,
        ResetLink.of(
            disowned.id, disowned.reset_generation, disowned.password_hash, services_ctx.secret
        ).payload(),
    )
    assert await passwords.reset_password(services_ctx, token, "the owner's new secret")


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


@pytest.mark.parametrize("weak", ["password123", "qwertyuiop", "aliceAlice1", "Summer2024!"])
async def test_easily_guessed_passwords_are_refused(
    services_ctx: ServiceContext, weak: str
) -> None:
    with pytest.raises(InvalidInput) as refused:
        await accounts.register(services_ctx, "alice", "alice@example.com", weak)
    assert refused.value.field == "password"
    assert refused.value.message.startswith(WEAK_PASSWORD)


async def test_a_lock_does_not_end_at_a_clock_boundary(
    services_ctx: ServiceContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Windows slide: ten failures just before a window boundary still lock just after it
    (a clock-aligned window would have started afresh and let ten more through)."""
    await register_alice(services_ctx, confirmed=True)
    window = services_ctx.settings.LOGIN_LOCK_SECONDS
    boundary = (time.time() // window + 1) * window
    monkeypatch.setattr("time.time", lambda: boundary - 1)
    for _ in range(services_ctx.settings.LOGIN_FAILURES_BEFORE_LOCK):
        await signin.login(services_ctx, "alice@example.com", "wrong", client="evil")
    monkeypatch.setattr("time.time", lambda: boundary + 1)
    locked = await signin.login(services_ctx, "alice@example.com", PASSWORD, client="evil")
    assert locked.locked_for >= window - 5


async def test_a_sign_in_from_a_new_browser_tells_the_owner_once(
    services_ctx: ServiceContext,
) -> None:
    await register_alice(services_ctx, confirmed=True)

    async def sign_in(device_cookie: str | None = None) -> signin.LoginOutcome:
        return await signin.login(
            services_ctx,
            "alice@example.com",
            PASSWORD,
            client="192.0.2.7",
            device_cookie=device_cookie,
            user_agent=FIREFOX,
        )

    async def notices() -> int:
        return sum(kind == EmailKind.NEW_DEVICE for kind, _ in await emails(services_ctx))

    first = await sign_in()
    assert await notices() == 0  # the first sign-in after registering is expected
    second = await sign_in()  # another browser (no device cookie)
    assert await notices() == 1
    await sign_in(second.device_cookie)  # that browser again
    await sign_in(first.device_cookie)
    assert await notices() == 1
    await sign_in()  # yet another browser, within the quiet period: no second email
    assert await notices() == 1
    async with services_ctx.reading() as session:
        context = await session.scalar(
            select(Email.context).where(Email.kind == EmailKind.NEW_DEVICE)
        )
    assert context is not None
    assert (context["device"], context["client_address"]) == ("Firefox on Windows", "192.0.2.7")


async def test_links_sent_to_the_old_address_stop_working_after_a_change(
    services_ctx: ServiceContext,
) -> None:
    alice = await register_alice(services_ctx, confirmed=True)
    reset = services_ctx.tokens.dumps(
        Purpose.RESET_PASSWORD,
        ResetLink.of(
            alice.id, alice.reset_generation, alice.password_hash, services_ctx.secret
        ).payload(),
    )
    assert await passwords.reset_link_works(services_ctx, reset)
    await email_change.request_change(services_ctx, alice.id, "new@example.com", PASSWORD)
    await after_the_answer(services_ctx)
    link = services_ctx.tokens.dumps(
        Purpose.CHANGE_EMAIL, ChangeEmailLink(alice.id, 1, "new@example.com").payload()
    )
    assert (
        await email_change.confirm_change(services_ctx, link) is email_change.ConfirmOutcome.CHANGED
    )
    assert not await passwords.reset_link_works(services_ctx, reset)
    assert [kind for kind, _ in await emails(services_ctx)][-3:] == [
        EmailKind.EMAIL_CHANGE_REQUESTED,
        EmailKind.EMAIL_CHANGE_CONFIRM,
        EmailKind.EMAIL_CHANGED,
    ]


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


async def test_a_device_cookie_belongs_to_its_account_not_its_address(
    services_ctx: ServiceContext,
) -> None:
    """After a deletion and a new registration of the same address, the old account's
    browsers are strangers to the new one: no shared lock, and a new-device notice."""
    ctx = services_ctx
    alice = await register_alice(ctx, confirmed=True)
    cookie = signin.new_device_cookie(ctx, alice.email_key, alice.id)
    mine = signin.scopes_for(
        ctx, alice.email_key, client="a", device_cookie=cookie, user_id=alice.id
    )
    assert [limit.name for limit, _ in mine] == ["login-device"]
    other = signin.scopes_for(
        ctx, alice.email_key, client="a", device_cookie=cookie, user_id=alice.id + 1
    )
    assert [limit.name for limit, _ in other] == ["login-client", "login-account"]
    assert signin._recent_device(ctx, alice, cookie)
    assert not signin._recent_device(ctx, User(id=alice.id + 1, email_key=alice.email_key), cookie)


def test_device_names_show_only_what_the_parser_recognised() -> None:
    from shared.devices import describe_device

    lure = (
        "Safe sign-in by Support. Do NOT click the link below - secure your account at "
        "https://evil.example/secure crawler"
    )
    assert describe_device(lure) == "An unknown browser"
    assert describe_device("SecureYourAccount/1.0 (Windows NT 10.0; Win64; x64)") == "Windows"
    assert describe_device(FIREFOX) == "Firefox on Windows"


async def test_a_report_about_a_former_holders_mail_does_not_suppress_the_next(
    services_ctx: ServiceContext,
) -> None:
    """Alice's old address is Bob's now: a bounce report about mail sent to Alice there
    (VERP addresses stay valid for 30 days) is recorded, but stops nothing for Bob."""
    from shared.jobs import PasswordChanged
    from shared.outbox import add_email
    from shared.services import bounces

    ctx = services_ctx
    alice = await register_alice(ctx, confirmed=True)
    async with ctx.unit_of_work() as session:
        old_mail = await add_email(
            session,
            EmailKind.PASSWORD_CHANGED,
            alice.email,
            PasswordChanged(user_id=alice.id, session_version=1),
            user_id=alice.id,
        )
        await session.execute(
            update(User)
            .where(User.id == alice.id)
            .values(email="alice@new.example", email_key="alice@new.example")
        )
    await accounts.register(ctx, "bob", "alice@example.com", PASSWORD)
    await after_the_answer(ctx)
    report = bounces.Report("smtp", "dsn", bounces.Outcome.HARD_BOUNCE, old_mail, "550 5.1.1")
    assert await bounces.record_report(ctx, report) is bounces.Outcome.HARD_BOUNCE
    async with ctx.reading() as session:
        assert await bounces.active_suppression(session, "alice@example.com") is None
        bob = await session.scalar(select(User).where(User.username == "bob"))
    assert bob is not None
    async with ctx.unit_of_work() as session:  # the same about Bob's own mail does suppress
        bobs = await add_email(
            session,
            EmailKind.PASSWORD_CHANGED,
            bob.email,
            PasswordChanged(user_id=bob.id, session_version=1),
            user_id=bob.id,
        )
    await bounces.record_report(ctx, replace(report, email_id=bobs))
    async with ctx.reading() as session:
        assert await bounces.active_suppression(session, "alice@example.com") is not None


async def test_deleting_an_account_forgets_what_was_said_about_its_address(
    services_ctx: ServiceContext,
) -> None:
    """The suppression, the bounce reports and the webhook deliveries already made about
    the account go with it: the address's next holder gets a confirmation."""
    from shared.models import BounceReport, Suppression, WebhookDelivery, WebhookEndpoint
    from shared.services import account_data, bounces

    ctx = services_ctx
    alice = await register_alice(ctx, confirmed=True)
    async with ctx.unit_of_work() as session:
        await bounces.suppress(session, alice.email, bounces.Cause.HARD_BOUNCE, "550 5.1.1")
        session.add(
            BounceReport(source="smtp", kind="dsn", outcome="hard_bounce", detail="550",
                         address_key="alice@example.com")
        )  # fmt: skip
        hook = WebhookEndpoint(url="https://hooks.example.com/", event_types=["*"],
                               secret_encrypted="sealed")  # fmt: skip
        session.add(hook)
        await session.flush()
        session.add_all(
            WebhookDelivery(endpoint_id=hook.id, message_id=f"msg_{n}", event_type="user.x",
                            body='{"data": {"email": "alice@example.com"}}', status=status,
                            user_id=alice.id)
            for n, status in enumerate(("sent", "failed", "pending"))
        )  # fmt: skip
    await account_data.delete_account(ctx, alice.id, PASSWORD, "alice")
    async with ctx.reading() as session:
        assert await session.scalar(select(func.count()).select_from(Suppression)) == 0
        assert await session.scalar(select(func.count()).select_from(BounceReport)) == 0
        left = (
            await session.execute(
                select(WebhookDelivery.event_type, WebhookDelivery.status, WebhookDelivery.user_id)
            )
        ).all()
    # What is still owed goes out (then retention takes it); the deletion's own notice too.
    assert sorted(left, key=str) == [
        ("user.deleted", "pending", None),
        ("user.x", "pending", alice.id),
    ]
