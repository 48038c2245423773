"""``python -m web oidc ...``: the identity provider's operator commands.

``keys rotate`` and ``keys list`` (the signing keys); ``clients add --name NAME
--redirect-uri URI [--redirect-uri URI ...] [--public] [--scopes ...] [--grant ...]
[--backchannel-logout-uri URI] [--post-logout-redirect-uri URI ...] [--first-party]``
(prints ``client_id:`` and, for a confidential client, ``client_secret:``, shown once),
``clients list``, ``clients remove ID``, ``clients rotate-secret ID``.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from shared.services.identity.clients import DEFAULT_SCOPES, GRANTS, SCOPES

if TYPE_CHECKING:
    from shared.services.context import ServiceContext
    from shared.settings import Settings


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    oidc = commands.add_parser("oidc", help="the identity provider")
    areas = oidc.add_subparsers(dest="area", required=True)
    keys = areas.add_parser("keys", help="its signing keys").add_subparsers(
        dest="action", required=True
    )
    keys.add_parser("rotate", help="new signing keys, published before they sign")
    keys.add_parser("list", help="the published signing keys")
    clients = areas.add_parser("clients", help="the applications that sign people in here")
    actions = clients.add_subparsers(dest="action", required=True)
    add = actions.add_parser("add", help="register one; prints its id and secret (once)")
    add.add_argument("--name", required=True)
    add.add_argument("--redirect-uri", action="append", default=[], dest="redirect_uris")
    add.add_argument("--public", action="store_true", help="no secret (a browser or native app)")
    add.add_argument("--scopes", nargs="+", choices=SCOPES, default=list(DEFAULT_SCOPES))
    add.add_argument("--grant", action="append", choices=GRANTS, dest="grants", help="repeatable")
    add.add_argument("--backchannel-logout-uri")
    add.add_argument(
        "--post-logout-redirect-uri", action="append", default=[], dest="post_logout_uris",
        help="where RP-initiated logout may return (repeatable)",
    )  # fmt: skip
    add.add_argument("--first-party", action="store_true", help="no consent page")
    actions.add_parser("list", help="the registered clients")
    for name, what in (("remove", "remove one"), ("rotate-secret", "a new secret, printed once")):
        actions.add_parser(name, help=what).add_argument("client_id")


async def run(settings: Settings, args: argparse.Namespace) -> int:
    from shared.services.context import ServiceContext

    context = ServiceContext.open(settings, application_name="cli", pool_size=1)
    try:
        if args.area == "keys":
            return await _keys(context, args.action)
        return await _clients(context, args)
    finally:
        await context.close()


async def _keys(context: ServiceContext, action: str) -> int:
    from shared.services.identity import keys as signing_keys

    when = "%Y-%m-%d %H:%M:%S UTC"
    if action == "rotate":
        for key in await signing_keys.rotate(context):
            print(f"{key.alg} {key.kid} signs from {key.signs_from:{when}}")
        return 0
    for key in await signing_keys.listed(context):
        until = "until the next rotation"
        if key.retired_at is not None and key.published_until is not None:
            until = f"until {key.retired_at:{when}}, published until {key.published_until:{when}}"
        print(f"{key.alg} {key.kid} signs from {key.signs_from:{when}} {until}")
    return 0


async def _clients(context: ServiceContext, args: argparse.Namespace) -> int:
    from shared.services.identity import clients as oidc_clients
    from shared.validation import InvalidInput

    if args.action == "add":
        spec = oidc_clients.ClientSpec(
            name=args.name,
            redirect_uris=args.redirect_uris,
            public=args.public,
            scopes=args.scopes,
            grants=args.grants or list(oidc_clients.DEFAULT_GRANTS),
            backchannel_logout_uri=args.backchannel_logout_uri,
            post_logout_redirect_uris=args.post_logout_uris,
            first_party=args.first_party,
        )
        try:
            registered = await oidc_clients.add(context, spec)
        except InvalidInput as error:
            print(f"not registered: {error.message}", file=sys.stderr)
            return 2
        print(f"client_id: {registered.client.client_id}")
        if registered.secret is not None:
            print(f"client_secret: {registered.secret}")
            print("(the secret is shown this once: keep it in the application's settings)")
        return 0
    if args.action == "list":
        for client in await oidc_clients.listed(context):
            kind = "public" if client.secret_hash is None else "confidential"
            print(
                f"{client.client_id}  {client.name!r}  {kind}"
                f"{'  first-party' if client.first_party else ''}\n"
                f"    redirect URIs: {' '.join(client.redirect_uris) or '-'}\n"
                f"    scopes: {' '.join(client.scopes)}  grants: {' '.join(client.grants)}"
            )
        return 0
    if args.action == "remove":
        removed = await oidc_clients.remove(context, args.client_id)
        print(f"client {args.client_id} removed" if removed else f"no client {args.client_id}")
        return 0 if removed else 1
    secret = await oidc_clients.rotate_secret(context, args.client_id)
    if secret is None:
        print(f"no confidential client {args.client_id}", file=sys.stderr)
        return 1
    print(f"client_secret: {secret}")
    return 0
