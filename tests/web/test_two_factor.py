"""Two-factor sign-in with an authenticator app: enrolment, the second step (a code once, one
step of clock skew and no more), recovery codes (single use), resets that do not bypass it,
turning it off; through the pages, the API, the worker and the SMTP server."""

from __future__ import annotations

import html
import re
import time
from typing import Any

import pyotp
from quart import Quart

from devstack.mailsink import MailSink
from shared.db import SessionMaker
from tests.support import age_authentications
from tests.web.browser import Browser

PASSWORD = "correct horse battery"
WRONG_CODE = "That code is not right. Check your authenticator app&#39;s current code."


def code_at(secret: str, steps_from_now: int) -> str:
    return pyotp.TOTP(secret).at(int(time.time()) + 30 * steps_from_now)


async def enrol(browser: Browser) -> tuple[str, list[str]]:
    """Turn two-factor sign-in on; the secret and the recovery codes."""
    page = await browser.get("/account/two-factor")
    match = re.search(r'id="secret" class="input" readonly value="([A-Z2-7]+)"', page.text)
    assert match, page.text
    secret = match.group(1)
    assert "data:image/svg+xml" in page.text  # the QR code, inline: no script, no CDN
    assert html.escape(f"otpauth://totp/Accounts:alice%40example.com?secret={secret}") in page.text
    done = await browser.submit(
        "/account/two-factor", {"code": code_at(secret, 0), "password": PASSWORD}
    )
    codes = re.findall(r"<li><code>([a-z2-7-]+)</code></li>", done.text)
    assert len(codes) == 10
    return secret, codes


async def signed_in_with_two_factor(app: Quart) -> tuple[Browser, str, list[str]]:
    browser = Browser(app)
    await browser.register()
    await browser.login()
    secret, codes = await enrol(browser)
    await browser.logout()
    return browser, secret, codes


async def second_step(browser: Browser, code: str) -> Any:
    return await browser.submit("/login/two-factor", {"code": code})


async def test_enrolment_needs_a_right_code_and_a_fresh_proof(
    browser: Browser, sessionmaker: SessionMaker
) -> None:
    await browser.register()
    await browser.login()
    page = await browser.submit("/account/two-factor", {"code": "000000"})
    assert WRONG_CODE in page.text
    # The right code from a session alone, hours old (a stolen one): confirm it is you first.
    secret = re.search(r'id="secret" class="input" readonly value="([A-Z2-7]+)"', page.text)
    assert secret
    await age_authentications(sessionmaker)
    form = {"csrf_token": page.csrf_token, "code": code_at(secret.group(1), 0)}
    page = await browser.post("/account/two-factor", form)
    assert page.location == "/account/reauthenticate?next=/account/two-factor"
    assert (await browser.reauthenticate("/account/two-factor", "not it")).status == 200
    await browser.reauthenticate("/account/two-factor")
    await enrol(browser)
    page = await browser.get("/account/two-factor")
    assert "Recovery codes left: <strong>10</strong>" in page.text


async def test_signing_in_takes_the_second_step_and_a_code_works_once(app: Quart) -> None:
    browser, secret, _ = await signed_in_with_two_factor(app)
    page = await browser.login()
    assert page.location == "/login/two-factor"
    assert (await browser.get("/account")).status == 302  # nothing works before the code
    assert WRONG_CODE in (await second_step(browser, "123456")).text
    code = code_at(secret, 1)  # the enrolment used this step's code: the next one, skewed
    assert (await second_step(browser, code)).location == "/"
    assert (await browser.get("/account")).status == 200
    await browser.logout()
    await browser.login()
    assert WRONG_CODE in (await second_step(browser, code)).text  # replayed: refused


async def test_clock_skew_of_one_step_and_no_more(app: Quart) -> None:
    browser, secret, _ = await signed_in_with_two_factor(app)
    await browser.login()
    assert WRONG_CODE in (await second_step(browser, code_at(secret, 2))).text
    assert WRONG_CODE in (await second_step(browser, code_at(secret, -2))).text
    assert (await second_step(browser, code_at(secret, 1))).location == "/"


async def test_a_recovery_code_works_once_and_the_owner_is_told(
    app: Quart, smtp: MailSink, run_worker: Any
) -> None:
    browser, _, codes = await signed_in_with_two_factor(app)
    await browser.login()
    assert (await second_step(browser, codes[0].upper())).location == "/"
    await browser.logout()
    await browser.login()
    assert WRONG_CODE in (await second_step(browser, codes[0])).text
    await run_worker()
    subjects = [m.message["Subject"] for m in smtp.messages]
    assert "Two-factor sign-in: enabled" in subjects
    assert "Two-factor sign-in: recovery code used" in subjects


async def test_a_password_reset_does_not_bypass_the_second_factor(
    app: Quart, smtp: MailSink, run_worker: Any
) -> None:
    browser, _, _ = await signed_in_with_two_factor(app)
    await browser.submit("/reset-password", {"email": "alice@example.com"})
    await run_worker()
    message = [m for m in smtp.messages if m.message["Subject"] == "Reset your password"][-1]
    (link,) = [url for url in message.links if "/reset-password/" in url]
    new = "new staple battery horse"
    await browser.submit(
        link.removeprefix("http://localhost:8000"), {"password": new, "confirm_password": new}
    )
    assert (await browser.login(password=new)).location == "/login/two-factor"


