"""Ending a sign-in ends what applications got through it, and tells them.

:func:`sign_ins_ended` runs in the transaction that ends sign-ins (sign-out, ending one
session, "sign out everywhere else", a password change or reset, "this wasn't me",
turning two-factor on or off): it revokes their grants (refresh tokens refused, access
tokens inactive at introspection and userinfo) and writes one back-channel logout delivery
(OpenID Connect Back-Channel Logout 1.0) per ended sign-in and application that registered
a ``backchannel_logout_uri`` and got tokens through it. The worker signs each logout token
and POSTs it (worker/identity.py), with the webhooks' guarantees. Deleting an account or
removing an application deletes its grants with it (the foreign keys cascade).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import Table, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from shared.models import Client, Grant, LogoutDelivery, SignInSession, User
from shared.outbox import announce_logouts

DELIVERIES = cast(Table, LogoutDelivery.__table__)


async def sign_ins_ended(session: AsyncSession, session_ids: Sequence[str], *, why: str) -> None:
    """In the caller's transaction: the grants made through ``session_ids`` end, and the
    applications that asked to hear of it are told (after the commit)."""
    if not session_ids:
        return
    told = (
        select(
            Client.client_id,
            Client.backchannel_logout_uri,
            func.cast(User.subject, DELIVERIES.c.subject.type),
            SignInSession.public_id,
        )
        .distinct()
        .select_from(Grant)
        .join(Client, Client.client_id == Grant.client_id)
        .join(SignInSession, SignInSession.id == Grant.session_id)
        .join(User, User.id == Grant.user_id)
        .where(
            Grant.session_id.in_(session_ids),
            Grant.revoked_at.is_(None),
            Grant.code_used_at.is_not(None),
            Client.backchannel_logout_uri.is_not(None),
        )
    )
    inserted = await session.execute(
        DELIVERIES.insert()
        .from_select(["client_id", "uri", "subject", "sid"], told)
        .returning(DELIVERIES.c.id)
    )
    announce_logouts(session, list(inserted.scalars()))
    await session.execute(
        update(Grant)
        .where(Grant.session_id.in_(session_ids), Grant.revoked_at.is_(None))
        .values(revoked_at=func.now(), revoked_why=why[:60])
    )


def logout_token(issuer: str, delivery: Any, jti: str, now: int) -> dict[str, Any]:
    """The logout token's claims (Back-Channel Logout 1.0 §2.4): ``iss``, ``aud``, ``iat``,
    ``exp``, ``jti``, ``sub`` and ``sid``, the back-channel logout ``events`` member, and
    never a ``nonce``."""
    return {
        "iss": issuer,
        "aud": delivery.client_id,
        "iat": now,
        "exp": now + 120,
        "jti": jti,
        "sub": delivery.subject,
        "sid": delivery.sid,
        "events": {"http://schemas.openid.net/event/backchannel-logout": {}},
    }
