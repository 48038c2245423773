"""The person sees it: mail to their address bounced (reported here by Mailgun's signed event
webhook), so a reset request sends nothing, the account page and GET /me say why, and the
owner may ask once for the address to be tried again. Mailgun's webhook with valid,
invalid, stale and replayed signatures."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import time
from typing import Any

import pytest
from quart import Quart
from sqlalchemy import select

from devstack.mailsink import MailSink
from shared.db import SessionMaker
from shared.models import Email, EmailStatus, Suppression
from shared.settings import Settings
from tests.web.browser import Browser

SIGNING_KEY = "mailgun-test-signing-key-0123456789"
ALICE = "alice@example.com"


@pytest.fixture
def settings(base_settings: Settings) -> Settings:
    return base_settings.with_values(
        BOUNCE_DOMAIN="bounces.example.com", MAILGUN_WEBHOOK_SIGNING_KEY=SIGNING_KEY
    )


def mailgun_event(
    message: Any,
    *,
    event: str = "failed",
    severity: str = "permanent",
    key: str = SIGNING_KEY,
    age: float = 0,
) -> dict[str, Any]:
    """An event as Mailgun posts it, signed as Mailgun documents."""
    timestamp, token = str(int(time.time() - age)), secrets.token_hex(25)
    signature = hmac.new(key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()
    return {
        "signature": {"timestamp": timestamp, "token": token, "signature": signature},
        "event-data": {
            "event": event,
            "severity": severity,
            "recipient": message.envelope_to[0],
            "delivery-status": {"code": 550, "message": "5.1.1 The email account does not exist"},
            "message": {"headers": {"message-id": message.message["Message-ID"].strip("<>")}},
        },
    }


async def bounce(browser: Browser, message: Any) -> None:
    response = await browser.client.post("/hooks/mailgun", json=mailgun_event(message))
    assert response.status_code == 200
    assert await response.get_json() == {"detail": "recorded"}


async def outbox(sessionmaker: SessionMaker, kind: str) -> list[Email]:
    async with sessionmaker() as session:
        return list(await session.scalars(select(Email).where(Email.kind == kind)))


async def test_a_bounced_address_gets_nothing_and_its_owner_sees_why(
    app: Quart, sessionmaker: SessionMaker, smtp: MailSink, run_worker: Any
) -> None:
    browser = Browser(app)
    await browser.register(confirmed=False)
    await run_worker()
    (confirmation,) = smtp.messages
    await browser.confirm(ALICE)
    await bounce(browser, confirmation)

    # A reset request answers as always, and sends nothing.
    await browser.submit("/reset-password", {"email": ALICE})
    await run_worker()
    assert len(smtp.messages) == 1
    (reset,) = await outbox(sessionmaker, "reset")
    assert reset.status == EmailStatus.SKIPPED and reset.last_error.startswith("suppressed:")

    await browser.login()
    page = await browser.get("/account")
    notice = re.search(r'id="delivery-problem">(.*?)</div>', page.text, re.S)
    assert notice is not None
    words = " ".join(re.sub(r"<[^>]+>", " ", notice.group(1)).split())
    assert re.search(
        r"We could not deliver mail to this address on \w{3} \d+, \d{4}: "
        r"550 5\.1\.1 The email account does not exist",
        words,
    ), words
    assert "Change your email address" in words and "Try this address again" in words
    me = await (await browser.client.get("/api/v1/me")).get_json()
    assert me["delivery_problem"]["can_retry"] is True
    assert me["delivery_problem"]["reason"].startswith("550 5.1.1")

    # The one retry: the address is tried again with the message it missed.
    retried = await browser.post("/account/email/retry", {"csrf_token": page.csrf_token})
    assert retried.status == 302
    await run_worker()
    assert smtp.messages[-1].message["Subject"] == "Reset your password"
    page = await browser.get("/account", follow=True)
    assert "delivery-problem" not in page.text

    # It bounces again: suppressed again, and no second self-service retry.
    await bounce(browser, smtp.messages[-1])
    page = await browser.get("/account")
    assert "delivery-problem" in page.text and "Try this address again" not in page.text
    response = await browser.client.post("/api/v1/account/email/retry", json={})
    assert response.status_code == 409
    me = await (await browser.client.get("/api/v1/me")).get_json()
    assert me["delivery_problem"]["can_retry"] is False


async def test_a_new_address_is_tested_even_when_suppressed(
    app: Quart, sessionmaker: SessionMaker, smtp: MailSink, run_worker: Any
) -> None:
    browser = Browser(app)
    await browser.register()
    await run_worker()
    async with sessionmaker() as session, session.begin():
        session.add(Suppression(address_key="new@example.com", address="new@example.com",
                                cause="hard_bounce", reason="550 gone"))  # fmt: skip
    await browser.login()
    page = await browser.submit(
        "/account/email", {"new_email": "new@example.com", "password": "correct horse battery"}
    )
    assert page.status == 302
    await run_worker()
    assert "new@example.com" in [m.envelope_to[0] for m in smtp.messages]
    (link,) = await outbox(sessionmaker, "email_change_confirm")
    assert link.status == EmailStatus.SENT


async def test_mailgun_signatures_are_checked(
    app: Quart, sessionmaker: SessionMaker, smtp: MailSink, run_worker: Any
) -> None:
    browser = Browser(app)
    await browser.register(confirmed=False)
    await run_worker()
    (message,) = smtp.messages
    client = browser.client

    async def post(body: Any) -> int:
        response = await client.post("/hooks/mailgun", json=body)
        return int(response.status_code)

    assert await post(mailgun_event(message, key="not the key")) == 401
    assert await post(mailgun_event(message, age=3600)) == 401  # stale
    unsigned = mailgun_event(message)
    unsigned["signature"]["signature"] = ""
    assert await post(unsigned) == 401
    assert await post({"event-data": {}}) == 400
    assert await post([1, 2]) == 400
    for field, odd in [("signature", "é" * 64), ("token", "\ud800abc"), ("timestamp", "١٢٣")]:
        strange = mailgun_event(message)
        strange["signature"][field] = odd
        assert await post(strange) == 401, field
    raw = json.dumps(mailgun_event(message)).replace('"token": "', '"token": "\\ud800')
    lone = await client.post(
        "/hooks/mailgun", data=raw.encode(), headers={"content-type": "application/json"}
    )
    assert lone.status_code == 401
    not_json = await client.post(
        "/hooks/mailgun", data=b"\xff\xfe", headers={"content-type": "application/json"}
    )
    assert not_json.status_code == 400
    async with sessionmaker() as session:
        assert list(await session.scalars(select(Suppression))) == []

    delivered = mailgun_event(message, event="delivered")
    assert await post(delivered) == 200
    good = mailgun_event(message, event="complained")
    assert await post(good) == 200
    assert await post(good) == 401  # the same token twice: a replay
    async with sessionmaker() as session:
        (suppressed,) = await session.scalars(select(Suppression))
    assert (suppressed.address_key, suppressed.cause) == (ALICE, "complaint")


async def test_the_mailgun_hook_is_off_without_its_key(base_settings: Settings) -> None:
    from web import create_app

    app = create_app(base_settings)
    async with app.test_app():
        response = await app.test_client().post(
            "/hooks/mailgun", json={"signature": {}, "event-data": {}}
        )
    assert response.status_code == 404
