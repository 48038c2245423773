"""The open loop's client (scenario 7): form POSTs at fixed times over plain HTTP/1.1
keep-alive connections, as lean as a client can be.

On 2 cores the load generator shares the machine with the servers it measures, and in an
open loop its own delays count against them (a latency runs from when the request was due):
through aiohttp each POST cost the load generator ~0.7 ms of CPU, a tenth of the machine at
300 POSTs/s. Here a request is bytes prepared ahead (the browser session's cookie, its CSRF
token, the form) written to an idle connection, and a response is read only as far as its
status, its session cookie and its length. The sessions themselves are made by real browser
sessions (aiohttp: GET the form, keep the cookie, read the token), as before.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

from bench.loadgen import LoadResult, browser_session, csrf_token

_LENGTH = re.compile(rb"\r\ncontent-length:\s*(\d+)", re.IGNORECASE)
_SET_COOKIE = re.compile(rb"\r\nset-cookie:\s*([^=;\r\n]+)=([^;\r\n]*)", re.IGNORECASE)


TIMEOUT = 60.0  # seconds a request may wait for its answer (aiohttp's total, as before)


class ConnectionClosed(Exception):
    """The server closed the connection before the whole response arrived."""


class UnreadableResponse(Exception):
    """A response this client does not read (no Content-Length)."""


class _Connection(asyncio.Protocol):
    """One keep-alive connection: a request at a time, its response read by length."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[tuple[int, dict[bytes, bytes]]] | None = None
        self.answered = 0  # responses read so far (a reused connection has some)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionClosed())

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self.buffer[: end + 2])
        length = _LENGTH.search(head)
        if length is None:  # chunked: not what these servers send for a redirect
            if self.waiter is not None and not self.waiter.done():
                self.waiter.set_exception(UnreadableResponse(head[:200].decode("latin-1")))
            assert self.transport is not None
            self.transport.close()
            return
        total = end + 4 + int(length.group(1))
        if len(self.buffer) < total:
            return
        del self.buffer[:total]
        self.answered += 1
        if self.waiter is not None and not self.waiter.done():
            cookies = dict(_SET_COOKIE.findall(head))
            self.waiter.set_result((int(head[9:12]), cookies))

    async def exchange(self, request: bytes) -> tuple[int, dict[bytes, bytes]]:
        """Send one request; (status, the cookies it set)."""
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        try:
            async with asyncio.timeout(TIMEOUT):
                return await self.waiter
        except TimeoutError:
            self.transport.close()  # its answer may still come: the connection is not reused
            raise

    @property
    def usable(self) -> bool:
        return self.transport is not None and not self.transport.is_closing()


@dataclass
class _Session:
    cookies: dict[bytes, bytes]
    token: str

    @property
    def header(self) -> bytes:
        return b"; ".join(name + b"=" + value for name, value in self.cookies.items())


class OpenLoop:
    """POST a form to ``path`` from the browser sessions :meth:`open_sessions` made, in turn."""

    def __init__(self, base: str, path: str) -> None:
        url = urlsplit(base)
        self._host = url.hostname or "127.0.0.1"
        self._port = url.port or 80
        self._base = base
        self._path = path
        self._idle: list[_Connection] = []
        self._sessions: list[_Session] = []

    async def open_sessions(self, count: int) -> None:
        """``count`` browser sessions, each with the form's cookie and CSRF token."""
        for _ in range(count):
            async with browser_session(self._base) as client:
                async with client.get(self._path) as page:
                    token = csrf_token(await page.text())
                jar = client.cookie_jar.filter_cookies(page.url)
                cookies = {name.encode(): morsel.value.encode() for name, morsel in jar.items()}
            self._sessions.append(_Session(cookies, token))

    def _request(self, session: _Session, fields: dict[str, str]) -> bytes:
        body = "&".join(
            f"{name}={quote(value, safe='')}"
            for name, value in {"csrf_token": session.token, **fields}.items()
        ).encode()
        return (
            f"POST {self._path} HTTP/1.1\r\nHost: {self._host}:{self._port}\r\n"
            # What aiohttp sent before (the servers parse the same headers as then).
            "Accept: */*\r\nAccept-Encoding: gzip, deflate\r\nUser-Agent: bench-open-loop\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\n"
            f"Content-Length: {len(body)}\r\nCookie: ".encode()
            + session.header
            + b"\r\n\r\n"
            + body
        )

    async def _connection(self) -> _Connection:
        while self._idle:
            connection = self._idle.pop()
            if connection.usable:
                return connection
        _, connection = await asyncio.get_running_loop().create_connection(
            _Connection, self._host, self._port
        )
        return connection

    async def post(self, n: int, fields: dict[str, str]) -> int:
        """POST from session ``n`` (modulo the sessions); the response's status.

        As a browser does, a request that a reused connection lost before any answer (the
        server closed it while idle) is sent once more on a new connection."""
        session = self._sessions[n % len(self._sessions)]
        request = self._request(session, fields)
        for attempt in (1, 2):
            connection = await self._connection()
            reused = connection.answered > 0
            try:
                status, cookies = await connection.exchange(request)
            except ConnectionClosed:
                if reused and attempt == 1:
                    continue
                raise
            session.cookies.update(cookies)  # the session as the server last signed it
            self._idle.append(connection)
            return status
        raise AssertionError("unreachable")

    def close(self) -> None:
        for connection in self._idle:
            if connection.transport is not None:
                connection.transport.close()
        self._idle.clear()


async def fixed_rate_posts(
    base: str, path: str, form: Callable[[int], dict[str, str]], rate: float, seconds: float
) -> LoadResult:
    """``rate`` POSTs per second for ``seconds``, the n-th due at start + n / rate and sent
    then, whether or not earlier ones were answered; each latency runs from its due time (no
    coordinated omission). ``form(n)``: the n-th POST's fields besides the CSRF token. A 302
    (the form's redirect) is a success."""
    result = LoadResult()
    loop = OpenLoop(base, path)
    try:
        await loop.open_sessions(64)

        async def post(n: int, due: float) -> None:
            try:
                ok = await loop.post(n, form(n)) == 302
            except (OSError, TimeoutError, ConnectionClosed, UnreadableResponse):
                ok = False
            if ok:
                result.latencies.append(time.perf_counter() - due)
            else:
                result.errors += 1

        count = min(int(rate * seconds), 100_000)
        started = time.perf_counter()
        tasks = []
        for n in range(count):
            due = started + n / rate
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            tasks.append(asyncio.create_task(post(n, due)))
        await asyncio.gather(*tasks)
        result.seconds = time.perf_counter() - started
    finally:
        loop.close()
    return result
