"""Small security helpers shared by the blueprints."""

from __future__ import annotations

from urllib.parse import unquote, urlsplit


def safe_next(target: str | None, default: str = "/") -> str:
    """``target`` if it is a path on this site, else ``default``: never an open redirect.

    Refuses other hosts and schemes, protocol-relative ``//host``, backslashes (browsers read
    ``/\\host`` as ``//host``), control characters, and the same tricks percent-encoded.
    """
    if not target or len(target) > 2048:
        return default
    for candidate in (target, unquote(target)):
        if not candidate.startswith("/") or candidate.startswith(("//", "/\\")):
            return default
        if "\\" in candidate or any(ord(char) < 32 or ord(char) == 127 for char in candidate):
            return default
        parts = urlsplit(candidate)
        if parts.scheme or parts.netloc:
            return default
    return target
