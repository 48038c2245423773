"""An SMTP sink in its own process for benchmarks: it answers DATA after ``--delay`` seconds
(a remote provider's latency) and appends ``<unix time> <recipient> <Message-ID>`` per message
to ``--log``, so the benchmark can count arrivals and match them to requests."""

from __future__ import annotations

import argparse
import asyncio
import re
import signal
import sys
import time
from typing import Any, TextIO

from aiosmtpd.controller import Controller

MESSAGE_ID = re.compile(rb"^Message-ID:\s*(\S+)", re.M | re.I)


class Handler:
    def __init__(self, delay: float, log: TextIO) -> None:
        self.delay, self.log = delay, log

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.delay:
            await asyncio.sleep(self.delay)
        match = MESSAGE_ID.search(envelope.content[:4096])
        message_id = match.group(1).decode() if match else "-"
        self.log.write(f"{time.time():.6f} {envelope.rcpt_tos[0]} {message_id}\n")
        self.log.flush()
        return "250 2.0.0 OK"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--log", required=True)
    args = parser.parse_args()
    with open(args.log, "a") as log:
        controller = Controller(Handler(args.delay, log), hostname="127.0.0.1", port=args.port)
        controller.start()
        print("ready", flush=True)
        signal.sigwait({signal.SIGTERM, signal.SIGINT})
        controller.stop()
    sys.exit(0)


if __name__ == "__main__":
    main()
