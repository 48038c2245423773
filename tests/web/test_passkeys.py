"""Passkeys through the API, with a software authenticator (tests/authenticator.py) whose
answers py_webauthn verifies for real: adding one needs a fresh proof, "this wasn't me"
removes what the disowned sign-in added, a passkey without user verification is one factor,
and malformed answers are refusals, never errors."""

from __future__ import annotations

import time
from typing import Any

import pyotp
import pytest
from quart import Quart
from sqlalchemy import select

from devstack.mailsink import MailSink
from shared.db import SessionMaker
from shared.models import Passkey, User
from shared.settings import Settings
from tests.authenticator import Authenticator, b64url
from tests.support import age_authentications
from tests.web.test_api import ALICE, API, assert_problem, register

PASSWORD = ALICE["password"]
LOGIN = {"email": ALICE["email"], "password": PASSWORD}


@pytest.fixture
def api(app: Quart) -> Any:
    return app.test_client()


@pytest.fixture
def authenticator(settings: Settings) -> Authenticator:
    return Authenticator(origin=settings.base_url)


async def signed_in(app: Quart) -> Any:
    client = app.test_client()
    response = await client.post(f"{API}/login", json=LOGIN)
    assert response.status_code == 200, await response.get_data()
    return client


async def add_passkey(
    api: Any,
    authenticator: Authenticator,
    *,
    proof: dict[str, str] | None = None,
    name: str = "Key",
) -> Any:
    response = await api.post(
        f"{API}/passkeys/register/options",
        json=proof if proof is not None else {"password": PASSWORD},
    )
    if response.status_code != 200:
        return response
    body = await response.get_json()
    credential = authenticator.create(body["options"])
    return await api.post(
        f"{API}/passkeys/register",
        json={"ceremony": body["ceremony"], "name": name, "credential": credential},
    )


async def passkey_sign_in(client: Any, authenticator: Authenticator, **which: Any) -> Any:
    body = await (await client.post(f"{API}/login/passkey/options", json={})).get_json()
    credential = authenticator.get(body["options"], **which)
    return await client.post(
        f"{API}/login/passkey", json={"ceremony": body["ceremony"], "credential": credential}
    )


async def enable_two_factor(client: Any) -> str:
    secret = (await (await client.post(f"{API}/two-factor/enrol", json={})).get_json())["secret"]
    code = pyotp.TOTP(secret).now()
    response = await client.post(
        f"{API}/two-factor/confirm", json={"code": code, "password": PASSWORD}
    )
    assert response.status_code == 200, await response.get_data()
    return secret


def not_me_link(smtp: MailSink, subject: str) -> str:
    message = [m for m in smtp.messages if m.message["Subject"] == subject][-1]
    (link,) = [link for link in message.links if "/account/not-me/" in link]
    return link.removeprefix("http://localhost:8000")


async def disown(app: Quart, path: str) -> Any:
    from tests.web.browser import Browser

    browser = Browser(app)
    page = await browser.get(path)
    return await browser.post(path, {"csrf_token": page.csrf_token}, follow=True)


async def test_adding_a_passkey_needs_a_fresh_proof(
    app: Quart, sessionmaker: SessionMaker, authenticator: Authenticator
) -> None:
    await register(app.test_client(), sessionmaker)
    thief = await signed_in(app)  # a session alone, as a stolen cookie gives, hours later
    await age_authentications(sessionmaker)
    body = await assert_problem(await add_passkey(thief, authenticator, proof={}), 401)
    assert body["type"] == "/problems/reauthentication-required"
    body = await assert_problem(
        await add_passkey(thief, authenticator, proof={"password": "not it"}), 400
    )
    assert body["title"] == "Wrong password"
    assert authenticator.credentials == []  # refused before the authenticator is asked

    assert (await add_passkey(thief, authenticator)).status_code == 201
    response = await passkey_sign_in(app.test_client(), authenticator)
    assert response.status_code == 200
    assert (await response.get_json())["email"] == ALICE["email"]


