"""The delivery job's reads and writes of the outbox, batched across concurrent jobs.

Each delivery claims its row, may read its user (the stale guard), and records the result.
Those statements are tiny and identical in shape, so concurrent jobs share them through
:class:`~shared.batching.Coalescer`: one ``UPDATE ... WHERE id = ANY(...)`` claims or
records a whole batch. That includes the outcomes that cause nothing else (skipped, held
back, to be retried): a skipped email is not rare (every superseded reset or confirmation
link), and written one transaction each, a backlog of them took up to half a core while it
lasted and overflowed the connection pool. A permanent failure is written by the job itself, in a
transaction with whatever it causes (an admin alert, a suppression).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import timedelta
from typing import Any, TypeVar, cast

from sqlalchemy import BigInteger, Row, Table, any_, bindparam, func, or_, select, text, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.expression import Executable

from shared.batching import Coalescer
from shared.db import create_engine
from shared.models import Email, EmailStatus, LoginCode, Suppression, User, still_pending
from worker.mail.prepare import Account, OutboxEmail

T = TypeVar("T")
EMAILS = cast(Table, Email.__table__)
_IDS = bindparam("ids", type_=ARRAY(BigInteger))

SUPPRESSIONS = cast(Table, Suppression.__table__)
# Whether the recipient is on the suppression list, read by the claim itself (no extra trip).
_SUPPRESSED = (
    select(SUPPRESSIONS.c.reason)
    .where(
        SUPPRESSIONS.c.address_key == EMAILS.c.recipient_key,
        SUPPRESSIONS.c.lifted_at.is_(None),
    )
    .scalar_subquery()
    .label("suppressed")
)
_RETURNED = (
    _SUPPRESSED,
    EMAILS.c.id,
    EMAILS.c.kind,
    EMAILS.c.recipient,
    EMAILS.c.context,
    EMAILS.c.attempts,
    EMAILS.c.last_error,
    EMAILS.c.created_at,
    EMAILS.c.locale,
)
_MARK_SENT = (
    update(EMAILS)
    .where(EMAILS.c.id == any_(_IDS), still_pending(EMAILS.c.status))
    .values(
        status=EmailStatus.SENT,
        sent_at=func.now(),
        attempts=EMAILS.c.attempts + 1,
        last_error=None,
        claimed_until=None,
    )
)
# The columns an Account holds, by the same names, as one Core statement per batch: the
# account's own, and its current sign-in code's (if it has one).
_LOGIN_CODE_COLUMNS = {
    "login_code_generation": LoginCode.generation,
    "login_code_salt": LoginCode.salt,
    "login_code_created_at": LoginCode.created_at,
}
_USERS = (
    select(
        *(
            _LOGIN_CODE_COLUMNS[field.name].label(field.name)
            if field.name in _LOGIN_CODE_COLUMNS
            else getattr(User, field.name)
            for field in fields(Account)
        )
    )
    .outerjoin(LoginCode, LoginCode.user_id == User.id)
    .where(User.id == any_(_IDS))
)
# Each row its own outcome, the claim released; a row no longer pending is left as it is
# (IS NOT DISTINCT FROM: found by primary key, as shared.models.still_pending explains).
_RECORD = text(
    """
    UPDATE emails SET
        status = v.status,
        attempts = v.attempts,
        claimed_until = NULL,
        last_error = COALESCE(v.last_error, emails.last_error),
        next_attempt_at = COALESCE(
            now() + make_interval(secs => v.retry_in), emails.next_attempt_at
        )
    FROM unnest(
        CAST(:ids AS bigint[]), CAST(:statuses AS text[]), CAST(:attempts AS integer[]),
        CAST(:errors AS text[]), CAST(:retries AS float8[])
    ) AS v(id, status, attempts, last_error, retry_in)
    WHERE emails.id = v.id AND emails.status IS NOT DISTINCT FROM 'pending'
    """
)


@dataclass(frozen=True, slots=True)
class RecordedOutcome:
    """A delivery outcome other than "sent", as its row records it."""

    email_id: int
    status: str
    attempts: int
    last_error: str | None = None  # None: held back without an attempt, the last one's stays
    retry_in: float | None = None  # seconds until the next attempt; None: leave it


def _record_params(outcomes: Sequence[RecordedOutcome]) -> dict[str, list[Any]]:
    return {
        "ids": [outcome.email_id for outcome in outcomes],
        "statuses": [outcome.status for outcome in outcomes],
        "attempts": [outcome.attempts for outcome in outcomes],
        "errors": [outcome.last_error for outcome in outcomes],
        "retries": [outcome.retry_in for outcome in outcomes],
    }


# Unclaimed, or claimed by a run that can no longer be alive (its lease ran out): the rule
# both the claim and the sweeper go by.
UNCLAIMED = or_(EMAILS.c.claimed_until.is_(None), EMAILS.c.claimed_until < func.now())


STORE_CONNECTIONS = 3  # one per kind of statement in flight: claims, look-ups, outcomes


class OutboxStore:
    """Claims, user lookups and the outcomes that cause nothing else, for the jobs of one
    worker process."""

    def __init__(
        self,
        database_url: str,
        *,
        application_name: str,
        lease: float,
        max_batch: int,
        linger: float = 0.0,
    ) -> None:
        # Its own small engine: every statement here is a single atomic UPDATE or SELECT, so
        # autocommit (no BEGIN/COMMIT round trips) and no pre-ping (``_retrying`` covers a
        # closed connection instead). At most one statement per kind is in flight.
        self._engine = create_engine(
            database_url,
            application_name=application_name,
            pool_size=STORE_CONNECTIONS,
            autocommit=True,
            pre_ping=False,
        )
        # Built once: the hot path should not pay for building and coercing statements.
        self._claim = (
            update(EMAILS)
            .where(
                EMAILS.c.id == any_(_IDS),
                still_pending(EMAILS.c.status),
                UNCLAIMED,
            )
            .values(claimed_until=func.now() + timedelta(seconds=lease))
            .returning(*_RETURNED)
        )
        self.claim = Coalescer(self._claim_many, max_batch=max_batch, linger=linger)
        self.user = Coalescer(self._users_by_id, max_batch=max_batch, linger=linger)
        self.mark_sent = Coalescer(self._mark_sent_many, max_batch=max_batch, linger=linger)
        self.record = Coalescer(self._record_many, max_batch=max_batch, linger=linger)
        self.statements = 0  # how many batched statements ran: tests and benchmarks read it

    async def _retrying(self, run: Callable[[], Awaitable[T]]) -> T:
        """Run one batched statement, once more on a fresh connection if the server had
        closed the pooled one (a PostgreSQL restart): this engine does not ping first."""
        try:
            result = await run()
        except DBAPIError as error:
            if not error.connection_invalidated:
                raise
            result = await run()
        self.statements += 1
        return result

    async def _execute(
        self, statement: Executable, params: Mapping[str, Sequence[Any]]
    ) -> Sequence[Row[Any]]:
        async def run() -> Sequence[Row[Any]]:
            async with self._engine.connect() as connection:
                result = await connection.execute(statement, params)
                return result.all() if result.returns_rows else []

        return await self._retrying(run)

    async def _claim_many(self, ids: list[int]) -> Sequence[OutboxEmail | None]:
        """Claim every listed row that is pending and not claimed by a live run.

        A row that is not returned is done, gone, or being delivered by another run right
        now: its job has nothing to do. An id asked for twice in one batch is claimed once.
        """
        rows = await self._execute(self._claim, {"ids": ids})
        claimed = {row.id: OutboxEmail.from_row(row) for row in rows}
        return [claimed.pop(email_id, None) for email_id in ids]

    async def _users_by_id(self, ids: list[int]) -> Sequence[Account | None]:
        """The accounts, as of now (after the claim), that the batch's emails are about."""
        rows = await self._execute(_USERS, {"ids": list(set(ids))})
        accounts = {row.id: Account(**row._mapping) for row in rows}
        return [accounts.get(user_id) for user_id in ids]

    async def _mark_sent_many(self, ids: list[int]) -> Sequence[None]:
        await self._execute(_MARK_SENT, {"ids": ids})
        return [None] * len(ids)

    async def _record_many(self, outcomes: list[RecordedOutcome]) -> Sequence[None]:
        await self._execute(_RECORD, _record_params(outcomes))
        return [None] * len(outcomes)

    async def close(self) -> None:
        await self._engine.dispose()


async def take_overdue(session: AsyncSession, *, after: int, limit: int = 1000) -> list[Any]:
    """(id, kind) of pending rows due more than ``after`` seconds ago and not claimed by a
    live run; their due time moves to now, so the next sweep does not take them again."""
    cutoff = func.now() - timedelta(seconds=after)
    due = (
        select(EMAILS.c.id)
        .where(
            EMAILS.c.status == EmailStatus.PENDING, EMAILS.c.next_attempt_at <= cutoff, UNCLAIMED
        )
        .order_by(EMAILS.c.next_attempt_at)
        .limit(limit)
        .scalar_subquery()
    )
    rows = await session.execute(
        update(EMAILS)
        .where(EMAILS.c.id.in_(due))
        .values(next_attempt_at=func.now())
        .returning(EMAILS.c.id, EMAILS.c.kind)
    )
    return [tuple(row) for row in rows]
