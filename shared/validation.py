"""Every input rule, defined once. The HTML forms (``web.forms``) and the JSON API types
(``Annotated[str, RULE.field(), RULE.validator()]``) are derived from these, and the use
cases enforce the rules that need the database or several fields at once by raising
:class:`InvalidInput`.

A rule's ``check`` returns the normalised value or raises ValueError with the message shown
to the person.
"""

from __future__ import annotations

import asyncio
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import idna
from email_validator import SPECIAL_USE_DOMAIN_NAMES, EmailNotValidError, validate_email
from pydantic import AfterValidator, Field
from zxcvbn import zxcvbn

from shared import i18n
from shared.i18n import N_
from shared.i18n import gettext as _
from shared.models import (
    EMAIL_MAX_LENGTH,
    TEXT_CONTENT_MAX_LENGTH,
    TEXT_TITLE_MAX_LENGTH,
    USERNAME_MAX_LENGTH,
)
from shared.tokens import MAX_TOKEN_LENGTH

_SPECIAL_USE = "|".join(SPECIAL_USE_DOMAIN_NAMES)
EMAIL_PATTERN = (
    r'^[^@\s"\[\]]+@'
    rf"(?![^@]*\.(?:{_SPECIAL_USE})$)"
    r"[^@\s\[\].]+(?:\.[^@\s\[\].]+)+$"
)
PASSWORD_MIN_LENGTH = 8
PASSWORD_MAX_LENGTH = 128  # also keeps a megabyte "password" away from argon2
USERNAME_MIN_LENGTH = 2
USERNAME_PATTERN = rf"^[A-Za-z0-9_.-]{{{USERNAME_MIN_LENGTH},{USERNAME_MAX_LENGTH}}}$"
USERNAME_RULE = N_("Use 2 to 25 characters: letters, digits, underscores, dots or hyphens.")
PERSONAL_PASSWORD = N_("Your password must not be your username or email address.")
WEAK_PASSWORD = N_("This password is too easy to guess.")
PASSWORD_MIN_STRENGTH = 3  # zxcvbn score: about 10^8 guesses or more
ZXCVBN_MAX_LENGTH = 72  # zxcvbn refuses longer input; past it a password is long enough
# What a link that no longer works says, for each kind of link: why it may not work, in words
# a person uses, and what to do next.
CONFIRM_LINK_DEAD = N_(
    "This confirmation link does not work: it is incomplete, a newer one replaced it, or it "
    'has expired. On the sign-in page, choose "send it again" for a new one.'
)
RESET_LINK_DEAD = N_(
    "This password reset link does not work: it was already used, a newer one replaced it, "
    "or it has expired. Ask for a new one here."
)
NOT_ME_LINK_DEAD = N_(
    "This link does not work any more: it was already used, or it has expired. If you think "
    "someone else is in your account, reset your password here."
)
EMAIL_CHANGE_LINK_DEAD = N_(
    "This link does not work: a newer request replaced it, or it has expired. Ask for the "
    "change again from your account page."
)
LINK_DEAD = N_(
    "The link is incomplete, already used, replaced by a newer one, or expired: ask for a new one."
)
CONTROL_CHARACTERS = N_("This field contains characters that are not allowed.")


class InvalidInput(ValueError):
    """A rule that needs more than one field, or the database, refused ``field``'s value.
    Forms show ``message`` under the field; the API answers 422 with it."""

    def __init__(self, field: str, message: str) -> None:
        message = i18n.gettext(message)  # the asker's language (shared.i18n)
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass(frozen=True, slots=True)
class TextRule:
    """One text field's rule: its length bounds and its check. ``schema`` is what the API's
    OpenAPI description states about it (pattern, format, example)."""

    min_length: int
    max_length: int
    check: Callable[[str], str]
    schema: dict[str, Any] = field(default_factory=dict)

    def field(self) -> Any:
        """The pydantic field constraints: what the API's description states."""
        return Field(min_length=self.min_length, max_length=self.max_length, **self.schema)

    def validator(self) -> AfterValidator:
        """The check, run by pydantic after the constraints."""
        return AfterValidator(self.check)


