"""SMTP PIPELINING (RFC 2920): a server that offers it gets MAIL FROM, RCPT TO and DATA in
one write and answers them together; one that does not gets them one at a time. Tested
against aiosmtpd offering the extension, through a relay (tests.relay) that records what
each side wrote and can hold the server's replies back so that several arrive in one
segment."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest

from devstack.mailsink import MailSink, start_sink
from tests.relay import Relay
from worker.mail.render import EmailRenderer, build_message
from worker.mail.smtp import Envelope, RecipientRefused, SMTPConfig, SMTPPool

SENDER = "bounces@accounts.test"


def wire(to: str) -> bytes:
    rendered = EmailRenderer(site_name="Accounts", base_url="http://x").render("test", {})
    message = build_message(
        rendered, sender="Accounts <noreply@accounts.test>", recipient=to,
        message_id=f"<{to}>",
    )  # fmt: skip
    return message.as_bytes()


@pytest.fixture
def sink() -> Iterator[tuple[MailSink, int]]:
    handler = MailSink(pipelining=True)
    controller = start_sink(handler)
    yield handler, controller.port
    controller.stop()


@pytest.fixture
async def front(sink: tuple[MailSink, int]) -> AsyncIterator[Relay]:
    recorder = Relay("127.0.0.1", sink[1])
    await recorder.start()
    yield recorder
    await recorder.cut()


async def send_all(port: int, recipients: list[str]) -> list[str]:
    pool = SMTPPool(SMTPConfig("127.0.0.1", port, timeout=5), size=1)
    try:
        return [await pool.send(wire(to), envelope=Envelope(SENDER, to)) for to in recipients]
    finally:
        await pool.close()


def envelope_writes(chunks: list[bytes]) -> list[bytes]:
    return [chunk for chunk in chunks if b"MAIL FROM" in chunk or b"RCPT TO" in chunk]


async def test_envelope_and_data_go_in_one_write_when_offered(
    sink: tuple[MailSink, int], front: Relay
) -> None:
    recipients = [f"u{n}@example.com" for n in range(5)]
    replies = await send_all(front.port, recipients)
    assert all(reply.startswith("2.0.0 OK") for reply in replies)
    handler, _ = sink
    assert [m.envelope_to for m in handler.messages] == [[to] for to in recipients]
    assert all(m.envelope_from == SENDER for m in handler.messages)
    writes = envelope_writes(front.from_client)
    assert len(writes) == 5
    for write, to in zip(writes, recipients, strict=True):
        assert write.startswith(b"MAIL FROM:<bounces@accounts.test> SIZE=")
        assert f"\r\nRCPT TO:<{to}>\r\nDATA\r\n".encode() in write


async def test_replies_arriving_together_are_each_read(sink: tuple[MailSink, int]) -> None:
    recorder = Relay("127.0.0.1", sink[1], coalesce=0.03)
    await recorder.start()
    try:
        recipients = [f"v{n}@example.com" for n in range(3)]
        await asyncio.wait_for(send_all(recorder.port, recipients), 20)
    finally:
        await recorder.cut()
    assert len(sink[0].messages) == 3
    # The three replies to a pipelined MAIL, RCPT and DATA came in one segment.
    assert any(chunk.count(b"\r\n") >= 3 and b"354" in chunk for chunk in recorder.to_client)


async def test_without_the_extension_commands_go_one_at_a_time() -> None:
    handler = MailSink()
    controller = start_sink(handler)
    recorder = Relay("127.0.0.1", controller.port)
    await recorder.start()
    try:
        await send_all(recorder.port, ["w@example.com"])
    finally:
        await recorder.cut()
        controller.stop()
    assert len(handler.messages) == 1
    mail, rcpt = envelope_writes(recorder.from_client)  # each waited for its reply
    assert mail.startswith(b"MAIL FROM:") and b"RCPT" not in mail
    assert rcpt == b"RCPT TO:<w@example.com>\r\n"


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_hundreds_of_messages_over_several_connections(loop: str) -> None:
    """aiosmtpd writes each reply on its own, so they arrive one after another while the
    reader is still waking for the one before (what once lost a reply and hung a read)."""
    import uvloop

    handler = MailSink(pipelining=True)
    controller = start_sink(handler)
    refused = {f"gone{n}@example.com" for n in range(0, 150, 7)}
    handler.refuse_recipients.update(dict.fromkeys(refused, "550 5.1.1 No such user"))
    recipients = [f"gone{n}@example.com" if n % 7 == 0 else f"x{n}@example.com"
                  for n in range(150)]  # fmt: skip

    async def burst() -> list[object]:
        pool = SMTPPool(SMTPConfig("127.0.0.1", controller.port, timeout=5), size=6)
        try:
            return await asyncio.gather(
                *(pool.send(wire(to), envelope=Envelope(SENDER, to)) for to in recipients),
                return_exceptions=True,
            )
        finally:
            await pool.close()

    try:
        outcomes = uvloop.run(burst()) if loop == "uvloop" else asyncio.run(burst())
    finally:
        controller.stop()
    failed = {to for to, outcome in zip(recipients, outcomes, strict=True)
              if isinstance(outcome, BaseException)}  # fmt: skip
    assert failed == refused
    assert all(isinstance(outcomes[n], RecipientRefused) for n in range(0, 150, 7))
    assert len(handler.messages) == 150 - len(refused)


async def test_a_refused_recipient_is_reported_and_the_next_message_goes(
    sink: tuple[MailSink, int],
) -> None:
    handler, port = sink
    handler.refuse_recipients["gone@example.com"] = "550 5.1.1 No such user"
    pool = SMTPPool(SMTPConfig("127.0.0.1", port, timeout=5), size=1)
    try:
        with pytest.raises(RecipientRefused, match=r"550 5\.1\.1"):
            await pool.send(wire("gone@example.com"), envelope=Envelope(SENDER, "gone@example.com"))
        await pool.send(wire("here@example.com"), envelope=Envelope(SENDER, "here@example.com"))
    finally:
        await pool.close()
    assert [m.envelope_to for m in handler.messages] == [["here@example.com"]]


async def test_an_internationalised_address_is_pipelined_with_smtputf8() -> None:
    handler = MailSink(pipelining=True)
    controller = start_sink(handler, enable_SMTPUTF8=True)
    rendered = EmailRenderer(site_name="Accounts", base_url="http://x").render("test", {})
    message = build_message(
        rendered, sender="Accounts <noreply@accounts.test>", recipient="dü@exämple.com",
        message_id="<utf8@accounts.test>",
    )  # fmt: skip
    pool = SMTPPool(SMTPConfig("127.0.0.1", controller.port, timeout=5), size=1)
    try:
        await pool.send(message, envelope=Envelope(SENDER, "dü@exämple.com", smtputf8=True))
    finally:
        await pool.close()
        controller.stop()
    (received,) = handler.messages
    assert received.envelope_to == ["dü@exämple.com"]
    assert "\r\nTo: dü@exämple.com\r\n".encode() in received.raw  # UTF-8, not encoded words


class Scripted:
    """A server that offers PIPELINING, refuses the recipient and still accepts DATA (it
    breaks RFC 2920's rule 3): the client must end the empty message with a single dot."""

    def __init__(self) -> None:
        self.received = b""

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 scripted ESMTP\r\n")
        replies = {
            b"EHLO": b"250-scripted\r\n250 PIPELINING\r\n",
            b"MAIL": b"250 2.1.0 OK\r\n",
            b"RCPT": b"550 5.1.1 No such user\r\n",
            b"DATA": b"354 go ahead\r\n",
            b".": b"554 5.5.1 No valid recipients\r\n",
            b"QUIT": b"221 bye\r\n",
        }
        while line := await reader.readline():
            self.received += line
            reply = replies.get(line.split(b" ")[0].strip().split(b":")[0], b"500 what\r\n")
            writer.write(reply)
            await writer.drain()
            if reply.startswith(b"221"):
                break
        writer.close()


async def test_data_accepted_after_a_refused_recipient_gets_a_lone_dot() -> None:
    script = Scripted()
    server = await asyncio.start_server(script.serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    pool = SMTPPool(SMTPConfig("127.0.0.1", port, timeout=5), size=1)
    try:
        with pytest.raises(RecipientRefused):
            await pool.send(wire("x@example.com"), envelope=Envelope(SENDER, "x@example.com"))
    finally:
        await pool.close()
        server.close()
    after_data = script.received.split(b"DATA\r\n", 1)[1]
    assert after_data.startswith(b".\r\n")  # the empty message, not the content
    assert b"Subject" not in script.received


async def test_dot_stuffing_and_the_final_line() -> None:
    handler = MailSink(pipelining=True)
    controller = start_sink(handler)
    body = b"Subject: dots\r\n\r\n.starts with a dot\r\n..two\r\nno final newline"
    pool = SMTPPool(SMTPConfig("127.0.0.1", controller.port, timeout=5), size=1)
    try:
        await pool.send(body, envelope=Envelope(SENDER, "d@example.com"))
    finally:
        await pool.close()
        controller.stop()
    # aiosmtpd undoes the stuffing: what arrives is what was sent, ended by a line break.
    assert handler.messages[0].raw.endswith(
        b"\r\n.starts with a dot\r\n..two\r\nno final newline\r\n"
    )
