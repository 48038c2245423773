"""Your data and your devices: the export, deleting the account (nothing of it left in the
database), and the email a sign-in from a new browser sends, end to end through the worker
and the SMTP server."""

from __future__ import annotations

import json
from typing import Any

from quart import Quart
from sqlalchemy import func, select

from devstack.mailsink import MailSink
from shared.db import SessionMaker
from shared.models import Email, SignInSession, TextPost, User, UsernameHold
from tests.support import age_authentications
from tests.web.browser import Browser

PASSWORD = "correct horse battery"


async def counts(sessionmaker: SessionMaker) -> dict[str, int]:
    async with sessionmaker() as session:
        return {
            model.__tablename__: int(
                await session.scalar(select(func.count()).select_from(model)) or 0
            )
            for model in (User, TextPost, SignInSession, UsernameHold, Email)
        }


async def test_the_export_holds_everything_and_no_secret(browser: Browser) -> None:
    await browser.register()
    await browser.login()
    await browser.submit("/texts/new", {"title": "Mine", "content": "all mine"})
    response = await browser.client.get("/account/export")
    assert response.status_code == 200
    assert response.headers["Content-Disposition"].startswith("attachment;")
    data = json.loads(await response.get_data(as_text=True))
    assert data["profile"]["username"] == "alice"
    assert data["profile"]["email"] == "alice@example.com"
    assert [text["title"] for text in data["texts"]] == ["Mine"]
    assert len(data["sessions"]) == 1
    assert data["sessions"][0]["methods"] == ["pwd"] and data["sessions"][0]["authenticated_at"]
    assert {email["kind"] for email in data["emails"]} == {"confirm"}
    raw = json.dumps(data)
    assert "argon2" not in raw and browser.cookie("QUART_AUTH") not in raw


async def test_deleting_the_account_leaves_nothing_behind(
    browser: Browser, app: Quart, sessionmaker: SessionMaker, smtp: MailSink, run_worker: Any
) -> None:
    await browser.register()
    await browser.login()
    await browser.submit("/texts/new", {"title": "Mine", "content": "all mine"})
    elsewhere = Browser(app)
    await elsewhere.login()
    await run_worker()
    smtp.messages.clear()

    page = await browser.get("/account/delete")
    assert "every text you wrote" in page.text
    wrong_name = await browser.submit(
        "/account/delete", {"password": PASSWORD, "confirm_username": "bob"}
    )
    assert "Type your username exactly as shown." in wrong_name.text
    # Minutes later, the sign-in is no proof any more: confirm it is you first.
    await age_authentications(sessionmaker)
    form = {"csrf_token": page.csrf_token, "confirm_username": "alice"}  # filled in before
    page = await browser.post("/account/delete", form)
    assert page.location == "/account/reauthenticate?next=/account/delete"
    wrong_password = await browser.reauthenticate("/account/delete", "not my password")
    assert "Your password is not correct." in wrong_password.text
    assert (await counts(sessionmaker))["users"] == 1
    assert (await browser.reauthenticate("/account/delete")).location == "/account/delete"

    done = await browser.submit(
        "/account/delete", {"password": PASSWORD, "confirm_username": "alice"}, follow=True
    )
    assert ("info", "Your account has been deleted. Goodbye!") in done.flashes
    assert (await browser.get("/account")).status == 302
    assert (await elsewhere.get("/account")).status == 302
    # In the database: only the farewell email, about no account.
    assert await counts(sessionmaker) == {
        "users": 0, "texts": 0, "sessions": 0, "username_holds": 0, "emails": 1,
    }  # fmt: skip
    await run_worker()
    (farewell,) = smtp.messages
    assert farewell.message["Subject"] == "Your account was deleted"
    assert farewell.envelope_to == ["alice@example.com"]
    # The name and the address are free again.
    again = await Browser(app).register()
    assert again.status == 302


async def test_the_api_exports_and_deletes(app: Quart, sessionmaker: SessionMaker) -> None:
    await Browser(app).register()
    api = app.test_client()
    await api.post("/api/v1/login", json={"email": "alice@example.com", "password": PASSWORD})
    exported = await (await api.get("/api/v1/account/export")).get_json()
    assert exported["profile"]["username"] == "alice"
    refused = await api.post("/api/v1/account/delete", json={"password": PASSWORD, "username": "x"})
    assert refused.status_code == 422
    deleted = await api.post(
        "/api/v1/account/delete", json={"password": PASSWORD, "username": "alice"}
    )
    assert deleted.status_code == 200
    assert (await api.get("/api/v1/me")).status_code == 401
    assert (await counts(sessionmaker))["users"] == 0


async def test_a_sign_in_from_a_new_browser_emails_the_owner(
    browser: Browser, app: Quart, smtp: MailSink, run_worker: Any
) -> None:
    await browser.register()
    await browser.login()  # the first sign-in: expected, no email
    await run_worker()
    assert [m.message["Subject"] for m in smtp.messages] == []
    intruder = Browser(app)
    await intruder.login()
    await browser.logout()
    await browser.login()  # a browser that signed in before: no email
    await run_worker()
    (notice,) = smtp.messages
    assert notice.message["Subject"] == "A new sign-in to your account"
    text = notice.part("text/plain")
    assert "Browser: An unknown browser" in text and "Address: " in text, text
    (not_me,) = [link for link in notice.links if "/account/not-me/" in link]
    page = await browser.submit(not_me.removeprefix("http://localhost:8000"), {}, follow=True)
    assert "Every session of your account has been ended" in page.flashes[0][1]
    assert (await intruder.get("/account")).status == 302
    assert (await intruder.login()).status == 200  # the password no longer works
