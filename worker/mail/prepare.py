"""What each kind of email needs at the moment it is sent: its template variables, or the
reason it should not be sent any more (the stale guard).

Links are minted here, at send time, so the outbox never stores a live token and a link's
lifetime starts when the message leaves. A message whose content is no longer true (the
address was confirmed meanwhile, a newer link superseded it) is skipped with the reason.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from shared import i18n, links
from shared.jobs import (
    AccountDeleted,
    AdminAlert,
    AlreadyRegistered,
    ConfirmEmail,
    EmailChangeConfirm,
    EmailChanged,
    EmailChangeRequested,
    EmailContext,
    EmailInUse,
    IdentityLinked,
    LoginCode,
    NewDevice,
    PasswordChanged,
    ResetEmail,
    TestEmail,
    TwoFactorChanged,
)
from shared.settings import Settings
from shared.tokens import (
    ChangeEmailLink,
    ConfirmLink,
    LoginCodeLink,
    NotMeLink,
    ResetLink,
    Tokens,
    login_code,
    unix_microseconds,
)


@dataclass(slots=True)
class OutboxEmail:
    """The outbox row a job is delivering, as its claim returned it (see worker.mail.store)."""

    id: int
    kind: str
    recipient: str
    context: dict[str, Any]
    attempts: int
    last_error: str | None
    created_at: datetime
    suppressed: str | None = None  # why the recipient is on the suppression list, if it is
    locale: str | None = None  # the language of the request that caused it

    @classmethod
    def from_row(cls, row: Any) -> OutboxEmail:
        return cls(
            id=row.id,
            kind=row.kind,
            recipient=row.recipient,
            context=row.context,
            attempts=row.attempts,
            last_error=row.last_error,
            created_at=row.created_at,
            suppressed=row.suppressed,
            locale=row.locale,
        )


@dataclass(frozen=True, slots=True)
class Skip:
    reason: str


def _hours(seconds: int) -> str:
    """How long a link works, in the recipient's language ("30 minutes", "24 hours")."""
    return i18n.format_duration(seconds)


@dataclass(frozen=True, slots=True)
class Account:
    """What the stale guard and the templates read of an account, as of the send: a plain
    row (worker.mail.store reads these columns with one Core statement per batch; a mapped
    ``User`` through a session cost half as much again per look-up)."""

    id: int
    username: str
    email: str
    password_hash: str  # only its fingerprint goes into a reset link
    confirmed_at: datetime | None
    confirm_generation: int
    reset_generation: int
    pending_email: str | None
    email_change_generation: int
    # The account's current sign-in code, if it has one (worker.mail.store joins it in).
    login_code_generation: int | None = None
    login_code_salt: str | None = None
    login_code_created_at: datetime | None = None
    # What the account speaks and where it is (None: never chosen).
    language: str | None = None
    time_zone: str | None = None


UserLookup = Callable[[int], Awaitable[Account | None]]


def _not_me_token(
    tokens: Tokens, user: Account, version: int, email: OutboxEmail, by: str | None = None
) -> str:
    """A "this wasn't me" link's token: valid while the account's session version is
    ``version``; it undoes what sign-in ``by`` added, and what was added from the moment of
    the message's cause on (the outbox row is written in the cause's transaction)."""
    since = unix_microseconds(email.created_at)
    return tokens.mint(NotMeLink(user.id, version, since, by))


async def prepare(
    user_by_id: UserLookup,
    email: OutboxEmail,
    context: EmailContext,
    *,
    settings: Settings,
    tokens: Tokens,
) -> dict[str, Any] | Skip:
    match context:
        case TestEmail():
            return {}
        case AdminAlert(summary=summary, details=details):
            return {"summary": summary, "details": details}
        case AccountDeleted(username=username):
            return {"username": username}
        case EmailChanged(user_id=former, new_email=new):  # sent after the account may go
            gone = await user_by_id(former)
            return {"username": gone.username if gone else "", "new_email": new}
    owner = getattr(context, "user_id", None)
    if not isinstance(owner, int):
        raise LookupError(f"no preparation for {type(context).__name__}")
    user = await user_by_id(owner)  # every other kind is about a live account
    if user is None:
        return Skip("the account no longer exists")
    return _about_account(user, email, context, settings=settings, tokens=tokens)


