"""The rules a setting's value must follow beyond its type: real secrets, well-formed
addresses, and the settings that go together (checked together, and on raw values too, so
that one run reports every problem)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from email_validator import EmailNotValidError, validate_email

# Values copied from tutorials and templates; a deployment that still carries one of them has
# not set a real secret. Refusing them is cheaper than discovering forged cookies later.
PLACEHOLDER_SECRETS = frozenset(
    {
        "changeme",
        "change-me",
        "change_me",
        "changethis",
        "secret",
        "secret-key",
        "secret_key",
        "dev",
        "development",
        "you-will-never-guess",
        "your-secret-key",
        "replace-me",
    }
)
MIN_SECRET_KEY_LENGTH = 32
# Words that, anywhere in a key (letters and digits only, any case), mark it as a template's
# placeholder padded to length ("changemechangemechangemechangeme12"). Six letters or more:
# a random key contains one by chance with a probability far below 1e-9.
PLACEHOLDER_WORDS = (
    "changeme", "changethis", "replaceme", "yoursecret", "placeholder", "insecure",
    "youwillneverguess", "notsecret", "notasecret",
)  # fmt: skip
MIN_DISTINCT_CHARACTERS = 10  # "aaaa..." or "12341234..." is long but not secret


TOGETHER = (
    "MAIL_USE_TLS", "MAIL_USE_SSL", "MAIL_USERNAME", "MAIL_PASSWORD", "DKIM_DOMAIN",
    "DKIM_SELECTOR", "DKIM_PRIVATE_KEY", "OIDC_KEY_PUBLISH_AHEAD", "OIDC_JWKS_MAX_AGE",
)  # fmt: skip


def is_on(value: object) -> bool:
    """A switch as pydantic reads one (raw "1", "true", "yes", "on", or a parsed bool)."""
    if isinstance(value, str):
        return value.strip().lower() in {"1", "true", "yes", "on", "t", "y"}
    return bool(value)


def conflicts(values: Mapping[str, Any]) -> list[str]:
    """The rules between settings, on parsed values or on the raw ones (see
    ``Settings._every_problem_at_once``)."""
    found = []
    if is_on(values.get("MAIL_USE_TLS")) and is_on(values.get("MAIL_USE_SSL")):
        found.append("MAIL_USE_TLS (STARTTLS) and MAIL_USE_SSL (implicit TLS) cannot both be on")
    if values.get("MAIL_USERNAME") and values.get("MAIL_PASSWORD") is None:
        found.append("MAIL_PASSWORD is required when MAIL_USERNAME is set")
    dkim = [values.get(name) for name in ("DKIM_DOMAIN", "DKIM_SELECTOR", "DKIM_PRIVATE_KEY")]
    if any(dkim) and not all(dkim):
        found.append("DKIM_DOMAIN, DKIM_SELECTOR and DKIM_PRIVATE_KEY (or _FILE) go together")
    ahead, kept = (
        _number(values.get("OIDC_KEY_PUBLISH_AHEAD")),
        _number(values.get("OIDC_JWKS_MAX_AGE")),
    )
    if ahead is not None and kept is not None and ahead < kept:
        found.append(
            "OIDC_KEY_PUBLISH_AHEAD must be at least OIDC_JWKS_MAX_AGE: a relying party "
            "must see a new key in the JWKS before a token signed with it"
        )
    return found


def _number(value: object) -> int | None:
    try:
        return int(str(value)) if value is not None else None
    except ValueError:
        return None  # the field's own check reports it


def split_addresses(value: object) -> object:
    """ADMINS is a comma-separated list, as a person would type it into an env file."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


def check_address(value: str) -> str:
    """Syntax check only: no DNS lookups at start-up."""
    try:
        # Operators may use test domains (*.test) for their own addresses, e.g. in CI.
        return validate_email(
            value, check_deliverability=False, globally_deliverable=False, test_environment=True
        ).normalized
    except EmailNotValidError as error:
        raise ValueError(f"{value!r} is not a valid email address ({error})") from None
