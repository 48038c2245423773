"""Telling an outage of a backing service from a bug."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")


# PostgreSQL's classes of "not now": connection exceptions (08), insufficient resources (53:
# "too many clients already", "too many connections for role"), and a server shutting
# down or starting up (57P01-57P03).
UNAVAILABLE_SQLSTATES = ("08", "53", "57P01", "57P02", "57P03")


def is_unavailable(error: BaseException) -> bool:
    """Whether ``error`` means a backing service (PostgreSQL, Redis) could not be reached or
    dropped the connection, rather than a bug: callers answer "temporarily unavailable"."""
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError
    from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
    from sqlalchemy.exc import TimeoutError as PoolTimeoutError

    if isinstance(error, OSError | TimeoutError | RedisConnectionError | RedisTimeoutError):
        return True
    if isinstance(error, PoolTimeoutError):  # every connection of the budget busy: a wait
        return True
    if str(getattr(error, "sqlstate", "") or "").startswith(UNAVAILABLE_SQLSTATES):
        return True
    if isinstance(error, DBAPIError) and error.connection_invalidated:
        return True
    if isinstance(error, OperationalError | InterfaceError):
        return True
    cause = error.__cause__ or error.__context__
    return cause is not None and cause is not error and is_unavailable(cause)


def which_service(error: BaseException) -> str:
    """The backing service an unavailability error is about, in words for a log line."""
    from redis.exceptions import RedisError
    from sqlalchemy.exc import SQLAlchemyError

    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, SQLAlchemyError) or type(seen).__module__.startswith("asyncpg"):
            return "PostgreSQL"
        if isinstance(seen, RedisError):
            return "Redis"
        nxt = seen.__cause__ or seen.__context__
        seen = nxt if nxt is not seen else None
    # A bare OSError (a refused connect): the driver it came through says whose it was.
    traceback = error.__traceback__
    while traceback is not None:
        module = str(traceback.tb_frame.f_globals.get("__name__", ""))
        if module.startswith(("asyncpg", "sqlalchemy")):
            return "PostgreSQL"
        if module.startswith("redis"):
            return "Redis"
        traceback = traceback.tb_next
    return "a backing service"


class OutageLog:
    """One log line when a backing service stops answering and one when it is back, instead
    of a line (or a traceback) per request or per sweep in between."""

    def __init__(self, logger: logging.Logger, what: str) -> None:
        self.logger = logger
        self.what = what  # "answering 503", "deliveries wait"
        self.since: float | None = None
        self.service = ""
        self.count = 0

    def down(self, error: BaseException) -> None:
        self.count += 1
        if self.since is None:
            self.since = time.monotonic()
            self.service = which_service(error)
            self.logger.warning(
                "%s is unavailable (%s: %s); %s until it is back",
                self.service,
                type(error).__name__,
                str(error).splitlines()[0][:200] if str(error) else "",
                self.what,
            )

    def quiet(
        self, job: Callable[P, Coroutine[Any, Any, R]]
    ) -> Callable[P, Coroutine[Any, Any, R | None]]:
        """Decorate a periodic job: during an outage it notes it and returns None (the
        next run tries again) instead of raising a traceback into the log."""

        @functools.wraps(job)
        async def run(*args: P.args, **kwargs: P.kwargs) -> R | None:
            try:
                result = await job(*args, **kwargs)
            except Exception as error:
                if not is_unavailable(error):
                    raise
                self.down(error)
                return None
            self.up()
            return result

        return run

    def up(self) -> None:
        if self.since is None:
            return
        self.logger.warning(
            "%s is back after %.0f s (%d refused meanwhile)",
            self.service,
            time.monotonic() - self.since,
            self.count,
        )
        self.since, self.count = None, 0