async def test_turning_it_off_needs_a_fresh_proof(app: Quart, sessionmaker: SessionMaker) -> None:
    browser, secret, codes = await signed_in_with_two_factor(app)
    await browser.login()
    await second_step(browser, code_at(secret, 1))
    await age_authentications(sessionmaker)
    page = await browser.get("/account/two-factor")
    assert page.location == "/account/reauthenticate?next=/account/two-factor"
    # Re-authenticating with a code: a wrong one is refused, a recovery code works.
    page = await browser.submit(
        "/account/reauthenticate/code?next=/account/two-factor", {"code": "999999"},
        form_page="/account/reauthenticate?next=/account/two-factor",
    )  # fmt: skip
    assert WRONG_CODE in page.text
    page = await browser.submit(
        "/account/reauthenticate/code?next=/account/two-factor", {"code": codes[1]},
        form_page="/account/reauthenticate?next=/account/two-factor",
    )  # fmt: skip
    assert page.location == "/account/two-factor"
    done = await browser.submit(
        "/account/two-factor/disable", {}, form_page="/account/two-factor", follow=True
    )
    assert ("info", "Two-factor sign-in is off.") in done.flashes
    await browser.logout()
    assert (await browser.login()).location == "/"


async def test_wrong_codes_count_toward_the_lock(app: Quart, settings: Any) -> None:
    browser, secret, _ = await signed_in_with_two_factor(app)
    await browser.login()
    statuses = [
        (await second_step(browser, f"{n:06d}")).status
        for n in range(settings.LOGIN_FAILURES_BEFORE_LOCK + 1)
    ]
    assert 429 in statuses
    assert (await second_step(browser, code_at(secret, 1))).status == 429  # even the right one


async def test_the_api_has_the_same_steps(app: Quart) -> None:
    await Browser(app).register()
    api = app.test_client()
    await api.post("/api/v1/login", json={"email": "alice@example.com", "password": PASSWORD})
    enrolment = await (await api.post("/api/v1/two-factor/enrol", json={})).get_json()
    secret = enrolment["secret"]
    assert enrolment["otpauth_uri"].startswith("otpauth://totp/")
    confirmed = await api.post(
        "/api/v1/two-factor/confirm", json={"code": code_at(secret, 0), "password": PASSWORD}
    )
    assert confirmed.status_code == 200
    assert len((await confirmed.get_json())["recovery_codes"]) == 10
    assert (await (await api.get("/api/v1/two-factor")).get_json())["enabled"] is True
    await api.post("/api/v1/logout", json={})

    first = await api.post(
        "/api/v1/login", json={"email": "alice@example.com", "password": PASSWORD}
    )
    assert first.status_code == 202
    assert (await first.get_json())["second_step"] is True
    assert (await api.get("/api/v1/me")).status_code == 401
    wrong = await api.post("/api/v1/login/two-factor", json={"code": "000000"})
    assert wrong.status_code == 400
    done = await api.post("/api/v1/login/two-factor", json={"code": code_at(secret, 1)})
    assert done.status_code == 200
    assert (await api.get("/api/v1/me")).status_code == 200


def arabic_indic(code: str) -> str:
    return code.translate(str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩"))


def fullwidth(code: str) -> str:
    return code.translate(str.maketrans("0123456789", "０１２３４５６７８９"))


async def test_codes_typed_in_other_digits_are_the_same_code(app: Quart) -> None:
    """A phone's Arabic-Indic or full-width digits: read as 0-9, never an error."""
    await Browser(app).register()
    api = app.test_client()
    await api.post("/api/v1/login", json={"email": "alice@example.com", "password": PASSWORD})
    secret = (await (await api.post("/api/v1/two-factor/enrol", json={})).get_json())["secret"]
    confirmed = await api.post(
        "/api/v1/two-factor/confirm",
        json={"code": arabic_indic(code_at(secret, 0)), "password": PASSWORD},
    )
    assert confirmed.status_code == 200
    for path in ("/api/v1/two-factor/disable", "/api/v1/two-factor/recovery-codes"):
        wrong = await api.post(path, json={"code": "١٢٣٤٥٦", "password": PASSWORD})
        assert wrong.status_code == 400, path
    odd = await api.post(
        "/api/v1/two-factor/disable", json={"code": "12#456", "password": PASSWORD}
    )
    assert odd.status_code == 422
    await api.post("/api/v1/logout", json={})
    await api.post("/api/v1/login", json={"email": "alice@example.com", "password": PASSWORD})
    wrong = await api.post("/api/v1/login/two-factor", json={"code": "١٢٣٤٥٦"})
    assert wrong.status_code == 400
    done = await api.post("/api/v1/login/two-factor", json={"code": fullwidth(code_at(secret, 1))})
    assert done.status_code == 200


async def test_a_trusted_browser_is_spared_the_account_code_limit(
    app: Quart, settings: Any, monkeypatch: Any
) -> None:
    """Someone holding the password spends the account's code attempts from elsewhere: the
    owner's browser, which has signed in before, still gets in with the right code."""
    owner, secret, recovery = await signed_in_with_two_factor(app)
    await owner.login()
    assert (await second_step(owner, code_at(secret, 1))).location == "/"
    await owner.logout()
    thief = Browser(app)
    monkeypatch.setattr("web.ratelimit.client_address", lambda: "203.0.113.9")
    await thief.login()
    for n in range(settings.LOGIN_FAILURES_BEFORE_LOCK + 1):
        await second_step(thief, f"{n:06d}")
    assert (await second_step(thief, recovery[0])).status == 429
    monkeypatch.setattr("web.ratelimit.client_address", lambda: "192.0.2.1")
    await owner.login()
    assert (await second_step(owner, recovery[0])).location == "/"
