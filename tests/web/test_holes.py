"""One test (at least) per class of hole that outside attackers and tools found (issue 14),
each failing on the code before its fix."""

from __future__ import annotations

import statistics
import time
from typing import Any

import pytest
from quart import Quart
from sqlalchemy import func, select

from devstack.mailsink import MailSink
from shared.db import SessionMaker
from shared.models import User, UsernameHold
from shared.settings import Settings
from tests.support import RUNNING_APPS, run_burst_worker
from tests.web.browser import Browser
from web import create_app

PASSWORD = "correct horse battery"


async def count(sessionmaker: SessionMaker, model: Any) -> int:
    async with sessionmaker() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


# --- registration reveals nothing ----------------------------------------------------------
async def test_a_follow_up_registration_sees_the_username_held_either_way(
    browser: Browser, app: Quart, sessionmaker: SessionMaker
) -> None:
    """Register (U1, known address) and (U2, new address): a later registration of U1 or
    U2 with another address is refused alike, so it cannot tell which address was known."""
    await browser.register()  # alice@example.com has an account
    stranger = Browser(app)
    await stranger.register("probe1", "alice@example.com", confirmed=False)
    await stranger.register("probe2", "new@example.com", confirmed=False)
    for name in ("probe1", "probe2"):
        page = await stranger.register(name, f"other-{name}@example.com", confirmed=False)
        assert page.status == 200 and "That username is taken." in page.text
    assert await count(sessionmaker, UsernameHold) == 3


async def test_the_same_address_may_register_the_same_name_again(
    app: Quart, sessionmaker: SessionMaker, smtp: MailSink, run_worker: Any
) -> None:
    """Lost the first confirmation email? Registering again with the same name and
    address works (and, past the resend interval, sends a fresh link)."""
    person = Browser(app)
    first = await person.register("carol", "carol@example.com", confirmed=False)
    again = await person.register("carol", "Carol@Example.com", confirmed=False)
    assert first.status == again.status == 302
    assert await count(sessionmaker, User) == 1


async def test_signing_in_after_registering_fails_alike_for_new_and_known_addresses(
    browser: Browser, app: Quart
) -> None:
    await browser.register()  # known, confirmed
    stranger = Browser(app)
    await stranger.register("probe1", "alice@example.com", "mallory's password 1", confirmed=False)
    await stranger.register("probe2", "new@example.com", "mallory's password 1", confirmed=False)
    known = await stranger.login("alice@example.com", "mallory's password 1")
    new = await stranger.login("new@example.com", "mallory's password 1")
    assert (known.status, known.flashes) == (new.status, new.flashes)
    assert stranger.cookie("QUART_AUTH") is None


@pytest.mark.timing
async def test_registration_takes_the_same_time_for_known_and_new_addresses(
    settings: Settings, clean_db: None, queue: Any
) -> None:
    app = create_app(settings.with_values(POSTS_PER_MINUTE=10_000))
    async with app.test_app():
        await Browser(app).register()
        client = Browser(app)
        token = (await client.get("/register")).csrf_token
        samples: dict[str, list[float]] = {"known": [], "new": []}
        for n in range(12):  # interleaved, so drift affects both alike
            for kind, email in (("known", "alice@example.com"), ("new", f"n{n}@example.com")):
                form = {
                    "csrf_token": token, "username": f"{kind}{n}", "email": email,
                    "password": PASSWORD, "confirm_password": PASSWORD,
                }  # fmt: skip
                started = time.perf_counter()
                response = await client.client.post("/register", form=form)
                samples[kind].append((time.perf_counter() - started) * 1000)
                assert response.status_code == 302
                while app.background_tasks:  # the work after the answer, outside the timing
                    await app.background_tasks.pop()
    known, new = statistics.median(samples["known"]), statistics.median(samples["new"])
    assert abs(known - new) <= max(3.0, 0.2 * min(known, new)), (known, new)


async def test_registrations_are_limited_overall(
    settings: Settings, clean_db: None, queue: Any
) -> None:
    app = create_app(settings.with_values(REGISTRATIONS_PER_MINUTE=2, POSTS_PER_MINUTE=100))
    async with app.test_app():
        RUNNING_APPS.append(app)
        try:
            pages = [
                await Browser(app).register(f"user{n}", f"user{n}@example.com", confirmed=False)
                for n in range(3)
            ]
        finally:
            RUNNING_APPS.remove(app)
    assert [page.status for page in pages] == [302, 302, 429]
    assert 1 <= int(pages[2].headers["Retry-After"]) <= 60
    assert "Many people are signing up right now" in pages[2].text


