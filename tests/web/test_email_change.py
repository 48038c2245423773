"""Changing the address, end to end through the forms, the worker and the SMTP server: the
new address confirms, the old one is told before and after, nothing reveals whether the new
address has an account, and only the latest, unused link works."""

from __future__ import annotations

import time
from typing import Any

from quart import Quart
from sqlalchemy import select

from devstack.mailsink import MailSink
from shared.db import SessionMaker
from shared.models import User
from shared.settings import Settings
from shared.tokens import Purpose, Tokens
from shared.validation import CONFIRM_LINK_DEAD, EMAIL_CHANGE_LINK_DEAD, NOT_ME_LINK_DEAD
from tests.support import age_authentications
from tests.web.browser import Browser

PASSWORD = "correct horse battery"
REQUESTED = (
    "Check the new address: we sent it a link to confirm the change. Until then, your "
    "address stays as it is."
)
INVALID = EMAIL_CHANGE_LINK_DEAD


def subjects(smtp: MailSink, to: str) -> list[str]:
    return [m.message["Subject"] for m in smtp.messages if m.envelope_to == [to]]


def link(smtp: MailSink, to: str, marker: str) -> str:
    message = [m for m in smtp.messages if m.envelope_to == [to]][-1]
    (found,) = [url for url in message.links if marker in url]
    return found.removeprefix("http://localhost:8000")


async def alice(app: Quart) -> Browser:
    browser = Browser(app)
    await browser.register()
    await browser.login()
    return browser


async def ask(browser: Browser, new_email: str, password: str = PASSWORD) -> Any:
    return await browser.submit(
        "/account/email", {"new_email": new_email, "password": password}, follow=True
    )


async def test_the_new_address_confirms_and_the_old_one_is_told(
    app: Quart, sessionmaker: SessionMaker, smtp: MailSink, run_worker: Any
) -> None:
    browser = await alice(app)
    await age_authentications(sessionmaker)  # later: confirm it is you first
    page = await browser.get("/account/email")
    assert page.location == "/account/reauthenticate?next=/account/email"
    wrong = await browser.reauthenticate("/account/email", "not my password")
    assert "Your password is not correct." in wrong.text
    assert (await browser.reauthenticate("/account/email")).location == "/account/email"
    page = await ask(browser, "new@example.com")
    assert ("info", REQUESTED) in page.flashes
    await run_worker()
    assert "A change of your email address was requested" in subjects(smtp, "alice@example.com")
    assert subjects(smtp, "new@example.com") == ["Confirm your new email address"]
    confirm = link(smtp, "new@example.com", "/account/email/confirm/")

    shown = await browser.get(confirm)  # what a mail scanner does: nothing changes
    assert shown.status == 200 and "Use this address" in shown.text
    assert shown.headers["Referrer-Policy"] == "no-referrer"
    async with sessionmaker() as session:
        assert (await session.scalar(select(User.email))) == "alice@example.com"

    done = await browser.post(confirm, {"csrf_token": shown.csrf_token}, follow=True)
    assert ("success", "Your email address has been changed.") in done.flashes
    async with sessionmaker() as session:
        user = await session.scalar(select(User))
    assert user is not None
    assert (user.email, user.pending_email) == ("new@example.com", None)
    await run_worker()
    assert subjects(smtp, "alice@example.com")[-1] == "Your email address was changed"

    again = await browser.submit(confirm, {}, follow=True)  # used: spent
    assert ("warning", INVALID) in again.flashes
    await browser.logout()
    assert (await browser.login("new@example.com")).location == "/"


async def test_an_address_with_an_account_gets_the_same_answer_and_its_owner_a_notice(
    app: Quart, smtp: MailSink, run_worker: Any
) -> None:
    await Browser(app).register("bob", "bob@example.com")
    browser = await alice(app)
    page = await ask(browser, "BOB@example.com")
    assert ("info", REQUESTED) in page.flashes  # exactly what a free address gets
    await run_worker()
    assert subjects(smtp, "bob@example.com") == ["Someone tried to use your email address"]
    assert "A change of your email address was requested" in subjects(smtp, "alice@example.com")
    assert not any("/account/email/confirm/" in url for m in smtp.messages for url in m.links)


async def test_only_the_latest_link_works(app: Quart, smtp: MailSink, run_worker: Any) -> None:
    browser = await alice(app)
    await ask(browser, "first@example.com")
    await run_worker()
    first = link(smtp, "first@example.com", "/account/email/confirm/")
    await ask(browser, "second@example.com")
    await run_worker()
    second = link(smtp, "second@example.com", "/account/email/confirm/")
    assert ("warning", INVALID) in (await browser.submit(first, {}, follow=True)).flashes
    ok = await browser.submit(second, {}, follow=True)
    assert ("success", "Your email address has been changed.") in ok.flashes


