"""SMTP delivery over a small pool of reused aiosmtplib connections.

aiosmtplib has no pooling and one ``SMTP`` object serialises whole transactions, so throughput
comes from several long-lived connections used in parallel. A connection is opened lazily,
reused across jobs, re-opened after it has been idle too long (servers drop idle clients) or
after any error (its state is then unknown). A server that offers PIPELINING (RFC 2920) gets
each message's envelope and DATA in one write (:mod:`worker.mail.pipelining`).

Failures are classified for the retry policy:

* :class:`TemporaryDeliveryError`: 4xx replies, refused or dropped connections, timeouts, and
  connection-level trouble (TLS, AUTH) that says nothing about the message itself;
* :class:`PermanentDeliveryError`: 5xx replies to MAIL FROM, RCPT TO or DATA: retrying the
  same message will not help.
"""

from __future__ import annotations

import asyncio
import re
import ssl
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from email.message import EmailMessage
from email.policy import SMTPUTF8

import aiosmtplib

from worker.mail import pipelining
from worker.mail.concurrency import AdaptiveLimit

AsyncSMTP = aiosmtplib.SMTP  # the asyncio client (a name no one mistakes for smtplib's)


@dataclass(frozen=True, slots=True)
class SMTPConfig:
    hostname: str
    port: int
    use_tls: bool = False  # implicit TLS (MAIL_USE_SSL)
    start_tls: bool = False  # STARTTLS (MAIL_USE_TLS)
    username: str | None = None
    password: str | None = None
    timeout: float = 30.0
    validate_certs: bool = True
    cert_bundle: str | None = None
    tls_context: ssl.SSLContext | None = None


# 5xx replies that blame our connection or credentials, not the message (RFC 3207, 4954):
# authentication or STARTTLS required, credentials invalid, encryption required. Retrying
# after the operator fixes the configuration delivers the message; failing it would lose it.
CONFIGURATION_CODES = frozenset({530, 534, 535, 538})
# A message turned away this many times because the provider refused one more connection
# is retried later like any temporary failure (the connections it allows are all stuck).
MAX_CROWDED_WAITS = 8


@dataclass(frozen=True, slots=True)
class Envelope:
    sender: str  # MAIL FROM
    recipient: str  # RCPT TO
    smtputf8: bool = False  # the bytes carry non-ASCII addresses: ask for SMTPUTF8


Outgoing = bytes | EmailMessage


class DeliveryError(Exception):
    """Delivery did not happen; ``reply`` is what the server (or the network) said."""

    temporary: bool = True

    def __init__(self, reply: str) -> None:
        super().__init__(reply)
        self.reply = reply


class TemporaryDeliveryError(DeliveryError):
    temporary = True


class PermanentDeliveryError(DeliveryError):
    temporary = False


class RecipientRefused(PermanentDeliveryError):
    """The server refused the recipient itself (at RCPT, or with a 5.1.x/5.2.1 status): the
    address is bad, not the message; it goes on the suppression list."""


_ADDRESS_STATUS = re.compile(r"^5\d\d[ -]5\.(?:1\.\d{1,3}|2\.1)\b")


def permanent_error(reply: str) -> PermanentDeliveryError:
    if _ADDRESS_STATUS.match(reply):
        return RecipientRefused(reply)
    return PermanentDeliveryError(reply)


class _Slot:
    """One pooled connection and when it was last used."""

    def __init__(self, client: aiosmtplib.SMTP) -> None:
        self.client = client
        self.last_used = 0.0
        self.discarded = False  # could not be opened: the pool forgets it


class _Crowded(Exception):
    """The provider refused one more connection while others are open: the message waits
    for one of those instead (no attempt spent; the limit learns the provider's number)."""


