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
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, TypeVar

from itsdangerous import BadData, TimestampSigner, URLSafeTimedSerializer

MAX_TOKEN_LENGTH = 512  # ours are ~100 characters; anything far longer is not one of ours
L = TypeVar("L", "ConfirmLink", "ResetLink", "NotMeLink", "ChangeEmailLink", "LoginCodeLink")


class Purpose(enum.StrEnum):
    CONFIRM_EMAIL = "confirm-email"
    RESET_PASSWORD = "reset-password"  # noqa: S105 (a salt name, not a password)
    NOT_ME = "not-me"
    CHANGE_EMAIL = "change-email"
    DEVICE = "device"  # the device cookie: a browser that has signed in to an account before
    SECOND_STEP = "second-step"  # password right, the second factor still to come
    LOGIN_CODE = "login-code"  # the link beside an emailed sign-in code
    FEDERATION_PENDING = "federation-pending"  # an outside identity waiting to be linked
    OIDC_ASKED = "oidc-asked"  # when an application's request sent the person to sign in again


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

    def mint(self, link: LinkToken) -> str:
        """An emailed link's token (its purpose's salt, its payload)."""
        return self.dumps(link.PURPOSE, link.payload())

    def read(self, kind: type[L], token: str, *, max_age: int) -> L | None:
        """The link a token stands for, or None for anything invalid, tampered, expired, of
        another purpose or of another shape."""
        payload = self.loads(kind.PURPOSE, token, max_age=max_age)
        return kind.parse(payload) if payload is not None else None

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


# --- the emailed links' tokens: each purpose's payload made and read in one place ------------
# The worker mints them when it sends (worker/mail/prepare.py), the use cases read them when
# the link is followed; the wire format is the signed JSON of ``payload()``.


@dataclass(frozen=True, slots=True)
class ConfirmLink:
    """Confirm the account's address: valid for this confirmation generation only."""

    PURPOSE: ClassVar[Purpose] = Purpose.CONFIRM_EMAIL
    user_id: int
    generation: int

    def payload(self) -> dict[str, Any]:
        return {"uid": self.user_id, "gen": self.generation}

    @classmethod
    def parse(cls, payload: dict[str, Any]) -> ConfirmLink | None:
        user_id, generation = int_field(payload, "uid"), int_field(payload, "gen")
        return None if user_id is None or generation is None else cls(user_id, generation)


@dataclass(frozen=True, slots=True)
class ResetLink:
    """Set a new password: this reset generation only (a newer link supersedes it), and only
    while the password is the one it was minted for (any change kills it: single use)."""

    PURPOSE: ClassVar[Purpose] = Purpose.RESET_PASSWORD
    user_id: int
    generation: int
    fingerprint: str  # of the password hash it was minted for (password_fingerprint)

    @classmethod
    def of(cls, user_id: int, generation: int, password_hash: str, secret: str) -> ResetLink:
        return cls(user_id, generation, password_fingerprint(password_hash, secret))

    def payload(self) -> dict[str, Any]:
        return {"uid": self.user_id, "gen": self.generation, "fp": self.fingerprint}

    @classmethod
    def parse(cls, payload: dict[str, Any]) -> ResetLink | None:
        user_id, generation = int_field(payload, "uid"), int_field(payload, "gen")
        fingerprint = payload.get("fp")
        if user_id is None or generation is None or not isinstance(fingerprint, str):
            return None
        return cls(user_id, generation, fingerprint)


@dataclass(frozen=True, slots=True)
class NotMeLink:
    """ "This wasn't me": valid while the account's session version is ``session_version``;
    it undoes what sign-in ``sign_in`` added and what was added from ``since`` on."""

    PURPOSE: ClassVar[Purpose] = Purpose.NOT_ME
    user_id: int
    session_version: int
    since: int | None = None  # Unix microseconds (unix_microseconds)
    sign_in: str | None = None  # a sign-in's public id

    def payload(self) -> dict[str, Any]:
        payload: dict[str, Any] = {"uid": self.user_id, "sv": self.session_version}
        if self.since is not None:
            payload["at"] = self.since
        if self.sign_in is not None:
            payload["sid"] = self.sign_in
        return payload

    @classmethod
    def parse(cls, payload: dict[str, Any]) -> NotMeLink | None:
        user_id, version = int_field(payload, "uid"), int_field(payload, "sv")
        if user_id is None or version is None:
            return None
        sign_in = payload.get("sid")
        return cls(
            user_id,
            version,
            int_field(payload, "at"),
            sign_in if isinstance(sign_in, str) else None,
        )


@dataclass(frozen=True, slots=True)
class ChangeEmailLink:
    """Make ``new_email`` the account's address: this request's generation only."""

    PURPOSE: ClassVar[Purpose] = Purpose.CHANGE_EMAIL
    user_id: int
    generation: int
    new_email: str

    def payload(self) -> dict[str, Any]:
        return {"uid": self.user_id, "gen": self.generation, "new": self.new_email}

    @classmethod
    def parse(cls, payload: dict[str, Any]) -> ChangeEmailLink | None:
        user_id, generation = int_field(payload, "uid"), int_field(payload, "gen")
        new_email = payload.get("new")
        if user_id is None or generation is None or not isinstance(new_email, str):
            return None
        return cls(user_id, generation, new_email)


@dataclass(frozen=True, slots=True)
class LoginCodeLink:
    """Sign in with the code of this generation (the link in the sign-in code's email); it
    signs in at once only in the browser that asked for the code."""

    PURPOSE: ClassVar[Purpose] = Purpose.LOGIN_CODE
    user_id: int
    generation: int

    def payload(self) -> dict[str, Any]:
        return {"uid": self.user_id, "gen": self.generation}

    @classmethod
    def parse(cls, payload: dict[str, Any]) -> LoginCodeLink | None:
        user_id, generation = int_field(payload, "uid"), int_field(payload, "gen")
        return None if user_id is None or generation is None else cls(user_id, generation)


LOGIN_CODE_DIGITS = 8


def login_code(secret: str, user_id: int, generation: int, salt: str) -> str:
    """An emailed sign-in code: 8 digits (a phone's number pad types them), derived, so that
    neither the outbox nor the database ever holds one. The salt is random per request and
    stays in the database: the secret key alone does not make a code."""
    message = f"login-code|{user_id}|{generation}|{salt}".encode()
    digest = hmac.new(secret.encode(), message, hashlib.sha256).digest()
    return str(int.from_bytes(digest) % 10**LOGIN_CODE_DIGITS).zfill(LOGIN_CODE_DIGITS)


LinkToken = ConfirmLink | ResetLink | NotMeLink | ChangeEmailLink | LoginCodeLink
