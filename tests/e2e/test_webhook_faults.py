"""Webhook delivery survives the worker being SIGKILLed mid-batch: every event arrives,
duplicates are at most the deliveries in flight, and a duplicate carries the same id."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from arq.connections import ArqRedis
from sqlalchemy import func, select

from devstack.servers import free_port
from shared.db import SessionMaker
from shared.models import WebhookDelivery, WebhookEndpoint
from shared.outbox import transaction
from shared.services import events, webhooks
from shared.settings import Settings
from tests.e2e.test_faults import WorkerProcess
from tests.receiver import Receiver, serving
from tests.support import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("clean_db")]


async def test_worker_killed_mid_batch_delivers_every_event(
    settings: Settings, queue: ArqRedis, sessionmaker: SessionMaker, tmp_path: Path
) -> None:
    # A short job timeout so a killed worker's jobs become runnable again in 15 s, not 70.
    settings = settings.with_values(
        WEBHOOKS_ALLOW_PRIVATE=True, WORKER_JOB_TIMEOUT=5, WEBHOOK_TIMEOUT=3
    )
    total = 200
    with serving(Receiver(free_port(), delay=0.02)) as receiver:
        secret = webhooks.new_secret()
        receiver.secret = secret
        async with transaction(sessionmaker, queue, queue_name=settings.QUEUE_NAME) as session:
            session.add(
                WebhookEndpoint(
                    url=receiver.url,
                    event_types=["*"],
                    secret_encrypted=webhooks.sealer(settings.SECRET_KEY.get_secret_value()).seal(
                        secret
                    ),
                )
            )
            await session.flush()
            for _ in range(total):
                await events.record(session, events.Kind.LOGIN_SUCCEEDED, None)
        async with sessionmaker() as session:
            expected = set(await session.scalars(select(WebhookDelivery.message_id)))
        assert len(expected) == total

        worker = WorkerProcess(settings, tmp_path / "worker.log")
        await wait_for(lambda: len(receiver.received) >= 40, timeout=60)
        worker.kill()
        assert len(set(receiver.ids())) < total

        worker = WorkerProcess(settings, tmp_path / "worker.log")
        try:
            await wait_for(lambda: set(receiver.ids()) == expected, timeout=90, every=0.2)
        finally:
            assert await worker.stop() == 0
    counts = Counter(receiver.ids())
    duplicates = sum(count - 1 for count in counts.values())
    # At most the deliveries in flight when the worker died arrive twice, with the same id.
    assert duplicates <= settings.WORKER_MAX_JOBS
    assert all(item.verified for item in receiver.received)
    async with sessionmaker() as session:
        statuses = dict(
            (
                await session.execute(
                    select(WebhookDelivery.status, func.count()).group_by(WebhookDelivery.status)
                )
            ).all()
        )
    assert statuses == {"sent": total}
