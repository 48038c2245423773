"""``python -m worker``: run the mail worker (default), or ``check`` its health."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
import threading

from shared.logs import configure_logging
from shared.settings import Settings, SettingsError, load_settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m worker", description=__doc__)
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("run", help="run the worker (the default)")
    commands.add_parser("check", help="exit 0 if a worker reported healthy in the last minute")
    args = parser.parse_args(argv)

    try:
        settings = load_settings()
    except SettingsError as error:
        print(f"configuration error:\n{error}", file=sys.stderr)
        return 2
    configure_logging()

    if args.command == "check":
        return check(settings)
    return run(settings)


def run(settings: Settings) -> int:
    """Run the worker; if Redis stays away longer than the client's retries cover, start a
    fresh worker once it is back instead of exiting (emails wait safely in the outbox)."""
    from redis.exceptions import ConnectionError, TimeoutError

    from worker.settings import create_worker

    log = logging.getLogger("worker")
    log.info(
        "worker starting: queue %s, SMTP %s:%s",
        settings.QUEUE_NAME,
        settings.MAIL_SERVER,
        settings.MAIL_PORT,
    )
    pause = 1.0
    while True:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        worker = create_worker(settings)
        try:
            worker.run()
            return 0
        except (ConnectionError, TimeoutError, OSError) as error:
            log.warning("lost Redis (%s); starting again in %.0f s", type(error).__name__, pause)
            # Close the spent loop now: closing it later (when it is garbage-collected) would
            # reset the next worker's SIGTERM handler to the default and kill it ungracefully.
            loop.close()
            for signum in (signal.SIGINT, signal.SIGTERM):
                signal.signal(signum, lambda *_: _stopped.set())
            if _stopped.wait(pause):
                return 0
            pause = min(pause * 2, 30.0)


_stopped = threading.Event()


def check(settings: Settings) -> int:
    from arq.worker import async_check_health

    from shared.jobs import redis_settings

    result = asyncio.run(
        async_check_health(
            redis_settings(settings.REDIS_URL, retries=1), queue_name=settings.QUEUE_NAME
        )
    )
    return int(result)


if __name__ == "__main__":
    sys.exit(main())
