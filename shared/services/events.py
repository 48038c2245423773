"""Security events: one record per security-relevant change, written in the change's own
transaction, shown to the account's owner and delivered to subscribed services (webhooks:
the event's statement also writes the deliveries it owes, see :func:`record_many`).

Where a change came from (the client's address and user agent) is the request's business,
not each use case's: the web layer sets it once per request with :func:`set_origin`, and
:func:`record` reads it (work deferred past the answer inherits it).
"""

from __future__ import annotations

import enum
import json
from collections.abc import Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from shared import i18n
from shared.devices import device_name
from shared.group_commit import Together
from shared.i18n import N_
from shared.models import SecurityEvent
from shared.outbox import announce_webhooks
from shared.services.context import ServiceContext
from shared.webhook_outbox import ALL_TYPES, message_body, new_message_id


class Kind(enum.StrEnum):
    """Event types: dotted names, stable (receivers of webhooks will filter on them)."""

    REGISTERED = "user.registered"
    CONFIRMED = "user.confirmed"
    LOGIN_SUCCEEDED = "user.login_succeeded"
    LOGIN_FAILED = "user.login_failed"
    LOCKED = "user.locked"
    RESET_REQUESTED = "user.reset_requested"
    PASSWORD_RESET = "user.password_reset"  # noqa: S105 (an event name)
    PASSWORD_CHANGED = "user.password_changed"  # noqa: S105 (an event name)
    EMAIL_CHANGE_REQUESTED = "user.email_change_requested"
    EMAIL_CHANGED = "user.email_changed"
    EMAIL_CHANGE_CANCELLED = "user.email_change_cancelled"
    NOT_ME = "user.not_me"
    DELETED = "user.deleted"
    SESSION_REVOKED = "session.revoked"
    SESSIONS_REVOKED_ELSEWHERE = "session.revoked_others"
    TWO_FACTOR_ENABLED = "two_factor.enabled"
    TWO_FACTOR_DISABLED = "two_factor.disabled"
    RECOVERY_CODES_REGENERATED = "two_factor.recovery_codes_regenerated"
    RECOVERY_CODE_USED = "two_factor.recovery_code_used"
    PASSKEY_ADDED = "passkey.added"
    PASSKEY_REMOVED = "passkey.removed"
    LOGIN_CODE_REQUESTED = "user.login_code_requested"
    DEVICE_TRUSTED = "device.trusted"
    DEVICE_UNTRUSTED = "device.untrusted"
    REAUTHENTICATED = "user.reauthenticated"
    PASSWORD_REMOVED = "user.password_removed"  # noqa: S105 (an event name)
    APP_AUTHORIZED = "app.authorized"
    APP_ACCESS_REMOVED = "app.access_removed"
    IDENTITY_LINKED = "identity.linked"
    IDENTITY_UNLINKED = "identity.unlinked"


# What the activity page says for each (it adds "from <browser>, <when>").
WORDS: dict[Kind, str] = {
    Kind.REGISTERED: N_("Account created"),
    Kind.CONFIRMED: N_("Email address confirmed"),
    Kind.LOGIN_SUCCEEDED: N_("Signed in"),
    Kind.LOGIN_FAILED: N_("Failed sign-in (wrong password or code)"),
    Kind.LOCKED: N_("Sign-in attempts held back (too many failures)"),
    Kind.RESET_REQUESTED: N_("Password reset requested"),
    Kind.PASSWORD_RESET: N_("Password reset"),
    Kind.PASSWORD_CHANGED: N_("Password changed"),
    Kind.EMAIL_CHANGE_REQUESTED: N_("Change of email address requested"),
    Kind.EMAIL_CHANGED: N_("Email address changed"),
    Kind.EMAIL_CHANGE_CANCELLED: N_("Change of email address cancelled"),
    Kind.NOT_ME: N_('"This wasn\'t me": every session ended'),
    Kind.DELETED: N_("Account deleted"),
    Kind.SESSION_REVOKED: N_("A session was ended"),
    Kind.SESSIONS_REVOKED_ELSEWHERE: N_("Signed out everywhere else"),
    Kind.TWO_FACTOR_ENABLED: N_("Two-factor sign-in turned on"),
    Kind.TWO_FACTOR_DISABLED: N_("Two-factor sign-in turned off"),
    Kind.RECOVERY_CODES_REGENERATED: N_("New recovery codes made"),
    Kind.RECOVERY_CODE_USED: N_("A recovery code was used"),
    Kind.PASSKEY_ADDED: N_("Passkey added"),
    Kind.PASSKEY_REMOVED: N_("Passkey removed"),
    Kind.LOGIN_CODE_REQUESTED: N_("Sign-in code emailed"),
    Kind.DEVICE_TRUSTED: N_("Browser remembered: signing in there skips the second step"),
    Kind.DEVICE_UNTRUSTED: N_("A remembered browser was forgotten"),
    Kind.REAUTHENTICATED: N_("Confirmed it was you, for a sensitive change"),
    Kind.PASSWORD_REMOVED: N_("Password removed: signing in is by passkey or emailed code"),
    Kind.APP_AUTHORIZED: N_("An application was allowed to sign you in"),
    Kind.APP_ACCESS_REMOVED: N_("An application's access was removed"),
    Kind.IDENTITY_LINKED: N_("An account at another provider was connected"),
    Kind.IDENTITY_UNLINKED: N_("An account at another provider was disconnected"),
}


