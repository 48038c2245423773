"""The worker's `purge` cron: outbox rows past retention, accounts never confirmed within
their window, ended sign-ins and ended username holds go; everything else stays."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from arq.connections import ArqRedis
from sqlalchemy import func, insert, select, update

from shared.db import SessionMaker
from shared.jobs import EmailKind, TestEmail
from shared.models import (
    BounceReport,
    Email,
    EmailStatus,
    SecurityEvent,
    SignInSession,
    Suppression,
    User,
    UsernameHold,
    WebhookDelivery,
    WebhookEndpoint,
)
from shared.outbox import add_email
from shared.settings import Settings
from worker.bootstrap import worker_options
from worker.mail.delivery import purge

pytestmark = pytest.mark.usefixtures("clean_db")


async def test_purge_forgets_only_what_is_past_its_time(
    settings: Settings, queue: ArqRedis, sessionmaker: SessionMaker
) -> None:
    days = timedelta(days=1)
    async with sessionmaker() as session, session.begin():
        for n, confirmed in enumerate((True, False, False)):
            session.add(
                User(username=f"u{n}", username_key=f"u{n}", email=f"u{n}@example.com",
                     email_key=f"u{n}@example.com", password_hash="x",
                     confirmed_at=func.now() if confirmed else None)
            )  # fmt: skip
        await session.flush()
        # u1 registered long ago and never confirmed; u2 just now.
        await session.execute(
            update(User).where(User.username == "u1").values(created_at=func.now() - 2 * days)
        )
        for status, age in [
            (EmailStatus.SENT, 31),
            (EmailStatus.SENT, 29),
            (EmailStatus.SKIPPED, 31),
            (EmailStatus.FAILED, 31),
            (EmailStatus.FAILED, 91),
            (EmailStatus.PENDING, 91),
        ]:
            email_id = await add_email(session, EmailKind.TEST, "x@example.com", TestEmail())
            await session.execute(
                update(Email)
                .where(Email.id == email_id)
                .values(status=status, created_at=func.now() - age * days)
            )
        u0 = await session.scalar(select(User.id).where(User.username == "u0"))
        for name, expires, revoked in [
            ("live", days, None),
            ("expired", -days, None),
            ("revoked", days, func.now()),
        ]:
            session.add(
                SignInSession(id=name * 4, public_id=name, user_id=u0, client_address="a",
                              user_agent="", device="d", expires_at=func.now() + expires,
                              revoked_at=revoked)
            )  # fmt: skip
        session.add_all(
            SecurityEvent(user_id=u0, kind=kind, client_address="a", device="d", payload={},
                          created_at=func.now() - age * days)
            for kind, age in (("user.old", 366), ("user.recent", 364))
        )  # fmt: skip
        hook = WebhookEndpoint(url="https://hooks.example.com/", event_types=["*"],
                               secret_encrypted="sealed")  # fmt: skip
        session.add(hook)
        await session.flush()
        session.add_all(
            WebhookDelivery(endpoint_id=hook.id, message_id=f"msg_{n}", event_type="user.x",
                            body="{}", status=status, created_at=func.now() - age * days)
            for n, (status, age) in enumerate([
                (EmailStatus.SENT, 31), (EmailStatus.SENT, 29), (EmailStatus.FAILED, 31),
                (EmailStatus.FAILED, 91), (EmailStatus.PENDING, 91),
            ])
        )  # fmt: skip
        session.add_all(
            BounceReport(source="smtp", kind="dsn", outcome="unmatched", detail=f"{age} days",
                         raw=b"x", received_at=func.now() - age * days)
            for age in (31, 29)
        )  # fmt: skip
        session.add_all(
            Suppression(address_key=f"{age}@example.com", address=f"{age}@example.com",
                        cause="hard_bounce", reason="550", updated_at=func.now() - age * days)
            for age in (366, 364)
        )  # fmt: skip
        await session.execute(
            insert(UsernameHold).values(
                [
                    {
                        "username_key": "ended",
                        "email_key": "e@x.org",
                        "expires_at": func.now() - days,
                    },
                    {
                        "username_key": "held",
                        "email_key": "h@x.org",
                        "expires_at": func.now() + days,
                    },
                ]
            )
        )

    ctx: dict[str, Any] = {"redis": queue}
    options = worker_options(settings)
    await options["on_startup"](ctx)
    try:
        report = await purge(ctx)
    finally:
        await options["on_shutdown"](ctx)

    async with sessionmaker() as session:
        usernames = set(await session.scalars(select(User.username)))
        emails = sorted(
            (status, int(age))
            for status, age in (
                await session.execute(
                    select(Email.status, func.extract("day", func.now() - Email.created_at))
                )
            ).all()
        )
        holds = set(await session.scalars(select(UsernameHold.username_key)))
        sign_ins = set(await session.scalars(select(SignInSession.public_id)))
        kept_events = set(await session.scalars(select(SecurityEvent.kind)))
        deliveries = sorted(
            (status, int(age))
            for status, age in (
                await session.execute(
                    select(
                        WebhookDelivery.status,
                        func.extract("day", func.now() - WebhookDelivery.created_at),
                    )
                )
            ).all()
        )
    assert usernames == {"u0", "u2"}
    assert emails == [("failed", 31), ("pending", 91), ("sent", 29)]
    assert holds == {"held"}
    assert sign_ins == {"live"}
    assert kept_events == {"user.recent"}
    assert deliveries == [("failed", 31), ("pending", 91), ("sent", 29)]
    async with sessionmaker() as session:
        reports = list(await session.scalars(select(BounceReport.detail)))
        suppressed = list(await session.scalars(select(Suppression.address_key)))
    assert reports == ["29 days"]
    assert suppressed == ["364@example.com"]
    assert "'unconfirmed accounts': 1" in report