async def test_links_of_other_purposes_and_forgeries_are_refused(
    app: Quart, settings: Settings, sessionmaker: SessionMaker
) -> None:
    browser = await alice(app)
    await ask(browser, "new@example.com")
    async with sessionmaker() as session:
        user = await session.scalar(select(User))
    assert user is not None
    tokens = Tokens(settings.SECRET_KEY.get_secret_value())
    payload = {"uid": user.id, "gen": user.email_change_generation, "new": "new@example.com"}
    for token in (
        tokens.dumps(Purpose.CONFIRM_EMAIL, payload),  # another purpose
        tokens.dumps(Purpose.CHANGE_EMAIL, {**payload, "new": "evil@example.com"}),
        tokens.dumps(Purpose.CHANGE_EMAIL, payload)[:-3] + "abc",  # tampered
        "garbage",
    ):
        page = await browser.submit(f"/account/email/confirm/{token}", {}, follow=True)
        assert ("warning", INVALID) in page.flashes
    # The change-email token is refused as an address confirmation too.
    change_token = tokens.dumps(Purpose.CHANGE_EMAIL, payload)
    page = await browser.get(f"/confirm/{change_token}", follow=True)
    assert ("warning", CONFIRM_LINK_DEAD) in page.flashes


async def test_this_wasnt_me_cancels_the_change(
    app: Quart, smtp: MailSink, run_worker: Any
) -> None:
    browser = await alice(app)
    await ask(browser, "thief@example.com")
    await run_worker()
    confirm = link(smtp, "thief@example.com", "/account/email/confirm/")
    not_me = link(smtp, "alice@example.com", "/account/not-me/")
    owner = Browser(app)
    page = await owner.submit(not_me, {}, follow=True)
    assert "Every session of your account has been ended" in page.flashes[0][1]
    assert (await browser.get("/account")).status == 302  # the requester is signed out
    thief = Browser(app)
    assert ("warning", INVALID) in (await thief.submit(confirm, {}, follow=True)).flashes


async def test_the_api_changes_the_address(app: Quart, smtp: MailSink, run_worker: Any) -> None:
    await Browser(app).register()
    api = app.test_client()
    await api.post("/api/v1/login", json={"email": "alice@example.com", "password": PASSWORD})
    same = await api.post(
        "/api/v1/account/email", json={"new_email": "alice@example.com", "password": PASSWORD}
    )
    assert same.status_code == 422
    asked = await api.post(
        "/api/v1/account/email", json={"new_email": "new@example.com", "password": PASSWORD}
    )
    assert asked.status_code == 202
    await run_worker()
    token = link(smtp, "new@example.com", "/account/email/confirm/").rsplit("/", 1)[1]
    done = await api.post("/api/v1/account/email/confirm", json={"token": token})
    assert done.status_code == 200
    assert (await (await api.get("/api/v1/me")).get_json())["email"] == "new@example.com"
    replay = await api.post("/api/v1/account/email/confirm", json={"token": token})
    assert replay.status_code == 400


async def test_a_link_past_24_hours_is_refused(
    app: Quart, settings: Settings, sessionmaker: SessionMaker
) -> None:
    browser = await alice(app)
    await ask(browser, "new@example.com")
    async with sessionmaker() as session:
        user = await session.scalar(select(User))
    assert user is not None
    payload = {"uid": user.id, "gen": user.email_change_generation, "new": "new@example.com"}

    def minted(seconds_ago: float) -> str:
        clock = Tokens(
            settings.SECRET_KEY.get_secret_value(), clock=lambda: time.time() - seconds_ago
        )
        return clock.dumps(Purpose.CHANGE_EMAIL, payload)

    stale = await browser.submit(
        f"/account/email/confirm/{minted(settings.CONFIRM_TOKEN_MAX_AGE + 1)}", {}, follow=True
    )
    assert ("warning", INVALID) in stale.flashes
    fresh = await browser.submit(
        f"/account/email/confirm/{minted(settings.CONFIRM_TOKEN_MAX_AGE - 60)}", {}, follow=True
    )
    assert ("success", "Your email address has been changed.") in fresh.flashes


async def test_this_wasnt_me_links_at_the_old_address_stop_working_after_the_change(
    app: Quart, smtp: MailSink, run_worker: Any
) -> None:
    browser = await alice(app)
    await ask(browser, "new@example.com")
    await run_worker()
    not_me = link(smtp, "alice@example.com", "/account/not-me/")
    confirm = link(smtp, "new@example.com", "/account/email/confirm/")
    await browser.submit(confirm, {}, follow=True)
    page = await Browser(app).submit(not_me, {}, follow=True)
    assert ("warning", NOT_ME_LINK_DEAD) in page.flashes
    assert (await browser.get("/account")).status == 200  # nothing was ended
