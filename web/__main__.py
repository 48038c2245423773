"""``python -m web``: serve the app (default), or run an operator sub-command.

Sub-commands:
  serve                     serve on HOST:PORT (default 127.0.0.1:8000) in WEB_WORKERS processes
  send-test-email ADDRESS   queue a test message to ADDRESS and print the job id
  generate-secret           print a fresh random SECRET_KEY
  oidc keys rotate|list     the identity provider's signing keys (web/cli/oidc.py)
  oidc clients add|list|remove|rotate-secret
                            the applications that sign people in through it
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import secrets
import sys

from shared.logs import logging_config, start_process
from shared.settings import Settings
from web.cli import oidc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m web", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("serve", help="serve the app (the default)")
    test_email = commands.add_parser("send-test-email", help="queue a test message")
    test_email.add_argument("address", help="where to send it")
    commands.add_parser("generate-secret", help="print a new random SECRET_KEY")
    oidc.add_parser(commands)
    args = parser.parse_args(argv)

    if args.command == "generate-secret":
        print(secrets.token_urlsafe(48))
        return 0

    settings = start_process()
    if settings is None:
        return 2

    if args.command == "send-test-email":
        return asyncio.run(send_test_email(settings, args.address))
    if args.command == "oidc":
        return asyncio.run(oidc.run(settings, args))
    return serve(settings)


def serve(settings: Settings) -> int:
    """Serve the app with uvicorn (httptools, uvloop) in ``settings.web_workers`` processes
    sharing one listening socket, and the metrics listener in this, the supervising, process.

    uvicorn was chosen on numbers measured on this project's machine type (``make bench``
    scenario 6: hypercorn, uvicorn and granian serving this app with the same processes).
    On SIGTERM or SIGINT each server process stops accepting, finishes the requests in
    flight (up to 10 s) and runs the app's shutdown (which waits for after-the-answer work).
    """
    import uvicorn

    from web.metrics import serve_metrics, use_shared_metrics_dir

    asyncio.run(_check_connection_budget(settings))
    if settings.web_workers > 1:
        use_shared_metrics_dir()  # before the server processes start and import the metrics
    if settings.METRICS_PORT:
        serve_metrics(settings)
    uvicorn.run(
        "web:create_server_app",
        factory=True,
        host=settings.HOST,
        port=settings.PORT,
        workers=settings.web_workers,
        loop="uvloop",
        # httptools, with limits on request heads and connections per client of our own.
        http="web.server_protocol:GuardedHttpTools",
        lifespan="on",
        # The app writes the access log itself, without query strings (web.access_log).
        access_log=False,
        log_config=logging_config(settings.LOG_LEVEL),
        # Client addresses come from the app's own TRUSTED_PROXIES rule, never from headers
        # uvicorn would otherwise believe from 127.0.0.1.
        proxy_headers=False,
        server_header=False,  # no product banner for scanners to match on
        timeout_keep_alive=5,  # HTTP/1.1 keep-alive, closed after 5 idle seconds
        timeout_graceful_shutdown=10,
    )
    return 0


async def _check_connection_budget(settings: Settings) -> None:
    """Before the server processes start: say so if WEB_WORKERS x DATABASE_CONNECTIONS do
    not fit in what PostgreSQL has room for."""
    from shared.services.context import ServiceContext
    from shared.services.operations import check_connection_budget

    context = ServiceContext.open(settings, application_name="web-start", pool_size=1)
    try:
        await check_connection_budget(context, settings.web_workers, logging.getLogger("web"))
    finally:
        await context.close()


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
