"""The operators' use cases: the test email, an admin alert for an unexpected error, the
connection budget."""

from __future__ import annotations

from sqlalchemy import select

from shared.models import Email
from shared.services import operations
from shared.services.context import ServiceContext


async def test_a_test_email_and_an_error_alert_are_queued(services_ctx: ServiceContext) -> None:
    ctx = services_ctx
    await operations.send_test_email(ctx, "ops@example.com")
    settings = ctx.settings.with_values(ADMINS=["ops@example.com"])
    alerting = ServiceContext(
        settings=settings,
        engine=ctx.engine,
        sessionmaker=ctx.sessionmaker,
        redis=ctx.redis,
        tokens=ctx.tokens,
        limits=ctx.limits,
        defer=ctx.defer,
    )
    for _ in range(2):  # the same error twice within the window: one alert
        await operations.alert_admins_of(
            alerting, key="web:KeyError:x", summary="KeyError on GET /x", details="trace"
        )
    async with ctx.reading() as session:
        rows = (await session.execute(select(Email.kind, Email.recipient))).all()
    assert sorted(rows) == [("admin_alert", "ops@example.com"), ("test", "ops@example.com")]


async def test_the_connection_budget_reads_the_server(services_ctx: ServiceContext) -> None:
    budget = await operations.connection_budget(services_ctx)
    assert budget.max_connections > budget.reserved >= 0
    assert 0 < budget.in_use <= budget.max_connections
    assert budget.room() == budget.max_connections - budget.reserved - budget.in_use
