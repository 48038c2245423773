"""Webhooks: services subscribed to security events, and the deliveries owed to them.

An endpoint is a URL, the event types it wants and its own signing secret (Standard
Webhooks, ``whsec_<base64>``), shown once when it is added and stored sealed. When an event
is recorded, its statement writes one delivery row per subscribed endpoint in the event's
own transaction (the webhook outbox, :func:`shared.services.events.record_many`), announced
to the worker after the commit; the worker (``worker/webhooks/jobs.py``) POSTs it, signed, at
least once. Operators manage endpoints with ``python -m worker webhooks ...``.
"""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

import httpx
from sqlalchemy import delete, func, select

from shared.models import WEBHOOK_URL_MAX_LENGTH, EmailStatus, WebhookDelivery, WebhookEndpoint
from shared.outbox import announce_webhooks
from shared.sealing import Sealer
from shared.services.context import ServiceContext
from shared.services.events import Kind
from shared.services.operations import requeue_failed_rows
from shared.webhook_outbox import ALL_TYPES

TEST_TYPE = "webhook.test"
EVENT_TYPES: frozenset[str] = frozenset(kind.value for kind in Kind)
SECRET_PREFIX = "whsec_"  # noqa: S105 (the specification's prefix, not a secret)
SECRET_BYTES = 32  # the specification asks for 24 to 64


class EndpointError(ValueError):
    """An endpoint that cannot be added as given; the message says what to change."""


def sealer(secret_key: str) -> Sealer:
    return Sealer(secret_key, "accounts.webhook-secret")


