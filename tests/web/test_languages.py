"""Which language a request is answered in, and that everything it says follows: pages,
flashes, form errors, API problems, and the emails the request causes."""

from __future__ import annotations

from typing import Any

from quart import Quart
from sqlalchemy import select

from devstack.mailsink import MailSink
from shared.db import SessionMaker
from shared.models import Email, User
from tests.support import settle
from tests.web.browser import Browser
from tests.web.test_identity_provider import authorize_path, pkce, register_app

PASSWORD = "correct horse battery"


async def test_accept_language_picks_the_page_language(app: Quart) -> None:
    client = app.test_client()
    answer = await client.get("/login", headers={"Accept-Language": "fr-CA, de;q=0.5"})
    page = await answer.get_data(as_text=True)
    assert answer.headers["Content-Language"] == "fr"
    assert '<html lang="fr" dir="ltr">' in page and "Se connecter" in page
    assert "Accept-Language" in answer.headers["Vary"]
    arabic = await client.get("/login", headers={"Accept-Language": "ar-EG"})
    assert '<html lang="ar" dir="rtl">' in await arabic.get_data(as_text=True)
    unknown = await client.get("/login", headers={"Accept-Language": "ja, zh;q=0.8"})
    assert unknown.headers["Content-Language"] == "en"


async def test_the_language_menu_sets_a_cookie_that_wins(app: Quart) -> None:
    browser = Browser(app)
    token = (await browser.get("/login")).csrf_token
    answer = await browser.post("/language", {"csrf_token": token, "language": "pl",
                                              "next": "/register"})  # fmt: skip
    assert answer.status == 302 and answer.headers["Location"] == "/register"
    page = await browser.client.get("/register", headers={"Accept-Language": "de"})
    assert page.headers["Content-Language"] == "pl"
    # A language this deployment does not offer changes nothing; an outside "next" is refused.
    token = (await browser.get("/login")).csrf_token
    answer = await browser.post("/language", {"csrf_token": token, "language": "xx",
                                              "next": "https://evil.test/"})  # fmt: skip
    assert answer.headers["Location"] == "/"
    assert (await browser.client.get("/")).headers["Content-Language"] == "pl"
    # Without the form's token, nothing changes at all.
    refused = await browser.post("/language", {"language": "de"})
    assert refused.status == 400


async def test_signing_up_keeps_the_browser_language_and_the_email_follows(
    app: Quart, sessionmaker: SessionMaker, smtp: MailSink, run_worker: Any
) -> None:
    client = app.test_client()
    await client.get("/register", headers={"Accept-Language": "es"})
    client.set_cookie("localhost", "tz", "America/Mexico_City")
    page = await (await client.get("/register", headers={"Accept-Language": "es"})).get_data(
        as_text=True
    )
    token = page.split('name="csrf_token" type="hidden" value="')[1].split('"')[0]
    answer = await client.post(
        "/register",
        form={"csrf_token": token, "username": "lucia", "email": "lucia@example.com",
              "password": PASSWORD, "confirm_password": PASSWORD},
        headers={"Accept-Language": "es"},
    )  # fmt: skip
    assert answer.status_code == 302
    await settle()  # what the registration does after its answer
    async with sessionmaker() as session:
        user = await session.scalar(select(User).where(User.username == "lucia"))
        assert user is not None
        assert (user.language, user.time_zone) == ("es", "America/Mexico_City")
        email = await session.scalar(select(Email).where(Email.user_id == user.id))
        assert email is not None and email.locale == "es"
    await run_worker()
    (message,) = smtp.messages
    assert message.message["Content-Language"] == "es"
    assert message.message["Subject"] == "Confirma tu dirección de correo"


async def test_the_account_language_wins_over_the_browser_and_drives_emails(
    app: Quart, sessionmaker: SessionMaker, smtp: MailSink, run_worker: Any
) -> None:
    browser = Browser(app)
    await browser.register()
    await browser.login()
    token = (await browser.get("/account/preferences")).csrf_token
    saved = await browser.post(
        "/account/preferences",
        {"csrf_token": token, "language": "de", "time_zone": "Europe/Berlin"},
        follow=True,
    )
    assert "Gespeichert: Ihre Sprache und Zeitzone." in saved.text
    page = await browser.client.get("/account", headers={"Accept-Language": "fr"})
    text = await page.get_data(as_text=True)
    assert page.headers["Content-Language"] == "de" and "Mitteleuropäische" in text
    # An email about the account, caused from a French browser, is in German: the account's.
    await run_worker()
    smtp.messages.clear()
    await browser.client.get("/reset-password", headers={"Accept-Language": "fr"})
    reset = Browser(app)
    await reset.submit("/reset-password", {"email": "alice@example.com"})
    await run_worker()
    (message,) = smtp.messages
    assert message.message["Content-Language"] == "de"
    assert message.message["Subject"] == "Passwort zurücksetzen"
    bad = await browser.submit("/account/preferences", {"language": "xx", "time_zone": "Mars"})
    assert bad.status == 200 and "Not a valid choice" not in bad.text


