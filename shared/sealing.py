"""Secrets the service must read back (a TOTP secret, a webhook signing secret), stored
encrypted (Fernet) with a key derived from SECRET_KEY and a purpose, so that a copy of the
database alone reveals none of them and one purpose's key opens nothing of another's."""

from __future__ import annotations

import base64
import hashlib

from cryptography.fernet import Fernet, InvalidToken


class Sealer:
    def __init__(self, secret_key: str, purpose: str) -> None:
        digest = hashlib.sha256(f"{purpose}:".encode() + secret_key.encode()).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(digest))

    def seal(self, secret: str) -> str:
        return self._fernet.encrypt(secret.encode()).decode()

    def open(self, sealed: str | None) -> str | None:
        """The secret, or None when there is none or it cannot be read (SECRET_KEY changed)."""
        if not sealed:
            return None
        try:
            return self._fernet.decrypt(sealed.encode()).decode()
        except InvalidToken:
            return None
