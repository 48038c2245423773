"""Signing in with a code from your email: through the pages and the API, the worker and the
SMTP server. The code and the link; the link signs in at once only in the browser that asked;
a code works once, for its time, for a few tries, and only the newest; the same answers and
the same time for any address; the assurance rule after it."""

from __future__ import annotations

import re
import statistics
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from quart import Quart
from sqlalchemy import select, update

from devstack.mailsink import MailSink, ReceivedMessage
from shared.db import SessionMaker
from shared.models import LoginCode, SignInSession, User
from shared.settings import Settings
from shared.tokens import login_code
from tests.support import TEST_SECRET_KEY
from tests.web.browser import Browser
from tests.web.test_two_factor import code_at, enrol
from web import create_app

BASE = "http://localhost:8000"
WRONG = "That code is not right. Use the newest code we emailed you, within its time."
SPENT = "That code has had too many wrong tries. Ask for a new code."


def code_emails(smtp: MailSink, to: str = "alice@example.com") -> list[ReceivedMessage]:
    return [
        m
        for m in smtp.messages
        if m.message["To"] == to and m.message["Subject"].startswith("Your sign-in code")
    ]


def code_and_link(message: ReceivedMessage) -> tuple[str, str]:
    text = message.part("text/plain")
    code = re.search(r"^\s+(\d{4} \d{4})\s*$", text, re.M)
    assert code, text
    (link,) = [url for url in message.links if "/login/code/" in url]
    return code.group(1), link.removeprefix(BASE)


async def ask(browser: Browser, email: str = "alice@example.com") -> Any:
    return await browser.submit("/login/code", {"email": email})


async def emailed(smtp: MailSink, run_worker: Any) -> tuple[str, str]:
    await run_worker()
    return code_and_link(code_emails(smtp)[-1])


async def methods(sessionmaker: SessionMaker) -> list[list[str]]:
    async with sessionmaker() as session:
        return [list(m) for m in await session.scalars(select(SignInSession.amr))]


async def test_a_code_from_the_email_signs_in_once(
    browser: Browser, app: Quart, smtp: MailSink, run_worker: Any, sessionmaker: SessionMaker
) -> None:
    await browser.register()
    login_page = await browser.get("/login")
    assert 'href="/login/code' in login_page.text  # the sign-in page offers it
    page = await ask(browser)
    assert page.location == "/login/code/enter"
    page = await browser.get("/login/code/enter")
    assert "If <strong>alice@example.com</strong> has an account" in page.text
    code, _ = await emailed(smtp, run_worker)
    message = code_emails(smtp)[-1]
    assert message.message["Subject"] == f"Your sign-in code: {code}"
    assert code in message.part("text/html")
    assert WRONG in (await browser.submit("/login/code/enter", {"code": "0000 0000"})).text
    page = await browser.submit("/login/code/enter", {"code": code.replace(" ", "-")})
    assert page.location == "/"
    assert (await browser.get("/account")).status == 200
    assert await methods(sessionmaker) == [["email"]]
    sessions_page = await browser.get("/account/sessions")
    assert "with code by email" in sessions_page.text

    # Used: the same code again, in the same browser with the same record, is refused.
    await browser.logout()
    other = Browser(app)
    await ask(other)  # another browser asks for a new one: the old one is dead twice over
    page = await other.submit("/login/code/enter", {"code": code})
    assert WRONG in page.text


async def test_the_link_signs_in_only_in_the_browser_that_asked(
    browser: Browser, app: Quart, smtp: MailSink, run_worker: Any, sessionmaker: SessionMaker
) -> None:
    await browser.register()
    await ask(browser)
    _code, link = await emailed(smtp, run_worker)

    # Forwarded, prefetched by a scanner or opened on a phone: it asks for the code.
    elsewhere = Browser(app)
    page = await elsewhere.get(link)
    assert page.status == 200
    assert "signs in at once only in the browser where the code was asked for" in page.text
    assert (await elsewhere.get("/account")).status == 302
    # ... and the code alone does not go with someone else's request.
    assert WRONG in (await elsewhere.submit(link, {"code": "12345678"})).text

    # In the browser that asked, the link signs in at once.
    page = await browser.get(link)
    assert page.location == "/"
    assert (await browser.get("/account")).status == 200
    assert await methods(sessionmaker) == [["email"]]
    # Once.
    await browser.logout()
    assert (await browser.get(link)).status in (200, 302)
    assert (await browser.get("/account")).status == 302


