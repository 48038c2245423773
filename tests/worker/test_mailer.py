"""The SMTP pool against aiosmtpd servers configured for STARTTLS, implicit TLS and AUTH,
and its connection reuse."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterator
from typing import Any

import pytest
import trustme
from aiosmtpd.smtp import AuthResult, LoginPassword

from devstack.mailsink import MailSink, free_port, start_sink
from shared.settings import Settings
from worker.bootstrap import smtp_config
from worker.mail.render import EmailRenderer, build_message
from worker.mail.smtp import PermanentDeliveryError, SMTPPool, TemporaryDeliveryError

USER, PASSWORD = "mailer", "s3cret-smtp-password"


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> tuple[ssl.SSLContext, str]:
    """A throwaway CA and a server certificate for 127.0.0.1."""
    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(server)
    bundle = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    return server, str(bundle)


def authenticator(
    server: Any, session: Any, envelope: Any, mechanism: str, data: Any
) -> AuthResult:
    ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
        USER.encode(),
        PASSWORD.encode(),
    )
    return AuthResult(success=ok, handled=False)


def message(to: str = "you@example.com") -> Any:
    rendered = EmailRenderer(site_name="Accounts", base_url="http://x").render("test", {})
    return build_message(
        rendered,
        sender="Accounts <noreply@accounts.test>",
        recipient=to,
        message_id="<m@accounts.test>",
    )


@pytest.fixture
def server(request: pytest.FixtureRequest) -> Iterator[tuple[MailSink, int]]:
    sink = MailSink()
    controller = start_sink(sink, **getattr(request, "param", {}))
    yield sink, controller.port
    controller.stop()


def configured(settings: Settings, port: int, **values: Any) -> SMTPPool:
    """The pool exactly as the worker builds it from MAIL_* settings."""
    mail = settings.with_values(**{"MAIL_SERVER": "127.0.0.1", "MAIL_PORT": port, **values})
    return SMTPPool(smtp_config(mail), size=2)


async def test_starttls_with_auth(
    settings: Settings, certificates: tuple[ssl.SSLContext, str]
) -> None:
    server_context, bundle = certificates
    sink = MailSink()
    controller = start_sink(
        sink,
        tls_context=server_context,
        require_starttls=True,
        authenticator=authenticator,
        auth_required=True,
    )
    try:
        pool = configured(
            settings,
            controller.port,
            MAIL_USE_TLS=True,
            MAIL_USERNAME=USER,
            MAIL_PASSWORD=PASSWORD,
            MAIL_CA_BUNDLE=bundle,
        )
        await pool.send(message())
        await pool.close()

        # A wrong password is a configuration problem, not the message's: keep it, retry.
        wrong = configured(
            settings,
            controller.port,
            MAIL_USE_TLS=True,
            MAIL_USERNAME=USER,
            MAIL_PASSWORD="nope-nope-nope",
            MAIL_CA_BUNDLE=bundle,
        )
        with pytest.raises(TemporaryDeliveryError, match=r"^535"):
            await wrong.send(message())
        await wrong.close()

        # Without STARTTLS the server refuses to go on: a configuration problem, kept for retry.
        plain = configured(settings, controller.port)
        with pytest.raises(TemporaryDeliveryError, match=r"^530"):
            await plain.send(message())
        await plain.close()
    finally:
        controller.stop()
    assert len(sink.messages) == 1
    assert sink.messages[0].message["Subject"] == "test subject"


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
async def test_implicit_tls(settings: Settings, certificates: tuple[ssl.SSLContext, str]) -> None:
    server_context, bundle = certificates
    sink = MailSink()
    # The transport is TLS from the first byte, so AUTH needs no STARTTLS.
    controller = start_sink(
        sink,
        ssl_context=server_context,
        authenticator=authenticator,
        auth_required=True,
        auth_require_tls=False,
    )
    try:
        pool = configured(
            settings,
            controller.port,
            MAIL_USE_SSL=True,
            MAIL_USERNAME=USER,
            MAIL_PASSWORD=PASSWORD,
            MAIL_CA_BUNDLE=bundle,
        )
        await pool.send(message())
        await pool.close()

        # An unknown CA is refused: certificates are validated by default.
        untrusted = configured(
            settings, controller.port, MAIL_USE_SSL=True, MAIL_USERNAME=USER, MAIL_PASSWORD=PASSWORD
        )
        with pytest.raises(TemporaryDeliveryError, match=r"(?i)certificate"):
            await untrusted.send(message())
        await untrusted.close()
    finally:
        controller.stop()
    assert len(sink.messages) == 1


async def test_connections_are_reused_not_opened_per_message(
    settings: Settings, server: tuple[MailSink, int]
) -> None:
    sink, port = server
    pool = configured(settings, port)
    for _ in range(20):
        await pool.send(message())
    assert len(sink.messages) == 20
    assert pool.connects == 1
    await pool.close()


async def test_a_priority_message_takes_the_next_free_connection(
    settings: Settings, server: tuple[MailSink, int]
) -> None:
    """Ten ordinary messages wait for two connections to a slow server; a priority one (a
    sign-in code) asked for after them goes out as soon as one is free, not last."""
    sink, port = server
    sink.delay = 0.05
    pool = configured(settings, port)
    ordinary = [asyncio.create_task(pool.send(message(f"n{n}@example.com"))) for n in range(10)]
    await asyncio.sleep(0.01)  # every ordinary one is waiting or being sent
    await pool.send(message("code@example.com"), priority=True)
    await asyncio.gather(*ordinary)
    order = [m.message["To"] for m in sink.messages]
    assert order.index("code@example.com") <= 2, order  # after the two already in flight
    assert len(order) == 11
    await pool.close()


async def test_reconnects_after_the_server_drops_the_connection(settings: Settings) -> None:
    sink = MailSink()
    port = free_port()
    controller = start_sink(sink, port=port)
    pool = configured(settings, port)
    await pool.send(message())
    controller.stop()  # the server goes away, taking the pooled connection with it
    controller = start_sink(sink, port=port)
    try:
        await pool.send(message())  # the dead connection is replaced without an error
    finally:
        controller.stop()
        await pool.close()
    assert len(sink.messages) == 2
    assert pool.connects == 2


async def test_reply_codes_are_classified(settings: Settings, server: tuple[MailSink, int]) -> None:
    sink, port = server
    pool = configured(settings, port)
    sink.reply_queue.append("452 4.2.2 mailbox full")
    with pytest.raises(TemporaryDeliveryError, match=r"^452"):
        await pool.send(message())
    sink.reply_queue.append("554 5.7.1 rejected as spam")
    with pytest.raises(PermanentDeliveryError, match=r"^554 5.7.1 rejected as spam$"):
        await pool.send(message())
    await pool.send(message())  # and the pool carries on afterwards
    assert len(sink.messages) == 1
    await pool.close()


async def test_refused_connection_is_temporary(settings: Settings) -> None:
    pool = configured(settings, free_port())
    with pytest.raises(TemporaryDeliveryError):
        await pool.send(message())
    await pool.close()