async def test_adding_a_passkey_renews_the_session_cookie(
    app: Quart, sessionmaker: SessionMaker, authenticator: Authenticator
) -> None:
    await register(app.test_client(), sessionmaker)
    owner = await signed_in(app)
    copy = app.test_client()
    (cookie,) = [c for c in owner.cookie_jar if c.name == "QUART_AUTH"]
    copy.set_cookie("localhost", "QUART_AUTH", cookie.value)
    assert (await copy.get(f"{API}/me")).status_code == 200
    assert (await add_passkey(owner, authenticator)).status_code == 201
    assert (await owner.get(f"{API}/me")).status_code == 200  # the new cookie
    await assert_problem(await copy.get(f"{API}/me"), 401)  # the copy of the old one


async def test_this_wasnt_me_removes_the_passkeys_the_disowned_sign_in_added(
    app: Quart,
    sessionmaker: SessionMaker,
    settings: Settings,
    smtp: MailSink,
    run_worker: Any,
) -> None:
    await register(app.test_client(), sessionmaker)
    owners, attackers = Authenticator(settings.base_url), Authenticator(settings.base_url)
    assert (await add_passkey(await signed_in(app), owners, name="Laptop")).status_code == 201
    await run_worker()
    smtp.messages.clear()
    # Later, someone with the password and a session of their own adds one.
    assert (await add_passkey(await signed_in(app), attackers, name="Evil")).status_code == 201
    await run_worker()
    link = not_me_link(smtp, "Two-factor sign-in: passkey added")

    page = await disown(app, link)
    assert "The passkeys added since were removed (“Evil”)." in page.text

    await assert_problem(await passkey_sign_in(app.test_client(), attackers), 400)
    assert (await passkey_sign_in(app.test_client(), owners)).status_code == 200
    async with sessionmaker() as session:
        names = list(await session.scalars(select(Passkey.name)))
    assert names == ["Laptop"]


async def test_this_wasnt_me_in_the_password_email_removes_what_that_sign_in_added(
    app: Quart,
    sessionmaker: SessionMaker,
    authenticator: Authenticator,
    smtp: MailSink,
    run_worker: Any,
) -> None:
    """The thief adds a passkey first, then changes the password: the "password changed"
    email names the thief's sign-in, and disowning it removes the earlier passkey too."""
    await register(app.test_client(), sessionmaker)
    thief = await signed_in(app)
    assert (await add_passkey(thief, authenticator)).status_code == 201
    new = {"current_password": PASSWORD, "password": "an entirely new secret 42"}
    assert (await thief.post(f"{API}/password/change", json=new)).status_code == 200
    await run_worker()
    await disown(app, not_me_link(smtp, "Your password was changed"))
    await assert_problem(await passkey_sign_in(app.test_client(), authenticator), 400)
    await assert_problem(await thief.get(f"{API}/me"), 401)


async def test_this_wasnt_me_turns_off_two_factor_that_a_disowned_sign_in_turned_on(
    app: Quart, sessionmaker: SessionMaker, smtp: MailSink, run_worker: Any
) -> None:
    await register(app.test_client(), sessionmaker)
    thief = await signed_in(app)
    await enable_two_factor(thief)
    await run_worker()
    page = await disown(app, not_me_link(smtp, "Two-factor sign-in: enabled"))
    assert "Two-factor sign-in, turned on since, was turned off." in page.text
    async with sessionmaker() as session:
        user = await session.scalar(select(User))
        assert user is not None and user.totp_enabled_at is None and user.totp_secret is None

    # The owner resets the password from the email and signs in with no code to ask for.
    await run_worker()
    message = [m for m in smtp.messages if m.message["Subject"] == "Reset your password"][-1]
    (link,) = [link for link in message.links if "/reset-password/" in link]
    token = link.rsplit("/", 1)[1]
    reset = {"token": token, "password": "the owner's new secret 7"}
    assert (
        await app.test_client().post(f"{API}/password-reset/confirm", json=reset)
    ).status_code == 200
    response = await app.test_client().post(
        f"{API}/login", json={"email": ALICE["email"], "password": reset["password"]}
    )
    assert response.status_code == 200


