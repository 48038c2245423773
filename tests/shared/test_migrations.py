"""Migrations upgrade an empty database, downgrade to nothing, and match the models."""

from __future__ import annotations

import asyncio

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

from devstack.servers import Services, drop_database
from shared.db import Base, create_engine
from tests.conftest import alembic_config, create_database

ALL_TABLES = {
    "users", "texts", "emails", "username_holds", "sessions", "recovery_codes", "passkeys",
    "security_events", "webhook_endpoints", "webhook_deliveries", "suppressions",
    "bounce_reports", "login_codes", "trusted_browsers", "oidc_signing_keys",
    "oidc_clients", "oidc_consents", "oidc_grants", "oidc_refresh_tokens",
    "oidc_logout_deliveries", "federated_identities",
}  # fmt: skip


async def test_upgrade_from_empty_downgrade_and_upgrade_again(services: Services) -> None:
    name = "accounts_migrations_check"
    await create_database(services, name)
    url = services.database_url(name)
    engine = create_engine(url, application_name="tests", pool_size=1)
    try:

        async def tables() -> set[str]:
            async with engine.connect() as connection:
                names = await connection.run_sync(lambda c: inspect(c).get_table_names())
            return set(names) - {"alembic_version"}

        config = alembic_config(url)
        await asyncio.to_thread(command.upgrade, config, "head")
        assert await tables() == ALL_TABLES

        # The models and the migrations describe the same schema.
        async with engine.connect() as connection:
            diff = await connection.run_sync(
                lambda c: compare_metadata(
                    MigrationContext.configure(c, opts={"compare_server_default": True}),
                    Base.metadata,
                )
            )
        assert diff == []

        # 0004 re-keys existing addresses with the routing-faithful key.
        await asyncio.to_thread(command.downgrade, config, "0003")
        async with engine.begin() as connection:
            await connection.execute(
                text(
                    "INSERT INTO users (username, username_key, email, email_key, password_hash)"
                    " VALUES ('k', 'k', 'Ka@Straße.de', 'ka@strasse.de', 'x')"
                )
            )
        await asyncio.to_thread(command.upgrade, config, "0004")
        async with engine.begin() as connection:
            key = await connection.scalar(text("SELECT email_key FROM users"))
            await connection.execute(text("DELETE FROM users"))
        assert key == "ka@xn--strae-oqa.de"

        await asyncio.to_thread(command.downgrade, config, "base")
        assert await tables() == set()
        async with engine.connect() as connection:
            version = await connection.scalar(text("SELECT count(*) FROM alembic_version"))
        assert version == 0

        await asyncio.to_thread(command.upgrade, config, "head")
        assert await tables() == ALL_TABLES
    finally:
        await engine.dispose()
        await drop_database(services.admin_dsn, name)
