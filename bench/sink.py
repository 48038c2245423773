"""An SMTP sink in its own process for benchmarks: it answers DATA after ``--delay`` seconds
(a remote provider's latency) and appends ``<unix time> <recipient> <Message-ID>`` per message
to ``--log``, so the benchmark can count arrivals and match them to requests.

It offers PIPELINING (RFC 2920) as the large providers do, unless ``--no-pipelining``.
``--link`` puts a front before it that holds every chunk, each way, for that many seconds:
a provider some distance away, where each round trip costs twice the link's delay."""

from __future__ import annotations

import argparse
import asyncio
import re
import signal
import sys
import time
from typing import Any, TextIO

from aiosmtpd.controller import Controller

from devstack.servers import free_port

MESSAGE_ID = re.compile(rb"^Message-ID:\s*(\S+)", re.M | re.I)


class Handler:
    def __init__(self, delay: float, log: TextIO, *, pipelining: bool) -> None:
        self.delay, self.log, self.pipelining = delay, log, pipelining

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname
        if self.pipelining:
            responses.insert(-1, "250-PIPELINING")
        return responses

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.delay:
            await asyncio.sleep(self.delay)
        match = MESSAGE_ID.search(envelope.content[:4096])
        message_id = match.group(1).decode() if match else "-"
        self.log.write(f"{time.time():.6f} {envelope.rcpt_tos[0]} {message_id}\n")
        self.log.flush()
        return "250 2.0.0 OK"


async def _link(port: int, target: int, delay: float) -> None:
    """Listen on ``port`` and relay to ``target``, each chunk delivered ``delay`` s after it
    was read, in order (a link's latency, not its bandwidth)."""

    async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        try:
            while data := await reader.read(65536):
                loop.call_later(delay, writer.write, data)
        except OSError:
            pass
        finally:
            loop.call_later(delay, writer.close)

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", target)
        await asyncio.gather(relay(reader, up_writer), relay(up_reader, writer))

    server = await asyncio.start_server(serve, "127.0.0.1", port)
    print("ready", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await stop.wait()
    server.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--link", type=float, default=0.0, help="one-way delay, seconds")
    parser.add_argument("--no-pipelining", dest="pipelining", action="store_false")
    parser.add_argument("--log", required=True)
    args = parser.parse_args()
    with open(args.log, "a") as log:
        handler = Handler(args.delay, log, pipelining=args.pipelining)
        if args.link:
            controller = Controller(handler, hostname="127.0.0.1", port=free_port())
            controller.start()
            asyncio.run(_link(args.port, controller.port, args.link))
        else:
            controller = Controller(handler, hostname="127.0.0.1", port=args.port)
            controller.start()
            print("ready", flush=True)
            signal.sigwait({signal.SIGTERM, signal.SIGINT})
        controller.stop()
    sys.exit(0)


if __name__ == "__main__":
    main()