async def test_turning_two_factor_on_needs_a_fresh_proof(
    app: Quart, sessionmaker: SessionMaker
) -> None:
    await register(app.test_client(), sessionmaker)
    thief = await signed_in(app)
    await age_authentications(sessionmaker)  # a stolen session, hours old
    secret = (await (await thief.post(f"{API}/two-factor/enrol", json={})).get_json())["secret"]
    code = pyotp.TOTP(secret).now()
    body = await assert_problem(
        await thief.post(f"{API}/two-factor/confirm", json={"code": code}), 401
    )
    assert body["type"].endswith("reauthentication-required")
    body = await assert_problem(
        await thief.post(f"{API}/two-factor/confirm", json={"code": code, "password": "no"}), 400
    )
    assert body["title"] == "Wrong password"
    status = await (await thief.get(f"{API}/two-factor")).get_json()
    assert status["enabled"] is False


async def test_a_passkey_without_user_verification_is_one_factor(
    app: Quart, sessionmaker: SessionMaker, settings: Settings
) -> None:
    await register(app.test_client(), sessionmaker)
    owner = await signed_in(app)
    secret = await enable_two_factor(owner)
    presence_only = Authenticator(settings.base_url, user_verified=False)
    verified = Authenticator(settings.base_url, user_verified=True)
    assert (
        await add_passkey(owner, presence_only, proof={"password": PASSWORD})
    ).status_code == 201
    assert (await add_passkey(owner, verified, proof={"password": PASSWORD})).status_code == 201

    # Flags 0x01 (present, not verified): the second step follows, as after a password.
    client = app.test_client()
    response = await passkey_sign_in(client, presence_only)
    assert response.status_code == 202
    assert (await response.get_json())["second_step"] is True
    await assert_problem(await client.get(f"{API}/me"), 401)
    # The same passkey again is not a second factor.
    await assert_problem(await passkey_sign_in(client, presence_only), 400)
    code = pyotp.TOTP(secret).at(int(time.time()) + 30)  # the enrolment spent this step's
    response = await client.post(f"{API}/login/two-factor", json={"code": code})
    assert response.status_code == 200, await response.get_data()
    assert (await client.get(f"{API}/me")).status_code == 200

    # A verified passkey (flags 0x05) is two factors: signed in at once.
    client = app.test_client()
    assert (await passkey_sign_in(client, verified)).status_code == 200
    assert (await client.get(f"{API}/me")).status_code == 200


MALFORMED_REGISTRATIONS: list[Any] = [
    {},
    {"rawId": 5},
    {"response": "text"},
    {"response": []},
    {"response": {"clientDataJSON": "e30"}},  # no attestationObject
    {"type": "password"},
    {"response": {"clientDataJSON": "!!!", "attestationObject": "AA"}},
]
MALFORMED_ASSERTIONS: list[Any] = [
    {},
    {"rawId": 5},
    {"response": "text"},
    {"response": {"userHandle": {"a": 1}}},
    {"type": "password"},
    {"response": {"authenticatorData": "AA", "signature": "AA", "clientDataJSON": "AA"}},
]


def _broken(good: dict[str, Any], change: dict[str, Any]) -> dict[str, Any]:
    broken = {**good, **{k: v for k, v in change.items() if k != "response"}}
    if "response" in change:
        response = change["response"]
        broken["response"] = (
            {**good["response"], **response} if isinstance(response, dict) else response
        )
        if change == {"response": {"clientDataJSON": "e30"}}:
            del broken["response"]["attestationObject"]
    return broken


