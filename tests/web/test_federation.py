"""Signing in with another identity provider, against oidc-provider (npm, a certified OpenID
Provider) on loopback: sign-up, sign-in, the second factor still asked, and linking that can
never hand an account to a stranger; with the attacks: an email matching an existing account,
forged, replayed and foreign-browser state, an issuer mix-up, an unverified email, a
cancelled consent, a provider down or silent, and unlinking the last way in."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pyotp
import pytest
from quart import Quart
from sqlalchemy import select

from devstack.mailsink import MailSink
from devstack.servers import free_port
from shared.models import Email, FederatedIdentity, SecurityEvent, User
from shared.services import two_factor
from shared.settings import Settings
from tests.federation_peer import OutsideProvider, outside_provider, sign_in_there
from tests.web.browser import Browser
from web import create_app
from web.extensions import SERVICES_KEY

CALLBACK = "http://localhost:8000/login/federated/op/callback"


@pytest.fixture
async def op() -> AsyncIterator[OutsideProvider]:
    async with outside_provider([CALLBACK]) as running:
        yield running


@pytest.fixture
async def fed_app(
    settings: Settings, op: OutsideProvider, clean_db: None, queue: Any
) -> AsyncIterator[Quart]:
    configured = settings.with_values(FEDERATION_PROVIDERS=json.dumps([op.config()]))
    application = create_app(configured)
    async with application.test_app():
        yield application


@pytest.fixture
def browser(fed_app: Quart) -> Browser:
    return Browser(fed_app)


async def through_provider(browser: Browser, login: str, **query: str) -> Any:
    """Continue with the provider as ``login``: our answer to its callback."""
    leaving = await browser.get("/login/federated/op" + (f"?{urlencode(query)}" if query else ""))
    assert leaving.status == 302 and leaving.location is not None, leaving.text[:300]
    back = await sign_in_there(leaving.location, login, CALLBACK)
    return await browser.get(back.removeprefix("http://localhost:8000"))


async def rows(app: Quart, model: Any) -> list[Any]:
    async with app.extensions[SERVICES_KEY].reading() as session:
        return list(await session.scalars(select(model)))


async def test_a_new_identity_signs_up_then_signs_in(fed_app: Quart, browser: Browser) -> None:
    page = await browser.get("/login")
    assert "Continue with Test IdP" in page.text
    arrived = await through_provider(browser, "carol@example.com")
    assert arrived.location == "/login/federated/sign-up"
    form = await browser.get("/login/federated/sign-up")
    assert "carol@example.com" in form.text
    done = await browser.post(
        "/login/federated/sign-up", {"csrf_token": form.csrf_token, "username": "carol"}
    )
    assert done.location == "/account"
    assert "carol" in (await browser.get("/account")).text
    export = json.loads((await browser.get("/account/export")).text)
    assert export["connected_accounts"][0]["email"] == "carol@example.com"
    (user,) = await rows(fed_app, User)
    assert user.confirmed_at is not None and user.email == "carol@example.com"
    (identity,) = await rows(fed_app, FederatedIdentity)
    assert identity.subject == "carol@example.com" and identity.user_id == user.id
    await browser.logout()
    again = await through_provider(browser, "carol@example.com")
    assert again.location == "/"
    assert (await browser.get("/account")).status == 200
    kinds = [e.kind for e in await rows(fed_app, SecurityEvent)]
    assert "identity.linked" in kinds and kinds.count("user.login_succeeded") == 2
    logins = [e for e in await rows(fed_app, SecurityEvent) if e.kind == "user.login_succeeded"]
    assert logins[-1].payload["method"] == "federated:op"
    assert logins[-1].payload["amr"] == ["fed"]


async def test_a_matching_email_is_never_linked_by_itself(fed_app: Quart, browser: Browser) -> None:
    await browser.register()  # alice@example.com, with a password
    arrived = await through_provider(browser, "alice@example.com")
    assert arrived.location is not None and arrived.location.startswith("/login?next=")
    assert await rows(fed_app, FederatedIdentity) == []  # nothing linked
    assert (await browser.get("/account")).status == 302  # nobody signed in
    # A stranger's browser holding the same identity gets no further than this either; the
    # owner signs in to the account, by its own method, then confirms.
    signed = await browser.login(next="/login/federated/connect")
    assert signed.location == "/login/federated/connect"
    confirm = await browser.get("/login/federated/connect")
    assert "Connect Test IdP" in confirm.text
    linked = await browser.post("/login/federated/connect", {"csrf_token": confirm.csrf_token})
    assert linked.location == "/account/connected"
    (identity,) = await rows(fed_app, FederatedIdentity)
    assert identity.email == "alice@example.com"
    told = [e for e in await rows(fed_app, Email) if e.kind == "identity_linked"]
    assert len(told) == 1 and told[0].recipient == "alice@example.com"
    await browser.logout()
    assert (await through_provider(browser, "alice@example.com")).location == "/"


async def test_the_pending_identity_does_not_follow_into_a_stranger_s_browser(
    fed_app: Quart, browser: Browser
) -> None:
    await browser.register()
    await through_provider(browser, "alice@example.com")
    stranger = Browser(fed_app)
    await stranger.register("mallory", "mallory@example.com")
    await stranger.login("mallory@example.com")
    page = await stranger.get("/login/federated/connect")
    assert page.status == 400 and "Nothing is waiting" in page.text


async def test_an_account_with_two_factor_still_needs_its_second_step(
    fed_app: Quart, browser: Browser
) -> None:
    await browser.register()
    await through_provider(browser, "alice@example.com")
    await browser.login(next="/login/federated/connect")
    confirm = await browser.get("/login/federated/connect")
    await browser.post("/login/federated/connect", {"csrf_token": confirm.csrf_token})
    ctx = fed_app.extensions[SERVICES_KEY]
    (user,) = await rows(fed_app, User)
    enrolment = await two_factor.begin_enrolment(ctx, user.id)
    assert enrolment is not None
    await two_factor.confirm_enrolment(
        ctx, user.id, pyotp.TOTP(enrolment.secret).now(), "correct horse battery"
    )
    await browser.logout()
    arrived = await through_provider(browser, "alice@example.com")
    assert arrived.location == "/login/two-factor"
    assert (await browser.get("/account")).status == 302  # not signed in before it


# --- the attacks ---------------------------------------------------------------------------
async def test_forged_replayed_and_foreign_browser_state_is_refused(
    fed_app: Quart, browser: Browser
) -> None:
    leaving = await browser.get("/login/federated/op")
    assert leaving.location is not None
    back = (await sign_in_there(leaving.location, "dave@example.com", CALLBACK)).removeprefix(
        "http://localhost:8000"
    )
    # Opened in another browser (login CSRF): refused, and the state is spent.
    other = await Browser(fed_app).get(back)
    assert other.status == 400 and "another browser" in other.text
    replay = await browser.get(back)
    assert replay.status == 400 and "already used" in replay.text
    forged = await browser.get("/login/federated/op/callback?code=x&state=made-up")
    assert forged.status == 400
    assert await rows(fed_app, User) == []


async def test_an_answer_naming_another_issuer_is_refused(fed_app: Quart, browser: Browser) -> None:
    leaving = await browser.get("/login/federated/op")
    assert leaving.location is not None
    back = await sign_in_there(leaving.location, "erin@example.com", CALLBACK)
    query = {k: v[0] for k, v in parse_qs(urlsplit(back).query).items()}
    query["iss"] = "https://evil.example"  # RFC 9207: a mix-up
    answer = await browser.get("/login/federated/op/callback?" + urlencode(query))
    assert answer.status == 400 and "another provider" in answer.text
    query.pop("iss")
    missing = await browser.get("/login/federated/op/callback?" + urlencode(query))
    assert missing.status == 400  # the state was spent, and iss is required from this provider


async def test_an_unverified_email_makes_nothing(fed_app: Quart, browser: Browser) -> None:
    answer = await through_provider(browser, "unverified-frank@example.com")
    assert answer.status == 400 and "no verified email address" in answer.text
    assert await rows(fed_app, User) == []


async def test_cancelling_at_the_provider_says_so(fed_app: Quart, browser: Browser) -> None:
    leaving = await browser.get("/login/federated/op")
    assert leaving.location is not None
    back = await sign_in_there(leaving.location, "gina@example.com", CALLBACK, consent=False)
    answer = await browser.get(back.removeprefix("http://localhost:8000"))
    assert answer.status == 400 and "You cancelled" in answer.text
    assert "Back to sign in" in answer.text


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join(2)
    for connection in held:
        connection.close()
    listener.close()


@pytest.mark.parametrize("how", ["down", "silent"])
async def test_a_provider_that_is_down_or_silent_gets_a_page(
    settings: Settings, clean_db: None, queue: Any, silent_port: int, how: str
) -> None:
    port = free_port() if how == "down" else silent_port
    config = {"id": "gone", "name": "Gone IdP", "issuer": f"http://127.0.0.1:{port}",
              "client_id": "x", "client_secret": "y"}  # fmt: skip
    app = create_app(
        settings.with_values(FEDERATION_PROVIDERS=json.dumps([config]), FEDERATION_TIMEOUT=0.5)
    )
    async with app.test_app():
        answer = await asyncio.wait_for(Browser(app).get("/login/federated/gone"), 10)
    assert answer.status == 502 and "cannot be reached" in answer.text


async def test_the_last_way_in_cannot_be_unlinked(fed_app: Quart, browser: Browser) -> None:
    await through_provider(browser, "hank@example.com")
    form = await browser.get("/login/federated/sign-up")
    await browser.post(
        "/login/federated/sign-up", {"csrf_token": form.csrf_token, "username": "hank"}
    )
    (identity,) = await rows(fed_app, FederatedIdentity)
    page = await browser.get("/account/connected")
    assert "Test IdP" in page.text and "hank@example.com" in page.text
    refused = await browser.post(
        f"/account/connected/{identity.id}/unlink", {"csrf_token": page.csrf_token}
    )
    assert refused.status == 302
    assert "only way to sign in" in (await browser.get("/account/connected")).text
    assert len(await rows(fed_app, FederatedIdentity)) == 1
    # With a password set, it may go.
    await browser.submit(
        "/account/password",
        {"password": "a brand new passphrase 42", "confirm_password": "a brand new passphrase 42"},
    )
    page = await browser.get("/account/connected")
    await browser.post(f"/account/connected/{identity.id}/unlink", {"csrf_token": page.csrf_token})
    assert await rows(fed_app, FederatedIdentity) == []
    kinds = [e.kind for e in await rows(fed_app, SecurityEvent)]
    assert "identity.unlinked" in kinds


async def test_connected_accounts_through_the_api(fed_app: Quart, browser: Browser) -> None:
    await through_provider(browser, "ivy@example.com")
    form = await browser.get("/login/federated/sign-up")
    await browser.post(
        "/login/federated/sign-up", {"csrf_token": form.csrf_token, "username": "ivy"}
    )
    listed = await (await browser.client.get("/api/v1/connected-accounts")).get_json()
    (only,) = listed["connected_accounts"]
    assert only["name"] == "Test IdP" and only["email"] == "ivy@example.com"
    last = await browser.client.post(f"/api/v1/connected-accounts/{only['id']}/unlink", json={})
    assert last.status_code == 409  # the only way in
    gone = await browser.client.post("/api/v1/connected-accounts/999999/unlink", json={})
    assert gone.status_code == 404


async def test_this_was_not_me_disconnects_what_was_connected(
    fed_app: Quart, browser: Browser, smtp: MailSink, run_worker: Any
) -> None:
    await browser.register()
    await through_provider(browser, "alice@example.com")
    await browser.login(next="/login/federated/connect")
    confirm = await browser.get("/login/federated/connect")
    await browser.post("/login/federated/connect", {"csrf_token": confirm.csrf_token})
    await run_worker()
    notice = [m for m in smtp.messages if m.message["Subject"] == "Test IdP account connected"]
    assert len(notice) == 1 and "alice@example.com" in notice[0].part("text/plain")
    (not_me,) = [url for url in notice[0].links if "/account/not-me/" in url]
    page = await Browser(fed_app).submit(not_me.removeprefix("http://localhost:8000"), {})
    assert page.status in (200, 302)
    assert await rows(fed_app, FederatedIdentity) == []
