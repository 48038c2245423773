"""Telling an outage of a backing service from a bug."""

from __future__ import annotations


def is_unavailable(error: BaseException) -> bool:
    """Whether ``error`` means a backing service (PostgreSQL, Redis) could not be reached or
    dropped the connection, rather than a bug: callers answer "temporarily unavailable"."""
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError
    from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

    if isinstance(error, OSError | TimeoutError | RedisConnectionError | RedisTimeoutError):
        return True
    if isinstance(error, DBAPIError) and error.connection_invalidated:
        return True
    if isinstance(error, OperationalError | InterfaceError):
        return True
    cause = error.__cause__ or error.__context__
    return cause is not None and cause is not error and is_unavailable(cause)
