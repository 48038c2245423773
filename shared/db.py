"""Engine and session factory shared by the web process, the worker and the CLI.

Each process builds one engine (a connection pool) at start-up and disposes of it at shutdown.
Sessions are short: one per request or job, committed at that boundary by the caller, never by
service functions.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import MetaData, Table, bindparam, event
from sqlalchemy.dialects.postgresql import Insert, insert
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.ext.asyncio import create_async_engine as _create_async_engine
from sqlalchemy.orm import DeclarativeBase

SessionMaker = async_sessionmaker[AsyncSession]


class Base(DeclarativeBase):
    """Declarative base for every table of the service.

    A naming convention gives every constraint a predictable name, so migrations can drop or
    alter them without looking the generated names up.
    """

    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(column_0_label)s",
            "uq": "uq_%(table_name)s_%(column_0_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


def insert_bound(table: Table, *columns: str) -> Insert:
    """An INSERT into ``table`` whose ``columns`` each take the bound parameter of the same
    name, built once (at import) and run with a dict of values. On the hot paths building a
    statement cost more CPU than running it (profiled on resets and registrations)."""
    return insert(table).values({column: bindparam(column) for column in columns})


def create_engine(
    database_url: str,
    *,
    application_name: str,
    pool_size: int = 10,
    pool_timeout: float = 30.0,
    autocommit: bool = False,
    pre_ping: bool = True,
) -> AsyncEngine:
    """An asyncpg-backed engine whose connections say which process opened them.

    ``application_name`` shows up in ``pg_stat_activity``, which is the first thing an operator
    looks at when the database is busy.

    ``autocommit`` and ``pre_ping=False`` are for a hot path of single statements that are
    each atomic on their own (the worker's delivery claims): no BEGIN/COMMIT round trips, and
    no liveness check per checkout. Such a caller must retry once when a statement fails on
    a connection the server had closed (see ``worker.mail.store``); the pool then discards every
    connection older than the failure.

    ``pool_size`` is all the connections it opens (no overflow: the budget in the settings,
    DATABASE_CONNECTIONS, is a promise); a checkout waits up to ``pool_timeout`` seconds for
    one to be free.
    """
    options: dict[str, Any] = {"isolation_level": "AUTOCOMMIT"} if autocommit else {}
    engine = _create_async_engine(
        database_url,
        pool_size=pool_size,
        max_overflow=0,
        pool_timeout=pool_timeout,
        hide_parameters=True,  # no emails or hashes in error messages, logs or admin alerts
        connect_args={"server_settings": {"application_name": application_name}},
        **options,
    )
    if pre_ping:
        # Survive a PostgreSQL restart without failing the next request.
        event.listen(engine.sync_engine.pool, "checkout", _refuse_closed)
    return engine


def _refuse_closed(dbapi_connection: Any, record: Any, proxy: Any) -> None:
    """A liveness check at checkout that costs no round trip (SQLAlchemy's pool_pre_ping
    sends one per checkout: a sixth of the web's CPU per reset request went to it).

    asyncpg's socket is always being read by the event loop, so when the server ends a
    connection (a restart, ``pg_terminate_backend``, an idle timeout) the connection knows
    it is closed before it is next checked out; DisconnectionError makes the pool throw it
    away and hand out another (it retries up to three times, then connects afresh)."""
    if record.driver_connection.is_closed():
        raise DisconnectionError("the server closed this pooled connection")


def create_sessionmaker(engine: AsyncEngine) -> SessionMaker:
    # expire_on_commit=False: objects stay readable after commit (templates render them then).
    return async_sessionmaker(engine, expire_on_commit=False)
