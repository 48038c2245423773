"""``python -m web``: serve the app (default), or run an operator sub-command.

Sub-commands:
  serve                     serve with hypercorn on HOST:PORT (default 127.0.0.1:8000)
  send-test-email ADDRESS   queue a test message to ADDRESS and print the job id
  generate-secret           print a fresh random SECRET_KEY
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import secrets
import signal
import sys
from typing import Any

from shared.logs import start_process
from shared.settings import Settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m web", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("serve", help="serve the app (the default)")
    test_email = commands.add_parser("send-test-email", help="queue a test message")
    test_email.add_argument("address", help="where to send it")
    commands.add_parser("generate-secret", help="print a new random SECRET_KEY")
    args = parser.parse_args(argv)

    if args.command == "generate-secret":
        print(secrets.token_urlsafe(48))
        return 0

    settings = start_process()
    if settings is None:
        return 2

    if args.command == "send-test-email":
        return asyncio.run(send_test_email(settings, args.address))
    return serve(settings)


def serve(settings: Settings) -> int:
    from hypercorn.asyncio import serve as hypercorn_serve
    from hypercorn.config import Config

    from web import create_app

    config = Config()
    config.bind = [f"{settings.HOST}:{settings.PORT}"]
    # Hand hypercorn our loggers, so its lines use the one format and are not doubled.
    config.accesslog = logging.getLogger("hypercorn.access")
    config.errorlog = logging.getLogger("hypercorn.error")
    # No query strings in the access log: they may carry tokens (?next=... is harmless, but
    # the rule is simpler than the exceptions).
    config.access_log_format = '%(h)s "%(m)s %(U)s" %(s)s %(b)s %(D)sus'
    config.graceful_timeout = 10
    config.include_server_header = False  # no product banner for scanners to match on
    app = create_app(settings)

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        servers = [hypercorn_serve(app, config, shutdown_trigger=stop.wait)]
        if settings.METRICS_PORT:
            servers.append(serve_metrics(settings, stop))
        await asyncio.gather(*servers)

    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is installed on Linux and macOS
        asyncio.run(run())
    else:
        uvloop.run(run())
    return 0


async def serve_metrics(settings: Settings, stop: asyncio.Event) -> None:
    """The internal metrics listener; if its port is taken, the site still serves."""
    from hypercorn.asyncio import serve as hypercorn_serve

    from web.metrics import metrics_app

    try:
        await hypercorn_serve(metrics_app, metrics_config(settings), shutdown_trigger=stop.wait)
    except OSError as error:
        logging.getLogger("web").error(
            "metrics not served: %s:%s (%s)",
            settings.METRICS_HOST,
            settings.METRICS_PORT,
            error.strerror,
        )


def metrics_config(settings: Settings) -> Any:
    """The internal listener for /metrics: its own address, no access log."""
    from hypercorn.config import Config

    config = Config()
    config.bind = [f"{settings.METRICS_HOST}:{settings.METRICS_PORT}"]
    config.errorlog = logging.getLogger("hypercorn.error")
    config.graceful_timeout = 1
    config.include_server_header = False
    return config


async def send_test_email(settings: Settings, address: str) -> int:
    from shared.jobs import email_job_id
    from shared.services.context import ServiceContext
    from shared.services.operations import send_test_email as queue_test_email
    from shared.validation import check_email

    try:
        recipient = check_email(address)
    except ValueError as error:
        print(f"not a valid email address: {error}", file=sys.stderr)
        return 2
    context = ServiceContext.open(settings, application_name="cli", pool_size=1)
    try:
        email_id = await queue_test_email(context, recipient)
    finally:
        await context.close()
    print(email_job_id(email_id, settings.QUEUE_NAME))
    return 0


if __name__ == "__main__":
    sys.exit(main())
