""" "Apps with access": the applications a person let sign them in (a consent, or a grant of a
first-party application), what they may read, when each last used it, and removing one
(its consent is forgotten and every grant revoked: refresh tokens refused, access tokens
inactive; the next sign-in through it asks for consent again)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import delete, func, select, update

from shared.models import Client, Consent, Grant
from shared.services import events
from shared.services.context import ServiceContext


@dataclass(frozen=True, slots=True)
class App:
    client_id: str
    name: str
    scopes: list[str]
    since: datetime
    last_used_at: datetime | None


async def listed(ctx: ServiceContext, user_id: int) -> list[App]:
    """Most recently used first."""
    async with ctx.reading() as session:
        consents = {
            c.client_id: c
            for c in await session.scalars(select(Consent).where(Consent.user_id == user_id))
        }
        grants = list(
            await session.scalars(
                select(Grant).where(
                    Grant.user_id == user_id,
                    Grant.revoked_at.is_(None),
                    Grant.code_used_at.is_not(None),
                )
            )
        )
        ids = set(consents) | {g.client_id for g in grants}
        rows = await session.execute(
            select(Client.client_id, Client.name).where(Client.client_id.in_(ids))
        )
        names = {client_id: name for client_id, name in rows}
    apps = []
    for client_id, name in names.items():
        own = [g for g in grants if g.client_id == client_id]
        consent = consents.get(client_id)
        scopes = set(consent.scopes if consent else ())
        scopes.update(scope for g in own for scope in g.scopes)
        moments = [g.created_at for g in own] + ([consent.granted_at] if consent else [])
        used = [g.last_used_at for g in own if g.last_used_at is not None]
        apps.append(App(client_id, name, sorted(scopes), min(moments), max(used, default=None)))
    never = datetime.min.replace(tzinfo=UTC)
    return sorted(apps, key=lambda app: app.last_used_at or never, reverse=True)


async def remove(ctx: ServiceContext, user_id: int, client_id: str) -> bool:
    """Forget the consent and revoke every grant of the application; False if it had
    neither."""
    async with ctx.unit_of_work() as session:
        consent = await session.scalar(
            delete(Consent)
            .where(Consent.user_id == user_id, Consent.client_id == client_id)
            .returning(Consent.client_id)
        )
        revoked = await session.scalars(
            update(Grant)
            .where(
                Grant.user_id == user_id, Grant.client_id == client_id, Grant.revoked_at.is_(None)
            )
            .values(revoked_at=func.now(), revoked_why="access removed")
            .returning(Grant.id)
        )
        if consent is None and not revoked.all():
            return False
        name = await session.scalar(select(Client.name).where(Client.client_id == client_id))
        await events.record(
            session, events.Kind.APP_ACCESS_REMOVED, user_id, client_id=client_id, client_name=name
        )
    return True
