"""``python -m worker``: run the mail worker (the default), ``check`` its health, list
the outbox (``outbox [--failed] [--since 6h]``) or put failed emails back
(``retry ID...|--all-failed``), manage webhooks (``webhooks add|list|remove|test|failures|
retry``), receive bounces (``bounces``), see the suppression list (``suppressions``) and
reports kept for an operator (``bounce-reports``), or make a DKIM key (``dkim-keygen``).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
import threading
from datetime import UTC, datetime, timedelta

from shared.logs import start_process
from shared.settings import Settings
from worker.cli import bounces as bounce_commands
from worker.cli import webhooks as webhook_commands


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m worker", description=__doc__)
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("run", help="run the worker (the default)")
    commands.add_parser("check", help="exit 0 if a worker reported healthy in the last minute")
    outbox = commands.add_parser("outbox", help="list pending and failed emails")
    outbox.add_argument("--failed", action="store_true", help="only failed emails")
    outbox.add_argument(
        "--since", type=_since, help="only emails queued since: 2026-11-23, 90m, 6h, 2d"
    )
    retry = commands.add_parser("retry", help="put failed emails back in the queue")
    which = retry.add_mutually_exclusive_group(required=True)
    which.add_argument("ids", nargs="*", type=int, default=[], help="outbox ids")
    which.add_argument("--all-failed", action="store_true", help="every failed email")
    webhook_commands.add_parser(commands)
    bounce_commands.add_parsers(commands)
    keygen = commands.add_parser(
        "dkim-keygen", help="write a DKIM signing key and print the DNS record to publish"
    )
    keygen.add_argument("--domain", required=True, help="the domain mail is sent from")
    keygen.add_argument("--selector", default="accounts", help="DKIM selector (default accounts)")
    keygen.add_argument(
        "--algorithm", choices=["rsa-sha256", "ed25519-sha256"], default="rsa-sha256"
    )
    keygen.add_argument("--out", required=True, help="file for the private key (created 0600)")
    args = parser.parse_args(argv)
    if args.command == "retry" and not args.ids and not args.all_failed:
        parser.error("retry needs outbox ids or --all-failed")
    if args.command == "dkim-keygen":
        return dkim_keygen(args.domain, args.selector, args.algorithm, args.out)

    settings = start_process()
    if settings is None:
        return 2

    if args.command == "check":
        return check(settings)
    if args.command == "outbox":
        return asyncio.run(show_outbox(settings, failed=args.failed, since=args.since))
    if args.command == "retry":
        return asyncio.run(retry_failed(settings, ids=args.ids, all_failed=args.all_failed))
    if args.command == "webhooks":
        return asyncio.run(webhook_commands.run(settings, args))
    if args.command == "bounces":
        from worker.bounces import listener as bounce_listener

        return bounce_listener.run(settings)
    if args.command in ("suppressions", "bounce-reports"):
        return asyncio.run(bounce_commands.run(settings, args))
    return run(settings)


def dkim_keygen(domain: str, selector: str, algorithm: str, out: str) -> int:
    """Needs no settings: it only writes a key and says what to publish."""
    import os

    from worker.mail.signing import generate_key

    if os.path.exists(out):
        print(f"{out} exists; not overwriting a key", file=sys.stderr)
        return 1
    pair = generate_key(algorithm)
    descriptor = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as key_file:
        key_file.write(pair.private_key)
    print(f"private key written to {out}; set:")
    print(f"  DKIM_DOMAIN={domain}\n  DKIM_SELECTOR={selector}\n  DKIM_ALGORITHM={algorithm}")
    print(f"  DKIM_PRIVATE_KEY_FILE={out}")
    print("publish this DNS TXT record:")
    print(f'  {selector}._domainkey.{domain}. IN TXT "{pair.dns_value}"')
    return 0


def _since(value: str) -> datetime:
    """An ISO date/time, or a duration back from now (90m, 6h, 2d)."""
    units = {"m": "minutes", "h": "hours", "d": "days"}
    if value[-1:] in units and value[:-1].isdigit():
        return datetime.now(UTC) - timedelta(**{units[value[-1]]: int(value[:-1])})
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{value!r} is neither a date (2026-11-23) nor a duration (90m, 6h, 2d)"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


async def show_outbox(settings: Settings, *, failed: bool, since: datetime | None) -> int:
    from shared.services.context import ServiceContext
    from shared.services.operations import list_emails

    context = ServiceContext.open(settings, application_name="cli", pool_size=1)
    try:
        emails = await list_emails(context, failed_only=failed, since=since)
    finally:
        await context.close()
    if not emails:
        print("no failed emails" if failed else "no pending or failed emails")
        return 0
    print(
        f"{'id':>8}  {'status':<8} {'kind':<20} {'attempts':>8}  {'queued (UTC)':<19}  "
        "recipient / last error"
    )
    for email in emails:
        print(
            f"{email.id:>8}  {email.status:<8} {email.kind:<20} {email.attempts:>8}  "
            f"{email.created_at:%Y-%m-%d %H:%M:%S}  {email.recipient}"
        )
        if email.last_error:
            print(f"{'':>8}  last error: {email.last_error}")
    return 0


async def retry_failed(settings: Settings, *, ids: list[int], all_failed: bool) -> int:
    from shared.services.context import ServiceContext
    from shared.services.operations import requeue_failed

    context = ServiceContext.open(settings, application_name="cli", pool_size=1)
    try:
        requeued = await requeue_failed(context, ids=ids, all_failed=all_failed)
    finally:
        await context.close()
    from worker.cli.output import report_requeued

    return report_requeued(requeued, ids, nothing="no failed emails")


def run(settings: Settings) -> int:
    """Run the worker; if Redis stays away longer than the client's retries cover, start a
    fresh worker once it is back instead of exiting (emails wait safely in the outbox)."""
    from redis.exceptions import ConnectionError, TimeoutError

    from worker.bootstrap import create_worker

    log = logging.getLogger("worker")
    log.info(
        "worker starting: queue %s, SMTP %s:%s",
        settings.QUEUE_NAME,
        settings.MAIL_SERVER,
        settings.MAIL_PORT,
    )
    asyncio.run(_say_what_is_unreachable(settings, log))
    if settings.WORKER_METRICS_PORT:
        from shared.metrics_listener import serve_metrics

        serve_metrics(
            settings.METRICS_HOST,
            settings.WORKER_METRICS_PORT,
            hint="; give each worker process its own WORKER_METRICS_PORT",
        )
    pause = 1.0
    while True:
        loop = new_event_loop()
        asyncio.set_event_loop(loop)
        worker = create_worker(settings, freeze_after_startup=True)
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


async def _say_what_is_unreachable(settings: Settings, log: logging.Logger) -> None:
    """One line per backing service that does not answer at start-up: the worker starts
    anyway and waits for it (emails wait in the outbox), but nobody should have to guess;
    and one if its DATABASE_CONNECTIONS do not fit in what the server has room for."""
    from shared.services.context import ServiceContext
    from shared.services.operations import check_connection_budget

    context = ServiceContext.open(settings, application_name="worker-start", pool_size=1)
    try:
        unreachable = await context.unreachable()
        if "PostgreSQL" not in unreachable:
            await check_connection_budget(context, 1, log)
        for name, error in unreachable.items():
            waits = "waiting for it" if name == "Redis" else "deliveries wait until it is back"
            log.warning(
                "%s cannot be reached at start-up (%s: %s); %s",
                name,
                type(error).__name__,
                str(error).splitlines()[0][:200] if str(error) else "",
                waits,
            )
    finally:
        await context.close()


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop where it is installed (Linux, macOS): less CPU per job than asyncio's loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


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
