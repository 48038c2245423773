""" "Remember this browser" on the second step: that browser then signs in to that account with
its first factor; the sessions page (and the API) list it and forget it; and the five things
that say the account may be in other hands, or its factors changed, forget every one."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from quart import Quart
from sqlalchemy import select

from devstack.mailsink import MailSink
from shared.db import SessionMaker
from shared.models import SecurityEvent, TrustedBrowser, User
from tests.web.browser import Browser
from tests.web.test_reset import last_link
from tests.web.test_two_factor import code_at, enrol, signed_in_with_two_factor

PASSWORD = "correct horse battery"
NEW = "new staple battery horse"


async def sign_in_trusting(browser: Browser, code: str, *, trust: bool = True) -> None:
    page = await browser.login()
    assert page.location == "/login/two-factor"
    data = {"code": code, **({"trust_browser": "y"} if trust else {})}
    assert (await browser.submit("/login/two-factor", data)).location == "/"


async def trusted(sessionmaker: SessionMaker) -> int:
    async with sessionmaker() as session:
        return len((await session.scalars(select(TrustedBrowser.id))).all())


async def test_a_remembered_browser_skips_the_second_step_and_no_other_does(
    app: Quart, sessionmaker: SessionMaker
) -> None:
    browser, secret, codes = await signed_in_with_two_factor(app)
    page = await browser.login()
    second = await browser.get(page.location or "")
    assert "Remember this browser" in second.text and "For 30 days" in second.text
    await browser.submit("/login/two-factor", {"code": code_at(secret, 1), "trust_browser": "y"})
    sessions_page = await browser.get("/account/sessions")
    assert "Browsers that skip the second step" in sessions_page.text
    assert "this browser" in sessions_page.text
    exported = json.loads((await browser.get("/account/export")).text)
    assert [b["device"] for b in exported["trusted_browsers"]] == ["An unknown browser"]
    assert exported["profile"]["has_password"] is True
    await browser.logout()

    assert (await browser.login()).location == "/"  # the password alone, here
    async with sessionmaker() as session:
        events = list(await session.scalars(select(SecurityEvent).order_by(SecurityEvent.id)))
    signed_in = [e.payload for e in events if e.kind == "user.login_succeeded"]
    assert signed_in[-1] == {"method": "password", "amr": ["pwd"], "trusted_browser": True}
    assert "device.trusted" in [e.kind for e in events]
    await browser.logout()

    # Another browser, the same password: the second step, as ever.
    other = Browser(app)
    assert (await other.login()).location == "/login/two-factor"
    # Without the box ticked, the other browser is not remembered.
    await other.submit("/login/two-factor", {"code": codes[0]})
    await other.logout()
    assert (await other.login()).location == "/login/two-factor"


async def test_forgetting_one_browser_on_the_sessions_page(
    app: Quart, sessionmaker: SessionMaker
) -> None:
    browser, secret, _ = await signed_in_with_two_factor(app)
    await sign_in_trusting(browser, code_at(secret, 1))
    async with sessionmaker() as session:
        (browser_id,) = (await session.scalars(select(TrustedBrowser.id))).all()
    page = await browser.submit(
        f"/account/trusted-browsers/{browser_id}/forget", {}, form_page="/account/sessions"
    )
    assert page.location == "/account/sessions"
    assert await trusted(sessionmaker) == 0
    await browser.logout()
    assert (await browser.login()).location == "/login/two-factor"


async def test_the_api_lists_and_forgets_remembered_browsers(
    app: Quart, sessionmaker: SessionMaker
) -> None:
    browser, secret, _ = await signed_in_with_two_factor(app)
    client = browser.client
    answer = await client.post(
        "/api/v1/login", json={"email": "alice@example.com", "password": PASSWORD}
    )
    assert answer.status_code == 202
    answer = await client.post(
        "/api/v1/login/two-factor", json={"code": code_at(secret, 1), "trust_browser": True}
    )
    assert answer.status_code == 200
    listed = (await (await client.get("/api/v1/trusted-browsers")).get_json())["trusted_browsers"]
    assert [b["current"] for b in listed] == [True]
    forget = await client.post(f"/api/v1/trusted-browsers/{listed[0]['id']}/forget", json={})
    assert forget.status_code == 200
    again = await client.post(f"/api/v1/trusted-browsers/{listed[0]['id']}/forget", json={})
    assert again.status_code == 404
    assert await trusted(sessionmaker) == 0


# --- the five things that forget every remembered browser --------------------------------------
async def sign_out_everywhere_else(browser: Browser, secret: str, **_: Any) -> None:
    await browser.submit("/account/sessions/revoke-others", {}, form_page="/account/sessions")


async def change_password(browser: Browser, secret: str, **_: Any) -> None:
    page = await browser.submit(
        "/account/password",
        {"current_password": PASSWORD, "password": NEW, "confirm_password": NEW},
    )
    assert page.status == 302


async def reset_password(
    browser: Browser, secret: str, *, smtp: MailSink, run_worker: Any, **_: Any
) -> None:
    await browser.logout()
    await browser.submit("/reset-password", {"email": "alice@example.com"})
    await run_worker()
    link = last_link(smtp, "/reset-password/", "Reset your password")
    page = await browser.submit(link, {"password": NEW, "confirm_password": NEW})
    assert page.status == 302


async def this_was_not_me(
    browser: Browser, secret: str, *, smtp: MailSink, run_worker: Any, **_: Any
) -> None:
    await run_worker()
    link = last_link(smtp, "/account/not-me/", "Two-factor sign-in: enabled")
    page = await browser.submit(link, {})
    assert page.status in (200, 302)


async def turn_two_factor_off(browser: Browser, secret: str, *, codes: list[str], **_: Any) -> None:
    page = await browser.submit(
        "/account/two-factor/disable",
        {"password": PASSWORD, "code": codes[0]},
        form_page="/account/two-factor",
    )
    assert page.location == "/account"


Action = Callable[..., Awaitable[None]]


@pytest.mark.parametrize(
    "action",
    [sign_out_everywhere_else, change_password, reset_password, this_was_not_me,
     turn_two_factor_off],
)  # fmt: skip
async def test_each_of_the_five_ends_all_trust(
    app: Quart,
    sessionmaker: SessionMaker,
    smtp: MailSink,
    run_worker: Any,
    action: Action,
) -> None:
    browser, secret, codes = await signed_in_with_two_factor(app)
    await sign_in_trusting(browser, code_at(secret, 1))
    assert await trusted(sessionmaker) == 1
    await action(browser, secret, smtp=smtp, run_worker=run_worker, codes=codes)
    assert await trusted(sessionmaker) == 0
    async with sessionmaker() as session:
        kinds = list(await session.scalars(select(SecurityEvent.kind)))
    assert "device.untrusted" in kinds


async def test_turning_two_factor_on_ends_trust_too(app: Quart, sessionmaker: SessionMaker) -> None:
    """Trust is only ever given with two-factor on, and turning it off ends it; a browser
    left over all the same (a row from before an upgrade, a race) must not outlive a new
    enrolment, whose recovery codes and secret are new."""
    browser = Browser(app)
    await browser.register()
    await browser.login()
    async with sessionmaker() as session:
        user_id = await session.scalar(select(User.id))
        session.add(
            TrustedBrowser(
                user_id=user_id, device_id="left-over", device="Firefox", client_address="x",
                expires_at=datetime.now(UTC) + timedelta(days=1),
            )
        )  # fmt: skip
        await session.commit()
    await enrol(browser)
    assert await trusted(sessionmaker) == 0