def check_url(url: str) -> str:
    """An http(s) URL with a host and no credentials, or :class:`EndpointError`. Where the
    host points is checked at each delivery (names can change what they resolve to)."""
    if len(url) > WEBHOOK_URL_MAX_LENGTH:
        raise EndpointError(f"the URL is longer than {WEBHOOK_URL_MAX_LENGTH} characters")
    if any(ord(char) < 33 for char in url):
        raise EndpointError("the URL contains spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise EndpointError(f"not a URL: {error}") from None
    if parts.scheme not in {"http", "https"}:
        raise EndpointError("only http:// and https:// URLs can receive webhooks")
    if not parts.hostname:
        raise EndpointError("the URL has no host")
    if parts.username is not None or parts.password is not None:
        raise EndpointError("put no credentials in the URL: deliveries are signed instead")
    if parts.fragment:
        raise EndpointError("the URL has a #fragment, which is never sent")
    if port == 0:
        raise EndpointError("port 0 is not a port")
    try:  # the parser that sends must read it too (it refuses forms urlsplit lets through)
        httpx.URL(url)
    except (httpx.InvalidURL, ValueError) as error:
        raise EndpointError(f"not a URL the sender can use: {error}") from None
    return url


def check_event_types(types: list[str]) -> list[str]:
    """Known event types (or ``*``), without repeats, or :class:`EndpointError`."""
    wanted = sorted({kind.strip() for kind in types if kind.strip()})
    if not wanted:
        raise EndpointError("name at least one event type (or * for all)")
    unknown = [kind for kind in wanted if kind != ALL_TYPES and kind not in EVENT_TYPES]
    if unknown:
        raise EndpointError(
            f"unknown event type(s): {', '.join(unknown)}; known: {', '.join(sorted(EVENT_TYPES))}"
        )
    return [ALL_TYPES] if ALL_TYPES in wanted else wanted


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


@dataclass(frozen=True, slots=True)
class NewEndpoint:
    id: int
    url: str
    event_types: list[str]
    secret: str  # shown to the operator once, never stored in the clear


async def add_endpoint(
    ctx: ServiceContext, url: str, event_types: list[str], description: str = ""
) -> NewEndpoint:
    url = check_url(url)
    types = check_event_types(event_types)
    secret = new_secret()
    async with ctx.unit_of_work() as session:
        endpoint = WebhookEndpoint(
            url=url,
            event_types=types,
            secret_encrypted=sealer(ctx.secret).seal(secret),
            description=description[:200],
        )
        session.add(endpoint)
        await session.flush()
    return NewEndpoint(id=endpoint.id, url=url, event_types=types, secret=secret)


@dataclass(frozen=True, slots=True)
class EndpointSummary:
    id: int
    url: str
    event_types: list[str]
    description: str
    created_at: datetime
    pending: int
    failed: int


async def list_endpoints(ctx: ServiceContext) -> list[EndpointSummary]:
    counts = (
        select(
            WebhookDelivery.endpoint_id,
            func.count().filter(WebhookDelivery.status == EmailStatus.PENDING).label("pending"),
            func.count().filter(WebhookDelivery.status == EmailStatus.FAILED).label("failed"),
        )
        .where(WebhookDelivery.status.in_([EmailStatus.PENDING, EmailStatus.FAILED]))
        .group_by(WebhookDelivery.endpoint_id)
        .subquery()
    )
    query = (
        select(WebhookEndpoint, counts.c.pending, counts.c.failed)
        .outerjoin(counts, counts.c.endpoint_id == WebhookEndpoint.id)
        .order_by(WebhookEndpoint.id)
    )
    async with ctx.reading() as session:
        rows = (await session.execute(query)).all()
    return [
        EndpointSummary(
            id=endpoint.id,
            url=endpoint.url,
            event_types=list(endpoint.event_types),
            description=endpoint.description,
            created_at=endpoint.created_at,
            pending=pending or 0,
            failed=failed or 0,
        )
        for endpoint, pending, failed in rows
    ]


async def remove_endpoint(ctx: ServiceContext, endpoint_id: int) -> bool:
    """Remove an endpoint and every delivery still owed to it; False if there was none."""
    async with ctx.unit_of_work() as session:
        result = await session.execute(
            delete(WebhookEndpoint).where(WebhookEndpoint.id == endpoint_id)
        )
    return bool(result.rowcount)  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class EndpointTarget:
    """What a delivery needs of its endpoint: where, and the secret to sign with."""

    id: int
    url: str
    secret: str | None  # None when SECRET_KEY changed since it was added: add it again


async def endpoint_target(ctx: ServiceContext, endpoint_id: int) -> EndpointTarget | None:
    async with ctx.reading() as session:
        endpoint = await session.get(WebhookEndpoint, endpoint_id)
    if endpoint is None:
        return None
    secret = sealer(ctx.secret).open(endpoint.secret_encrypted)
    return EndpointTarget(id=endpoint.id, url=endpoint.url, secret=secret)


@dataclass(frozen=True, slots=True)
class FailedDelivery:
    id: int
    endpoint_id: int
    url: str
    message_id: str
    event_type: str
    attempts: int
    last_status_code: int | None
    last_error: str | None
    created_at: datetime


async def list_failures(
    ctx: ServiceContext, *, endpoint_id: int | None = None, limit: int = 200
) -> list[FailedDelivery]:
    query = (
        select(WebhookDelivery, WebhookEndpoint.url)
        .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
        .where(WebhookDelivery.status == EmailStatus.FAILED)
        .order_by(WebhookDelivery.id)
        .limit(limit)
    )
    if endpoint_id is not None:
        query = query.where(WebhookDelivery.endpoint_id == endpoint_id)
    async with ctx.reading() as session:
        rows = (await session.execute(query)).all()
    return [
        FailedDelivery(
            id=delivery.id,
            endpoint_id=delivery.endpoint_id,
            url=url,
            message_id=delivery.message_id,
            event_type=delivery.event_type,
            attempts=delivery.attempts,
            last_status_code=delivery.last_status_code,
            last_error=delivery.last_error,
            created_at=delivery.created_at,
        )
        for delivery, url in rows
    ]


async def requeue_failed(
    ctx: ServiceContext, *, ids: list[int] | None = None, all_failed: bool = False
) -> list[int]:
    """Failed deliveries back to pending with a fresh attempt budget (same message id, so a
    receiver that did get an earlier attempt can tell), enqueued after the commit."""
    return await requeue_failed_rows(
        ctx, WebhookDelivery, announce_webhooks, ids=ids, all_failed=all_failed
    )
