"""Re-authentication ("sudo mode"): minutes after signing in, a sensitive change first asks the
person to confirm it is them, with any of the account's methods (password, authenticator or
recovery code, passkey, emailed code), and lands where it was headed; the API answers 401 with
its own problem type until it is done."""

from __future__ import annotations

from typing import Any

import pytest
from quart import Quart
from sqlalchemy import select

from devstack.mailsink import MailSink
from shared.db import SessionMaker
from shared.models import SecurityEvent
from tests.authenticator import Authenticator
from tests.support import age_authentications
from tests.web.browser import Browser
from tests.web.test_api import ALICE, API, assert_problem, register
from tests.web.test_passkeys import add_passkey, signed_in

PASSWORD = ALICE["password"]
REAUTH = "/problems/reauthentication-required"


async def reauthenticated(sessionmaker: SessionMaker) -> list[dict[str, Any]]:
    async with sessionmaker() as session:
        return list(
            await session.scalars(
                select(SecurityEvent.payload).where(SecurityEvent.kind == "user.reauthenticated")
            )
        )


@pytest.mark.parametrize(
    "page",
    ["/account/password", "/account/email", "/account/delete", "/account/export",
     "/account/two-factor"],
)  # fmt: skip
async def test_each_sensitive_page_asks_first_and_comes_back(
    browser: Browser, sessionmaker: SessionMaker, page: str
) -> None:
    await browser.register()
    await browser.login()
    assert (await browser.get(page)).status == 200  # just signed in: sudo mode
    await age_authentications(sessionmaker)
    sent = await browser.get(page)
    assert sent.location == f"/account/reauthenticate?next={page}"
    form = await browser.get(sent.location)
    assert "Confirm it is you" in form.text and 'autocomplete="current-password"' in form.text
    assert (await browser.reauthenticate(page)).location == page
    assert (await browser.get(page)).status == 200
    assert await reauthenticated(sessionmaker) == [{"method": "password"}]


async def test_ending_other_sessions_asks_first(
    browser: Browser, app: Quart, sessionmaker: SessionMaker
) -> None:
    await browser.register()
    await browser.login()
    await Browser(app).login()
    await age_authentications(sessionmaker)
    listing = await browser.get("/account/sessions")  # listing needs nothing more
    assert listing.status == 200
    page = await browser.post(
        "/account/sessions/revoke-others",
        {"csrf_token": listing.csrf_token},
    )
    assert page.location is not None and page.location.startswith("/account/reauthenticate")


async def test_an_emailed_code_reauthenticates(
    browser: Browser, sessionmaker: SessionMaker, smtp: MailSink, run_worker: Any
) -> None:
    await browser.register()
    await browser.login()
    await age_authentications(sessionmaker)
    target = "/account/reauthenticate?next=/account/email"
    sent = await browser.submit(
        "/account/reauthenticate/email?next=/account/email", {}, form_page=target
    )
    assert sent.location == target
    page = await browser.get(target)
    assert "The 8 digits we emailed you." in page.text
    await run_worker()
    (message,) = [m for m in smtp.messages if "confirm it is you" in m.message["Subject"]]
    code = message.message["Subject"].rsplit(": ", 1)[1]
    assert code in message.part("text/plain") and "/login/code/" not in message.part("text/plain")
    assert "Confirm it is you</h1>" in message.part("text/html")
    wrong = await browser.submit(
        "/account/reauthenticate/email-code?next=/account/email",
        {"code": "0000 0000"},
        form_page=target,
    )
    assert "That code is not right." in wrong.text
    done = await browser.submit(
        "/account/reauthenticate/email-code?next=/account/email", {"code": code}, form_page=target
    )
    assert done.location == "/account/email"
    assert await reauthenticated(sessionmaker) == [{"method": "email_code"}]


async def test_the_api_answers_401_until_reauthenticated(
    app: Quart, sessionmaker: SessionMaker
) -> None:
    await register(app.test_client(), sessionmaker)
    client = await signed_in(app)
    await age_authentications(sessionmaker)
    for answer in (
        await client.get(f"{API}/account/export"),
        await client.post(f"{API}/password/change", json={"password": "a new secret 12"}),
        await client.post(f"{API}/sessions/revoke-others", json={}),
    ):
        body = await assert_problem(answer, 401)
        assert body["type"] == REAUTH
    wrong = await client.post(f"{API}/reauthenticate", json={"password": "not it"})
    assert (await assert_problem(wrong, 400))["title"] == "Wrong password"
    nothing = await client.post(f"{API}/reauthenticate", json={})
    await assert_problem(nothing, 422)
    ok = await client.post(f"{API}/reauthenticate", json={"password": PASSWORD})
    assert ok.status_code == 200
    assert (await client.get(f"{API}/account/export")).status_code == 200
    # The password inline works too, for clients that send it anyway.
    await age_authentications(sessionmaker)
    inline = await client.post(
        f"{API}/password/change",
        json={"current_password": PASSWORD, "password": "a new secret 12"},
    )
    assert inline.status_code == 200


async def test_a_passkey_reauthenticates_through_the_api(
    app: Quart, sessionmaker: SessionMaker, settings: Any
) -> None:
    await register(app.test_client(), sessionmaker)
    client = await signed_in(app)
    authenticator = Authenticator(settings.base_url)
    assert (await add_passkey(client, authenticator)).status_code == 201
    await age_authentications(sessionmaker)
    await assert_problem(await client.get(f"{API}/account/export"), 401)
    options = await (await client.post(f"{API}/reauthenticate/passkey/options", json={})).get_json()
    answer = await client.post(
        f"{API}/reauthenticate/passkey",
        json={"ceremony": options["ceremony"], "credential": authenticator.get(options["options"])},
    )
    assert answer.status_code == 200, await answer.get_data()
    assert (await client.get(f"{API}/account/export")).status_code == 200
    assert await reauthenticated(sessionmaker) == [{"method": "passkey"}]
