"""``python -m worker suppressions list|remove ADDRESS`` and ``python -m worker
bounce-reports [--all] [--show ID]``: the operator's view of bounces and the suppression
list (reports the receiver could not read or match are listed by default)."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported when a command runs: `python -m worker check` stays quick
    from shared.services.context import ServiceContext
    from shared.settings import Settings


def add_parsers(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    commands.add_parser("bounces", help="receive bounces and complaints over SMTP (BOUNCE_LISTEN)")
    suppressions = commands.add_parser("suppressions", help="the addresses mail is not sent to")
    actions = suppressions.add_subparsers(dest="action", required=True)
    actions.add_parser("list", help="suppressed addresses, newest first, with the reason")
    remove = actions.add_parser("remove", help="send to an address again")
    remove.add_argument("address")
    reports = commands.add_parser(
        "bounce-reports", help="bounce reports that could not be read or matched (kept whole)"
    )
    reports.add_argument("--all", action="store_true", help="every recent report")
    reports.add_argument("--show", type=int, metavar="ID", help="print one report as received")


async def run(settings: Settings, args: argparse.Namespace) -> int:
    from shared.services import bounces
    from shared.services.context import ServiceContext

    context = ServiceContext.open(settings, application_name="cli", pool_size=1)
    try:
        if args.command == "suppressions" and args.action == "remove":
            removed = await bounces.remove_suppression(context, args.address)
            print(f"{args.address} removed" if removed else f"{args.address} is not suppressed")
            return 0 if removed else 1
        if args.command == "suppressions":
            listed = await bounces.list_suppressions(context)
            if not listed:
                print("no suppressed addresses")
            for item in listed:
                print(f"{item.updated_at:%Y-%m-%d %H:%M}  {item.cause:<13} {item.address}")
                print(f"{'':>16}  {item.reason}")
            return 0
        return await _reports(context, show=args.show, everything=args.all)
    finally:
        await context.close()


async def _reports(context: ServiceContext, *, show: int | None, everything: bool) -> int:
    from shared.services import bounces

    if show is not None:
        report = await bounces.report(context, show)
        if report is None:
            print(f"no bounce report {show}", file=sys.stderr)
            return 1
        print(f"report {report.id}: {report.outcome} ({report.kind}) {report.detail}")
        if report.raw:
            sys.stdout.write(report.raw.decode("utf-8", "replace"))
        return 0
    reports = await bounces.list_reports(context, everything=everything)
    if not reports:
        print("no bounce reports" if everything else "no unread or unmatched bounce reports")
    for item in reports:
        print(
            f"{item.id:>8}  {item.received_at:%Y-%m-%d %H:%M}  {item.outcome:<12} "
            f"{item.source:<8} outbox {item.email_id or '-'}: {item.detail}"
        )
    return 0