_WORDS_BY_NAME = {kind.value: words for kind, words in WORDS.items()}


@dataclass(frozen=True, slots=True)
class Origin:
    client_address: str = "unknown"
    user_agent: str = ""


_ORIGIN: ContextVar[Origin | None] = ContextVar("security_event_origin", default=None)


def set_origin(client_address: str, user_agent: str) -> None:
    _ORIGIN.set(Origin(client_address[:64], user_agent[:512]))


def current_origin() -> Origin:
    """Where the current request comes from: for work that will run outside its context
    (a :class:`~shared.group_commit.Together` write) to take along."""
    return _ORIGIN.get() or Origin()


async def record(session: AsyncSession, kind: Kind, user_id: int | None, **payload: Any) -> None:
    """Add an event, and the webhook deliveries it owes, to the caller's transaction (they
    commit, or vanish, with the change): one statement, one round trip."""
    await record_many(session, [Event(kind, user_id, current_origin(), payload)])


@dataclass(frozen=True, slots=True)
class Event:
    """An event to record, with where it came from (which travels with it when it is
    recorded outside its request: a deferred write's batch)."""

    kind: Kind
    user_id: int | None
    origin: Origin
    payload: dict[str, Any]


# Events of one kind in one INSERT of unnest()ed columns, and the webhook deliveries each owes
# (one per endpoint subscribed to its type, or to all) in the same statement: nothing is
# written for them when nobody subscribes.
_RECORD_MANY = text(
    """
    WITH event AS (
        INSERT INTO security_events (user_id, kind, created_at, client_address, device, payload)
        SELECT user_id, :kind, :created_at, client_address, device, payload::jsonb
        FROM unnest(
            CAST(:user_ids AS bigint[]), CAST(:client_addresses AS varchar[]),
            CAST(:devices AS varchar[]), CAST(:payloads AS text[])
        ) AS row(user_id, client_address, device, payload)
    )
    INSERT INTO webhook_deliveries (
        endpoint_id, message_id, event_type, body, status, attempts, user_id
    )
    SELECT endpoint.id, owed.message_id, :kind, owed.body, 'pending', 0, owed.user_id
    FROM unnest(
        CAST(:message_ids AS varchar[]), CAST(:bodies AS text[]), CAST(:user_ids AS bigint[])
    ) AS owed(message_id, body, user_id)
    JOIN webhook_endpoints AS endpoint
        ON endpoint.event_types && CAST(:webhook_types AS varchar[])
    RETURNING webhook_deliveries.id
    """
)


