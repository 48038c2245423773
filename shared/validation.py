"""The input rules, in one place: the HTML forms and the JSON API both call these, so a rule
changed here changes both. Each returns the normalised value or raises ValueError with the
message shown to the person."""

from __future__ import annotations

from email_validator import EmailNotValidError, validate_email

from shared.models import EMAIL_MAX_LENGTH
from shared.services.accounts import USERNAME_PATTERN, normalize_username

PASSWORD_MIN_LENGTH = 8
PASSWORD_MAX_LENGTH = 128  # also keeps a megabyte "password" away from argon2
USERNAME_RULE = "Use 2 to 25 characters: letters, digits, underscores, dots or hyphens."
PERSONAL_PASSWORD = "Your password must not be your username or email address."  # noqa: S105


def check_username(value: str) -> str:
    username = normalize_username(value)
    if not USERNAME_PATTERN.match(username):
        raise ValueError(USERNAME_RULE)
    return username


def check_email(value: str) -> str:
    """Syntax only (no DNS lookups), normalised as email-validator does."""
    value = value.strip()
    if len(value) > EMAIL_MAX_LENGTH:
        raise ValueError(f"An email address cannot be longer than {EMAIL_MAX_LENGTH} characters.")
    try:
        return validate_email(value, check_deliverability=False).normalized
    except EmailNotValidError as error:
        raise ValueError(str(error)) from None


def check_password(password: str, *personal: str | None) -> str:
    if not PASSWORD_MIN_LENGTH <= len(password) <= PASSWORD_MAX_LENGTH:
        raise ValueError(
            f"Field must be between {PASSWORD_MIN_LENGTH} and {PASSWORD_MAX_LENGTH} "
            "characters long."
        )
    lowered = password.casefold()
    if any(value and lowered == value.casefold() for value in personal):
        raise ValueError(PERSONAL_PASSWORD)
    return password
