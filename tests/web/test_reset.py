"""Password reset by email, password change and "this wasn't me", end to end against real
PostgreSQL, Redis, the worker and an SMTP server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import pytest
from quart import Quart
from sqlalchemy import select

from devstack.mailsink import MailSink
from shared.db import SessionMaker
from shared.models import Email, EmailStatus, User
from shared.settings import Settings
from shared.tokens import Purpose, Tokens
from shared.validation import NOT_ME_LINK_DEAD, RESET_LINK_DEAD
from tests.support import RUNNING_APPS, age_authentications, reset_payload, run_burst_worker
from tests.web.browser import Browser
from web import create_app

REQUESTED = (
    "If an account exists for that email, you will receive instructions to reset your password."
)
UPDATED = "Your password has been updated! You can now sign in."
INVALID = RESET_LINK_DEAD
LOGIN_FAILED = (
    "Sign-in failed. Please check your email address and password. Signed up recently? Confirm "
    "your address first with the link we emailed you."
)
OLD = "correct horse battery"
NEW = "new staple battery horse"


@pytest.fixture
async def alice(browser: Browser, smtp: MailSink, run_worker: Any) -> Browser:
    """A registered account (its confirmation email already delivered and cleared)."""
    await browser.register()
    await run_worker()
    smtp.messages.clear()
    return browser


def last_link(smtp: MailSink, part: str, subject: str) -> str:
    messages = [m for m in smtp.messages if m.message["Subject"] == subject]
    assert messages, f"no {subject!r} email"
    (link,) = [link for link in messages[-1].links if part in link]
    return link.removeprefix("http://localhost:8000")


async def request_reset(browser: Browser, email: str = "alice@example.com") -> Any:
    return await browser.submit("/reset-password", {"email": email})


async def test_reset_by_email_then_log_in_with_the_new_password(
    alice: Browser, app: Quart, smtp: MailSink, run_worker: Any, sessionmaker: SessionMaker
) -> None:
    page = await request_reset(alice)
    assert (page.status, page.location) == (302, "/login")
    assert (await alice.get("/login")).flashes == [("info", REQUESTED)]
    await run_worker()
    (message,) = smtp.messages
    assert message.message["Subject"] == "Reset your password"
    assert "30 minutes" in message.part("text/plain")
    link = last_link(smtp, "/reset-password/", "Reset your password")

    form = await alice.get(link)
    assert form.status == 200
    assert form.headers["Referrer-Policy"] == "no-referrer"
    page = await alice.post(
        link, {"csrf_token": form.csrf_token, "password": NEW, "confirm_password": NEW}
    )
    assert (page.status, page.location) == (302, "/login")
    assert (await alice.get("/login")).flashes == [("success", UPDATED)]

    assert (await Browser(app).login(password=OLD)).flashes == [("danger", LOGIN_FAILED)]
    assert (await alice.login(password=NEW)).location == "/"

    # The same link a second time: refused, as the seed says.
    page = await Browser(app).get(link, follow=True)
    assert ("warning", INVALID) in page.flashes

    # The owner is told, with a "this wasn't me" link.
    await run_worker()
    assert last_link(smtp, "/account/not-me/", "Your password was changed")


async def test_unknown_email_gets_the_same_answer_and_no_mail(
    alice: Browser, app: Quart, smtp: MailSink, run_worker: Any, sessionmaker: SessionMaker
) -> None:
    stranger = Browser(app)
    known = await request_reset(stranger, "alice@example.com")
    unknown = await request_reset(stranger, "nobody@example.com")
    assert (known.status, known.location) == (unknown.status, unknown.location)
    assert known.text == unknown.text
    await run_worker()
    assert [m.envelope_to for m in smtp.messages] == [["alice@example.com"]]


async def test_expired_link_is_refused(
    alice: Browser, settings: Settings, sessionmaker: SessionMaker
) -> None:
    secret = settings.SECRET_KEY.get_secret_value()
    async with sessionmaker() as session:
        user = await session.scalar(select(User))
        assert user is not None
    payload = reset_payload(user, secret)
    late = Tokens(secret, clock=lambda: time.time() - settings.RESET_TOKEN_MAX_AGE - 1)
    page = await alice.get(f"/reset-password/{late.dumps(Purpose.RESET_PASSWORD, payload)}")
    assert (page.status, page.location) == (302, "/reset-password")
    assert ("warning", INVALID) in (await alice.get("/reset-password")).flashes

    in_time = Tokens(secret, clock=lambda: time.time() - settings.RESET_TOKEN_MAX_AGE + 30)
    page = await alice.get(f"/reset-password/{in_time.dumps(Purpose.RESET_PASSWORD, payload)}")
    assert page.status == 200


async def test_a_confirmation_token_is_not_a_reset_token(
    alice: Browser, settings: Settings, sessionmaker: SessionMaker
) -> None:
    secret = settings.SECRET_KEY.get_secret_value()
    async with sessionmaker() as session:
        user = await session.scalar(select(User))
        assert user is not None
    token = Tokens(secret).dumps(
        Purpose.CONFIRM_EMAIL,
        reset_payload(user, secret),
    )
    page = await alice.get(f"/reset-password/{token}")
    assert (page.status, page.location) == (302, "/reset-password")


async def test_latest_link_wins_and_the_worker_skips_stale_ones(
    alice: Browser, smtp: MailSink, run_worker: Any, sessionmaker: SessionMaker
) -> None:
    await request_reset(alice)
    await run_worker()
    first = last_link(smtp, "/reset-password/", "Reset your password")
    await request_reset(alice)
    await request_reset(alice)  # queued behind the second: superseded before it is sent
    async with sessionmaker() as session, session.begin():
        # The third request's email: make it look 31 minutes old, as after a long outage.
        emails = list(await session.scalars(select(Email).order_by(Email.id)))
        emails[-1].created_at -= timedelta(minutes=31)
    await run_worker()

    async with sessionmaker() as session:
        rows = list(
            await session.scalars(select(Email).where(Email.kind == "reset").order_by(Email.id))
        )
    assert [row.status for row in rows] == [
        EmailStatus.SENT,
        EmailStatus.SKIPPED,
        EmailStatus.SKIPPED,
    ]
    assert rows[1].last_error == "superseded by a newer reset link or a password change"
    assert rows[2].last_error == "the reset link would have expired before it arrived"

    page = await alice.get(first, follow=True)
    assert ("warning", INVALID) in page.flashes


async def test_reset_ends_every_existing_session(
    alice: Browser, app: Quart, smtp: MailSink, run_worker: Any
) -> None:
    await alice.login(remember=True)
    assert (await alice.get("/account")).status == 200

    other = Browser(app)
    await request_reset(other)
    await run_worker()
    link = last_link(smtp, "/reset-password/", "Reset your password")
    await other.submit(link, {"password": NEW, "confirm_password": NEW})

    page = await alice.get("/account")
    assert (page.status, page.location) == (302, "/login?next=/account")


async def test_simultaneous_reset_requests_each_issue_a_newer_link(
    alice: Browser, app: Quart, sessionmaker: SessionMaker
) -> None:
    # "Latest link wins" holds only if two requests never hand out the same generation.
    browsers = [Browser(app) for _ in range(3)]  # 3: the default hourly budget per account
    tokens = [(await b.get("/reset-password")).csrf_token for b in browsers]
    pages = await asyncio.gather(*(
        b.post("/reset-password", {"csrf_token": t, "email": "alice@example.com"})
        for b, t in zip(browsers, tokens, strict=True)
    ))  # fmt: skip
    assert [page.status for page in pages] == [302, 302, 302]
    async with sessionmaker() as session:
        contexts = list(await session.scalars(select(Email.context).where(Email.kind == "reset")))
        generation = await session.scalar(
            select(User.reset_generation).where(User.email == "alice@example.com")
        )
    assert sorted(context["generation"] for context in contexts) == [1, 2, 3]
    assert generation == 3


async def test_two_simultaneous_uses_of_one_link_one_wins(
    alice: Browser, app: Quart, smtp: MailSink, run_worker: Any, sessionmaker: SessionMaker
) -> None:
    await request_reset(alice)
    await run_worker()
    link = last_link(smtp, "/reset-password/", "Reset your password")
    first, second = Browser(app), Browser(app)
    forms = [await first.get(link), await second.get(link)]
    pages = await asyncio.gather(
        first.post(
            link, {"csrf_token": forms[0].csrf_token, "password": NEW, "confirm_password": NEW}
        ),
        second.post(
            link,
            {
                "csrf_token": forms[1].csrf_token,
                "password": NEW + "2",
                "confirm_password": NEW + "2",
            },
        ),
    )
    assert sorted(page.location or "" for page in pages) == ["/login", "/reset-password"]
    async with sessionmaker() as session:
        changed = await session.scalar(
            select(Email.id).where(Email.kind == "password_changed").limit(2)
        )
    assert changed is not None


async def test_reset_password_validation(alice: Browser, smtp: MailSink, run_worker: Any) -> None:
    await request_reset(alice)
    await run_worker()
    link = last_link(smtp, "/reset-password/", "Reset your password")
    page = await alice.submit(link, {"password": NEW, "confirm_password": "different"})
    assert "The two passwords are not the same." in page.text
    page = await alice.submit(link, {"password": "short", "confirm_password": "short"})
    assert "Field must be between 8 and 128 characters long." in page.text
    page = await alice.submit(
        link, {"password": "alice@example.com", "confirm_password": "alice@example.com"}
    )
    assert "must not be your username or email address" in page.text


async def test_logged_in_users_are_sent_home(alice: Browser) -> None:
    await alice.login()
    assert (await alice.get("/reset-password")).location == "/"


# --- changing a password -------------------------------------------------------------------------
async def test_change_password_keeps_this_session_and_ends_the_others(
    alice: Browser, app: Quart, smtp: MailSink, run_worker: Any, sessionmaker: SessionMaker
) -> None:
    await alice.login()
    elsewhere = Browser(app)
    await elsewhere.login(remember=True)

    # Later: the sign-in is no proof any more, the person confirms it is them first.
    await age_authentications(sessionmaker)
    assert (await alice.get("/account/password")).location == (
        "/account/reauthenticate?next=/account/password"
    )
    page = await alice.reauthenticate("/account/password", "wrong wrong wrong")
    assert "Your password is not correct." in page.text
    assert (await alice.reauthenticate("/account/password")).location == "/account/password"

    page = await alice.submit(
        "/account/password",
        {"current_password": OLD, "password": NEW, "confirm_password": NEW},
        follow=True,
    )
    assert ("success", "Your password has been updated!") in page.flashes
    assert (await alice.get("/account")).status == 200
    assert (await elsewhere.get("/account")).status == 302

    await run_worker()
    not_me = last_link(smtp, "/account/not-me/", "Your password was changed")

    # "This wasn't me": GET shows a page, one POST ends every session and sends a reset link.
    page = await alice.get(not_me)
    assert page.status == 200
    assert page.headers["Referrer-Policy"] == "no-referrer"
    async with sessionmaker() as session:
        before = (await session.scalar(select(User))).session_version  # type: ignore[union-attr]
    page = await alice.post(not_me, {"csrf_token": page.csrf_token}, follow=True)
    assert page.flashes[0][0] == "info"
    assert "Every session of your account has been ended" in page.flashes[0][1]
    assert (await alice.get("/account")).status == 302
    async with sessionmaker() as session:
        after = (await session.scalar(select(User))).session_version  # type: ignore[union-attr]
    assert after == before + 1
    await run_worker()
    assert last_link(smtp, "/reset-password/", "Reset your password")
    # The link was for that one change: used once, it is spent.
    page = await alice.submit(not_me, {}, follow=True)
    assert ("warning", NOT_ME_LINK_DEAD) in page.flashes


async def test_change_password_needs_login(browser: Browser) -> None:
    page = await browser.get("/account/password")
    assert (page.status, page.location) == (302, "/login?next=/account/password")


# --- rate limits ---------------------------------------------------------------------------------
async def test_reset_emails_per_account_are_limited(
    alice: Browser,
    app: Quart,
    smtp: MailSink,
    run_worker: Any,
    settings: Settings,
    sessionmaker: SessionMaker,
) -> None:
    for _ in range(settings.RESET_EMAILS_PER_HOUR + 2):
        page = await request_reset(Browser(app))
        assert (page.status, page.location) == (302, "/login")  # same answer every time
    async with sessionmaker() as session:
        count = len(list(await session.scalars(select(Email).where(Email.kind == "reset"))))
    assert count == settings.RESET_EMAILS_PER_HOUR


async def test_posts_per_client_address_are_limited_and_recover(
    browser: Browser, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = (await browser.get("/reset-password")).csrf_token
    data = {"csrf_token": token, "email": "nobody@example.com"}
    for _ in range(settings.POSTS_PER_MINUTE):
        assert (await browser.post("/reset-password", data)).status == 302
    page = await browser.post("/reset-password", data)
    assert page.status == 429
    retry_after = int(page.headers["Retry-After"])
    assert 1 <= retry_after <= 60
    assert "Too many requests" in page.text and f"{retry_after} seconds" in page.text
    # Showing the form is not limited.
    assert (await browser.get("/reset-password")).status == 200

    # A minute later (the limiter's clock, not a sleep) the window has passed.
    real_time = time.time
    monkeypatch.setattr("time.time", lambda: real_time() + 61)
    assert (await browser.post("/reset-password", data)).status == 302


async def guess(attacker: Browser, token: str, n: int, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setattr("web.ratelimit.client_address", lambda: f"10.0.{n // 250}.{n % 250}")
    return await attacker.post(
        "/login", {"csrf_token": token, "email": "alice@example.com", "password": f"guess {n}"}
    )


@asynccontextmanager
async def own_app(settings: Settings, **values: Any) -> AsyncIterator[Quart]:
    """An app with these settings; many POSTs from one test client are the point here."""
    app = create_app(settings.with_values(POSTS_PER_MINUTE=1000, **values))
    async with app.test_app():
        RUNNING_APPS.append(app)
        try:
            yield app
        finally:
            RUNNING_APPS.remove(app)


async def test_failures_lock_the_client_that_made_them_for_a_while(
    settings: Settings, clean_db: None, queue: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with own_app(settings) as app:
        alice = Browser(app)
        await alice.register()
        attacker = Browser(app)
        token = (await attacker.get("/login")).csrf_token
        monkeypatch.setattr("web.ratelimit.client_address", lambda: "10.9.9.9")
        for n in range(settings.LOGIN_FAILURES_BEFORE_LOCK):
            page = await attacker.post(
                "/login", {"csrf_token": token, "email": "alice@example.com", "password": f"g{n}"}
            )
            assert page.flashes == [("danger", LOGIN_FAILED)]
        page = await attacker.post(
            "/login", {"csrf_token": token, "email": "alice@example.com", "password": OLD}
        )
        assert page.status == 429  # even the right password waits out this client's lock
        assert "Too many failed attempts for this account from here" in page.flashes[0][1]
        assert int(page.headers["Retry-After"]) <= settings.LOGIN_LOCK_SECONDS

        monkeypatch.setattr("web.ratelimit.client_address", lambda: "192.0.2.1")
        assert (await alice.login()).location == "/"  # the owner, elsewhere, is not locked out
        await alice.logout()

        # The lock ends with its window (the limiter's clock, not a sleep).
        real_time = time.time
        monkeypatch.setattr("web.ratelimit.client_address", lambda: "10.9.9.9")
        monkeypatch.setattr("time.time", lambda: real_time() + settings.LOGIN_LOCK_SECONDS + 1)
        page = await attacker.post(
            "/login", {"csrf_token": token, "email": "alice@example.com", "password": "g"}
        )
        assert page.flashes == [("danger", LOGIN_FAILED)]


async def test_a_botnet_meets_the_account_ceiling_the_owners_browser_does_not(
    settings: Settings,
    clean_db: None,
    queue: Any,
    smtp: MailSink,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with own_app(settings, LOGIN_ACCOUNT_CEILING=15) as app:
        alice = Browser(app)
        await alice.register()
        monkeypatch.setattr("web.ratelimit.client_address", lambda: "192.0.2.1")
        assert (await alice.login()).location == "/"  # this browser now has a device cookie
        await alice.logout()

        attacker = Browser(app)
        token = (await attacker.get("/login")).csrf_token
        # One guess from each of 14 addresses: with the owner's own sign-in (counted like any
        # attempt from a browser not yet trusted), the ceiling of 15 is reached.
        for n in range(14):
            assert (await guess(attacker, token, n, monkeypatch)).status == 200
        assert (await guess(attacker, token, 14, monkeypatch)).status == 429

        # A new browser, even with the right password, is a stranger: held back too ...
        monkeypatch.setattr("web.ratelimit.client_address", lambda: "192.0.2.1")
        assert (await Browser(app).login()).status == 429
        # ... but the browser the owner signed in with before is not.
        assert (await alice.login()).location == "/"
        await alice.logout()

        # A password reset lifts the ceiling.
        newcomer = Browser(app)
        await request_reset(newcomer)
        await run_burst_worker(settings)
        link = last_link(smtp, "/reset-password/", "Reset your password")
        await newcomer.submit(link, {"password": NEW, "confirm_password": NEW})
        assert (await newcomer.login(password=NEW)).location == "/"


async def test_the_former_paths_still_work(browser: Browser) -> None:
    """Before the routes were named alike, the reset pages were /reset_password: a bookmark
    is sent on (301), a reset link already in an inbox still opens, and a form posted there
    is still answered."""
    page = await browser.get("/reset_password?x=1")
    assert page.status == 301 and page.headers["Location"] == "/reset-password?x=1"
    page = await browser.get("/reset_password/sometoken")
    assert page.status == 301 and page.headers["Location"] == "/reset-password/sometoken"
    token = (await browser.get("/reset-password")).csrf_token
    page = await browser.post(
        "/reset_password", {"csrf_token": token, "email": "nobody@example.com"}
    )
    assert page.status == 302 and page.headers["Location"] == "/login"
