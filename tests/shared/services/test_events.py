"""Every operation writes exactly its security events, in its own transaction: nothing when
it fails, and nothing stored for addresses that have no account. Each event owes one webhook
delivery to each endpoint subscribed to its type, written in the same transaction."""

from __future__ import annotations

import pyotp
import pytest
from sqlalchemy import select

from shared.assurance import Method
from shared.models import SecurityEvent, WebhookDelivery
from shared.services import (
    account_data,
    email_change,
    events,
    passwords,
    sessions,
    signin,
    two_factor,
    webhooks,
)
from shared.services.context import ServiceContext
from shared.services.refusals import WrongPassword
from shared.services.signin import Attempt
from shared.tokens import Purpose
from tests.shared.services.helpers import PASSWORD, after_the_answer, register_alice
from tests.support import reset_payload

PWD = [Method.PASSWORD]

FIREFOX = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0"


async def kinds(ctx: ServiceContext) -> list[str]:
    async with ctx.reading() as session:
        return list(await session.scalars(select(SecurityEvent.kind).order_by(SecurityEvent.id)))


async def deliveries(ctx: ServiceContext) -> list[tuple[int, str]]:
    async with ctx.reading() as session:
        rows = await session.execute(
            select(WebhookDelivery.endpoint_id, WebhookDelivery.event_type).order_by(
                WebhookDelivery.id
            )
        )
        return [(endpoint, kind) for endpoint, kind in rows.all()]


async def subscribe(ctx: ServiceContext) -> tuple[int, int]:
    """An endpoint for every event type and one for password changes only."""
    every = await webhooks.add_endpoint(ctx, "https://hooks.example.com/all", ["*"])
    some = await webhooks.add_endpoint(
        ctx, "https://hooks.example.com/pw", ["user.password_changed"]
    )
    return every.id, some.id


def owed(every: int, some: int, kinds: list[str]) -> list[tuple[int, str]]:
    expected: list[tuple[int, str]] = []
    for kind in kinds:
        expected.append((every, kind))
        if kind == "user.password_changed":
            expected.append((some, kind))
    return expected


@pytest.fixture(autouse=True)
def origin() -> None:
    events.set_origin("192.0.2.9", FIREFOX)


async def test_the_account_lifecycle_writes_its_events(services_ctx: ServiceContext) -> None:
    ctx = services_ctx
    every, some = await subscribe(ctx)
    alice = await register_alice(ctx, confirmed=True)
    assert await kinds(ctx) == ["user.registered", "user.confirmed"]

    await signin.login(ctx, "alice@example.com", "wrong", Attempt(client="a"))
    await signin.login(
        ctx, "nobody@example.com", "wrong", Attempt(client="a")
    )  # no account: nothing
    await after_the_answer(ctx)
    outcome = await signin.login(ctx, "alice@example.com", PASSWORD, Attempt(client="a"))
    assert outcome.user is not None
    assert (await kinds(ctx))[2:] == ["user.login_failed", "user.login_succeeded"]

    start = len(await kinds(ctx))
    with pytest.raises(WrongPassword):  # fails: nothing recorded
        await passwords.change_password(ctx, alice.id, "wrong", "a new secret 1")
    await passwords.change_password(ctx, alice.id, PASSWORD, "a new secret 1")
    here = await sessions.start(
        ctx, alice, lifetime=60, client="a", user_agent=FIREFOX, methods=PWD
    )
    other = await sessions.start(ctx, alice, lifetime=60, client="b", user_agent="", methods=PWD)
    listed = {s.id: s.public_id for s in await sessions.active(ctx, alice.id)}
    await sessions.revoke(ctx, alice.id, listed[other], by=here)
    await sessions.revoke_others(ctx, alice.id, keep=here)
    await passwords.request_reset(ctx, "alice@example.com")
    await passwords.request_reset(ctx, "nobody@example.com")
    await after_the_answer(ctx)
    await email_change.request_change(ctx, alice.id, "new@example.com", "a new secret 1")
    await after_the_answer(ctx)
    assert (await kinds(ctx))[start:] == [
        "user.password_changed",
        "session.revoked",
        "session.revoked_others",
        "user.reset_requested",
        "user.email_change_requested",
    ]

    start = len(await kinds(ctx))
    async with ctx.reading() as session:
        from shared.models import User

        version = (await session.get(User, alice.id)).session_version  # type: ignore[union-attr]
    not_me = ctx.tokens.dumps(Purpose.NOT_ME, {"uid": alice.id, "sv": version})
    assert await passwords.disown_change(ctx, not_me)
    async with ctx.reading() as session:
        fresh = await session.get(User, alice.id)
    assert fresh is not None
    reset = ctx.tokens.dumps(
        Purpose.RESET_PASSWORD,
        reset_payload(fresh, ctx.secret),
    )
    assert await passwords.reset_password(ctx, reset, "the owner's new secret")
    assert (await kinds(ctx))[start:] == [
        "user.not_me",
        "user.email_change_cancelled",
        "user.password_reset",
    ]

    async with ctx.reading() as session:
        stored = list(await session.scalars(select(SecurityEvent).order_by(SecurityEvent.id)))
    assert {(e.client_address, e.device) for e in stored} == {("192.0.2.9", "Firefox on Windows")}
    secrets = (PASSWORD, "a new secret 1", "the owner's new secret", not_me, reset)
    assert not any(secret in str(e.payload) for e in stored for secret in secrets)
    # Exactly one delivery per event and subscribed endpoint, none for what failed.
    assert await deliveries(ctx) == owed(every, some, await kinds(ctx))


async def test_two_factor_and_deletion_write_their_events(services_ctx: ServiceContext) -> None:
    ctx = services_ctx
    every, some = await subscribe(ctx)
    alice = await register_alice(ctx, confirmed=True)
    history = await kinds(ctx)
    enrolment = await two_factor.begin_enrolment(ctx, alice.id)
    assert enrolment is not None
    code = pyotp.TOTP(enrolment.secret).now()
    result = await two_factor.confirm_enrolment(ctx, alice.id, code, PASSWORD)
    await two_factor.regenerate_codes(ctx, alice.id, PASSWORD, result.recovery_codes[0])
    assert (await kinds(ctx))[2:] == [
        "two_factor.enabled",
        "two_factor.recovery_code_used",
        "two_factor.recovery_codes_regenerated",
    ]
    await account_data.delete_account(ctx, alice.id, PASSWORD, "alice")
    # The account's own history went with it; the deletion keeps only the number.
    assert await kinds(ctx) == ["user.deleted"]
    async with ctx.reading() as session:
        (deleted,) = await session.scalars(select(SecurityEvent))
    assert deleted.user_id is None and deleted.payload == {"account_id": alice.id}
    # What was delivered (or is owed) to subscribers stays: the deletion is news to them too.
    history += ["two_factor.enabled", "two_factor.recovery_code_used",
                "two_factor.recovery_codes_regenerated", "user.deleted"]  # fmt: skip
    assert await deliveries(ctx) == owed(every, some, history)
    async with ctx.reading() as session:
        body = await session.scalar(
            select(WebhookDelivery.body).where(WebhookDelivery.event_type == "user.deleted")
        )
    assert body is not None and f'"user_id":{alice.id}' in body
