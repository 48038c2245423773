"""Registration, confirmation, login and logout through the forms, against real PostgreSQL,
Redis, the worker and an SMTP server."""

from __future__ import annotations

import re
import time
from datetime import timedelta
from typing import Any

import pytest
from quart import Quart
from sqlalchemy import func, select, update

from devstack.mailsink import MailSink
from shared.db import SessionMaker
from shared.models import Email, EmailStatus, SignInSession, User
from shared.settings import Settings
from shared.tokens import Purpose, Tokens
from shared.validation import CONFIRM_LINK_DEAD
from tests.web.browser import Browser

CREATED = "Your account has been created! Check your email to confirm your address."
RESENT = "If an account with that address is waiting for confirmation, a new link is on its way."
INVALID = CONFIRM_LINK_DEAD
LOGIN_FAILED = (
    "Sign-in failed. Please check your email address and password. Signed up recently? Confirm "
    "your address first with the link we emailed you."
)


async def users(sessionmaker: SessionMaker) -> list[User]:
    async with sessionmaker() as session:
        return list(await session.scalars(select(User).order_by(User.id)))


async def emails(sessionmaker: SessionMaker) -> list[Email]:
    async with sessionmaker() as session:
        return list(await session.scalars(select(Email).order_by(Email.id)))


def confirm_link(smtp: MailSink, to: str = "alice@example.com") -> str:
    messages = [m for m in smtp.messages if m.envelope_to == [to]]
    assert messages, f"no email to {to}"
    message = messages[-1]
    assert message.message["Subject"] == "Confirm your email address"
    (link,) = [link for link in message.links if "/confirm/" in link and "resend" not in link]
    assert link in message.part("text/html")  # the button and the written-out link agree
    assert "http://localhost:8000/confirm/resend" in message.links  # if it expires: a new one
    return link.removeprefix("http://localhost:8000")


# --- registration ------------------------------------------------------------------------------
async def test_register_confirm_by_email_and_log_in(
    browser: Browser, sessionmaker: SessionMaker, smtp: MailSink, run_worker: Any
) -> None:
    page = await browser.register(confirmed=False)
    assert (page.status, page.location) == (302, "/login")
    assert (await browser.get("/login")).flashes == [("success", CREATED)]

    (user,) = await users(sessionmaker)
    assert (user.username, user.email, user.confirmed_at) == ("alice", "alice@example.com", None)
    assert user.password_hash.startswith("$argon2id$")
    (queued,) = await emails(sessionmaker)
    assert (queued.kind, queued.recipient, queued.user_id) == ("confirm", user.email, user.id)
    # The outbox keeps no live token: the worker mints the link when it sends.
    assert queued.context == {"user_id": user.id, "generation": 1}

    await run_worker()
    path = confirm_link(smtp)
    assert "expires" not in path
    (message,) = smtp.messages
    assert "24 hours" in message.part("text/plain")

    # Opening the link (what a mail scanner does) confirms nothing.
    page = await browser.get(path)
    assert page.status == 200
    assert "Confirm my address" in page.text
    assert (await users(sessionmaker))[0].confirmed_at is None

    page = await browser.post(path, {"csrf_token": page.csrf_token}, follow=True)
    assert ("success", "Thank you! Your email address is confirmed.") in page.flashes
    assert (await users(sessionmaker))[0].confirmed_at is not None

    page = await browser.submit(path, {}, follow=True)
    assert ("info", "Your email address is already confirmed.") in page.flashes


async def test_registered_email_gets_same_answer_and_a_notice_instead(
    browser: Browser, app: Quart, sessionmaker: SessionMaker, smtp: MailSink, run_worker: Any
) -> None:
    await browser.register()  # and confirmed: its confirmation email is skipped as stale
    stranger = Browser(app)
    page = await stranger.register(username="mallory", email="ALICE@example.com", confirmed=False)
    # Exactly what a new registration gets: no hint that the address is known.
    assert (page.status, page.location) == (302, "/login")
    assert (await stranger.get("/login")).flashes == [("success", CREATED)]

    assert [u.username for u in await users(sessionmaker)] == ["alice"]
    await run_worker()
    by_subject = {m.message["Subject"]: m for m in smtp.messages}
    assert set(by_subject) == {"Someone tried to sign up with your email address"}
    notice = by_subject["Someone tried to sign up with your email address"]
    assert notice.envelope_to == ["alice@example.com"]
    text = notice.part("text/plain")
    assert "http://localhost:8000/login" in text
    assert "http://localhost:8000/reset-password" in text

    # Repeated attempts do not flood the owner's inbox.
    await stranger.register(username="mallory2", email="alice@example.com", confirmed=False)
    await run_worker()
    assert len(smtp.messages) == 1