async def test_the_link_with_the_code_signs_in_another_browser(
    browser: Browser, app: Quart, smtp: MailSink, run_worker: Any
) -> None:
    await browser.register()
    await ask(browser)
    code, link = await emailed(smtp, run_worker)
    phone = Browser(app)
    assert (await phone.submit(link, {"code": code})).location == "/"
    assert (await phone.get("/account")).status == 200
    # The requesting browser's code and link were that one code: used.
    assert (await browser.get(link)).location is None
    assert WRONG in (await browser.submit("/login/code/enter", {"code": code})).text


async def test_only_the_newest_code_works_and_a_stale_one_is_never_sent(
    browser: Browser, smtp: MailSink, run_worker: Any, sessionmaker: SessionMaker
) -> None:
    await browser.register()
    await ask(browser)
    first, _ = await emailed(smtp, run_worker)
    await ask(browser)
    await ask(browser)  # two requests before the worker runs: only the newest is sent
    await run_worker()
    assert len(code_emails(smtp)) == 2
    newest, _ = code_and_link(code_emails(smtp)[-1])
    assert newest != first
    assert WRONG in (await browser.submit("/login/code/enter", {"code": first})).text
    assert (await browser.submit("/login/code/enter", {"code": newest})).location == "/"


async def test_an_expired_code_is_refused_and_not_sent(
    browser: Browser, smtp: MailSink, run_worker: Any, sessionmaker: SessionMaker
) -> None:
    await browser.register()
    await ask(browser)
    async with sessionmaker() as session:
        await session.execute(
            update(LoginCode).values(created_at=datetime.now(UTC) - timedelta(minutes=11))
        )
        await session.commit()
    await run_worker()
    assert code_emails(smtp) == []  # it would arrive expired: skipped
    async with sessionmaker() as session:
        user = await session.scalar(select(User))
        held = await session.get(LoginCode, user.id if user else 0)
    assert held is not None
    # The right code, derived as the worker would have: expired, refused.
    code = login_code(TEST_SECRET_KEY, held.user_id, held.generation, held.salt)
    assert WRONG in (await browser.submit("/login/code/enter", {"code": code})).text


async def test_a_few_wrong_tries_and_a_new_code_is_needed_for_any_address(
    browser: Browser, app: Quart, smtp: MailSink, run_worker: Any
) -> None:
    await browser.register()
    answers: dict[str, list[Any]] = {}
    for email in ("alice@example.com", "nobody@example.com"):
        stranger = Browser(app)
        await ask(stranger, email)
        pages = [
            await stranger.submit("/login/code/enter", {"code": f"1111 111{n}"}) for n in range(4)
        ]
        answers[email] = [(p.status, p.location, p.flashes) for p in pages]
    assert answers["alice@example.com"] == answers["nobody@example.com"]
    known = answers["alice@example.com"]
    assert [status for status, _, _ in known] == [200, 200, 200, 302]
    assert known[3][1] == "/login/code"


async def test_once_the_tries_are_spent_even_the_right_code_is_refused(
    browser: Browser, app: Quart, smtp: MailSink, run_worker: Any
) -> None:
    await browser.register()
    owner = Browser(app)
    await ask(owner)
    code, _ = await emailed(smtp, run_worker)
    for n in range(3):
        await owner.submit("/login/code/enter", {"code": f"2222 222{n}"})
    page = await owner.submit("/login/code/enter", {"code": code})
    assert page.location == "/login/code"
    assert SPENT in (await owner.get("/login/code")).text
    await ask(owner)
    code, _ = await emailed(smtp, run_worker)
    assert (await owner.submit("/login/code/enter", {"code": code})).location == "/"


async def test_a_code_confirms_the_address(
    browser: Browser, smtp: MailSink, run_worker: Any, sessionmaker: SessionMaker
) -> None:
    await browser.register(confirmed=False)
    await ask(browser)
    code, _ = await emailed(smtp, run_worker)
    assert (await browser.submit("/login/code/enter", {"code": code})).location == "/"
    async with sessionmaker() as session:
        user = await session.scalar(select(User))
    assert user is not None and user.confirmed_at is not None
    assert (await browser.get("/account")).status == 200


async def test_asking_answers_alike_for_known_and_unknown_addresses(
    browser: Browser, app: Quart
) -> None:
    await browser.register()
    known, unknown = Browser(app), Browser(app)
    a, b = await ask(known), await ask(unknown, "nobody@example.com")
    assert (a.status, a.location, a.flashes) == (b.status, b.location, b.flashes)
    a = await known.get("/login/code/enter")
    b = await unknown.get("/login/code/enter")

    def page(text: str, email: str) -> str:  # the CSRF token is each browser's own
        return re.sub(r'value="[^"]*##[^"]*"', "", text.replace(email, "X"))

    assert page(a.text, "alice@example.com") == page(b.text, "nobody@example.com")


