"""Fixtures that build real services: PostgreSQL (a throwaway database, migrated with
alembic), Redis (a database of its own, flushed between tests), an aiosmtpd SMTP server on
loopback, the Quart app with its startup hooks, and the arq worker."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import pytest
from alembic import command
from alembic.config import Config
from arq.connections import ArqRedis
from quart import Quart
from quart.typing import TestClientProtocol as Client
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from devstack.mailsink import MailSink, start_sink
from devstack.servers import Services, discover_services, drop_database
from shared.db import SessionMaker, create_engine, create_sessionmaker
from shared.jobs import create_queue
from shared.ratelimit import Limits
from shared.services.context import ServiceContext
from shared.settings import Settings, load_settings
from shared.tokens import Tokens
from tests.support import (  # noqa: F401 (settings_env re-exported)
    ROOT,
    RUNNING_APPS,
    TEST_SECRET_KEY,
    run_burst_worker,
    settings_env,
)

TABLES = (
    "emails", "texts", "sessions", "recovery_codes", "passkeys", "security_events", "users",
    "username_holds", "webhook_deliveries", "webhook_endpoints", "suppressions",
    "bounce_reports", "login_codes", "trusted_browsers", "oidc_signing_keys",
    "oidc_clients", "oidc_consents", "oidc_grants", "oidc_refresh_tokens",
    "oidc_logout_deliveries", "federated_identities",
)  # fmt: skip


# Fixtures that stand for a real server: a test that uses one (directly or through another
# fixture) is marked `services`; `make test-fast` runs the rest, in seconds.
SERVER_FIXTURES = frozenset({"services", "mail_sink", "database_url", "base_settings"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if SERVER_FIXTURES & set(getattr(item, "fixturenames", ())) or item.get_closest_marker(
            "slow"
        ):
            item.add_marker(pytest.mark.services)


# --- servers --------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def services() -> Iterator[Services]:
    found = discover_services(embedded_dir=ROOT / "var" / "test-services")
    yield found
    found.stop()


@pytest.fixture(scope="session")
def mail_sink() -> Iterator[MailSink]:
    sink = MailSink()
    controller = start_sink(sink)
    sink.port = controller.port  # type: ignore[attr-defined]
    yield sink
    controller.stop()


def alembic_config(database_url: str) -> Config:
    config = Config(str(ROOT / "alembic.ini"))
    config.attributes["database_url"] = database_url
    config.attributes["configure_logging"] = False
    return config


async def create_database(services: Services, name: str) -> None:
    connection = await asyncpg.connect(services.admin_dsn)
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()


@pytest.fixture(scope="session")
async def database_url(services: Services) -> AsyncIterator[str]:
    """A fresh database for this test run, at the migrations' head."""
    name = f"accounts_test_{os.getpid()}"
    await create_database(services, name)
    url = services.database_url(name)
    await asyncio.to_thread(command.upgrade, alembic_config(url), "head")
    yield url
    await drop_database(services.admin_dsn, name)


@pytest.fixture(scope="session")
def base_settings(services: Services, database_url: str, mail_sink: MailSink) -> Settings:
    run = uuid.uuid4().hex[:8]
    return load_settings(
        {},
        SECRET_KEY=TEST_SECRET_KEY,
        DATABASE_URL=database_url,
        REDIS_URL=services.redis_url,
        # This run's own keyspace in the shared Redis database (see forget_run_keys).
        QUEUE_NAME=f"test-{run}:queue",
        REDIS_KEY_PREFIX=f"test-{run}:",
        BASE_URL="http://localhost:8000",
        MAIL_SERVER="127.0.0.1",
        MAIL_PORT=mail_sink.port,  # type: ignore[attr-defined]
        MAIL_DEFAULT_SENDER="Accounts <noreply@accounts.test>",
        MAIL_RETRY_BASE_DELAY=0.05,
        MAIL_RETRY_MAX_DELAY=0.2,
        WORKER_POLL_DELAY=0.01,
        METRICS_PORT=0,  # the processes a test starts get free ports of their own (Stack)
        WORKER_METRICS_PORT=0,
    )


@pytest.fixture
def settings(base_settings: Settings) -> Settings:
    return base_settings


# --- database ----------------------------------------------------------------------------------
@pytest.fixture(scope="session")
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url, application_name="tests", pool_size=5)
    yield engine
    await engine.dispose()