@pytest.mark.parametrize("variant", ["ALICE", "Alice", "ａｌｉｃｅ"])
async def test_username_is_unique_whatever_the_case_or_width(
    browser: Browser, app: Quart, sessionmaker: SessionMaker, variant: str
) -> None:
    await browser.register()
    page = await Browser(app).register(username=variant, email="other@example.com", confirmed=False)
    assert page.status == 200
    assert "That username is taken." in page.text
    assert len(await users(sessionmaker)) == 1


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({"username": "a"}, "username", "Field must be between 2 and 25 characters long."),
        ({"username": "a" * 26}, "username", "Field must be between 2 and 25 characters long."),
        ({"username": "bad name!"}, "username", "Use 2 to 25 characters"),
        ({"email": "not-an-email"}, "email", "An email address must have an @-sign."),
        (
            {"password": "short", "confirm_password": "short"},
            "password",
            "Field must be between 8 and 128 characters long.",
        ),
        (
            {"password": "x" * 129, "confirm_password": "x" * 129},
            "password",
            "Field must be between 8 and 128 characters long.",
        ),
        (
            {"password": "alice@example.com", "confirm_password": "alice@example.com"},
            "password",
            "must not be your username or email address",
        ),
        (
            {"password": "ALICEALICE", "confirm_password": "ALICEALICE", "username": "aliceALICE"},
            "password",
            "must not be your username or email address",
        ),
        (
            {"confirm_password": "something else"},
            "confirm_password",
            "The two passwords are not the same.",
        ),
        (
            {"password": "password123", "confirm_password": "password123"},
            "password",
            "This password is too easy to guess.",
        ),
    ],
)
async def test_validation_errors_are_shown_inline_and_input_is_kept(
    browser: Browser, sessionmaker: SessionMaker, data: dict[str, str], field: str, message: str
) -> None:
    form = {
        "username": "alice",
        "email": "alice@example.com",
        "password": "correct horse battery",
        "confirm_password": "correct horse battery",
        **data,
    }
    page = await browser.submit("/register", form)
    assert page.status == 200
    assert f'id="{field}-error"' in page.text
    error = page.text.split(f'id="{field}-error">', 1)[1].split("</p>", 1)[0]
    assert message in error
    assert f'aria-describedby="{field}-' in page.text
    assert 'aria-invalid="true"' in page.text
    # The username and email typed are kept; passwords never come back.
    assert f'value="{form["username"]}"' in page.text
    assert re.findall(r'type="password" value="([^"]*)"', page.text) == ["", ""]
    assert await users(sessionmaker) == []


async def test_email_is_normalised(browser: Browser, sessionmaker: SessionMaker) -> None:
    await browser.register(email="  Alice@EXAMPLE.com ")
    (user,) = await users(sessionmaker)
    assert user.email == "Alice@example.com"
    assert user.email_key == "alice@example.com"


async def test_logged_in_user_is_sent_home_from_register(browser: Browser) -> None:
    await browser.register()
    await browser.login()
    page = await browser.get("/register")
    assert (page.status, page.location) == (302, "/")


# --- CSRF ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("token", [None, "", "forged-token"])
async def test_post_without_a_valid_csrf_token_is_refused(
    browser: Browser, sessionmaker: SessionMaker, token: str | None
) -> None:
    data = {
        "username": "alice",
        "email": "alice@example.com",
        "password": "correct horse battery",
        "confirm_password": "correct horse battery",
    }
    if token is not None:
        data["csrf_token"] = token
    page = await browser.post("/register", data)
    assert page.status == 400
    assert "This form has expired" in page.text
    assert "Please try again" in page.text
    assert await users(sessionmaker) == []


