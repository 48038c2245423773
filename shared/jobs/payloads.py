"""Email kinds and the typed context each carries in ``emails.context``: what the template
needs, nothing more."""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Final

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    pass


# --- email kinds and their typed contexts -----------------------------------------------------
class EmailKind(enum.StrEnum):
    TEST = "test"
    CONFIRM = "confirm"
    ALREADY_REGISTERED = "already_registered"
    RESET = "reset"
    PASSWORD_CHANGED = "password_changed"  # noqa: S105 (an email kind)
    NEW_DEVICE = "new_device"
    TWO_FACTOR_CHANGED = "two_factor_changed"
    EMAIL_CHANGE_CONFIRM = "email_change_confirm"
    EMAIL_CHANGE_REQUESTED = "email_change_requested"
    EMAIL_CHANGED = "email_changed"
    EMAIL_IN_USE = "email_in_use"
    ACCOUNT_DELETED = "account_deleted"
    ADMIN_ALERT = "admin_alert"
    LOGIN_CODE = "login_code"
    REAUTHENTICATION_CODE = "reauthentication_code"
    IDENTITY_LINKED = "identity_linked"


class EmailContext(BaseModel):
    """Base for the JSON stored in ``emails.context``: what the template needs, nothing more.

    Secrets that the template needs (a link's token) are stored here because the message must
    be renderable after a crash; they are never logged.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)


class TestEmail(EmailContext):
    """A test message an operator sends to check the mail set-up (`send-test-email`)."""

    __test__ = False  # not a pytest test class, despite the name


class ConfirmEmail(EmailContext):
    """Confirm an address. The worker mints the link when it sends, for this generation; a
    newer confirmation request (higher generation) makes this one stale, and it is skipped."""

    user_id: int
    generation: int


class AlreadyRegistered(EmailContext):
    """Someone tried to register with an address that has an account: tell its owner, instead
    of telling the stranger that the address is taken."""

    user_id: int


class ResetEmail(EmailContext):
    """A password-reset link for this reset generation; a newer request supersedes it, and
    it is not sent once it would arrive already expired."""

    user_id: int
    generation: int


class PasswordChanged(EmailContext):
    """ "Your password was changed", with a "this wasn't me" link valid while the account's
    session version is still ``session_version``; it also undoes what sign-in ``session``
    (a public id; None for a reset) added."""

    user_id: int
    session_version: int
    session: str | None = None


class NewDevice(EmailContext):
    """A sign-in from a browser the account has not used recently: when, which browser,
    from which address, and a "this wasn't me" link (valid while the account's session
    version is still ``session_version``)."""

    user_id: int
    session_version: int
    signed_in_at: str  # ISO 8601, UTC
    device: str
    client_address: str


class TwoFactorChanged(EmailContext):
    """Two-factor sign-in was turned on or off, its recovery codes regenerated, or one of
    them used: ``change`` says which; with a "this wasn't me" link."""

    user_id: int
    session_version: int
    change: str
    session: str | None = None  # the sign-in that made the change (a public id)


class IdentityLinked(EmailContext):
    """An account at another identity provider was connected (it can sign in now): which,
    with a "this wasn't me" link that also disconnects what sign-in ``session`` linked."""

    user_id: int
    session_version: int
    provider_name: str
    identity_email: str
    session: str | None = None


class EmailChangeConfirm(EmailContext):
    """To the new address: the link that makes it the account's address (this request's
    generation only; a newer request supersedes it)."""

    user_id: int
    generation: int
    new_email: str


class EmailChangeRequested(EmailContext):
    """To the current address, at once: a change to ``new_email`` was asked for, with a
    "this wasn't me" link that cancels it (valid while the session version is unchanged)."""

    user_id: int
    session_version: int
    new_email: str
    session: str | None = None  # the sign-in that asked (a public id)


class EmailChanged(EmailContext):
    """To the old address, after the change: it is no longer the account's."""

    user_id: int
    new_email: str


class EmailInUse(EmailContext):
    """To the owner of an address someone tried to move another account to: nothing
    changed, and the requester was told nothing."""

    user_id: int


class AccountDeleted(EmailContext):
    """The last message to an address whose account was deleted (the account is gone, so
    everything the message needs is here)."""

    username: str


class LoginCode(EmailContext):
    """A sign-in code (and its link) of this generation: the worker derives the code when it
    sends; a newer code, a use or an expiry first makes this one stale, and it is skipped."""

    user_id: int
    generation: int


class ReauthenticationCode(LoginCode):
    """The same code, asked for by a signed-in person to confirm it is them before a
    sensitive change: the email says so (and has no link: the code goes on the page)."""


class AdminAlert(EmailContext):
    """An error the ADMINS should know about (never request data or secrets)."""

    summary: str
    details: str


PRIORITY_KINDS: Final = frozenset(
    {
        EmailKind.RESET,
        EmailKind.LOGIN_CODE,
        EmailKind.REAUTHENTICATION_CODE,
        EmailKind.PASSWORD_CHANGED,
        EmailKind.NEW_DEVICE,
        EmailKind.TWO_FACTOR_CHANGED,
        EmailKind.IDENTITY_LINKED,
        EmailKind.EMAIL_CHANGE_REQUESTED,
        EmailKind.EMAIL_CHANGED,
        EmailKind.ADMIN_ALERT,
    }
)
"""Delivered ahead of everything else waiting: a flood of registrations (confirmations,
notices) must not hold a reset link or a sign-in code back until it expires."""

# The worker takes due emails in the order of their score (the time they are due). Priority
# emails are announced as if due this long ago, so they pass any backlog younger than that.
PRIORITY_HEAD_START: Final = 12 * 3600


EMAIL_CONTEXTS: Final[dict[EmailKind, type[EmailContext]]] = {
    EmailKind.TEST: TestEmail,
    EmailKind.CONFIRM: ConfirmEmail,
    EmailKind.ALREADY_REGISTERED: AlreadyRegistered,
    EmailKind.RESET: ResetEmail,
    EmailKind.PASSWORD_CHANGED: PasswordChanged,
    EmailKind.NEW_DEVICE: NewDevice,
    EmailKind.TWO_FACTOR_CHANGED: TwoFactorChanged,
    EmailKind.IDENTITY_LINKED: IdentityLinked,
    EmailKind.EMAIL_CHANGE_CONFIRM: EmailChangeConfirm,
    EmailKind.EMAIL_CHANGE_REQUESTED: EmailChangeRequested,
    EmailKind.EMAIL_CHANGED: EmailChanged,
    EmailKind.EMAIL_IN_USE: EmailInUse,
    EmailKind.ACCOUNT_DELETED: AccountDeleted,
    EmailKind.ADMIN_ALERT: AdminAlert,
    EmailKind.LOGIN_CODE: LoginCode,
    EmailKind.REAUTHENTICATION_CODE: ReauthenticationCode,
}


def parse_context(kind: str, data: object) -> EmailContext:
    """Validate a stored context against its kind's model (raises ValueError/ValidationError)."""
    try:
        model = EMAIL_CONTEXTS[EmailKind(kind)]
    except ValueError:
        raise ValueError(f"unknown email kind {kind!r}") from None
    return model.model_validate(data)
