"""An RP-initiated logout request (OpenID Connect RP-Initiated Logout 1.0 §2), judged: which
application asks, whether its ``id_token_hint`` is one this provider issued (expired is
fine: §2 allows it), and where the browser may go afterwards (a registered
``post_logout_redirect_uri``, matched exactly, with the ``state`` it sent)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from shared.i18n import N_
from shared.models import Client
from shared.services import sessions
from shared.services.context import ServiceContext
from shared.services.identity import clients, signed
from shared.services.identity.requests import STATE_MAX, with_query


class BadLogout(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True, slots=True)
class Leaving:
    client: Client | None
    hint: dict[str, Any] | None
    target: str | None
    state: str | None

    def names(self, current: sessions.Current) -> bool:
        """Whether the hint is about this very sign-in (then no confirmation is asked)."""
        return (
            self.hint is not None
            and self.hint.get("sid") == current.session.public_id
            and self.hint.get("sub") == str(current.user.subject)
        )

    def location(self) -> str:
        assert self.target is not None
        return with_query(self.target, {"state": self.state})

    def fields(self) -> dict[str, str]:
        """What the confirmation form carries to be judged again."""
        kept = {
            "client_id": self.client.client_id if self.client else None,
            "post_logout_redirect_uri": self.target,
            "state": self.state,
        }
        return {name: value for name, value in kept.items() if value is not None}


async def judge(ctx: ServiceContext, values: Mapping[str, str]) -> Leaving:
    hint = None
    if values.get("id_token_hint"):
        try:
            hint = await signed.verify(ctx, values["id_token_hint"], typ="jwt", expired_ok=True)
        except signed.NotOurs as error:
            raise BadLogout(
                N_("The sign-out link carries a token this service did not issue.")
            ) from error
    client_id = values.get("client_id") or (str(hint["aud"]) if hint and "aud" in hint else "")
    if hint is not None and hint.get("aud") != client_id:
        raise BadLogout(N_("The sign-out link's token is for another application."))
    client = await clients.by_id(ctx, client_id) if client_id else None
    if client_id and client is None:
        raise BadLogout(N_("The application asking to sign you out is not registered here."))
    target = values.get("post_logout_redirect_uri") or None
    if target is not None and (client is None or target not in client.post_logout_redirect_uris):
        raise BadLogout(
            N_("The application asked to come back to an address it has not registered.")
        )
    state = values.get("state") or None
    if state is not None and len(state) > STATE_MAX:
        raise BadLogout(N_("The sign-out link is malformed (its state is too long)."))
    return Leaving(client=client, hint=hint, target=target, state=state)