async def test_csrf_token_from_another_session_is_refused(
    browser: Browser, app: Quart, sessionmaker: SessionMaker
) -> None:
    other = Browser(app)
    token = (await other.get("/register")).csrf_token
    page = await browser.post(
        "/register",
        {
            "csrf_token": token,
            "username": "alice",
            "email": "alice@example.com",
            "password": "correct horse battery",
            "confirm_password": "correct horse battery",
        },
    )
    assert page.status == 400
    assert await users(sessionmaker) == []


# --- login and logout ----------------------------------------------------------------------------
async def test_login_and_logout(browser: Browser) -> None:
    await browser.register()
    page = await browser.login()
    assert (page.status, page.location) == (302, "/")
    home = await browser.get("/")
    assert "Sign out" in home.text and "New text" in home.text

    page = await browser.logout()
    assert (page.status, page.location) == (302, "/")
    assert (await browser.get("/account")).status == 302
    assert "Sign in" in (await browser.get("/")).text


async def test_logout_is_a_post_with_csrf(browser: Browser) -> None:
    await browser.register()
    await browser.login()
    assert (await browser.get("/logout")).status == 405
    assert (await browser.post("/logout", {})).status == 400
    assert (await browser.get("/account")).status == 200  # still logged in


@pytest.mark.parametrize(
    ("email", "password"),
    [("alice@example.com", "wrong password!"), ("nobody@example.com", "correct horse battery")],
)
async def test_unknown_email_and_wrong_password_get_the_same_answer(
    browser: Browser, email: str, password: str
) -> None:
    await browser.register()
    page = await browser.login(email, password)
    assert page.status == 200
    assert page.flashes == [("danger", LOGIN_FAILED)]
    assert browser.cookie("QUART_AUTH") is None


async def test_remember_me_sets_a_lasting_cookie_otherwise_a_browser_session(
    browser: Browser, app: Quart, settings: Settings
) -> None:
    await browser.register()
    page = await browser.login()
    cookie = next(c for c in page.headers.get_all("Set-Cookie") if c.startswith("QUART_AUTH="))
    assert "Max-Age" not in cookie and "Expires" not in cookie
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "Secure" not in cookie  # BASE_URL is http in tests; https turns it on

    other = Browser(app)
    page = await other.login(remember=True)
    cookie = next(c for c in page.headers.get_all("Set-Cookie") if c.startswith("QUART_AUTH="))
    assert f"Max-Age={settings.REMEMBER_LIFETIME}" in cookie


async def test_session_past_its_lifetime_is_refused(
    browser: Browser, sessionmaker: SessionMaker
) -> None:
    await browser.register()
    await browser.login()
    assert (await browser.get("/account")).status == 200
    async with sessionmaker() as session, session.begin():
        await session.execute(
            update(SignInSession).values(expires_at=func.now() - timedelta(seconds=1))
        )
    assert (await browser.get("/account")).status == 302


async def test_a_revoked_sign_in_ends_on_its_next_request(
    browser: Browser, sessionmaker: SessionMaker
) -> None:
    await browser.register()
    await browser.login(remember=True)
    assert (await browser.get("/account")).status == 200
    async with sessionmaker() as session, session.begin():
        await session.execute(update(SignInSession).values(revoked_at=func.now()))
    page = await browser.get("/account")
    assert (page.status, page.location) == (302, "/login?next=/account")


async def test_a_cookie_naming_no_sign_in_is_nobody(browser: Browser) -> None:
    from quart_auth import generate_auth_token

    for forged in ("1:1:99999999999", "x" * 43, "", "../../etc"):
        browser.client.set_cookie(
            "localhost", "QUART_AUTH", generate_auth_token(browser.client, forged)
        )
        assert (await browser.get("/account")).status == 302


async def test_password_hash_is_upgraded_on_login_when_parameters_change(
    browser: Browser, sessionmaker: SessionMaker
) -> None:
    from argon2 import PasswordHasher

    await browser.register()
    weak = PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1)
    async with sessionmaker() as session, session.begin():
        user = await session.scalar(select(User))
        assert user is not None
        user.password_hash = weak.hash("correct horse battery")
    await browser.login()
    (user,) = await users(sessionmaker)
    assert "m=19456,t=2,p=1" in user.password_hash