async def test_flashes_form_errors_and_api_problems_are_translated(app: Quart) -> None:
    client = app.test_client()
    headers = {"Accept-Language": "de"}
    page = await (await client.get("/register", headers=headers)).get_data(as_text=True)
    token = page.split('name="csrf_token" type="hidden" value="')[1].split('"')[0]
    answer = await client.post(
        "/register",
        form={"csrf_token": token, "username": "a", "email": "x@example.com",
              "password": PASSWORD, "confirm_password": "other"},
        headers=headers,
    )  # fmt: skip
    text = await answer.get_data(as_text=True)
    assert "Die beiden Passwörter stimmen nicht überein." in text
    problem = await client.post(
        "/api/v1/login",
        json={"email": "nobody@example.com", "password": "wrong"},
        headers={"Accept-Language": "ar"},
    )
    body = await problem.get_json()
    assert problem.status_code == 401 and body["title"] == "فشل تسجيل الدخول", body


async def test_ui_locales_chooses_the_sign_in_page_language(app: Quart) -> None:
    """An application asks (OpenID Connect ui_locales) for a visitor who chose nothing: the
    sign-in page that follows speaks the first of its languages offered here; a visitor who
    chose with the menu keeps their choice. Discovery says what is offered."""
    client = app.test_client()
    discovery = await (await client.get("/.well-known/openid-configuration")).get_json()
    assert discovery["ui_locales_supported"] == ["en", "de", "fr", "es", "pl", "ar"]
    registered = await register_app(app)
    _, challenge = pkce()
    path = authorize_path(registered, ui_locales="ja pl-PL de", code_challenge=challenge,
                          code_challenge_method="S256")  # fmt: skip
    asked = await client.get(path, headers={"Accept-Language": "en"})
    assert asked.status_code == 302 and "/login" in asked.headers["Location"]
    login = await client.get(asked.headers["Location"], headers={"Accept-Language": "en"})
    assert login.headers["Content-Language"] == "pl"
    chose = Browser(app)
    token = (await chose.get("/login")).csrf_token
    await chose.post("/language", {"csrf_token": token, "language": "fr"})
    await chose.client.get(path)
    assert (await chose.client.get("/login")).headers["Content-Language"] == "fr"


async def test_the_api_reads_and_sets_the_preferences_and_the_export_has_them(
    app: Quart, sessionmaker: SessionMaker
) -> None:
    from tests.web.test_api import ALICE, API, register

    client = app.test_client()
    await register(client, sessionmaker)
    credentials = {"email": ALICE["email"], "password": ALICE["password"]}
    assert (await client.post(f"{API}/login", json=credentials)).status_code == 200
    current = await (await client.get(f"{API}/preferences")).get_json()
    assert current["languages"] == ["en", "de", "fr", "es", "pl", "ar"]
    changed = await client.put(f"{API}/preferences", json={"language": "pl"})
    assert (await changed.get_json())["language"] == "pl"
    refused = await client.put(
        f"{API}/preferences", json={"time_zone": "Nowhere/Atlantis"},
        headers={"Accept-Language": "pl"},
    )  # fmt: skip
    body = await refused.get_json()
    assert refused.status_code == 422 and "time_zone" in body["errors"]
    assert body["errors"]["time_zone"] == [
        "Wybierz strefę czasową z listy, np. Europe/Warsaw lub UTC."
    ]
    zone = await client.put(f"{API}/preferences", json={"time_zone": "Europe/Warsaw"})
    assert (await zone.get_json())["time_zone"] == "Europe/Warsaw"
    assert (await client.put(f"{API}/preferences", json={"language": "xx"})).status_code == 422


async def test_files_and_probes_do_not_look_the_sign_in_up(app: Quart) -> None:
    """Only pages read the account's language: a stylesheet, the icon or a probe asked by a
    signed-in browser answers from the header alone."""
    from unittest import mock

    from web import locale

    browser = Browser(app)
    await browser.register()
    await browser.login()
    with mock.patch.object(locale, "current_account", side_effect=AssertionError):
        for path in ("/static/site.css", "/favicon.ico", "/healthz"):
            answer = await browser.client.get(path, headers={"Accept-Language": "de"})
            assert answer.status_code == 200 and answer.headers["Content-Language"] == "de"