@pytest.mark.parametrize("change", MALFORMED_REGISTRATIONS)
async def test_malformed_registrations_are_refused(
    app: Quart, sessionmaker: SessionMaker, authenticator: Authenticator, change: dict[str, Any]
) -> None:
    await register(app.test_client(), sessionmaker)
    owner = await signed_in(app)
    body = await (
        await owner.post(f"{API}/passkeys/register/options", json={"password": PASSWORD})
    ).get_json()
    good = authenticator.create(body["options"])
    credential = {} if change == {} else _broken(good, change)
    response = await owner.post(
        f"{API}/passkeys/register", json={"ceremony": body["ceremony"], "credential": credential}
    )
    assert response.status_code in (400, 422), await response.get_data()


@pytest.mark.parametrize("change", MALFORMED_ASSERTIONS)
async def test_malformed_assertions_are_refused(
    app: Quart, sessionmaker: SessionMaker, authenticator: Authenticator, change: dict[str, Any]
) -> None:
    await register(app.test_client(), sessionmaker)
    assert (await add_passkey(await signed_in(app), authenticator)).status_code == 201
    client = app.test_client()
    body = await (await client.post(f"{API}/login/passkey/options", json={})).get_json()
    good = authenticator.get(body["options"])
    credential = {} if change == {} else _broken(good, change)
    response = await client.post(
        f"{API}/login/passkey", json={"ceremony": body["ceremony"], "credential": credential}
    )
    assert response.status_code in (400, 422), await response.get_data()


async def test_another_accounts_credential_is_refused(
    app: Quart, sessionmaker: SessionMaker, authenticator: Authenticator
) -> None:
    await register(app.test_client(), sessionmaker)
    owner = await signed_in(app)
    assert (await add_passkey(owner, authenticator)).status_code == 201
    # The same credential id offered again (here, by the same account; another account is
    # the same unique index): a refusal, not an error.
    body = await (
        await owner.post(f"{API}/passkeys/register/options", json={"password": PASSWORD})
    ).get_json()
    body["options"]["excludeCredentials"] = []
    credential = authenticator.create(body["options"], reuse=authenticator.credentials[0])
    response = await owner.post(
        f"{API}/passkeys/register", json={"ceremony": body["ceremony"], "credential": credential}
    )
    body = await assert_problem(response, 400)
    assert body["detail"] == "This passkey is registered already."


async def test_removing_a_passkey_with_an_impossible_id_is_a_404(
    app: Quart, sessionmaker: SessionMaker
) -> None:
    await register(app.test_client(), sessionmaker)
    owner = await signed_in(app)
    response = await owner.post(
        f"{API}/passkeys/99999999999999999999/remove", json={"password": PASSWORD}
    )
    body = await assert_problem(response, 404)
    assert body["detail"] == "No such passkey."


async def test_ceremonies_are_limited(app: Quart, sessionmaker: SessionMaker) -> None:
    await register(app.test_client(), sessionmaker)
    owner = await signed_in(app)
    statuses = [
        (
            await owner.post(f"{API}/passkeys/register/options", json={"password": PASSWORD})
        ).status_code
        for _ in range(22)
    ]
    assert statuses[:20] == [200] * 20 and statuses[-1] == 429
    client = app.test_client()
    statuses = [
        (await client.post(f"{API}/login/passkey/options", json={})).status_code for _ in range(22)
    ]
    assert statuses[0] == 200 and statuses[-1] == 429  # the posts' limit per client, first


async def test_the_software_authenticator_is_what_py_webauthn_expects(
    authenticator: Authenticator,
) -> None:
    """The test peer itself: its user handle is what the options asked for."""
    options = {
        "rp": {"id": "localhost"},
        "user": {"id": b64url(b"42")},
        "challenge": b64url(b"c" * 32),
    }
    created = authenticator.create(options)
    assert created["type"] == "public-key" and authenticator.credentials[0].user_handle == b"42"
    assert created["rawId"] == created["id"]