def _about_account(
    user: Account,
    email: OutboxEmail,
    context: EmailContext,
    *,
    settings: Settings,
    tokens: Tokens,
) -> dict[str, Any] | Skip:
    base = settings.base_url
    seen = {"username": user.username}

    def not_me(version: int, by: str | None = None) -> dict[str, Any]:
        token = _not_me_token(tokens, user, version, email, by)
        return {**seen, "not_me_link": links.NOT_ME.url(base, token)}

    match context:
        case ConfirmEmail(generation=generation):
            if user.confirmed_at is not None:
                return Skip("the address is already confirmed")
            if user.confirm_generation != generation:
                return Skip("superseded by a newer confirmation link")
            if user.email != email.recipient:
                return Skip("the account's address has changed")
            token = tokens.mint(ConfirmLink(user.id, generation))
            return {
                **seen,
                "link": links.CONFIRM_EMAIL.url(base, token),
                "expires_in": _hours(settings.CONFIRM_TOKEN_MAX_AGE),
                "resend_link": f"{base}{links.RESEND_CONFIRMATION}",
            }
        case AlreadyRegistered():
            return {
                **seen,
                "login_link": f"{base}{links.LOGIN}",
                "reset_link": f"{base}{links.REQUEST_RESET}",
            }
        case ResetEmail(generation=generation):
            if user.reset_generation != generation:
                return Skip("superseded by a newer reset link or a password change")
            age = (datetime.now(UTC) - email.created_at).total_seconds()
            if age >= settings.RESET_TOKEN_MAX_AGE:
                return Skip("the reset link would have expired before it arrived")
            secret = settings.SECRET_KEY.get_secret_value()
            link = ResetLink.of(user.id, generation, user.password_hash, secret)
            token = tokens.mint(link)
            return {
                **seen,
                "link": links.RESET_PASSWORD.url(base, token),
                "expires_in": _hours(settings.RESET_TOKEN_MAX_AGE),
            }
        case LoginCode(generation=generation):
            salt, asked_at = user.login_code_salt, user.login_code_created_at
            if user.login_code_generation != generation or salt is None or asked_at is None:
                return Skip("superseded by a newer code, or used")
            age = (datetime.now(UTC) - asked_at).total_seconds()
            if age >= settings.LOGIN_CODE_MAX_AGE:
                return Skip("the code would have expired before it arrived")
            secret = settings.SECRET_KEY.get_secret_value()
            code = login_code(secret, user.id, generation, salt)
            token = tokens.mint(LoginCodeLink(user.id, generation))
            return {
                **seen,
                "code": f"{code[:4]} {code[4:]}",
                "link": links.LOGIN_CODE.url(base, token),
                "expires_in": _hours(settings.LOGIN_CODE_MAX_AGE),
            }
        case EmailChangeConfirm(generation=generation, new_email=new_email):
            if user.email_change_generation != generation or user.pending_email != new_email:
                return Skip("superseded by a newer address change, or cancelled")
            token = tokens.mint(ChangeEmailLink(user.id, generation, new_email))
            return {
                **seen,
                "link": links.CHANGE_EMAIL.url(base, token),
                "expires_in": _hours(settings.CONFIRM_TOKEN_MAX_AGE),
            }
        case EmailInUse():
            return {**seen, "reset_link": f"{base}{links.REQUEST_RESET}"}
        case PasswordChanged(session_version=version, session=by):
            return not_me(version, by)
        case NewDevice(session_version=version):
            return {
                **not_me(version),
                "when": i18n.format_datetime(datetime.fromisoformat(context.signed_in_at)),
                "device": context.device,
                "client_address": context.client_address,
            }
        case EmailChangeRequested(session_version=version, new_email=new, session=by):
            return {**not_me(version, by), "new_email": new}
        case TwoFactorChanged(session_version=version, change=change, session=by):
            return {**not_me(version, by), "change": i18n.gettext(change)}
        case IdentityLinked(session_version=version, provider_name=name, session=by):
            address = context.identity_email  # (``email`` is the outbox row)
            if address:
                label = i18n.gettext("%(name)s account (%(address)s)") % {
                    "name": name,
                    "address": address,
                }
            else:
                label = i18n.gettext("%(name)s account") % {"name": name}
            return {**not_me(version, by), "provider_name": name, "identity_label": label}
    raise LookupError(f"no preparation for {type(context).__name__}")
