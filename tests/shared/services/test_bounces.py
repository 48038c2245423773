"""Bounce reports and the suppression list, as use cases."""

from __future__ import annotations

from dataclasses import replace

from sqlalchemy import select, update

from shared.jobs import EmailKind
from shared.models import User
from shared.services import accounts
from shared.services.context import ServiceContext
from tests.shared.services.helpers import (
    PASSWORD,
    after_the_answer,
    register_alice,
)


async def test_a_report_about_a_former_holders_mail_does_not_suppress_the_next(
    services_ctx: ServiceContext,
) -> None:
    """Alice's old address is Bob's now: a bounce report about mail sent to Alice there
    (VERP addresses stay valid for 30 days) is recorded, but stops nothing for Bob."""
    from shared.jobs import PasswordChanged
    from shared.outbox import add_email
    from shared.services import bounces

    ctx = services_ctx
    alice = await register_alice(ctx, confirmed=True)
    async with ctx.unit_of_work() as session:
        old_mail = await add_email(
            session,
            EmailKind.PASSWORD_CHANGED,
            alice.email,
            PasswordChanged(user_id=alice.id, session_version=1),
            user_id=alice.id,
        )
        await session.execute(
            update(User)
            .where(User.id == alice.id)
            .values(email="alice@new.example", email_key="alice@new.example")
        )
    await accounts.register(ctx, "bob", "alice@example.com", PASSWORD)
    await after_the_answer(ctx)
    report = bounces.Report("smtp", "dsn", bounces.Outcome.HARD_BOUNCE, old_mail, "550 5.1.1")
    assert await bounces.record_report(ctx, report) is bounces.Outcome.HARD_BOUNCE
    async with ctx.reading() as session:
        assert await bounces.active_suppression(session, "alice@example.com") is None
        bob = await session.scalar(select(User).where(User.username == "bob"))
    assert bob is not None
    async with ctx.unit_of_work() as session:  # the same about Bob's own mail does suppress
        bobs = await add_email(
            session,
            EmailKind.PASSWORD_CHANGED,
            bob.email,
            PasswordChanged(user_id=bob.id, session_version=1),
            user_id=bob.id,
        )
    await bounces.record_report(ctx, replace(report, email_id=bobs))
    async with ctx.reading() as session:
        assert await bounces.active_suppression(session, "alice@example.com") is not None