class _Slots:
    """The pool's connections: free ones handed out most recently used first, new ones made
    while the :class:`AdaptiveLimit` allows more, and messages waiting for one served
    priority first: the worker holds up to WORKER_MAX_JOBS deliveries at once, so without
    this a sign-in code or reset link taken behind a backlog would wait for dozens of
    ordinary messages ahead of it in this process."""

    def __init__(self, make: Callable[[], _Slot], limit: AdaptiveLimit) -> None:
        self._make = make
        self._limit = limit
        self._idle: list[_Slot] = []
        self.count = 0  # connections in use or idle (open or not yet)
        self._waiting: dict[bool, deque[asyncio.Future[_Slot]]] = {True: deque(), False: deque()}

    @property
    def waiting(self) -> bool:
        return bool(self._waiting[True] or self._waiting[False])

    async def get(self, *, priority: bool) -> _Slot:
        ahead = self._waiting[True] if priority else self._waiting[True] or self._waiting[False]
        if not ahead:
            if self._idle:
                return self._idle.pop()
            if self.count < self._limit.current:
                self.count += 1
                return self._make()
        waiter: asyncio.Future[_Slot] = asyncio.get_running_loop().create_future()
        self._waiting[priority].append(waiter)
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.put(waiter.result())  # handed over as it was cancelled: pass it on
            else:
                self._waiting[priority].remove(waiter)
            raise

    def idle(self) -> list[_Slot]:
        """The free connections (they stay in the pool)."""
        return list(self._idle)

    def put(self, slot: _Slot) -> bool:
        """Give ``slot`` back; False when the limit is now below the connections there are:
        the caller closes this one instead."""
        if self.count > self._limit.current:
            self.count -= 1
            return False
        if not self._hand_over(slot):
            self._idle.append(slot)
        self.grow()
        return True

    def discard(self) -> None:
        """A connection the caller gave up on (it could not be opened)."""
        self.count -= 1
        self.grow()

    def grow(self) -> None:
        """New connections for waiting messages, as far as the limit now allows."""
        while self.waiting and self.count < self._limit.current:
            self.count += 1
            if not self._hand_over(self._make()):
                self.count -= 1
                return

    def _hand_over(self, slot: _Slot) -> bool:
        for waiting in (self._waiting[True], self._waiting[False]):
            while waiting:
                waiter = waiting.popleft()
                if not waiter.done():
                    waiter.set_result(slot)
                    return True
        return False