# Refused attempts are counted, not listed: strangers make them by the thousand (40 client
# addresses x 10 wrong passwords is 400 rows in seconds), and a row each would bury the
# owner's own sign-ins and owe a webhook each. One row per account, kind and window holds
# how many, from which addresses (the first ADDRESSES_KEPT), and when the last was; the
# window's first attempt owes the webhook deliveries, the rest only add to the count.
COUNTED: frozenset[Kind] = frozenset({Kind.LOGIN_FAILED, Kind.LOCKED})
REFUSED_WINDOW = 3600  # seconds, aligned to the hour
ADDRESSES_KEPT = 50
_RECORD_COUNTED = text(
    """
    WITH attempt AS (
        SELECT user_id, client_address, device, ordinality
        FROM unnest(
            CAST(:user_ids AS bigint[]), CAST(:client_addresses AS varchar[]),
            CAST(:devices AS varchar[])
        ) WITH ORDINALITY AS row(user_id, client_address, device, ordinality)
    ), grouped AS (
        SELECT user_id, count(*) AS attempts,
            (array_agg(client_address ORDER BY ordinality))[1] AS client_address,
            (array_agg(device ORDER BY ordinality))[1] AS device,
            to_jsonb((array_agg(DISTINCT client_address))[1:CAST(:kept AS int)]) AS addresses
        FROM attempt GROUP BY user_id
    ), counted AS (
        INSERT INTO security_events AS kept (
            user_id, kind, created_at, client_address, device, payload, window_start,
            attempts, last_at
        )
        SELECT user_id, :kind, :created_at, client_address, device,
            jsonb_build_object('addresses', addresses), :window_start, attempts, :created_at
        FROM grouped
        ON CONFLICT (user_id, kind, window_start) WHERE window_start IS NOT NULL
        DO UPDATE SET
            attempts = kept.attempts + EXCLUDED.attempts,
            last_at = EXCLUDED.last_at,
            payload = jsonb_build_object('addresses', (
                SELECT coalesce(jsonb_agg(address), '[]'::jsonb) FROM (
                    SELECT DISTINCT address FROM jsonb_array_elements_text(
                        (kept.payload -> 'addresses') || (EXCLUDED.payload -> 'addresses')
                    ) AS address
                    LIMIT CAST(:kept AS int)
                ) AS distinct_addresses
            ))
        RETURNING user_id, (xmax = 0) AS first
    )
    INSERT INTO webhook_deliveries (
        endpoint_id, message_id, event_type, body, status, attempts, user_id
    )
    SELECT endpoint.id, owed.message_id, :kind, owed.body, 'pending', 0, owed.user_id
    FROM counted
    JOIN unnest(
        CAST(:owed_users AS bigint[]), CAST(:message_ids AS varchar[]), CAST(:bodies AS text[])
    ) AS owed(user_id, message_id, body) ON owed.user_id = counted.user_id AND counted.first
    JOIN webhook_endpoints AS endpoint
        ON endpoint.event_types && CAST(:webhook_types AS varchar[])
    RETURNING webhook_deliveries.id
    """
)


