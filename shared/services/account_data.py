"""A person's data: everything stored about their account, as a download; and deleting the
account with everything that is theirs."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from shared import passwords
from shared.i18n import N_
from shared.jobs import AccountDeleted, EmailKind
from shared.models import (
    BounceReport,
    Client,
    Email,
    EmailStatus,
    Grant,
    Passkey,
    SecurityEvent,
    SignInSession,
    Suppression,
    TextPost,
    TrustedBrowser,
    User,
    UsernameHold,
    WebhookDelivery,
)
from shared.outbox import add_email
from shared.services import events, proof, sessions, users
from shared.services.context import ServiceContext
from shared.services.events import Kind
from shared.services.federation import connected as connected_accounts
from shared.services.identity import apps
from shared.services.refusals import ReauthenticationRequired, WrongConfirmation
from shared.validation import email_key

# Bumped when the export's shape changes (2: applications, 3: connected accounts, 4: the
# account's language and time zone).
EXPORT_FORMAT = 4


def _when(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


async def export_account(
    ctx: ServiceContext, user_id: int, *, sign_in: str | None
) -> dict[str, Any]:
    """Everything stored about the account, as JSON-ready data (no secrets: no password
    hash, no session ids). Asked by ``sign_in``, which must have authenticated recently
    (:class:`ReauthenticationRequired` otherwise): a stolen session must not walk off with
    everything."""
    async with ctx.reading() as session:
        user = await users.by_id(session, user_id)
        if user is None:
            raise LookupError("no such account")
        within = ctx.settings.REAUTHENTICATION_TIMEOUT
        if not await sessions.recently_authenticated(session, sign_in, user_id, within=within):
            raise ReauthenticationRequired
        texts = await session.scalars(
            select(TextPost).where(TextPost.author_id == user_id).order_by(TextPost.id)
        )
        sign_ins = await session.scalars(
            select(SignInSession)
            .where(SignInSession.user_id == user_id)
            .order_by(SignInSession.created_at)
        )
        keys = await session.scalars(
            select(Passkey).where(Passkey.user_id == user_id).order_by(Passkey.id)
        )
        remembered = await session.scalars(
            select(TrustedBrowser)
            .where(TrustedBrowser.user_id == user_id)
            .order_by(TrustedBrowser.id)
        )
        history = await session.scalars(
            select(SecurityEvent).where(SecurityEvent.user_id == user_id).order_by(SecurityEvent.id)
        )
        emails = await session.scalars(
            select(Email).where(Email.user_id == user_id).order_by(Email.id)
        )
        applications = await apps.listed(ctx, user_id)
        linked = await connected_accounts.listed(ctx, user_id)
        grants = await session.execute(
            select(Grant, Client.name)
            .join(Client, Client.client_id == Grant.client_id)
            .where(Grant.user_id == user_id, Grant.code_used_at.is_not(None))
            .order_by(Grant.created_at)
        )
        return {
            "format": EXPORT_FORMAT,
            "profile": {
                "username": user.username,
                "email": user.email,
                "confirmed_at": _when(user.confirmed_at),
                "created_at": _when(user.created_at),
                "last_sign_in_at": _when(user.last_sign_in_at),
                "two_factor_enabled_at": _when(user.totp_enabled_at),
                "has_password": passwords.is_usable(user.password_hash),
                "language": user.language,
                "time_zone": user.time_zone,
            },
            "texts": [
                {"title": t.title, "content": t.content, "created_at": _when(t.created_at)}
                for t in texts
            ],
            "sessions": [
                {
                    "device": s.device,
                    "client_address": s.client_address,
                    "user_agent": s.user_agent,
                    "created_at": _when(s.created_at),
                    "last_seen_at": _when(s.last_seen_at),
                    "methods": s.amr,
                    "authenticated_at": _when(s.authenticated_at),
                    "expires_at": _when(s.expires_at),
                    "ended_at": _when(s.revoked_at),
                }
                for s in sign_ins
            ],
            "passkeys": [
                {
                    "name": k.name,
                    "created_at": _when(k.created_at),
                    "last_used_at": _when(k.last_used_at),
                }
                for k in keys
            ],
            "trusted_browsers": [
                {
                    "device": b.device,
                    "client_address": b.client_address,
                    "created_at": _when(b.created_at),
                    "expires_at": _when(b.expires_at),
                }
                for b in remembered
            ],
            "events": [
                {
                    "kind": e.kind,
                    "at": _when(e.created_at),
                    "client_address": e.client_address,
                    "device": e.device,
                    "details": e.payload,
                }
                for e in history
            ],
            "emails": [
                {
                    "kind": e.kind,
                    "to": e.recipient,
                    "status": e.status,
                    "queued_at": _when(e.created_at),
                    "sent_at": _when(e.sent_at),
                }
                for e in emails
            ],
            "subject": str(user.subject),  # who the account is to applications ("sub")
            "applications": [
                {
                    "name": a.name,
                    "client_id": a.client_id,
                    "scopes": a.scopes,
                    "since": _when(a.since),
                    "last_used_at": _when(a.last_used_at),
                }
                for a in applications
            ],
            "connected_accounts": [
                {
                    "provider": c.name,
                    "email": c.email,
                    "connected_at": _when(c.created_at),
                    "last_used_at": _when(c.last_used_at),
                }
                for c in linked
            ],
            "grants": [
                {
                    "application": name,
                    "scopes": g.scopes,
                    "created_at": _when(g.created_at),
                    "last_used_at": _when(g.last_used_at),
                    "ended_at": _when(g.revoked_at),
                    "ended_because": g.revoked_why,
                }
                for g, name in grants
            ],
        }


async def forget_address(session: AsyncSession, user_id: int, address: str) -> None:
    """What else an account's deletion takes: the webhook deliveries already made about it
    (they carry its address; those still owed go out, then retention takes them), and what
    mail reports said about its address (the suppression, the reports), so that whoever
    registers the address next is not refused mail because of the last holder."""
    await session.execute(
        delete(WebhookDelivery).where(
            WebhookDelivery.user_id == user_id,
            WebhookDelivery.status.in_([EmailStatus.SENT, EmailStatus.FAILED]),
        )
    )
    key = email_key(address)
    await session.execute(delete(Suppression).where(Suppression.address_key == key))
    await session.execute(delete(BounceReport).where(BounceReport.address_key == key))


async def delete_account(
    ctx: ServiceContext,
    user_id: int,
    password: str,
    confirmation: str,
    *,
    sign_in: str | None = None,
) -> None:
    """Delete the account and everything that is its own: profile, Texts, sign-ins, every
    outbox row about it (pending or sent: they hold its address and name), and the hold on
    its username; the username and address are free at once. The address gets one last
    notice. Needs the username typed (:class:`WrongConfirmation`) and a fresh proof (a
    recent authentication of ``sign_in``, or the password: the refusals of
    :func:`shared.services.proof.proven`)."""
    async with ctx.reading() as session:
        user = await users.by_id(session, user_id)
    if user is None or confirmation.strip() != user.username:
        raise WrongConfirmation("username", N_("Type your username exactly as shown."))
    offered = proof.Proof(sign_in=sign_in, password=password)
    async with proof.proven(ctx, user_id, offered) as (session, user):
        await session.execute(delete(Email).where(Email.user_id == user.id))
        await forget_address(session, user.id, user.email)
        await session.execute(
            delete(UsernameHold).where(UsernameHold.username_key == user.username_key)
        )
        # The applications it signed in to hear that its sign-ins ended (the delivery rows
        # hold the subject, not the account); then Texts, sign-ins and grants go with it
        # (ON DELETE CASCADE in the schema).
        await sessions.end_all(session, user.id, why="account deleted")
        await session.execute(delete(User).where(User.id == user.id))
        await add_email(
            session, EmailKind.ACCOUNT_DELETED, user.email, AccountDeleted(username=user.username)
        )
        # Its events went with it; this one keeps no link to the person, only the number.
        await events.record(session, Kind.DELETED, None, account_id=user.id)