@pytest.mark.timing
async def test_asking_takes_the_same_time_for_known_and_unknown_addresses(
    settings: Settings, clean_db: None, queue: Any
) -> None:
    app = create_app(settings.with_values(POSTS_PER_MINUTE=10_000, LOGIN_CODES_PER_HOUR=1000))
    async with app.test_app():
        await Browser(app).register()
        client = Browser(app)
        token = (await client.get("/login/code")).csrf_token
        samples: dict[str, list[float]] = {"known": [], "unknown": []}
        for n in range(12):  # interleaved, so drift affects both alike
            for kind, email in (("known", "alice@example.com"), ("unknown", f"n{n}@example.com")):
                started = time.perf_counter()
                response = await client.client.post(
                    "/login/code", form={"csrf_token": token, "email": email}
                )
                samples[kind].append((time.perf_counter() - started) * 1000)
                assert response.status_code == 302
                while app.background_tasks:  # the work after the answer, outside the timing
                    await app.background_tasks.pop()
    known, unknown = statistics.median(samples["known"]), statistics.median(samples["unknown"])
    assert abs(known - unknown) <= max(3.0, 0.2 * min(known, unknown)), (known, unknown)


async def test_on_a_two_factor_account_the_code_is_one_factor(
    browser: Browser, smtp: MailSink, run_worker: Any, sessionmaker: SessionMaker
) -> None:
    await browser.register()
    await browser.login()
    secret, _ = await enrol(browser)
    await browser.logout()
    await ask(browser)
    code, _link = await emailed(smtp, run_worker)
    page = await browser.submit("/login/code/enter", {"code": code})
    assert page.location == "/login/two-factor"
    assert (await browser.get("/account")).status == 302  # nothing works before the step
    page = await browser.submit("/login/two-factor", {"code": code_at(secret, 1)})
    assert page.location == "/"
    assert await methods(sessionmaker) == [["pwd"], ["email", "otp", "mfa"]]


async def test_the_api_signs_in_with_a_code(
    app: Quart, smtp: MailSink, run_worker: Any, sessionmaker: SessionMaker
) -> None:
    await Browser(app).register()
    client = app.test_client()
    for email in ("nobody@example.com", "alice@example.com"):
        response = await client.post("/api/v1/login/code/request", json={"email": email})
        assert response.status_code == 202
        assert "If that address has an account" in (await response.get_json())["detail"]
    while app.background_tasks:
        await app.background_tasks.pop()
    code, _ = await emailed(smtp, run_worker)
    wrong = await client.post("/api/v1/login/code", json={"code": "00000000"})
    assert wrong.status_code == 400
    assert (await wrong.get_json())["detail"] == WRONG
    response = await client.post("/api/v1/login/code", json={"code": code})
    assert response.status_code == 200, await response.get_data()
    assert (await response.get_json())["username"] == "alice"
    me = await client.get("/api/v1/sessions")
    assert [s["methods"] for s in (await me.get_json())["sessions"]] == [["email"]]


async def test_the_api_refuses_a_code_without_a_request(app: Quart) -> None:
    client = app.test_client()
    response = await client.post("/api/v1/login/code", json={"code": "12345678"})
    assert response.status_code == 409


async def test_strangers_spending_the_budget_do_not_keep_the_owners_browser_out(
    app: Quart, smtp: MailSink, run_worker: Any
) -> None:
    """LOGIN_CODES_PER_HOUR counts per address for strangers, and per browser for one that
    has signed in to the account before: a stranger asking for the owner's address over and
    over spends the address's budget, not the owner's browser's."""
    owner = Browser(app)
    await owner.register()
    await owner.login()  # this browser now has the account's device cookie
    await owner.logout()
    stranger = Browser(app)
    for _ in range(5):  # the address's budget (LOGIN_CODES_PER_HOUR), spent
        await ask(stranger)
        await run_worker()  # each sent before the next supersedes it
    assert len(code_emails(smtp)) == 5
    await ask(stranger)  # over budget: the same answer, and nothing sent
    await run_worker()
    assert len(code_emails(smtp)) == 5
    await ask(owner)  # the owner's browser: its own budget
    await run_worker()
    assert len(code_emails(smtp)) == 6
    code, _ = code_and_link(code_emails(smtp)[-1])
    assert (await owner.submit("/login/code/enter", {"code": code})).location == "/"
