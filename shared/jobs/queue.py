"""The transport: announcing emails on the due set (and its doorbell), taking them, arq's
jobs for webhooks, and the Redis connection both processes use."""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import TYPE_CHECKING

from shared.jobs.names import (
    DELIVER_LOGOUT,
    DELIVER_WEBHOOK,
    email_job_id,
    emails_due_key,
    logout_job_id,
    webhook_job_id,
)
from shared.jobs.payloads import PRIORITY_HEAD_START

if TYPE_CHECKING:
    from arq.connections import ArqRedis, RedisSettings
    from redis.asyncio import Redis
    from redis.commands.core import AsyncScript

# --- enqueueing -----------------------------------------------------------------------------
# arq's enqueue_job takes three round trips (WATCH, EXISTS, then MULTI/SET/ZADD/EXEC); this
# script does the same atomically in one, with arq's own keys and job encoding, so the worker
# runs the job exactly as if arq had queued it (webhook deliveries travel as arq jobs).
_ENQUEUE = """
if redis.call('EXISTS', KEYS[1], KEYS[2]) > 0 then return 0 end
redis.call('PSETEX', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[4])
return 1
"""


async def enqueue(
    redis: ArqRedis, function: str, arg: int, *, job_id: str, queue_name: str
) -> str | None:
    """Queue ``function(arg)`` under ``job_id`` unless a job or a result with that id exists
    (arq's semantics); returns the id, or None if it was already there."""
    from arq.constants import job_key_prefix, result_key_prefix
    from arq.jobs import serialize_job

    now = _now_ms()
    job = serialize_job(function, (arg,), {}, None, now, serializer=redis.job_serializer)
    keys = [job_key_prefix + job_id, result_key_prefix + job_id, queue_name]
    args: list[bytes | str | int] = [redis.expires_extra_ms, job, now, job_id]
    added = await _script(redis, _ENQUEUE)(keys=keys, args=args)
    return job_id if added else None


def _now_ms() -> int:
    """The clock arq scores its queue by (ms since the epoch, this machine's clock): the due
    set uses the same, so its scores and arq's mean the same thing."""
    from arq.utils import timestamp_ms

    return timestamp_ms()


_SCRIPTS: weakref.WeakKeyDictionary[Redis, dict[str, AsyncScript]] = weakref.WeakKeyDictionary()


def _script(redis: Redis, source: str) -> AsyncScript:
    """The script registered with this client (sent as EVALSHA after its first use)."""
    scripts = _SCRIPTS.setdefault(redis, {})
    script = scripts.get(source)
    if script is None:
        script = scripts[source] = redis.register_script(source)
    return script


def emails_doorbell(queue_name: str) -> str:
    """The channel an announcement rings: idle workers wake at once instead of at their
    next poll (which still finds whatever a missed ring left behind)."""
    return f"{queue_name}:emails-doorbell"


# ZADD NX each (score, id) pair, and ring the doorbell once if any row was not already
# waiting: one round trip for a whole commit's emails. Returns the ids added.
_ANNOUNCE = """
local added = {}
for i = 2, #ARGV, 2 do
  if redis.call('ZADD', KEYS[1], 'NX', ARGV[i], ARGV[i + 1]) == 1 then
    added[#added + 1] = ARGV[i + 1]
  end
end
if #added > 0 then redis.call('PUBLISH', ARGV[1], added[1]) end
return added
"""


async def enqueue_send_emails(
    redis: Redis, emails: Sequence[tuple[int, bool]], *, queue_name: str
) -> list[str]:
    """Announce outbox rows, given as (id, priority), to the worker (``ZADD NX`` each and one
    ring of the doorbell, in one script call); returns the delivery names of those added. A
    row already waiting keeps its place in the line. A priority row goes ahead of the others
    waiting (see :data:`PRIORITY_HEAD_START`)."""
    if not emails:
        return []
    now = _now_ms()
    args: list[int | str] = [emails_doorbell(queue_name)]
    for email_id, priority in emails:
        args += [now - (PRIORITY_HEAD_START * 1000 if priority else 0), str(email_id)]
    added = await _script(redis, _ANNOUNCE)(keys=[emails_due_key(queue_name)], args=args)
    return [email_job_id(int(member), queue_name) for member in added]


