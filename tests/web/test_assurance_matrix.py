"""The assurance rule through the pages and the API, cell by cell: each first factor (the
password form, the emailed code, the email's link, a passkey with and without user
verification through the API) x what the account has enrolled x the browser (new, or one
remembered on an earlier second step) -> signed in, or the second step. The same table as
tests/shared/services/test_assurance_matrix.py, from the outside."""

from __future__ import annotations

from typing import Any

import pytest
from quart import Quart

from devstack.mailsink import MailSink
from tests.authenticator import Authenticator
from tests.web.browser import Browser
from tests.web.test_api import API
from tests.web.test_login_codes import ask, code_and_link, code_emails
from tests.web.test_passkeys import PASSWORD, add_passkey
from tests.web.test_two_factor import code_at, enrol

FACTORS = ["password", "email code", "email link", "passkey (UV)", "passkey (no UV)"]
ONE_FACTOR = {"password", "email code", "email link", "passkey (no UV)"}


async def first_factor(
    browser: Browser, factor: str, keys: dict[str, Authenticator], smtp: MailSink, run: Any
) -> str:
    """Where the first factor alone lands: "signed in", or "second step"."""
    if factor == "password":
        page = await browser.login()
        return "second step" if page.location == "/login/two-factor" else "signed in"
    if factor.startswith("email"):
        await ask(browser)
        await run()
        code, link = code_and_link(code_emails(smtp)[-1])
        if factor == "email code":
            page = await browser.submit("/login/code/enter", {"code": code})
        else:
            page = await browser.get(link)
        return "second step" if page.location == "/login/two-factor" else "signed in"
    key = keys["uv" if factor == "passkey (UV)" else "presence"]
    client = browser.client
    options = await (await client.post(f"{API}/login/passkey/options", json={})).get_json()
    answer = await client.post(
        f"{API}/login/passkey",
        json={"ceremony": options["ceremony"], "credential": key.get(options["options"])},
    )
    assert answer.status_code in (200, 202), await answer.get_data()
    return "second step" if answer.status_code == 202 else "signed in"


@pytest.mark.parametrize("remembered", [False, True], ids=["new browser", "remembered browser"])
@pytest.mark.parametrize("enrolled", [False, True], ids=["no second factor", "authenticator"])
@pytest.mark.parametrize("factor", FACTORS)
async def test_the_rule_from_the_outside(
    app: Quart,
    smtp: MailSink,
    run_worker: Any,
    settings: Any,
    factor: str,
    enrolled: bool,
    remembered: bool,
) -> None:
    browser = Browser(app)
    await browser.register()
    await browser.login()
    keys = {
        "uv": Authenticator(settings.base_url, user_verified=True),
        "presence": Authenticator(settings.base_url, user_verified=False),
    }
    for key in keys.values():
        response = await add_passkey(browser.client, key, proof={"password": PASSWORD})
        assert response.status_code == 201
    if enrolled:
        secret, _ = await enrol(browser)
        if remembered:  # a second step with "remember this browser" ticked
            await browser.logout()
            assert (await browser.login()).location == "/login/two-factor"
            done = await browser.submit(
                "/login/two-factor", {"code": code_at(secret, 1), "trust_browser": "y"}
            )
            assert done.location == "/"
    await browser.logout()

    landed = await first_factor(browser, factor, keys, smtp, run_worker)

    expected = (
        "second step" if enrolled and factor in ONE_FACTOR and not remembered else ("signed in")
    )
    assert landed == expected, (factor, enrolled, remembered)
    signed_in = (await browser.get("/account")).status == 200
    assert signed_in is (expected == "signed in")