@pytest.fixture(scope="session")
def sessionmaker(engine: AsyncEngine) -> SessionMaker:
    return create_sessionmaker(engine)


class AfterTheAnswer:
    """The use cases' ``defer`` for service tests: work deferred past the answer runs when
    the test calls :meth:`run`, one piece at a time (all on the test's one connection)."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, tuple[Any, ...], dict[str, Any]]] = []

    def __call__(self, func: Any, *args: Any, **kwargs: Any) -> None:
        self.calls.append((func, args, kwargs))

    async def run(self) -> None:
        while self.calls:
            func, args, kwargs = self.calls.pop(0)
            await func(*args, **kwargs)


@pytest.fixture
async def services_ctx(
    settings: Settings, engine: AsyncEngine, queue: ArqRedis
) -> AsyncIterator[ServiceContext]:
    """The use cases' context on one connection inside an outer transaction that is rolled
    back: a use case's units of work commit savepoints, and nothing survives the test. For
    service tests that need no web server; concurrency needs real connections (clean_db)."""
    async with engine.connect() as connection:
        transaction = await connection.begin()
        context = ServiceContext(
            settings=settings,
            engine=engine,
            sessionmaker=async_sessionmaker(
                bind=connection, expire_on_commit=False, join_transaction_mode="create_savepoint"
            ),
            redis=queue,
            tokens=Tokens(settings.SECRET_KEY.get_secret_value()),
            limits=Limits(queue, key_prefix=settings.REDIS_KEY_PREFIX),
            defer=AfterTheAnswer(),
        )
        try:
            yield context
        finally:
            await transaction.rollback()


@pytest.fixture
async def clean_db(engine: AsyncEngine) -> AsyncIterator[None]:
    """For tests whose processes must see committed rows: empty the tables afterwards."""
    yield
    async with engine.begin() as connection:
        await connection.execute(text(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE"))


# --- redis -------------------------------------------------------------------------------------
async def forget_run_keys(redis: ArqRedis, settings: Settings) -> None:
    """Delete this test run's keys only: its own prefix and queue (arq's job keys carry the
    queue name in the job id), so two runs can share one Redis database."""
    patterns = [f"{settings.REDIS_KEY_PREFIX}*", f"{settings.QUEUE_NAME}*"]
    patterns += [
        f"arq:{kind}:{settings.QUEUE_NAME}*" for kind in ("job", "in-progress", "retry", "result")
    ]
    for pattern in patterns:
        keys = [key async for key in redis.scan_iter(match=pattern, count=1000)]
        if keys:
            await redis.delete(*keys)


@pytest.fixture
async def queue(settings: Settings) -> AsyncIterator[ArqRedis]:
    redis = create_queue(settings.REDIS_URL)
    await forget_run_keys(redis, settings)
    yield redis
    await forget_run_keys(redis, settings)
    await redis.aclose()


# --- SMTP --------------------------------------------------------------------------------------
@pytest.fixture
def smtp(mail_sink: MailSink) -> Iterator[MailSink]:
    """The session's SMTP server, emptied and with no injected failures."""
    mail_sink.messages.clear()
    mail_sink.reply_queue.clear()
    mail_sink.refuse.clear()
    mail_sink.delay = 0.0
    yield mail_sink
    mail_sink.reply_queue.clear()
    mail_sink.refuse.clear()
    mail_sink.delay = 0.0


# --- app ---------------------------------------------------------------------------------------
@pytest.fixture
async def app(settings: Settings, clean_db: None, queue: ArqRedis) -> AsyncIterator[Quart]:
    """The app with its before_serving/after_serving hooks run (``test_app``)."""
    from web import create_app

    application = create_app(settings)
    async with application.test_app():
        RUNNING_APPS.append(application)
        try:
            yield application
        finally:
            RUNNING_APPS.remove(application)


@pytest.fixture
def client(app: Quart) -> Client:
    return app.test_client()


@pytest.fixture
def browser(app: Quart) -> Any:
    from tests.web.browser import Browser

    return Browser(app)


# --- worker ------------------------------------------------------------------------------------
@pytest.fixture
def run_worker(settings: Settings, queue: ArqRedis) -> Any:
    """``await run_worker()`` runs an in-process arq worker until the queue is empty (burst)."""

    async def run(**overrides: Any) -> None:
        await run_burst_worker(settings, **overrides)

    return run
