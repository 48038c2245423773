"""The web <-> worker contract: job names, typed email payloads and the enqueue helpers.

Both processes import this module and nothing from each other. The worker registers a function
for every name in :data:`JOB_NAMES` (a test checks it); the web process only ever enqueues
through :func:`enqueue_send_email` and :func:`enqueue_deliver_webhook`, so arq's surface
stays in one place.

Emails do not travel as one arq job each. arq's protocol costs about eight Redis round trips
a job (poll, WATCH/EXISTS/ZSCORE and MULTI to start it, GET and INCR, the finishing MULTI),
which was a third of the worker's CPU per message. An email's outbox id is instead a member
of one sorted set per queue (:func:`emails_due_key`), scored by when it is due: one ``ZADD``
to announce it, one script call takes a whole batch of due ids, and the worker runs each as
a task beside its arq jobs (``worker.dispatch``). The row in PostgreSQL stays the truth: an id
lost from Redis (a crash after it was taken, Redis restarted empty) is put back by the sweeper.
"""

from __future__ import annotations

import enum
import weakref
from collections.abc import Sequence
from typing import TYPE_CHECKING, Final

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    from arq.connections import ArqRedis, RedisSettings
    from redis.asyncio import Redis
    from redis.commands.core import AsyncScript


# --- job names --------------------------------------------------------------------------------
SEND_EMAIL: Final = "send_email"
"""Hand one outbox row (argument: the ``emails.id``) to the due set. Versions before the due
set queued every email as this arq job; the worker still takes such jobs (a rolling upgrade
leaves some queued) and moves them over. Nothing queues it now."""

SWEEP_OUTBOX: Final = "sweep_outbox"
"""Cron: re-enqueue pending outbox rows whose turn has come (lost jobs, Redis outages)."""

SWEEP_WEBHOOKS: Final = "sweep_webhooks"
"""Cron: re-enqueue overdue pending webhook deliveries (each domain sweeps its own outbox)."""

PURGE: Final = "purge"
"""Cron: forget what is past its time (outbox rows past retention, accounts never confirmed,
username holds that ended)."""

DELIVER_WEBHOOK: Final = "deliver_webhook"
"""POST one webhook delivery row to its endpoint. Argument: the ``webhook_deliveries.id``.
Idempotent like ``send_email``: a delivered row is left alone."""

JOB_NAMES: Final = frozenset({SEND_EMAIL, SWEEP_OUTBOX, SWEEP_WEBHOOKS, PURGE, DELIVER_WEBHOOK})


def email_job_id(email_id: int, queue_name: str) -> str:
    """How logs and the CLI name an outbox row's delivery (and the arq job id older versions
    gave it)."""
    return f"{queue_name}:email:{email_id}"


def emails_due_key(queue_name: str) -> str:
    """The sorted set of outbox ids waiting for delivery, scored by when each is due (ms)."""
    return f"{queue_name}:emails-due"


def webhook_job_id(delivery_id: int, queue_name: str) -> str:
    """arq job id for a webhook delivery row (enqueueing it twice is a no-op, as for emails)."""
    return f"{queue_name}:webhook:{delivery_id}"


# --- email kinds and their typed contexts -----------------------------------------------------
class EmailKind(enum.StrEnum):
    TEST = "test"
    CONFIRM = "confirm"
    ALREADY_REGISTERED = "already_registered"
    RESET = "reset"
    PASSWORD_CHANGED = "password_changed"  # noqa: S105 (an email kind)
    NEW_DEVICE = "new_device"
    TWO_FACTOR_CHANGED = "two_factor_changed"
    EMAIL_CHANGE_CONFIRM = "email_change_confirm"
    EMAIL_CHANGE_REQUESTED = "email_change_requested"
    EMAIL_CHANGED = "email_changed"
    EMAIL_IN_USE = "email_in_use"
    ACCOUNT_DELETED = "account_deleted"
    ADMIN_ALERT = "admin_alert"


