"""Accounts without a password: sign up with a username and an address, finish with the
emailed code; sign in by code (or passkey); add a password later, remove it once there is a
passkey. And the other side of it: proving an address drops a password someone set on it
before it was proven."""

from __future__ import annotations

from typing import Any

from quart import Quart
from sqlalchemy import select

from devstack.mailsink import MailSink
from shared import passwords
from shared.db import SessionMaker
from shared.models import SecurityEvent, User
from tests.authenticator import Authenticator
from tests.web.browser import Browser
from tests.web.test_api import API, assert_problem
from tests.web.test_login_codes import ask, code_and_link, code_emails
from tests.web.test_passkeys import add_passkey

PASSWORD = "correct horse battery"
NEW = "a brand new staple 7"


async def sign_up_without_password(browser: Browser, email: str = "alice@example.com") -> Any:
    return await browser.submit(
        "/register", {"username": "alice", "email": email, "password": "", "confirm_password": ""}
    )


async def account(sessionmaker: SessionMaker) -> User:
    async with sessionmaker() as session:
        user = await session.scalar(select(User))
    assert user is not None
    return user


async def kinds(sessionmaker: SessionMaker) -> list[str]:
    async with sessionmaker() as session:
        return list(await session.scalars(select(SecurityEvent.kind).order_by(SecurityEvent.id)))


async def test_signing_up_without_a_password_finishes_with_the_code(
    browser: Browser, sessionmaker: SessionMaker, smtp: MailSink, run_worker: Any
) -> None:
    page = await sign_up_without_password(browser)
    assert page.location == "/login/code/enter"
    await run_worker()
    subjects = [m.message["Subject"] for m in smtp.messages]
    assert len(subjects) == 1 and subjects[0].startswith("Your sign-in code")  # no link email
    code, _ = code_and_link(code_emails(smtp)[-1])
    assert (await browser.submit("/login/code/enter", {"code": code})).location == "/"
    user = await account(sessionmaker)
    assert user.confirmed_at is not None and not passwords.is_usable(user.password_hash)
    # Confirming it is you offers what the account has: no password form.
    reauth = await browser.get("/account/reauthenticate")
    assert 'autocomplete="current-password"' not in reauth.text
    assert "Email me a code" in reauth.text
    # A password is no way in (and costs the same time as a wrong one).
    await browser.logout()
    assert (await browser.login(password="")).location is None
    assert (await browser.login(password="anything at all")).location is None


async def test_signing_up_without_a_password_with_a_known_address_answers_alike(
    app: Quart, smtp: MailSink, run_worker: Any, sessionmaker: SessionMaker
) -> None:
    await Browser(app).register()
    await run_worker()
    smtp.messages.clear()
    stranger = Browser(app)
    page = await stranger.submit(
        "/register",
        {"username": "mallory", "email": "alice@example.com", "password": "",
         "confirm_password": ""},
    )  # fmt: skip
    assert page.location == "/login/code/enter"
    await run_worker()
    subjects = [m.message["Subject"] for m in smtp.messages]
    assert subjects == ["Someone tried to sign up with your email address"]


async def test_adding_a_password_later_and_removing_it_once_there_is_a_passkey(
    app: Quart, sessionmaker: SessionMaker, smtp: MailSink, run_worker: Any, settings: Any
) -> None:
    browser = Browser(app)
    await sign_up_without_password(browser)
    await run_worker()
    code, _ = code_and_link(code_emails(smtp)[-1])
    await browser.submit("/login/code/enter", {"code": code})
    page = await browser.get("/account/password")
    assert "<h1>Set a password</h1>" in page.text
    assert "Remove my password" not in page.text
    await browser.submit("/account/password", {"password": NEW, "confirm_password": NEW})
    await browser.logout()
    assert (await browser.login(password=NEW)).location == "/"

    # Removing it needs a passkey first.
    page = await browser.get("/account/password")
    assert "Add a passkey first; then you can remove your password." in page.text
    refused = await browser.submit("/account/password/remove", {}, form_page="/account/password")
    assert refused.location == "/account/password"
    api = browser.client
    assert (await add_passkey(api, Authenticator(settings.base_url), proof={})).status_code == 201
    done = await browser.submit(
        "/account/password/remove", {}, form_page="/account/password", follow=True
    )
    assert (
        "success",
        "Your password is removed: sign in with your passkey or a code we email you.",
    ) in done.flashes
    assert (await browser.get("/account")).status == 200  # this session carries on
    assert "user.password_removed" in await kinds(sessionmaker)
    await browser.logout()
    assert (await browser.login(password=NEW)).location is None
    again = await api.post(f"{API}/password/remove", json={})
    await assert_problem(again, 401)  # signed out


async def test_proving_the_address_drops_a_password_set_before_it_was_proven(
    app: Quart, sessionmaker: SessionMaker, smtp: MailSink, run_worker: Any
) -> None:
    """Pre-hijacking: someone registers the owner's address with a password of their own and
    waits; the owner later signs in with a code from their mailbox. The stranger's password
    must not open the account the owner now uses."""
    mallory = Browser(app)
    await mallory.register(password="mallory's own password 1", confirmed=False)
    owner = Browser(app)
    await ask(owner)
    await run_worker()
    code, _ = code_and_link(code_emails(smtp)[-1])
    page = await owner.submit("/login/code/enter", {"code": code}, follow=True)
    assert any("is not kept" in message for _, message in page.flashes)
    assert (await owner.get("/account")).status == 200
    assert (await mallory.login(password="mallory's own password 1")).location is None
    events = await kinds(sessionmaker)
    assert "user.confirmed" in events and "user.password_removed" in events


async def test_the_api_signs_up_without_a_password(
    app: Quart, smtp: MailSink, run_worker: Any
) -> None:
    client = app.test_client()
    answer = await client.post(
        f"{API}/register", json={"username": "alice", "email": "alice@example.com"}
    )
    assert answer.status_code == 202
    assert "/api/v1/login/code" in (await answer.get_json())["detail"]
    while app.background_tasks:
        await app.background_tasks.pop()
    await run_worker()
    code, _ = code_and_link(code_emails(smtp)[-1])
    signed_in = await client.post(f"{API}/login/code", json={"code": code})
    assert signed_in.status_code == 200
    assert (await signed_in.get_json())["confirmed"] is True
