"""Per-message envelope senders (VERP) that map a bounce back to its outbox row and cannot
be forged: ``bounces+<id>.<signature>@BOUNCE_DOMAIN``.

The signature is a truncated HMAC of the row id under a key derived from SECRET_KEY, in
lower-case base32 (mail systems may change the case of a local part). 65 bits: guessing one
means about 2**64 messages sent to the bounce listener.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

PREFIX = "bounces"
_SIGNATURE_CHARS = 13


def _signature(email_id: int, secret_key: str) -> str:
    key = hashlib.sha256(b"accounts.verp:" + secret_key.encode()).digest()
    mac = hmac.new(key, str(email_id).encode(), hashlib.sha256).digest()
    return base64.b32encode(mac).decode().lower()[:_SIGNATURE_CHARS]


def bounce_address(email_id: int, domain: str, secret_key: str) -> str:
    return f"{PREFIX}+{email_id}.{_signature(email_id, secret_key)}@{domain}"


_PATTERN = re.compile(
    rf"{PREFIX}\+(\d{{1,18}})\.([a-z2-7]{{{_SIGNATURE_CHARS}}})@([^\s>;\"']+)", re.I
)


def email_id_from(address: str, domain: str, secret_key: str) -> int | None:
    """The outbox id an address names, if it is one of ours with a valid signature."""
    match = _PATTERN.fullmatch(address.strip().strip("<>"))
    return _verified(match, domain, secret_key) if match else None


def find_email_id(text: str, domain: str, secret_key: str) -> int | None:
    """The first validly signed bounce address anywhere in ``text`` (a report's headers or
    fields), or None."""
    for match in _PATTERN.finditer(text):
        email_id = _verified(match, domain, secret_key)
        if email_id is not None:
            return email_id
    return None


def _verified(match: re.Match[str], domain: str, secret_key: str) -> int | None:
    email_id, signature, where = int(match.group(1)), match.group(2).lower(), match.group(3)
    if where.lower().rstrip(".") != domain.lower():
        return None
    if not hmac.compare_digest(signature, _signature(email_id, secret_key)):
        return None
    return email_id
