"""Webhooks end to end in one process: events recorded by the use cases, delivery rows in
their transaction, the real worker POSTing to a real HTTP receiver on loopback that checks
each signature with the Standard Webhooks library; retries, permanent failures, the
receiver down and back, the per-endpoint breaker, the SSRF guard and the operator's CLI."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from arq.connections import ArqRedis
from arq.constants import job_key_prefix
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from devstack.servers import free_port
from shared.db import SessionMaker
from shared.jobs import webhook_job_id
from shared.models import EmailStatus, SecurityEvent, WebhookDelivery, WebhookEndpoint
from shared.services import accounts, events, webhooks
from shared.services.context import ServiceContext
from shared.settings import Settings
from tests.receiver import Receiver, serving
from tests.support import committing_context, run_burst_worker, worker_cli
from worker.webhooks.sender import Reply, WebhookSender, _retry_after, is_public_address

pytestmark = pytest.mark.usefixtures("clean_db")

PASSWORD = "correct horse battery staple 9"


@pytest.fixture
def hook_settings(settings: Settings) -> Settings:
    """Loopback receivers allowed; retries quick enough for a test."""
    return settings.with_values(
        WEBHOOKS_ALLOW_PRIVATE=True,
        WEBHOOK_RETRY_BASE_DELAY=0.05,
        WEBHOOK_RETRY_MAX_DELAY=0.2,
        WEBHOOK_TIMEOUT=2.0,
    )


@pytest.fixture
async def ctx(
    hook_settings: Settings, engine: AsyncEngine, sessionmaker: SessionMaker, queue: ArqRedis
) -> ServiceContext:
    """The use cases' context on real, committing connections (the worker reads what they
    wrote)."""
    return committing_context(hook_settings, engine, sessionmaker, queue)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with serving(Receiver(free_port())) as running:
        yield running


async def subscribe(ctx: ServiceContext, url: str, types: list[str], hook: Receiver) -> int:
    endpoint = await webhooks.add_endpoint(ctx, url, types)
    hook.secret = endpoint.secret
    return endpoint.id


async def record(ctx: ServiceContext, kind: events.Kind, count: int = 1) -> None:
    async with ctx.unit_of_work() as session:
        for _ in range(count):
            await events.record(session, kind, None, note="test")


async def rows(sessionmaker: SessionMaker) -> list[WebhookDelivery]:
    async with sessionmaker() as session:
        return list(await session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id)))


async def test_a_registration_reaches_the_receiver_signed(
    ctx: ServiceContext, receiver: Receiver, sessionmaker: SessionMaker, hook_settings: Settings
) -> None:
    events.set_origin("192.0.2.7", "curl/8.0")
    await subscribe(ctx, receiver.url, ["user.registered", "user.confirmed"], receiver)
    await accounts.register(ctx, "alice", "alice@example.com", PASSWORD)
    await ctx.defer.drain()  # type: ignore[attr-defined]  # the account is made after the answer
    await run_burst_worker(hook_settings)

    async with sessionmaker() as session:
        registered = await session.scalar(select(SecurityEvent))
    assert registered is not None
    (got,) = receiver.received
    assert got.verified, "the signature must verify with the endpoint's secret"
    assert re.fullmatch(r"msg_[A-Za-z0-9_-]{24}", got.id)
    assert int(got.headers["webhook-timestamp"]) == pytest.approx(
        datetime.now(UTC).timestamp(), abs=30
    )
    assert got.headers["content-type"] == "application/json"
    message = got.message
    assert message["type"] == "user.registered" and message["id"] == got.id
    assert message["data"] == {
        "user_id": registered.user_id,
        "username": "alice",
        "email": "alice@example.com",
        "client_address": "192.0.2.7",
        "device": registered.device,
    }
    (row,) = await rows(sessionmaker)
    assert (row.status, row.attempts, row.message_id) == (EmailStatus.SENT, 1, got.id)
    assert row.delivered_at is not None and row.last_status_code == 200


async def test_an_event_rolled_back_owes_nothing(
    ctx: ServiceContext, receiver: Receiver, sessionmaker: SessionMaker, queue: ArqRedis
) -> None:
    await subscribe(ctx, receiver.url, ["*"], receiver)

    async def change_that_fails() -> None:
        async with ctx.unit_of_work() as session:
            await events.record(session, events.Kind.PASSWORD_CHANGED, None)
            raise RuntimeError("the change failed after its event was recorded")

    with pytest.raises(RuntimeError):
        await change_that_fails()
    assert await rows(sessionmaker) == []
    assert await queue.zcard(ctx.settings.QUEUE_NAME) == 0


async def test_only_subscribed_types_are_delivered(
    ctx: ServiceContext, receiver: Receiver, sessionmaker: SessionMaker, hook_settings: Settings
) -> None:
    await subscribe(ctx, receiver.url, ["user.password_changed"], receiver)
    await record(ctx, events.Kind.LOGIN_SUCCEEDED)
    await record(ctx, events.Kind.PASSWORD_CHANGED)
    await run_burst_worker(hook_settings)
    assert [item.message["type"] for item in receiver.received] == ["user.password_changed"]
    assert all(item.verified for item in receiver.received)


async def test_server_errors_are_retried_with_the_same_id(
    ctx: ServiceContext, receiver: Receiver, sessionmaker: SessionMaker, hook_settings: Settings
) -> None:
    await subscribe(ctx, receiver.url, ["*"], receiver)
    receiver.statuses = [500, 503, 429]
    await record(ctx, events.Kind.PASSWORD_CHANGED)
    await run_burst_worker(hook_settings)
    assert [item.verified for item in receiver.received] == [True] * 4
    assert len(set(receiver.ids())) == 1, "every attempt carries the event's one id"
    # Each attempt is signed afresh (its own timestamp); the body is the same bytes.
    assert len({item.body for item in receiver.received}) == 1
    (row,) = await rows(sessionmaker)
    assert (row.status, row.attempts, row.last_error) == (EmailStatus.SENT, 4, None)


async def test_a_refusal_fails_at_once_and_an_operator_can_retry(
    ctx: ServiceContext, receiver: Receiver, sessionmaker: SessionMaker, hook_settings: Settings
) -> None:
    endpoint = await subscribe(ctx, receiver.url, ["*"], receiver)
    receiver.statuses = [410]
    await record(ctx, events.Kind.PASSWORD_CHANGED)
    await run_burst_worker(hook_settings)
    (row,) = await rows(sessionmaker)
    assert (row.status, row.attempts, row.last_status_code) == (EmailStatus.FAILED, 1, 410)
    assert row.last_error == "HTTP 410 Gone"

    listed = await worker_cli(hook_settings, "webhooks", "failures")
    assert listed.returncode == 0, listed.stderr
    assert f"{row.id:>8}  {endpoint:>8}  user.password_changed" in listed.stdout
    assert "HTTP 410 Gone" in listed.stdout
    endpoints = await worker_cli(hook_settings, "webhooks", "list")
    assert re.search(rf"^\s+{endpoint}\s+0\s+1\s", endpoints.stdout, re.M), endpoints.stdout

    again = await worker_cli(hook_settings, "webhooks", "retry", str(row.id), "999")
    assert again.returncode == 1
    assert f"queued again: {row.id}" in again.stdout
    assert "not failed (left alone): 999" in again.stderr
    await run_burst_worker(hook_settings)
    (row,) = await rows(sessionmaker)
    assert (row.status, row.attempts) == (EmailStatus.SENT, 1)
    assert len(receiver.received) == 2 and len(set(receiver.ids())) == 1


async def test_giving_up_after_the_last_attempt(
    ctx: ServiceContext, receiver: Receiver, sessionmaker: SessionMaker, hook_settings: Settings
) -> None:
    await subscribe(ctx, receiver.url, ["*"], receiver)
    receiver.statuses = [502] * 10
    await record(ctx, events.Kind.PASSWORD_CHANGED)
    await run_burst_worker(hook_settings.with_values(WEBHOOK_MAX_ATTEMPTS=3))
    (row,) = await rows(sessionmaker)
    assert row.status == EmailStatus.FAILED
    assert row.last_error == "gave up after 3 attempts: HTTP 502 Bad Gateway"
    assert len(receiver.received) == 3


async def test_a_receiver_down_then_up_gets_everything(
    ctx: ServiceContext, sessionmaker: SessionMaker, hook_settings: Settings
) -> None:
    hook = Receiver(free_port())  # nothing listens there yet
    await subscribe(ctx, hook.url, ["*"], hook)
    await record(ctx, events.Kind.PASSWORD_CHANGED, count=3)
    settings = hook_settings.with_values(WEBHOOK_MAX_ATTEMPTS=50, WEBHOOK_BREAKER_THRESHOLD=50)
    await run_burst_worker(settings, max_burst_jobs=6)  # a few refused attempts, then stop
    refused = await rows(sessionmaker)
    assert all(r.status == EmailStatus.PENDING for r in refused)
    assert any("ConnectError" in (r.last_error or "") for r in refused)

    with serving(hook):
        await run_burst_worker(settings)
    assert sorted(hook.ids()) == sorted(r.message_id for r in refused)
    assert all(item.verified for item in hook.received)
    assert {r.status for r in await rows(sessionmaker)} == {EmailStatus.SENT}


async def test_a_failing_endpoint_is_paused_without_spending_attempts(
    ctx: ServiceContext, receiver: Receiver, sessionmaker: SessionMaker, hook_settings: Settings
) -> None:
    await subscribe(ctx, receiver.url, ["*"], receiver)
    receiver.statuses = [503] * 100
    await record(ctx, events.Kind.PASSWORD_CHANGED, count=5)
    settings = hook_settings.with_values(
        WEBHOOK_BREAKER_THRESHOLD=2, WEBHOOK_BREAKER_COOLDOWN=30, WORKER_MAX_JOBS=1
    )
    await run_burst_worker(settings, max_burst_jobs=8)
    # Two failures open the breaker; the rest wait, their attempts untouched.
    assert len(receiver.received) == 2
    assert sorted(r.attempts for r in await rows(sessionmaker)) == [0, 0, 0, 1, 1]


async def test_loopback_and_private_addresses_are_refused_by_default(
    ctx: ServiceContext, receiver: Receiver, sessionmaker: SessionMaker, settings: Settings
) -> None:
    guarded = settings.with_values(WEBHOOK_RETRY_BASE_DELAY=0.05, WEBHOOK_RETRY_MAX_DELAY=0.2)
    # A name is checked where it resolves, at delivery: "localhost" passes `add`.
    await subscribe(ctx, f"http://localhost:{receiver.port}/hooks", ["*"], receiver)
    await subscribe(ctx, receiver.url, ["*"], receiver)
    await record(ctx, events.Kind.PASSWORD_CHANGED)
    await run_burst_worker(guarded)
    assert receiver.received == []
    failed = await rows(sessionmaker)
    assert [r.status for r in failed] == [EmailStatus.FAILED] * 2
    assert all(r.attempts == 1 for r in failed)
    assert "loopback, private or reserved" in (failed[0].last_error or "")
    assert "WEBHOOKS_ALLOW_PRIVATE" in (failed[1].last_error or "")


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("93.184.215.14", True),
        ("2606:2800:21f:cb07:6820:80da:af6b:8b2c", True),
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),  # cloud metadata
        ("100.64.0.1", False),  # carrier-grade NAT
        ("0.0.0.0", False),
        ("224.0.0.1", False),
        ("192.0.2.1", False),  # documentation
        ("::1", False),
        ("fe80::1%eth0", False),
        ("fd00::1", False),
        ("::ffff:127.0.0.1", False),  # IPv4-mapped loopback
        ("::ffff:10.0.0.1", False),
        ("2002:7f00:1::", False),  # 6to4 around 127.0.0.1
        ("64:ff9b::a9fe:a9fe", False),  # NAT64 around 169.254.169.254
    ],
)
def test_which_addresses_count_as_public(address: str, public: bool) -> None:
    assert is_public_address(address) is public


async def test_redirects_are_not_followed_and_answers_are_classified() -> None:
    import httpx

    def answer(request: httpx.Request) -> httpx.Response:
        status = int(request.url.path.strip("/"))
        headers = {"retry-after": "7"} if status == 429 else {}
        if status == 302:
            headers = {"location": "http://10.0.0.1/"}
        return httpx.Response(status, headers=headers, stream=httpx.ByteStream(b"answer"))

    sender = WebhookSender(timeout=2, allow_private=True)
    sender._client._transport = httpx.MockTransport(answer)  # only the HTTP layer replaced
    secret = webhooks.new_secret()
    try:
        replies = {
            code: await sender.post(f"http://example.com/{code}", secret, "msg_x", "{}")
            for code in (200, 204, 302, 400, 408, 429, 500)
        }
    finally:
        await sender.close()
    assert replies[200].delivered and replies[204].delivered
    assert replies[302] == Reply(
        False,
        False,
        "HTTP 302 Found (redirects are not followed: give the endpoint's final URL)",
        302,
    )
    assert (replies[400].delivered, replies[400].temporary) == (False, False)
    assert replies[408].temporary and replies[500].temporary
    assert replies[429].temporary and replies[429].retry_after == 7.0
    future = (datetime.now(UTC) + timedelta(seconds=120)).strftime("%a, %d %b %Y %H:%M:%S GMT")
    assert _retry_after(future) == pytest.approx(120, abs=2)
    assert _retry_after("soon") is None


async def test_the_operators_commands(
    hook_settings: Settings, receiver: Receiver, sessionmaker: SessionMaker
) -> None:
    added = await worker_cli(
        hook_settings,
        "webhooks",
        "add",
        receiver.url,
        "--events",
        "user.registered,user.password_changed",
        "--description",
        "billing",
    )
    assert added.returncode == 0, added.stderr
    secret = re.search(r"signing secret .*: (whsec_\S+)", added.stdout)
    assert secret is not None
    receiver.secret = secret.group(1)

    listed = await worker_cli(hook_settings, "webhooks", "list")
    assert receiver.url in listed.stdout
    assert "events: user.password_changed, user.registered (billing)" in listed.stdout

    tested = await worker_cli(hook_settings, "webhooks", "test", "1")
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert tested.stdout.startswith(f"delivered: {receiver.url} answered HTTP 200 OK")
    (got,) = receiver.received
    assert got.verified and got.message["type"] == "webhook.test"

    receiver.statuses = [404]
    tested = await worker_cli(hook_settings, "webhooks", "test", "1")
    assert tested.returncode == 1 and "NOT delivered" in tested.stdout
    assert "HTTP 404 Not Found" in tested.stdout

    for args, message in [
        (["ftp://example.com/", "--events", "*"], "only http:// and https:// URLs"),
        (["https://u:p@example.com/", "--events", "*"], "put no credentials in the URL"),
        (["https://example.com/", "--events", "user.nope"], "unknown event type(s): user.nope"),
        (["https://example.com/", "--events", ","], "name at least one event type"),
    ]:
        refused = await worker_cli(hook_settings, "webhooks", "add", *args)
        assert refused.returncode == 2, args
        assert message in refused.stderr, refused.stderr

    removed = await worker_cli(hook_settings, "webhooks", "remove", "1")
    assert removed.returncode == 0 and "endpoint 1 removed" in removed.stdout
    assert (await worker_cli(hook_settings, "webhooks", "remove", "1")).returncode == 1
    assert "no webhook endpoints" in (await worker_cli(hook_settings, "webhooks", "list")).stdout


async def test_the_secret_is_stored_sealed(ctx: ServiceContext) -> None:
    endpoint = await webhooks.add_endpoint(ctx, "https://hooks.example.com/", ["*"])
    assert re.fullmatch(r"whsec_[A-Za-z0-9+/]{43}=", endpoint.secret)
    target = await webhooks.endpoint_target(ctx, endpoint.id)
    assert target is not None and target.secret == endpoint.secret
    async with ctx.reading() as session:
        row = await session.get(WebhookEndpoint, endpoint.id)
    assert row is not None and endpoint.secret not in row.secret_encrypted
    assert endpoint.secret.removeprefix("whsec_") not in row.secret_encrypted


async def test_the_sweeper_delivers_a_lost_job(
    ctx: ServiceContext,
    receiver: Receiver,
    sessionmaker: SessionMaker,
    hook_settings: Settings,
    queue: ArqRedis,
) -> None:
    """A delivery whose job was lost (Redis away at commit) is found by the sweeper."""
    from worker.bootstrap import worker_options
    from worker.webhooks.jobs import sweep_webhooks

    await subscribe(ctx, receiver.url, ["*"], receiver)
    await record(ctx, events.Kind.PASSWORD_CHANGED)
    (row,) = await rows(sessionmaker)
    job_id = webhook_job_id(row.id, hook_settings.QUEUE_NAME)
    await queue.delete(hook_settings.QUEUE_NAME, job_key_prefix + job_id)  # the job is lost
    async with sessionmaker() as session, session.begin():
        await session.execute(
            update(WebhookDelivery).values(next_attempt_at=func.now() - timedelta(minutes=5))
        )
    worker_ctx: dict[str, Any] = {"redis": queue}
    options = worker_options(hook_settings)
    await options["on_startup"](worker_ctx)
    try:
        assert await sweep_webhooks(worker_ctx) == 1
    finally:
        await options["on_shutdown"](worker_ctx)
    await run_burst_worker(hook_settings)
    assert len(receiver.received) == 1


async def test_a_url_the_sender_cannot_parse_is_refused_and_never_retried(
    ctx: ServiceContext, sessionmaker: SessionMaker, hook_settings: Settings
) -> None:
    """``http://0177.0.0.1/`` passes urlsplit but not httpx: refused at ``add``; one stored
    before the check (written here directly) fails at its first attempt, with the reason."""
    with pytest.raises(webhooks.EndpointError, match="not a URL the sender can use"):
        await webhooks.add_endpoint(ctx, "http://0177.0.0.1:8080/hook", ["*"])
    added = await webhooks.add_endpoint(ctx, "http://127.0.0.1:9/hook", ["*"])
    async with sessionmaker() as session, session.begin():
        await session.execute(
            update(WebhookEndpoint)
            .where(WebhookEndpoint.id == added.id)
            .values(url="http://0177.0.0.1:8080/hook")
        )
    await record(ctx, events.Kind.PASSWORD_CHANGED)
    await run_burst_worker(hook_settings)
    (row,) = await rows(sessionmaker)
    assert (row.status, row.attempts) == (EmailStatus.FAILED, 1)
    assert (row.last_error or "").startswith("the endpoint's URL cannot be used")