# --- reset emails go ahead of a registration flood -------------------------------------------
async def test_a_reset_email_overtakes_a_backlog_of_confirmations(
    settings: Settings, clean_db: None, queue: Any, smtp: MailSink, sessionmaker: SessionMaker
) -> None:
    app = create_app(settings.with_values(POSTS_PER_MINUTE=1000, REGISTRATIONS_PER_MINUTE=1000))
    async with app.test_app():
        RUNNING_APPS.append(app)
        try:
            await Browser(app).register()
            for n in range(30):  # the flood: confirmations queued first
                await Browser(app).register(f"flood{n}", f"flood{n}@example.com", confirmed=False)
            await Browser(app).submit("/reset-password", {"email": "alice@example.com"})
            await run_burst_worker(settings, max_jobs=1)  # one at a time: order shows
        finally:
            RUNNING_APPS.remove(app)
    subjects = [m.message["Subject"] for m in smtp.messages]
    assert subjects.index("Reset your password") == 0, subjects[:3]
    assert len(subjects) == 31


# --- one canonical address key ---------------------------------------------------------------
@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("strasse@example.com", "straße@example.com"),  # ß is not ss to a mail server
        ("ff@example.com", "ﬀ@example.com"),  # nor is a ligature its letters
        ("anna@strasse.de", "anna@straße.de"),  # IDNA 2008: different domains
    ],
)
async def test_look_alike_addresses_are_different_accounts(
    browser: Browser, app: Quart, sessionmaker: SessionMaker, first: str, second: str
) -> None:
    await browser.register("first", first)
    await Browser(app).register("second", second)
    assert await count(sessionmaker, User) == 2


async def test_addresses_whose_compatibility_form_is_huge_are_not_a_server_error(
    browser: Browser, sessionmaker: SessionMaker
) -> None:
    address = "\ufdfa" * 30 + "@example.com"  # each expands to 18 characters under NFKC
    page = await browser.register("wide", address, confirmed=False)
    assert page.status in (200, 302)


# --- sessions ----------------------------------------------------------------------------------
async def test_a_saved_session_cookie_stops_working_at_sign_out(
    browser: Browser, app: Quart
) -> None:
    await browser.register()
    await browser.login()
    saved = browser.cookie("QUART_AUTH")
    assert saved is not None
    await browser.logout()
    replay = app.test_client()
    replay.set_cookie("localhost", "QUART_AUTH", saved)
    response = await replay.get("/account")
    assert response.status_code == 302  # sent to the login page: the session is over


async def test_signing_in_starts_a_fresh_session_cookie(browser: Browser) -> None:
    await browser.register()
    before = browser.cookie("session")
    token_before = (await browser.get("/login")).csrf_token
    await browser.login()
    assert browser.cookie("session") != before
    assert (await browser.get("/")).csrf_token != token_before


async def test_pages_are_not_cached(browser: Browser) -> None:
    await browser.register()
    await browser.login()
    for path in ("/", "/account", "/login"):
        page = await browser.get(path)
        assert page.headers["Cache-Control"] == "no-store", path
    assert "no-store" not in (
        (await browser.get("/static/site.css")).headers.get("Cache-Control") or ""
    )


# --- behind a reverse proxy --------------------------------------------------------------------
async def test_client_addresses_come_from_trusted_proxies_only(
    settings: Settings, clean_db: None, queue: Any
) -> None:
    async def refused_after(app: Quart, headers: list[dict[str, str]]) -> list[int]:
        client = app.test_client()
        statuses = []
        for header in headers:
            response = await client.post(
                "/api/v1/password-reset/request",
                json={"email": "a@example.com"},
                headers=header,
            )
            statuses.append(response.status_code)
        return statuses

    spoofed = [{"X-Forwarded-For": f"10.0.0.{n}"} for n in range(3)]
    # No proxy configured: the header is anyone's to write, so it is ignored.
    plain = create_app(settings.with_values(POSTS_PER_MINUTE=2))
    async with plain.test_app():
        assert await refused_after(plain, spoofed) == [202, 202, 429]
    # One trusted proxy: each forwarded client has its own budget.
    proxied = create_app(settings.with_values(POSTS_PER_MINUTE=2, TRUSTED_PROXIES=1))
    async with proxied.test_app():
        assert await refused_after(proxied, spoofed) == [202, 202, 202]
        same = [{"X-Forwarded-For": "198.51.100.7"}] * 3
        assert await refused_after(proxied, same) == [202, 202, 429]