class SMTPPool:
    """Reusable SMTP connections, as many at once as the provider sustains: ``size`` to
    begin with, up to ``max_size`` (:class:`AdaptiveLimit` finds where in between)."""

    def __init__(
        self,
        config: SMTPConfig,
        *,
        size: int = 4,
        max_size: int | None = None,
        max_idle: float = 30.0,
    ) -> None:
        self._config = config
        self._max_idle = max_idle
        self.limit = AdaptiveLimit(size, max_size or size)
        self._slots = _Slots(lambda: _Slot(self._new_client()), self.limit)
        self._in_use: set[_Slot] = set()  # connections carrying a message right now
        self.connects = 0  # how many connections were opened: tests and benchmarks read it

    def _new_client(self) -> aiosmtplib.SMTP:
        c = self._config
        return AsyncSMTP(
            hostname=c.hostname,
            port=c.port,
            use_tls=c.use_tls,
            start_tls=c.start_tls,
            username=c.username,
            password=c.password,
            timeout=c.timeout,
            validate_certs=c.validate_certs,
            cert_bundle=c.cert_bundle,
            tls_context=c.tls_context,
        )

    @property
    def open_connections(self) -> int:
        slots = [*self._slots.idle(), *self._in_use]
        return sum(1 for slot in slots if slot.client.is_connected)

    async def _others_open(self, slot: _Slot) -> int:
        """Connections open besides ``slot`` (which the server just refused). At a burst's
        start the others may still be shaking hands: they get a moment to finish."""
        for _ in range(20):
            others = self.open_connections - (1 if slot.client.is_connected else 0)
            if others or not (self._in_use - {slot}):
                return others
            await asyncio.sleep(0.01)
        return 0

    @asynccontextmanager
    async def _connection(self, *, priority: bool) -> AsyncIterator[_Slot]:
        slot = await self._slots.get(priority=priority)
        self._in_use.add(slot)
        try:
            yield slot
        finally:
            self._in_use.discard(slot)
            slot.last_used = time.monotonic()
            if slot.discarded:
                self._slots.discard()
            elif not self._slots.put(slot):
                await self._close(slot)  # fewer connections now: this one goes

    async def _ensure_connected(self, slot: _Slot) -> None:
        client = slot.client
        if client.is_connected and time.monotonic() - slot.last_used > self._max_idle:
            await self._close(slot)
        if not client.is_connected:
            # connect() performs STARTTLS and AUTH as configured.
            await client.connect()
            self.connects += 1
        if client.is_ehlo_or_helo_needed:
            # Now rather than inside the first transaction: its extensions (PIPELINING,
            # SMTPUTF8) decide how that transaction is sent.
            try:
                await client.ehlo()
            except aiosmtplib.SMTPHeloError:
                await client.helo()

    async def send(
        self, message: Outgoing, *, envelope: Envelope | None = None, priority: bool = False
    ) -> str:
        """Deliver one message; returns the server's final reply. Raises DeliveryError.

        ``message`` is wire bytes (then ``envelope`` gives MAIL FROM and RCPT TO) or an
        EmailMessage (its headers give them, and SMTPUTF8 is used when needed). A
        ``priority`` message gets the next free connection before the others waiting."""
        for _ in range(MAX_CROWDED_WAITS):
            try:
                return await self._send_once(message, envelope, priority=priority)
            except _Crowded:
                continue  # another connection carries it, once one is free
        raise TemporaryDeliveryError("the server refused more connections")

    async def _send_once(
        self, message: Outgoing, envelope: Envelope | None, *, priority: bool
    ) -> str:
        async with self._connection(priority=priority) as slot:
            # A reused connection the server had already dropped says nothing about this
            # message: it gets one more try, on a fresh connection.
            tries = 2 if slot.client.is_connected else 1
            for attempt in range(1, tries + 1):
                started = time.monotonic()
                try:
                    reply = await self._send_on(slot, message, envelope)
                except aiosmtplib.SMTPServerDisconnected:
                    await self._close(slot)
                    if attempt == tries:
                        raise TemporaryDeliveryError("server closed the connection") from None
                except _Crowded:
                    slot.discarded = True
                    raise
                except DeliveryError as error:
                    await self._close(slot)
                    if error.temporary and _slow_down(error.reply):
                        self.limit.pushed_back()  # the provider asks us to slow down
                    raise
                else:
                    self.limit.delivered(time.monotonic() - started, waiting=self._slots.waiting)
                    self._slots.grow()
                    return reply
        raise AssertionError("unreachable: every try returns or raises")

    async def _send_on(self, slot: _Slot, message: Outgoing, envelope: Envelope | None) -> str:
        opening = not slot.client.is_connected
        try:
            await self._ensure_connected(slot)
        except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPConnectError, OSError) as error:
            if opening and (others := await self._others_open(slot)):
                # One connection too many for this provider: it keeps the ones it has.
                self.limit.refused_connection(others)
                raise _Crowded from None
            if isinstance(error, aiosmtplib.SMTPServerDisconnected):
                raise TemporaryDeliveryError(
                    "server closed the connection while connecting"
                ) from None
            raise TemporaryDeliveryError(_describe(error)) from None
        except aiosmtplib.SMTPResponseException as error:
            if opening and error.code == 421 and (others := await self._others_open(slot)):
                self.limit.refused_connection(others)  # "too many connections" at greeting
                raise _Crowded from None
            # Greeting, EHLO, STARTTLS or AUTH refused: a problem of the connection or our
            # configuration, not of this message. Keep it and try later.
            raise TemporaryDeliveryError(_reply(error.code, error.message)) from None
        except (aiosmtplib.SMTPException, TimeoutError) as error:
            raise TemporaryDeliveryError(_describe(error)) from None
        try:
            errors: dict[str, aiosmtplib.SMTPResponse] = {}
            if envelope is not None:
                wire, smtputf8 = _wire(message, envelope)
                if pipelining.offered(slot.client):
                    reply = await pipelining.send_pipelined(
                        slot.client,
                        envelope.sender,
                        envelope.recipient,
                        wire,
                        smtputf8=smtputf8,
                        per_reply=self._config.timeout,
                    )
                else:
                    errors, reply = await slot.client.sendmail(
                        envelope.sender,
                        [envelope.recipient],
                        wire,
                        mail_options=["SMTPUTF8"] if smtputf8 else None,
                    )
            elif isinstance(message, bytes):
                raise ValueError("raw messages need an envelope")
            else:
                errors, reply = await slot.client.send_message(message)
        except aiosmtplib.SMTPServerDisconnected:
            raise
        except aiosmtplib.SMTPRecipientsRefused as error:
            # Raised only when every recipient was refused; each carries its own reply code.
            codes = [refusal.code for refusal in error.recipients]
            text = "; ".join(_reply(r.code, r.message) for r in error.recipients)
            if any(400 <= code < 500 for code in codes):
                raise TemporaryDeliveryError(text) from None
            raise RecipientRefused(text) from None
        except aiosmtplib.SMTPResponseException as error:
            if 400 <= error.code < 500 or error.code in CONFIGURATION_CODES:
                raise TemporaryDeliveryError(_reply(error.code, error.message)) from None
            raise permanent_error(_reply(error.code, error.message)) from None
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as error:
            raise TemporaryDeliveryError(_describe(error)) from None
        if errors:
            # Our messages have one recipient, so a partial refusal cannot happen; say so if
            # it ever does rather than report success.
            refused = "; ".join(
                f"{rcpt}: {_reply(r.code, r.message)}" for rcpt, r in errors.items()
            )
            raise PermanentDeliveryError(f"some recipients refused: {refused}")
        return reply

    async def _close(self, slot: _Slot) -> None:
        client = slot.client
        if client.is_connected:
            try:
                await asyncio.wait_for(client.quit(), timeout=2)
            except (aiosmtplib.SMTPException, OSError, TimeoutError):
                client.close()
        # A fresh object: aiosmtplib keeps per-connection state (ESMTP extensions, TLS).
        slot.client = self._new_client()

    async def close(self) -> None:
        """Close every idle connection (call at shutdown, after jobs have finished)."""
        for slot in self._slots.idle():
            await self._close(slot)


_SLOW_DOWN = re.compile(r"\b(?:too many|rate|throttl\w*|limit\w*)\b|\b4\.3\.2\b|\b4\.7\.0\b", re.I)


def _wire(message: Outgoing, envelope: Envelope) -> tuple[bytes, bool]:
    """The bytes to send and whether they need SMTPUTF8 (an EmailMessage is one whose
    addresses need more than ASCII: flattened as UTF-8)."""
    if isinstance(message, bytes):
        return message, envelope.smtputf8
    return message.as_bytes(policy=SMTPUTF8), True


def _slow_down(reply: str) -> bool:
    """A temporary refusal that is about our pace, not about this message: 421 (the server
    is closing the channel: busy), or words and statuses of rate limiting. Greylisting
    (450/451 4.7.1 for one recipient) and a full mailbox are not."""
    return reply.startswith("421") or bool(_SLOW_DOWN.search(reply))


def _reply(code: int, message: str) -> str:
    return f"{code} {' '.join(message.split())}"


def _describe(error: BaseException) -> str:
    if isinstance(error, aiosmtplib.SMTPResponseException):
        return _reply(error.code, error.message)
    detail = str(error) or type(error).__name__
    return f"{type(error).__name__}: {' '.join(detail.split())}"
