"""POSTing one webhook message: where it may go, how it is signed, what came back.

Server-side request forgery is the first attack on any webhook sender: an endpoint URL that
names (or later resolves to) an internal address turns the worker into a way in. So the
check is made where the connection is made: the HTTP client's network backend resolves the
name itself, refuses unless every address is globally routable (``WEBHOOKS_ALLOW_PRIVATE``
lifts this, for tests and private deployments), and connects to the very address it
checked. TLS still verifies the certificate against the name, and redirects are never
followed (a 3xx is a failure the operator should see).

Messages are signed as the Standard Webhooks specification says (``webhook-id``,
``webhook-timestamp``, ``webhook-signature``: HMAC-SHA256 over ``id.timestamp.body``) with
its reference library, with a fresh timestamp on every attempt.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import typing
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from urllib.parse import urlencode

import httpcore
import httpx
from standardwebhooks.webhooks import Webhook

USER_AGENT = "accounts-webhooks/1"
MAX_RESPONSE_BYTES = 64 * 1024  # read (and ignore) at most this much of a receiver's answer
TEMPORARY_STATUSES = frozenset({408, 429})  # and every 5xx


class AddressNotAllowed(Exception):
    """The endpoint's host is, or resolves to, an address deliveries may not go to."""


def is_public_address(address: str) -> bool:
    """Whether deliveries may go to this IP address without WEBHOOKS_ALLOW_PRIVATE: only
    globally routable unicast ones (no loopback, private, link-local, shared, multicast,
    documentation or reserved ranges; an IPv4 address embedded in IPv6 is judged as IPv4)."""
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(
        address.split("%", 1)[0]
    )
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            ip = embedded
    return ip.is_global and not ip.is_multicast


_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend, resolving names itself and connecting only to addresses
    the policy allows (checked at every new connection, so a name that changes what it
    resolves to after ``webhooks add`` is caught)."""

    def __init__(self, *, allow_private: bool) -> None:
        self._allow_private = allow_private
        self._backend = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        local_address: str | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        addresses = await _resolve(host, port)
        if not self._allow_private:
            refused = [address for address in addresses if not is_public_address(address)]
            if refused:
                raise AddressNotAllowed(
                    f"{host} resolves to {', '.join(refused)}, a loopback, private or reserved "
                    "address (set WEBHOOKS_ALLOW_PRIVATE=true to allow)"
                )
        error: Exception | None = None
        for address in addresses:  # each one checked above; the first that answers
            try:
                return await self._backend.connect_tcp(
                    address, port, timeout, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as failure:
                error = failure
        assert error is not None
        raise error

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise AddressNotAllowed("webhooks are not delivered to unix sockets")

    async def sleep(self, seconds: float) -> None:
        await self._backend.sleep(seconds)


async def _resolve(host: str, port: int) -> list[str]:
    try:
        return [str(ipaddress.ip_address(host.strip("[]")))]
    except ValueError:
        pass
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(
            host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
        )
    except socket.gaierror as error:
        raise httpcore.ConnectError(f"cannot resolve {host}: {error.strerror}") from None
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


@dataclass(frozen=True, slots=True)
class Reply:
    """What one attempt came to. ``status_code`` is None when no HTTP answer came."""

    delivered: bool
    temporary: bool  # worth trying again later
    detail: str
    status_code: int | None = None
    retry_after: float | None = None  # seconds the receiver asked us to wait (429/503)


def signed_headers(secret: str, message_id: str, body: str, at: datetime) -> dict[str, str]:
    """The Standard Webhooks headers for ``body`` sent at ``at``."""
    return {
        "content-type": "application/json",
        "webhook-id": message_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": Webhook(secret).sign(message_id, at, body),
    }


class WebhookSender:
    """One HTTP client per worker process (keep-alive connections to each receiver)."""

    def __init__(self, *, timeout: float, allow_private: bool, max_connections: int = 100) -> None:
        self.timeout = timeout
        transport = httpx.AsyncHTTPTransport()
        # httpx has no parameter for the network backend; its pool is httpcore's, which has.
        transport._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(),
            max_connections=max_connections,
            max_keepalive_connections=20,
            keepalive_expiry=30.0,
            network_backend=GuardedBackend(allow_private=allow_private),
        )
        self._client = httpx.AsyncClient(
            transport=transport,
            timeout=httpx.Timeout(timeout),
            follow_redirects=False,
            trust_env=False,  # no proxy from the environment: the guard must see the target
            headers={"user-agent": USER_AGENT},
        )

    async def post(self, url: str, secret: str, message_id: str, body: str) -> Reply:
        headers = signed_headers(secret, message_id, body, datetime.now(UTC))
        return await self.send(url, body.encode(), headers)

    async def post_form(self, url: str, fields: dict[str, str]) -> Reply:
        """An ``application/x-www-form-urlencoded`` POST (a back-channel logout token),
        with the same guard, timeout and judgement of the answer as a webhook's."""
        body = urlencode(fields).encode()
        headers = {"content-type": "application/x-www-form-urlencoded"}
        return await self.send(url, body, headers)

    async def send(self, url: str, body: bytes, headers: dict[str, str]) -> Reply:
        try:
            async with asyncio.timeout(self.timeout):  # the whole attempt, DNS included
                async with self._client.stream(
                    "POST", url, content=body, headers=headers
                ) as response:
                    await _read_some(response)
        except AddressNotAllowed as error:
            return Reply(delivered=False, temporary=False, detail=str(error))
        except (httpx.InvalidURL, httpx.UnsupportedProtocol, ValueError) as error:
            # Stored before the URL check was this strict: it can never be attempted, so the
            # delivery fails now (and an operator is told) instead of at every sweep.
            return Reply(False, False, f"the endpoint's URL cannot be used: {error}"[:500])
        except (TimeoutError, httpx.TimeoutException):
            return Reply(False, True, f"no answer within {self.timeout:g} s")
        except httpx.HTTPError as error:
            if isinstance(error.__cause__, AddressNotAllowed):
                return Reply(False, False, str(error.__cause__))
            return Reply(False, True, f"{type(error).__name__}: {error}"[:500])
        return _judge(response)

    async def close(self) -> None:
        await self._client.aclose()


async def _read_some(response: httpx.Response) -> None:
    read = 0
    async for chunk in response.aiter_raw():
        read += len(chunk)
        if read >= MAX_RESPONSE_BYTES:
            break


def _judge(response: httpx.Response) -> Reply:
    code = response.status_code
    detail = f"HTTP {code} {response.reason_phrase}".rstrip()
    if 200 <= code < 300:
        return Reply(True, False, detail, code)
    if code in TEMPORARY_STATUSES or code >= 500:
        return Reply(False, True, detail, code, _retry_after(response.headers.get("retry-after")))
    if 300 <= code < 400:
        detail += " (redirects are not followed: give the endpoint's final URL)"
    return Reply(False, False, detail, code)


def _retry_after(value: str | None) -> float | None:
    """Retry-After in seconds (delta-seconds or an HTTP date), or None."""
    if not value:
        return None
    if value.strip().isdigit():
        return float(value.strip())
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (moment - datetime.now(UTC)).total_seconds())