# --- normalisation: what counts as "the same" name or address ----------------------------
def normalize_username(username: str) -> str:
    """NFKC, so full-width and other compatibility forms become their plain letters."""
    return unicodedata.normalize("NFKC", username).strip()


def username_key(username: str) -> str:
    """What uniqueness compares: normalised and case-folded ("Alice" and "ALICE" collide)."""
    return normalize_username(username).casefold()


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def email_key(email: str) -> str:
    """The one key an address is known by (uniqueness, look-ups, per-account budgets),
    matching how mail is routed: the domain as DNS resolves it (IDNA 2008 with UTS 46
    mapping, so ``ß`` stays distinct from ``ss``), the local part as delivered with at most
    ASCII case folding (most providers ignore ASCII case; nothing routes Unicode look-alikes
    together, so neither do we). Never longer than the address."""
    local, at, domain = email.strip().rpartition("@")
    if not at:
        return email.strip().translate(_ASCII_LOWER)
    if domain.isascii():
        # IDNA maps an ASCII domain to its ASCII lower case, and where it refuses one the
        # fallback below is that too (a test compares the two): its pure-Python label checks
        # were a twentieth of a reset request's CPU, run three times a request.
        return f"{local.translate(_ASCII_LOWER)}@{domain.translate(_ASCII_LOWER)}"
    try:
        domain = idna.encode(domain, uts46=True, transitional=False).decode("ascii")
    except (idna.IDNAError, UnicodeError):
        domain = domain.translate(_ASCII_LOWER)
    return f"{local.translate(_ASCII_LOWER)}@{domain.lower()}"


# --- the checks ----------------------------------------------------------------------------
def check_username(value: str) -> str:
    username = normalize_username(value)
    if not re.match(USERNAME_PATTERN, username):
        raise ValueError(_(USERNAME_RULE))
    return username


def check_email(value: str) -> str:
    """Syntax only (no DNS lookups), normalised as email-validator does."""
    value = value.strip()
    if len(value) > EMAIL_MAX_LENGTH:
        raise ValueError(
            _("An email address cannot be longer than %(max)d characters.")
            % {"max": EMAIL_MAX_LENGTH}
        )
    try:
        return validate_email(value, check_deliverability=False).normalized
    except EmailNotValidError as error:
        if i18n.current() == i18n.DEFAULT:  # email-validator's precise reason, in English
            raise ValueError(str(error)) from None
        raise ValueError(_("This is not a valid email address (name@example.com).")) from None


def check_password_length(password: str) -> str:
    if not PASSWORD_MIN_LENGTH <= len(password) <= PASSWORD_MAX_LENGTH:
        raise ValueError(
            _("Field must be between %(min)d and %(max)d characters long.")
            % {"min": PASSWORD_MIN_LENGTH, "max": PASSWORD_MAX_LENGTH}
        )
    return password


def check_password(password: str, *personal: str | None) -> str:
    """The whole rule for a new password: its length, not one of the person's own names, and
    hard to guess (zxcvbn's estimate, which knows common passwords, words, names, dates,
    keyboard patterns and the person's own names; no network look-up). A few milliseconds
    of CPU: use cases run it through :func:`check_new_password`, off the event loop."""
    check_password_length(password)
    lowered = password.casefold()
    names = [value for value in personal if value]
    if any(lowered == value.casefold() for value in names):
        raise ValueError(_(PERSONAL_PASSWORD))
    estimate = zxcvbn(password[:ZXCVBN_MAX_LENGTH], user_inputs=names)
    if estimate["score"] < PASSWORD_MIN_STRENGTH:
        feedback = estimate.get("feedback") or {}
        hints = [feedback.get("warning") or "", *(feedback.get("suggestions") or [])]
        hints = [_(hint) for hint in hints]  # zxcvbn's fixed sentences, in our catalogs
        detail = " ".join(hint.strip() for hint in hints if hint and hint.strip())
        raise ValueError(f"{_(WEAK_PASSWORD)} {detail}".strip())
    return password


async def check_new_password(password: str, *personal: str | None) -> str:
    return await asyncio.to_thread(check_password, password, *personal)


def check_plain_text(value: str) -> str:
    """No control characters (NUL and the like; tabs and line breaks are fine): they have no
    business in a title or a text, and PostgreSQL cannot even store NUL."""
    if any((ord(char) < 32 and char not in "\t\r\n") or ord(char) == 127 for char in value):
        raise ValueError(_(CONTROL_CHARACTERS))
    return value


