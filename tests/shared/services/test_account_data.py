"""Exporting and deleting an account, as use cases: the confirmation, the proof, and what
goes with the account."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from shared.models import Email, User
from shared.services import account_data, sessions
from shared.services.context import ServiceContext
from shared.services.refusals import (
    ReauthenticationRequired,
    WrongConfirmation,
    WrongPassword,
)
from tests.shared.services.helpers import (
    PASSWORD,
    register_alice,
)


async def test_deleting_needs_the_username_and_the_password(services_ctx: ServiceContext) -> None:
    ctx = services_ctx
    alice = await register_alice(ctx, confirmed=True)
    here = await sessions.start(ctx, alice, lifetime=60, client="a", user_agent="", methods=[])
    exported = await account_data.export_account(ctx, alice.id, sign_in=here)
    assert exported["profile"]["username"] == "alice"
    with pytest.raises(ReauthenticationRequired):  # no sign-in, or an old one: no export
        await account_data.export_account(ctx, alice.id, sign_in=None)
    with pytest.raises(WrongConfirmation) as refused:
        await account_data.delete_account(ctx, alice.id, PASSWORD, "Alice ")
    assert refused.value.field == "username"
    with pytest.raises(WrongPassword):
        await account_data.delete_account(ctx, alice.id, "no", "alice")
    await account_data.delete_account(ctx, alice.id, PASSWORD, "alice")
    async with ctx.reading() as session:
        assert await session.scalar(select(func.count()).select_from(User)) == 0
        kinds = list(await session.scalars(select(Email.kind)))
    assert kinds == ["account_deleted"]  # the goodbye; every email about the account is gone


async def test_deleting_an_account_forgets_what_was_said_about_its_address(
    services_ctx: ServiceContext,
) -> None:
    """The suppression, the bounce reports and the webhook deliveries already made about
    the account go with it: the address's next holder gets a confirmation."""
    from shared.models import BounceReport, Suppression, WebhookDelivery, WebhookEndpoint
    from shared.services import account_data, bounces

    ctx = services_ctx
    alice = await register_alice(ctx, confirmed=True)
    async with ctx.unit_of_work() as session:
        await bounces.suppress(session, alice.email, bounces.Cause.HARD_BOUNCE, "550 5.1.1")
        session.add(
            BounceReport(source="smtp", kind="dsn", outcome="hard_bounce", detail="550",
                         address_key="alice@example.com")
        )  # fmt: skip
        hook = WebhookEndpoint(url="https://hooks.example.com/", event_types=["*"],
                               secret_encrypted="sealed")  # fmt: skip
        session.add(hook)
        await session.flush()
        session.add_all(
            WebhookDelivery(endpoint_id=hook.id, message_id=f"msg_{n}", event_type="user.x",
                            body='{"data": {"email": "alice@example.com"}}', status=status,
                            user_id=alice.id)
            for n, status in enumerate(("sent", "failed", "pending"))
        )  # fmt: skip
    await account_data.delete_account(ctx, alice.id, PASSWORD, "alice")
    async with ctx.reading() as session:
        assert await session.scalar(select(func.count()).select_from(Suppression)) == 0
        assert await session.scalar(select(func.count()).select_from(BounceReport)) == 0
        left = (
            await session.execute(
                select(WebhookDelivery.event_type, WebhookDelivery.status, WebhookDelivery.user_id)
            )
        ).all()
    # What is still owed goes out (then retention takes it); the deletion's own notice too.
    assert sorted(left, key=str) == [
        ("user.deleted", "pending", None),
        ("user.x", "pending", alice.id),
    ]