# --- next= ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "target",
    [
        "//evil.example",
        "https://evil.example",
        "http:evil.example",
        "/\\evil.example",
        "%2F%2Fevil.example",
        "/%5Cevil.example",
        "javascript:alert(1)",
        "/%0d%0aSet-Cookie:x=y",
    ],
)
async def test_next_never_leaves_the_site(browser: Browser, target: str) -> None:
    await browser.register()
    page = await browser.login(next=target)
    assert (page.status, page.location) == (302, "/")


async def test_login_honours_a_local_next(browser: Browser) -> None:
    await browser.register()
    page = await browser.get("/account")
    assert (page.status, page.location) == (302, "/login?next=/account")
    page = await browser.login(next="/account")
    assert (page.status, page.location) == (302, "/account")


# --- confirmation links --------------------------------------------------------------------------
async def test_expired_confirm_link_is_refused(
    browser: Browser, settings: Settings, sessionmaker: SessionMaker
) -> None:
    await browser.register(confirmed=False)
    # Travel in time through the serializer's clock: a token minted 24 h + 1 s ago.
    past = Tokens(
        settings.SECRET_KEY.get_secret_value(),
        clock=lambda: time.time() - settings.CONFIRM_TOKEN_MAX_AGE - 1,
    )
    token = past.dumps(Purpose.CONFIRM_EMAIL, {"uid": 1, "gen": 1})
    page = await browser.get(f"/confirm/{token}", follow=True)  # no "one more click"
    assert ("warning", INVALID) in page.flashes
    assert (await users(sessionmaker))[0].confirmed_at is None

    fresh = Tokens(
        settings.SECRET_KEY.get_secret_value(),
        clock=lambda: time.time() - settings.CONFIRM_TOKEN_MAX_AGE + 60,
    )
    token = fresh.dumps(Purpose.CONFIRM_EMAIL, {"uid": 1, "gen": 1})
    page = await browser.submit(f"/confirm/{token}", {}, follow=True)
    assert ("success", "Thank you! Your email address is confirmed.") in page.flashes


@pytest.mark.parametrize(
    "make_token",
    [
        lambda t: t.dumps(Purpose.RESET_PASSWORD, {"uid": 1, "gen": 1}),
        lambda t: t.dumps(Purpose.NOT_ME, {"uid": 1, "gen": 1}),
        lambda t: t.dumps(Purpose.CONFIRM_EMAIL, {"uid": 1, "gen": 1})[:-2] + "xx",
        lambda t: Tokens("another-secret-key-of-sufficient-length").dumps(
            Purpose.CONFIRM_EMAIL, {"uid": 1, "gen": 1}
        ),
        lambda t: t.dumps(Purpose.CONFIRM_EMAIL, {"uid": "1", "gen": 1}),
        lambda t: "x" * 5000,
        lambda t: "not-a-token",
    ],
    ids=[
        "reset-purpose",
        "not-me-purpose",
        "tampered",
        "other-key",
        "bad-payload",
        "huge",
        "garbage",
    ],
)
async def test_bad_confirm_tokens_get_the_same_friendly_refusal(
    browser: Browser, settings: Settings, sessionmaker: SessionMaker, make_token: Any
) -> None:
    await browser.register(confirmed=False)
    token = make_token(Tokens(settings.SECRET_KEY.get_secret_value()))
    page = await browser.get(f"/confirm/{token}", follow=True)  # no "one more click"
    assert page.status == 200
    assert ("warning", INVALID) in page.flashes
    assert (await users(sessionmaker))[0].confirmed_at is None


async def test_resend_is_rate_limited_and_the_latest_link_wins(
    browser: Browser, sessionmaker: SessionMaker, smtp: MailSink, run_worker: Any
) -> None:
    await browser.register(confirmed=False)
    await run_worker()
    first = confirm_link(smtp)

    # Signed out (signing in needs a confirmed address); the same answer for any address.
    resent = ("info", RESENT)
    for address in ("alice@example.com", "nobody@example.com"):
        page = await browser.submit("/confirm/resend", {"email": address}, follow=True)
        assert page.flashes == [resent]
    await run_worker()
    assert len(smtp.messages) == 1  # within 3 minutes of the last one: nothing new

    # Three minutes later (move the earlier email back in time rather than sleep).
    async with sessionmaker() as session, session.begin():
        for email in await session.scalars(select(Email)):
            email.created_at = email.created_at.replace(year=2000)
    page = await browser.submit("/confirm/resend", {"email": "ALICE@example.com"}, follow=True)
    assert page.flashes == [resent]
    await run_worker()
    second = confirm_link(smtp)
    assert second != first

    page = await browser.submit(first, {}, follow=True)
    assert ("warning", INVALID) in page.flashes
    page = await browser.submit(second, {}, follow=True)
    assert ("success", "Thank you! Your email address is confirmed.") in page.flashes