def window_of(moment: datetime) -> datetime:
    return datetime.fromtimestamp(moment.timestamp() // REFUSED_WINDOW * REFUSED_WINDOW, UTC)


async def _record_counted(session: AsyncSession, kind: Kind, events: list[Event]) -> None:
    at = datetime.now(UTC)
    window_start = window_of(at)
    columns: dict[str, list[Any]] = {"user_ids": [], "client_addresses": [], "devices": []}
    owed: dict[str, list[Any]] = {"owed_users": [], "message_ids": [], "bodies": []}
    for event in events:
        if event.user_id is None:
            continue
        device = await device_name(event.origin.user_agent)
        columns["user_ids"].append(event.user_id)
        columns["client_addresses"].append(event.origin.client_address)
        columns["devices"].append(device)
        if event.user_id not in owed["owed_users"]:
            message_id = new_message_id()
            payload = {"window_start": window_start.isoformat(), **event.payload}
            data = webhook_data(event.user_id, event.origin.client_address, device, payload)
            owed["owed_users"].append(event.user_id)
            owed["message_ids"].append(message_id)
            owed["bodies"].append(message_body(message_id, kind.value, at, data))
    if not columns["user_ids"]:
        return
    rows = await session.execute(
        _RECORD_COUNTED,
        {
            **columns,
            **owed,
            "kind": kind.value,
            "created_at": at,
            "window_start": window_start,
            "kept": ADDRESSES_KEPT,
            "webhook_types": [kind.value, ALL_TYPES],
        },
    )
    announce_webhooks(session, list(rows.scalars()))


async def record_many(session: AsyncSession, events: Sequence[Event]) -> None:
    """Add these events, and the webhook deliveries each owes, to the caller's transaction:
    one statement per kind among them."""
    by_kind: dict[Kind, list[Event]] = {}
    for event in events:
        by_kind.setdefault(event.kind, []).append(event)
    for kind, of_kind in by_kind.items():
        if kind in COUNTED:
            await _record_counted(session, kind, of_kind)
        else:
            await _record_kind(session, kind, of_kind)


async def _record_kind(session: AsyncSession, kind: Kind, events: list[Event]) -> None:
    at = datetime.now(UTC)
    columns: dict[str, list[Any]] = {
        key: []
        for key in ("user_ids", "client_addresses", "devices", "payloads", "message_ids", "bodies")
    }
    for event in events:
        origin = event.origin
        device = await device_name(origin.user_agent)
        message_id = new_message_id()
        data = webhook_data(event.user_id, origin.client_address, device, event.payload)
        columns["payloads"].append(json.dumps(event.payload))
        columns["user_ids"].append(event.user_id)
        columns["client_addresses"].append(origin.client_address)
        columns["devices"].append(device)
        columns["message_ids"].append(message_id)
        columns["bodies"].append(message_body(message_id, kind.value, at, data))
    rows = await session.execute(
        _RECORD_MANY,
        {
            **columns,
            "kind": kind.value,
            "created_at": at,
            "webhook_types": [kind.value, ALL_TYPES],
        },
    )
    announce_webhooks(session, list(rows.scalars()))


def webhook_data(
    user_id: int | None, client_address: str | None, device: str | None, payload: dict[str, Any]
) -> dict[str, Any]:
    """What subscribers learn of an event: whose account, from where, and its payload (the
    deleted account's id is ``user_id`` too, though the row no longer points at it)."""
    payload = dict(payload)
    if user_id is None:
        user_id = payload.pop("account_id", None)
    return {"user_id": user_id, "client_address": client_address, "device": device, **payload}


async def record_alone(ctx: ServiceContext, kind: Kind, user_id: int, **payload: Any) -> None:
    """An event with no change of its own to ride with (a failed sign-in); callers defer it
    past the answer so that it costs no answer time, and it is written with the other
    deferred events of the moment, a statement per kind."""
    event = Event(kind, user_id, current_origin(), payload)
    await ctx.commit_together(Together(record_many, event))


PER_PAGE = 20


@dataclass(frozen=True, slots=True)
class Activity:
    events: list[SecurityEvent]
    page: int
    pages: int


async def activity(ctx: ServiceContext, user_id: int, page: int = 1) -> Activity:
    """The account's events, newest first, PER_PAGE a page."""
    page = min(max(1, page), 100_000)
    async with ctx.reading() as session:
        total = await session.scalar(
            select(func.count()).select_from(SecurityEvent).where(SecurityEvent.user_id == user_id)
        )
        events = list(
            await session.scalars(
                select(SecurityEvent)
                .where(SecurityEvent.user_id == user_id)
                .order_by(SecurityEvent.id.desc())
                .limit(PER_PAGE)
                .offset((page - 1) * PER_PAGE)
            )
        )
    return Activity(events=events, page=page, pages=max(1, -(-(total or 0) // PER_PAGE)))


COUNTED_WORDS: dict[str, tuple[str, str]] = {
    Kind.LOGIN_FAILED.value: i18n.N_plural(
        "%(num)d failed sign-in from %(where)s, the last %(when)s",
        "%(num)d failed sign-ins from %(where)s, the last %(when)s",
    ),
    Kind.LOCKED.value: i18n.N_plural(
        "%(num)d sign-in attempt held back from %(where)s, the last %(when)s",
        "%(num)d sign-in attempts held back from %(where)s, the last %(when)s",
    ),
}


def in_words(event: SecurityEvent, now: datetime | None = None) -> str:
    """ "Password changed from Firefox on Windows, 2 hours ago"; for counted refusals,
    "37 failed sign-ins from 12 addresses, the last 5 minutes ago"."""
    if event.window_start is not None and event.kind in COUNTED_WORDS:
        one, many = COUNTED_WORDS[event.kind]
        addresses = len(event.payload.get("addresses") or []) or 1
        if addresses >= ADDRESSES_KEPT:
            where = i18n.gettext("%(num)d or more addresses") % {"num": addresses}
        else:
            where = i18n.ngettext("%(num)d address", "%(num)d addresses", addresses) % {
                "num": addresses
            }
        said = i18n.ngettext(one, many, event.attempts or 0)
        when = ago(event.last_at or event.created_at, now)
        return said % {"num": event.attempts, "where": where, "when": when}
    what = i18n.gettext(_WORDS_BY_NAME.get(event.kind, event.kind))
    return i18n.gettext("%(what)s from %(device)s, %(when)s") % {
        "what": what,
        "device": event.device,
        "when": ago(event.created_at, now),
    }


def ago(moment: datetime, now: datetime | None = None) -> str:
    """ "2 hours ago", in the asker's language (Babel's words); "just now" under a minute."""
    current = now or datetime.now(UTC)
    if (current - moment).total_seconds() < 60:
        return i18n.gettext("just now")
    return i18n.format_relative(min(moment, current), current)