async def enqueue_send_email(
    redis: Redis, email_id: int, *, queue_name: str, priority: bool = False
) -> str | None:
    """Announce one outbox row (see :func:`enqueue_send_emails`); its delivery's name, or
    None if it was already waiting."""
    added = await enqueue_send_emails(redis, [(email_id, priority)], queue_name=queue_name)
    return added[0] if added else None


async def defer_email(redis: Redis, email_id: int, delay: float, *, queue_name: str) -> None:
    """Put an outbox row back in line, due ``delay`` seconds from now (a retry, or a message
    the outbound budget holds back). Moves it if it is already waiting."""
    due = _now_ms() + int(delay * 1000)
    await redis.zadd(emails_due_key(queue_name), {str(email_id): due})


# Take up to ARGV[2] members due by ARGV[1] (ms), oldest first, and remove them: atomic, so two
# worker processes never take the same id from one announcement.
_TAKE_DUE = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
if #ids > 0 then redis.call('ZREM', KEYS[1], unpack(ids)) end
return ids
"""


async def take_due_emails(redis: Redis, *, queue_name: str, limit: int) -> list[int]:
    """Take up to ``limit`` outbox ids whose time has come off the due set (one round trip).
    A taken id is the taker's to deliver; if it dies first, the sweeper puts the id back."""
    ids = await _script(redis, _TAKE_DUE)(
        keys=[emails_due_key(queue_name)], args=[_now_ms(), limit]
    )
    return [int(member) for member in ids]


async def enqueue_deliver_webhook(
    redis: ArqRedis, delivery_id: int, *, queue_name: str
) -> str | None:
    """Put a webhook delivery job on the queue; returns the job id, or None if already queued."""
    return await enqueue(
        redis,
        DELIVER_WEBHOOK,
        delivery_id,
        job_id=webhook_job_id(delivery_id, queue_name),
        queue_name=queue_name,
    )


async def enqueue_deliver_logout(
    redis: ArqRedis, delivery_id: int, *, queue_name: str
) -> str | None:
    """Put a back-channel logout delivery job on the queue (None if already queued)."""
    return await enqueue(
        redis,
        DELIVER_LOGOUT,
        delivery_id,
        job_id=logout_job_id(delivery_id, queue_name),
        queue_name=queue_name,
    )


# --- connecting -------------------------------------------------------------------------------
def redis_settings(url: str, *, retries: int, max_backoff: float = 2.0) -> RedisSettings:
    """arq connection settings with redis-py retries on connection errors and timeouts.

    arq pins redis < 6, whose client does not retry by default, and arq's worker loop ends on
    the first runtime connection error; with retries a Redis restart is ridden out.
    """
    from arq.connections import RedisSettings
    from redis.asyncio.retry import Retry
    from redis.backoff import ExponentialBackoff
    from redis.exceptions import ConnectionError, TimeoutError

    settings = RedisSettings.from_dsn(url)
    settings.conn_timeout = 2
    settings.conn_retries = retries
    settings.conn_retry_delay = 1
    settings.retry_on_timeout = True
    settings.retry_on_error = [ConnectionError, TimeoutError, OSError]
    settings.retry = Retry(ExponentialBackoff(cap=max_backoff, base=0.05), retries)
    return settings


def create_queue(url: str, *, retries: int = 1) -> ArqRedis:
    """An arq Redis client for enqueueing (the web process and the CLI).

    It connects lazily, so a process can start while Redis is away and use it once it is
    back. Few, quick retries: a request must not hang on Redis; the outbox covers the gap.
    """
    from arq.connections import ArqRedis
    from redis.asyncio.retry import Retry
    from redis.backoff import ExponentialBackoff
    from redis.exceptions import ConnectionError, TimeoutError

    client: ArqRedis = ArqRedis.from_url(
        url,
        socket_connect_timeout=1,
        socket_timeout=2,
        retry=Retry(ExponentialBackoff(cap=0.2, base=0.05), retries),
        retry_on_error=[ConnectionError, TimeoutError, OSError],
    )
    return client
