"""The SMTP pool finds the concurrency a provider sustains by itself: more connections while
messages wait, fewer when the provider pushes back, and exactly as many as it allows when it
refuses one more (421), without failing or losing a message."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from devstack.mailsink import MailSink, start_sink
from tests.relay import Relay
from worker.mail.concurrency import AdaptiveLimit
from worker.mail.render import EmailRenderer, build_message
from worker.mail.smtp import SMTPConfig, SMTPPool


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_slow_start_doubles_each_round_while_messages_wait() -> None:
    limit = AdaptiveLimit(4, 64)
    for _ in range(4):  # one round: each of the 4 connections delivers once
        limit.delivered(0.3, waiting=True)
    assert limit.current == 8
    for _ in range(8):
        limit.delivered(0.3, waiting=True)
    assert limit.current == 16
    for _ in range(100):
        limit.delivered(0.3, waiting=True)
    assert limit.current == 64  # never past the maximum


def test_no_demand_no_growth() -> None:
    limit = AdaptiveLimit(4, 64)
    for _ in range(50):
        limit.delivered(0.3, waiting=False)
    assert limit.current == 4


def test_a_push_back_halves_then_growth_is_one_per_round() -> None:
    limit = AdaptiveLimit(16, 64)
    limit.pushed_back()
    assert limit.current == 8
    for _ in range(9):  # a round of deliveries: +1 (additive increase from now on)
        limit.delivered(0.3, waiting=True)
    assert limit.current == 9


def test_a_refused_connection_caps_the_limit_for_a_while() -> None:
    clock = Clock()
    limit = AdaptiveLimit(8, 64, hold=60, clock=clock)
    for _ in range(100):
        limit.delivered(0.3, waiting=True)
    limit.refused_connection(5)
    assert limit.current == 5
    for _ in range(100):
        limit.delivered(0.3, waiting=True)
    assert limit.current == 5  # held at what the provider allows
    clock.now += 61
    for _ in range(20):
        limit.delivered(0.3, waiting=True)
    assert limit.current > 5  # probing again, slowly


def test_climbing_latency_eases_the_limit() -> None:
    limit = AdaptiveLimit(4, 64)
    for _ in range(60):
        limit.delivered(0.1, waiting=True)
    grown = limit.current
    for _ in range(30):
        limit.delivered(1.0, waiting=True)  # ten times the unloaded latency: queueing
    assert 4 <= limit.current < grown


def message(to: str) -> Any:
    rendered = EmailRenderer(site_name="Accounts", base_url="http://x").render("test", {})
    return build_message(
        rendered, sender="Accounts <noreply@accounts.test>", recipient=to,
        message_id=f"<{to}>",
    )  # fmt: skip


@pytest.fixture
def slow_sink() -> Iterator[tuple[MailSink, int]]:
    sink = MailSink(delay=0.2)  # a provider taking 200 ms per message
    controller = start_sink(sink)
    yield sink, controller.port
    controller.stop()


async def test_against_a_slow_provider_the_pool_grows_to_meet_demand(
    slow_sink: tuple[MailSink, int],
) -> None:
    sink, port = slow_sink
    pool = SMTPPool(SMTPConfig("127.0.0.1", port, timeout=10), size=2, max_size=32)
    try:
        await asyncio.gather(*(pool.send(message(f"u{n}@example.com")) for n in range(150)))
    finally:
        await pool.close()
    assert len(sink.messages) == 150
    assert pool.limit.current == 32 and pool.connects >= 16


class Gate(Relay):
    """A TCP front for an SMTP server that allows ``allowed`` connections at once and greets
    any more with 421, as providers that cap connections per client do."""

    def __init__(self, target: int, allowed: int) -> None:
        super().__init__("127.0.0.1", target)
        self.allowed = allowed
        self.open = 0
        self.most = 0
        self.turned_away = 0

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.open >= self.allowed:
            self.turned_away += 1
            writer.write(b"421 4.7.0 Too many connections from your address\r\n")
            with contextlib.suppress(OSError):
                await writer.drain()
            writer.close()
            return
        self.open += 1
        self.most = max(self.most, self.open)
        try:
            await super()._relay(reader, writer)
        finally:
            self.open -= 1


@pytest.fixture
async def gate(slow_sink: tuple[MailSink, int]) -> AsyncIterator[Gate]:
    _, port = slow_sink
    front = Gate(port, allowed=3)
    await front.start()
    yield front
    await front.cut()


async def test_a_provider_allowing_three_connections_gets_three_and_every_message(
    slow_sink: tuple[MailSink, int], gate: Gate
) -> None:
    sink, _ = slow_sink
    pool = SMTPPool(SMTPConfig("127.0.0.1", gate.port, timeout=10), size=8, max_size=32)
    try:
        await asyncio.gather(*(pool.send(message(f"u{n}@example.com")) for n in range(40)))
    finally:
        await pool.close()
    assert len(sink.messages) == 40  # none failed, none lost
    assert gate.turned_away >= 1 and gate.most == 3
    assert pool.limit.current == 3  # settled where the provider said