def _as_typed(value: str) -> str:
    """No rule beyond the lengths."""
    return value


# --- the rules -------------------------------------------------------------------------------
USERNAME = TextRule(
    USERNAME_MIN_LENGTH,
    USERNAME_MAX_LENGTH,
    check_username,
    {"pattern": USERNAME_PATTERN, "examples": ["alice"]},
)
EMAIL = TextRule(
    3,
    EMAIL_MAX_LENGTH,
    check_email,
    {
        "json_schema_extra": {"format": "email"},
        # What email-validator refuses beyond the syntax: quoted local parts, address
        # literals, dotless domains and special-use names (.test, .localhost, ...).
        "pattern": EMAIL_PATTERN,
        "examples": ["alice@example.com"],
    },
)
NEW_PASSWORD = TextRule(
    PASSWORD_MIN_LENGTH,
    PASSWORD_MAX_LENGTH,
    _as_typed,  # the rest of the rule needs the account: check_password, in the use cases
    {
        "examples": ["correct horse battery"],
        "description": (
            "8 to 128 characters, not the account's username or address, and hard to guess "
            "(a zxcvbn strength score of 3 or more); refused with 422 otherwise."
        ),
    },
)
# A password typed to prove who one is: no rule but its size, so that the answer never hints
# at the rules (and a megabyte never reaches argon2).
PASSWORD = TextRule(1, PASSWORD_MAX_LENGTH, _as_typed)
TOKEN = TextRule(1, MAX_TOKEN_LENGTH, _as_typed)


def check_code(value: str) -> str:
    """A second factor as typed: digits in any script become 0-9 (a phone's Arabic-Indic or
    full-width digits are the same code), then only letters, digits, spaces and dashes."""
    typed = "".join(
        str(unicodedata.decimal(ch)) if unicodedata.decimal(ch, None) is not None else ch
        for ch in unicodedata.normalize("NFKC", value)
    )
    if not re.fullmatch(r"[A-Za-z0-9 -]+", typed):
        raise ValueError(_("Enter the code as it is shown: digits, or letters and digits."))
    return typed


# A second factor: a 6-digit authenticator code or a recovery code (xxxx-xxxx-xxxx-xxxx).
CODE = TextRule(6, 32, check_code, {"examples": ["123456"]})
TEXT_TITLE = TextRule(1, TEXT_TITLE_MAX_LENGTH, check_plain_text)
TEXT_CONTENT = TextRule(1, TEXT_CONTENT_MAX_LENGTH, check_plain_text)


# --- OpenID Connect clients (the operator's command line registers them) ---------------------
REDIRECT_URI_MAX_LENGTH = 2000
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "[::1]", "::1"})


def check_redirect_uri(value: str, *, public: bool) -> str:
    """A client's redirect URI, matched exactly later, so taken exactly now (RFC 9700 §2.1):
    absolute, no fragment, no wildcard; https, or http on a loopback host (a developer's
    machine, a native app's local listener); a public (native) client may also use a
    private-use scheme with a dot in it (``com.example.app:/callback``, RFC 8252 §7.1)."""
    if not value or len(value) > REDIRECT_URI_MAX_LENGTH or value != value.strip():
        raise ValueError("A redirect URI is an absolute URI of at most 2000 characters.")
    if any(ord(char) < 33 or ord(char) == 127 for char in value) or "*" in value:
        raise ValueError("A redirect URI has no spaces, control characters or wildcards.")
    parts = urlsplit(value)
    if parts.fragment or "#" in value:
        raise ValueError("A redirect URI has no fragment (#...).")
    scheme = parts.scheme.lower()
    if scheme == "https" and parts.hostname:
        return value
    if scheme == "http" and parts.hostname and f"{parts.hostname}" in LOOPBACK_HOSTS:
        return value
    if public and "." in scheme and scheme not in ("http", "https") and parts.path:
        return value
    raise ValueError(
        "A redirect URI must be https:// (http:// only on localhost, 127.0.0.1 or [::1]; a "
        "public app may use its own scheme, like com.example.app:/callback)."
    )