async def test_signing_in_unconfirmed_answers_as_a_wrong_password_and_resends(
    browser: Browser, app: Quart, sessionmaker: SessionMaker, smtp: MailSink, run_worker: Any
) -> None:
    """Registering an address and signing in with it must not tell a stranger whether the
    address had an account: unconfirmed accounts cannot sign in, and hear what a wrong
    password hears; their owner gets a fresh link (at most one per 3 minutes)."""
    await browser.register(confirmed=False)
    page = await browser.login()
    assert page.flashes == [("danger", LOGIN_FAILED)]
    assert browser.cookie("QUART_AUTH") is None
    async with sessionmaker() as session, session.begin():
        for email in await session.scalars(select(Email)):
            email.created_at = email.created_at.replace(year=2000)
    await browser.login()
    await run_worker()
    # The second link superseded the first before it went out: one message, the newest link.
    assert [(e.kind, e.status) for e in await emails(sessionmaker)] == [
        ("confirm", EmailStatus.SKIPPED),
        ("confirm", EmailStatus.SENT),
    ]
    page = await browser.submit(confirm_link(smtp), {}, follow=True)
    assert (await browser.login()).location == "/"


async def test_worker_skips_a_confirmation_superseded_before_it_was_sent(
    browser: Browser, sessionmaker: SessionMaker, smtp: MailSink, run_worker: Any
) -> None:
    await browser.register(confirmed=False)
    async with sessionmaker() as session, session.begin():
        user = await session.scalar(select(User))
        assert user is not None
        user.confirm_generation += 1  # a newer link was issued before this one went out
    await run_worker()
    assert smtp.messages == []
    (email,) = await emails(sessionmaker)
    assert (email.status, email.last_error) == (
        EmailStatus.SKIPPED,
        "superseded by a newer confirmation link",
    )


# --- account and texts ---------------------------------------------------------------------------
async def test_account_page(browser: Browser, run_worker: Any) -> None:
    await browser.register()
    await browser.login()
    await run_worker()
    page = await browser.get("/account")
    assert "alice" in page.text and "alice@example.com" in page.text
    assert "Confirmed" in page.text
    assert "none yet" in page.text  # the confirmation email was skipped: already confirmed


async def test_writing_a_text(browser: Browser) -> None:
    await browser.register()
    await browser.login()
    page = await browser.submit("/texts/new", {"title": "x" * 51, "content": "hello"})
    assert "Field cannot be longer than 50 characters." in page.text
    page = await browser.submit(
        "/texts/new", {"title": "Hello <world>", "content": "First & best"}, follow=True
    )
    assert ("success", "Your text has been published.") in page.flashes
    assert "Hello &lt;world&gt;" in page.text
    assert "First &amp; best" in page.text
    assert "by alice" in page.text


async def test_texts_need_login(browser: Browser) -> None:
    page = await browser.get("/texts/new")
    assert (page.status, page.location) == (302, "/login?next=/texts/new")


async def test_home_lists_texts_newest_first_ten_a_page(
    browser: Browser, sessionmaker: SessionMaker
) -> None:
    from shared.models import TextPost

    await browser.register()
    async with sessionmaker() as session, session.begin():
        user = await session.scalar(select(User))
        assert user is not None
        for n in range(12):
            session.add(TextPost(title=f"Text {n:02d}", content="x", author_id=user.id))
            await session.flush()
    first = await browser.get("/")
    titles = re.findall(r"<h2 translate=\"no\">(Text \d+)</h2>", first.text)
    assert titles == [f"Text {n:02d}" for n in range(11, 1, -1)]
    assert "Page 1 of 2" in first.text and 'rel="next"' in first.text
    second = await browser.get("/?page=2")
    assert re.findall(r"<h2 translate=\"no\">(Text \d+)</h2>", second.text) == [
        "Text 01",
        "Text 00",
    ]
    assert (await browser.get("/?page=-5")).status == 200  # nonsense pages are page 1
