"""A sign-in whose first factor was right, on an account that needs a second: what the second
step needs, signed (it lapses after SECOND_STEP_MAX_AGE, and with the account's session
version, so a password change makes it useless), and read back. The first step's methods
travel with it, so that the second step's sign-in records every method it was made with."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from shared import assurance
from shared.assurance import Method
from shared.models import User
from shared.services.context import ServiceContext
from shared.tokens import Purpose, int_field

SECOND_STEP_MAX_AGE = 300  # seconds to complete the second factor after the first


@dataclass(frozen=True, slots=True)
class PendingSignIn:
    """A sign-in whose password was right and whose second factor is still to come."""

    user_id: int
    session_version: int
    key: str  # the address key of the account
    methods: list[Method]  # the first step's, in RFC 8176 terms (shared.assurance)

    @property
    def first(self) -> str:
        """The factor already given: "password", or "passkey" (one without user
        verification, which is something you have and nothing more)."""
        return _first_step(self.methods)


def _first_step(methods: Sequence[Method]) -> str:
    keys = {Method.HARDWARE_KEY, Method.SOFTWARE_KEY}
    return "passkey" if keys & set(methods) else "password"


def token(ctx: ServiceContext, user: User, key: str, methods: Sequence[Method]) -> str:
    """A first factor was right on an account with two-factor sign-in: what the second step
    needs, signed (it lapses after SECOND_STEP_MAX_AGE, and with the session version)."""
    payload = {
        "uid": user.id,
        "sv": user.session_version,
        "key": key,
        "amr": [str(m) for m in methods],
        # What the version before "amr" reads (a process of it may still be answering
        # during a deployment): without it, it would take a passkey's step for a password's.
        "via": _first_step(methods),
    }
    return ctx.tokens.dumps(Purpose.SECOND_STEP, payload)


def pending(ctx: ServiceContext, token: str) -> PendingSignIn | None:
    """What a second step token stands for, while it is fresh (it lapses
    after SECOND_STEP_MAX_AGE; a password change makes it useless through the version)."""
    payload = ctx.tokens.loads(Purpose.SECOND_STEP, token, max_age=SECOND_STEP_MAX_AGE)
    if payload is None:
        return None
    user_id, version = int_field(payload, "uid"), int_field(payload, "sv")
    key, given = payload.get("key"), payload.get("amr")
    if user_id is None or version is None or not isinstance(key, str):
        return None
    if isinstance(given, list) and all(isinstance(v, str) for v in given):
        methods = assurance.parse(given)
    elif payload.get("via", "password") in ("password", "passkey"):
        # Handed out before sign-ins recorded their methods (minutes ago at most).
        methods = [Method.SOFTWARE_KEY if payload.get("via") == "passkey" else Method.PASSWORD]
    else:
        return None
    if not methods:
        return None
    return PendingSignIn(user_id, version, key, methods)
