"""Signed, expiring tokens for email links (itsdangerous ``URLSafeTimedSerializer``).

Every purpose has its own salt, so a token made for one purpose never verifies for another
(quart-auth signs its cookie with the same secret under yet another salt). Payloads carry a
"generation" (and for resets a fingerprint of the password hash), so a newer link or a
changed password makes older links useless: tokens are single-use without any token table.

The clock is injectable so tests can travel in time instead of sleeping.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from itsdangerous import BadData, TimestampSigner, URLSafeTimedSerializer

MAX_TOKEN_LENGTH = 512  # ours are ~100 characters; anything far longer is not one of ours


class Purpose(enum.StrEnum):
    CONFIRM_EMAIL = "confirm-email"
    RESET_PASSWORD = "reset-password"  # noqa: S105 (a salt name, not a password)
    NOT_ME = "not-me"
    CHANGE_EMAIL = "change-email"
    DEVICE = "device"  # the device cookie: a browser that has signed in to an account before
    SECOND_STEP = "second-step"  # password right, the second factor still to come


class Tokens:
    def __init__(self, secret: str, *, clock: Callable[[], float] = time.time) -> None:
        self._secret = secret
        clock_ = clock

        class ClockedSigner(TimestampSigner):
            def get_timestamp(self) -> int:
                return int(clock_())

        self._signer = ClockedSigner

    def _serializer(self, purpose: Purpose) -> URLSafeTimedSerializer:
        return URLSafeTimedSerializer(
            self._secret, salt=f"accounts.{purpose.value}", signer=self._signer
        )

    def dumps(self, purpose: Purpose, payload: dict[str, Any]) -> str:
        token = self._serializer(purpose).dumps(payload)
        assert isinstance(token, str)
        return token

    def loads(self, purpose: Purpose, token: str, *, max_age: int) -> dict[str, Any] | None:
        """The payload, or None for anything invalid, tampered, expired or of another purpose.

        Callers show one friendly message for every None: which check failed is nobody's
        business but the log's.
        """
        if not token or len(token) > MAX_TOKEN_LENGTH:
            return None
        try:
            payload = self._serializer(purpose).loads(token, max_age=max_age)
        except (BadData, UnicodeError, ValueError):
            return None
        return payload if isinstance(payload, dict) else None


def password_fingerprint(password_hash: str, secret: str) -> str:
    """A short keyed digest of the current password hash, for reset tokens: once the password
    changes, every older reset link stops matching. Keyed so the token reveals nothing about
    the hash."""
    digest = hmac.new(secret.encode(), password_hash.encode(), hashlib.sha256).hexdigest()
    return digest[:16]


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def unix_microseconds(moment: datetime) -> int:
    """A moment as a token carries it: exact to the microsecond, as PostgreSQL stores it
    (a float of seconds would round)."""
    return (moment - _EPOCH) // timedelta(microseconds=1)


def from_unix_microseconds(value: int) -> datetime:
    return _EPOCH + timedelta(microseconds=value)


def int_field(payload: dict[str, Any], name: str) -> int | None:
    value = payload.get(name)
    return value if isinstance(value, int) and not isinstance(value, bool) else None