class EmailContext(BaseModel):
    """Base for the JSON stored in ``emails.context``: what the template needs, nothing more.

    Secrets that the template needs (a link's token) are stored here because the message must
    be renderable after a crash; they are never logged.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)


class TestEmail(EmailContext):
    """A test message an operator sends to check the mail set-up (`send-test-email`)."""

    __test__ = False  # not a pytest test class, despite the name


class ConfirmEmail(EmailContext):
    """Confirm an address. The worker mints the link when it sends, for this generation; a
    newer confirmation request (higher generation) makes this one stale, and it is skipped."""

    user_id: int
    generation: int


class AlreadyRegistered(EmailContext):
    """Someone tried to register with an address that has an account: tell its owner, instead
    of telling the stranger that the address is taken."""

    user_id: int


class ResetEmail(EmailContext):
    """A password-reset link for this reset generation; a newer request supersedes it, and
    it is not sent once it would arrive already expired."""

    user_id: int
    generation: int


class PasswordChanged(EmailContext):
    """ "Your password was changed", with a "this wasn't me" link valid while the account's
    session version is still ``session_version``; it also undoes what sign-in ``session``
    (a public id; None for a reset) added."""

    user_id: int
    session_version: int
    session: str | None = None


class NewDevice(EmailContext):
    """A sign-in from a browser the account has not used recently: when, which browser,
    from which address, and a "this wasn't me" link (valid while the account's session
    version is still ``session_version``)."""

    user_id: int
    session_version: int
    signed_in_at: str  # ISO 8601, UTC
    device: str
    client_address: str


class TwoFactorChanged(EmailContext):
    """Two-factor sign-in was turned on or off, its recovery codes regenerated, or one of
    them used: ``change`` says which; with a "this wasn't me" link."""

    user_id: int
    session_version: int
    change: str
    session: str | None = None  # the sign-in that made the change (a public id)


class EmailChangeConfirm(EmailContext):
    """To the new address: the link that makes it the account's address (this request's
    generation only; a newer request supersedes it)."""

    user_id: int
    generation: int
    new_email: str


class EmailChangeRequested(EmailContext):
    """To the current address, at once: a change to ``new_email`` was asked for, with a
    "this wasn't me" link that cancels it (valid while the session version is unchanged)."""

    user_id: int
    session_version: int
    new_email: str
    session: str | None = None  # the sign-in that asked (a public id)


class EmailChanged(EmailContext):
    """To the old address, after the change: it is no longer the account's."""

    user_id: int
    new_email: str


class EmailInUse(EmailContext):
    """To the owner of an address someone tried to move another account to: nothing
    changed, and the requester was told nothing."""

    user_id: int


class AccountDeleted(EmailContext):
    """The last message to an address whose account was deleted (the account is gone, so
    everything the message needs is here)."""

    username: str


class AdminAlert(EmailContext):
    """An error the ADMINS should know about (never request data or secrets)."""

    summary: str
    details: str


PRIORITY_KINDS: Final = frozenset(
    {
        EmailKind.RESET,
        EmailKind.PASSWORD_CHANGED,
        EmailKind.NEW_DEVICE,
        EmailKind.TWO_FACTOR_CHANGED,
        EmailKind.EMAIL_CHANGE_REQUESTED,
        EmailKind.EMAIL_CHANGED,
        EmailKind.ADMIN_ALERT,
    }
)
"""Delivered ahead of everything else waiting: a flood of registrations (confirmations,
notices) must not hold a reset link back until it expires."""

# The worker takes due emails in the order of their score (the time they are due). Priority
# emails are announced as if due this long ago, so they pass any backlog younger than that.
PRIORITY_HEAD_START: Final = 12 * 3600


EMAIL_CONTEXTS: Final[dict[EmailKind, type[EmailContext]]] = {
    EmailKind.TEST: TestEmail,
    EmailKind.CONFIRM: ConfirmEmail,
    EmailKind.ALREADY_REGISTERED: AlreadyRegistered,
    EmailKind.RESET: ResetEmail,
    EmailKind.PASSWORD_CHANGED: PasswordChanged,
    EmailKind.NEW_DEVICE: NewDevice,
    EmailKind.TWO_FACTOR_CHANGED: TwoFactorChanged,
    EmailKind.EMAIL_CHANGE_CONFIRM: EmailChangeConfirm,
    EmailKind.EMAIL_CHANGE_REQUESTED: EmailChangeRequested,
    EmailKind.EMAIL_CHANGED: EmailChanged,
    EmailKind.EMAIL_IN_USE: EmailInUse,
    EmailKind.ACCOUNT_DELETED: AccountDeleted,
    EmailKind.ADMIN_ALERT: AdminAlert,
}


def parse_context(kind: str, data: object) -> EmailContext:
    """Validate a stored context against its kind's model (raises ValueError/ValidationError)."""
    try:
        model = EMAIL_CONTEXTS[EmailKind(kind)]
    except ValueError:
        raise ValueError(f"unknown email kind {kind!r}") from None
    return model.model_validate(data)


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
