"""``python -m worker webhooks ...``: the operator's side of webhooks.

``add URL --events a,b`` (prints the signing secret, once), ``list``, ``remove ID``,
``test ID`` (a signed ``webhook.test`` POST now, through the same guard as deliveries),
``failures [--endpoint ID]`` and ``retry ID...|--all-failed``.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported when a command runs: `python -m worker check` stays quick
    from shared.services.context import ServiceContext
    from shared.settings import Settings


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    hooks = commands.add_parser("webhooks", help="manage webhook endpoints and deliveries")
    actions = hooks.add_subparsers(dest="action", required=True)
    add = actions.add_parser("add", help="subscribe an endpoint; prints its signing secret once")
    add.add_argument("url", help="https://... (http:// only for trusted networks)")
    add.add_argument(
        "--events",
        required=True,
        type=lambda value: value.split(","),
        help="comma-separated event types (user.registered,user.password_changed) or *",
    )
    add.add_argument("--description", default="", help="a note for operators")
    actions.add_parser("list", help="endpoints with their pending and failed deliveries")
    remove = actions.add_parser("remove", help="remove an endpoint and what it is still owed")
    remove.add_argument("id", type=int)
    test = actions.add_parser("test", help="POST a signed webhook.test message to an endpoint")
    test.add_argument("id", type=int)
    failures = actions.add_parser("failures", help="deliveries that failed for good")
    failures.add_argument("--endpoint", type=int, help="only this endpoint's")
    retry = actions.add_parser("retry", help="deliver failed deliveries again")
    which = retry.add_mutually_exclusive_group(required=True)
    which.add_argument("ids", nargs="*", type=int, default=[], help="delivery ids")
    which.add_argument("--all-failed", action="store_true", help="every failed delivery")


async def run(settings: Settings, args: argparse.Namespace) -> int:
    from shared.services import webhooks
    from shared.services.context import ServiceContext

    context = ServiceContext.open(settings, application_name="cli", pool_size=1)
    try:
        action = args.action
        if action == "add":
            return await _add(context, args.url, args.events, args.description)
        if action == "list":
            return await _list(context)
        if action == "remove":
            removed = await webhooks.remove_endpoint(context, args.id)
            print(f"endpoint {args.id} removed" if removed else f"no endpoint {args.id}")
            return 0 if removed else 1
        if action == "test":
            return await _test(context, args.id)
        if action == "failures":
            return await _failures(context, args.endpoint)
        return await _retry(context, args.ids, args.all_failed)
    finally:
        await context.close()


async def _add(context: ServiceContext, url: str, events: list[str], description: str) -> int:
    from shared.services import webhooks

    try:
        endpoint = await webhooks.add_endpoint(context, url, events, description)
    except webhooks.EndpointError as error:
        print(f"not added: {error}", file=sys.stderr)
        return 2
    print(f"endpoint {endpoint.id} added: {endpoint.url}")
    print(f"events: {', '.join(endpoint.event_types)}")
    print(f"signing secret (shown once; give it to the receiver): {endpoint.secret}")
    return 0


async def _list(context: ServiceContext) -> int:
    from shared.services import webhooks

    endpoints = await webhooks.list_endpoints(context)
    if not endpoints:
        print("no webhook endpoints")
        return 0
    print(f"{'id':>6}  {'pending':>7} {'failed':>6}  {'added (UTC)':<16}  url / events")
    for endpoint in endpoints:
        print(
            f"{endpoint.id:>6}  {endpoint.pending:>7} {endpoint.failed:>6}  "
            f"{endpoint.created_at:%Y-%m-%d %H:%M}  {endpoint.url}"
        )
        note = f" ({endpoint.description})" if endpoint.description else ""
        print(f"{'':>6}  events: {', '.join(endpoint.event_types)}{note}")
    return 0


async def _test(context: ServiceContext, endpoint_id: int) -> int:
    from shared.services import webhooks
    from shared.webhook_outbox import message_body, new_message_id
    from worker.bootstrap import webhook_sender

    target = await webhooks.endpoint_target(context, endpoint_id)
    if target is None:
        print(f"no endpoint {endpoint_id}", file=sys.stderr)
        return 1
    if target.secret is None:
        print("its secret cannot be read (SECRET_KEY changed): add it again", file=sys.stderr)
        return 1
    message_id = new_message_id()
    body = message_body(
        message_id, webhooks.TEST_TYPE, datetime.now(UTC), {"endpoint_id": endpoint_id}
    )
    sender = webhook_sender(context.settings)
    started = time.perf_counter()
    try:
        reply = await sender.post(target.url, target.secret, message_id, body)
    finally:
        await sender.close()
    took = (time.perf_counter() - started) * 1000
    verdict = "delivered" if reply.delivered else "NOT delivered"
    print(f"{verdict}: {target.url} answered {reply.detail} ({took:.0f} ms), id {message_id}")
    return 0 if reply.delivered else 1


async def _failures(context: ServiceContext, endpoint_id: int | None) -> int:
    from shared.services import webhooks

    failed = await webhooks.list_failures(context, endpoint_id=endpoint_id)
    if not failed:
        print("no failed webhook deliveries")
        return 0
    print(f"{'id':>8}  {'endpoint':>8}  {'type':<30} {'attempts':>8}  {'queued (UTC)':<19}  id")
    for delivery in failed:
        print(
            f"{delivery.id:>8}  {delivery.endpoint_id:>8}  {delivery.event_type:<30} "
            f"{delivery.attempts:>8}  {delivery.created_at:%Y-%m-%d %H:%M:%S}  "
            f"{delivery.message_id}"
        )
        print(f"{'':>8}  {delivery.url}: {delivery.last_error}")
    return 0


async def _retry(context: ServiceContext, ids: list[int], all_failed: bool) -> int:
    from shared.services import webhooks

    if not ids and not all_failed:
        print("retry needs delivery ids or --all-failed", file=sys.stderr)
        return 2
    from worker.cli.output import report_requeued

    requeued = await webhooks.requeue_failed(context, ids=ids, all_failed=all_failed)
    return report_requeued(requeued, ids, nothing="no failed webhook deliveries")
