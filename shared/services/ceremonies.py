"""WebAuthn ceremonies (passkeys): each challenge is kept server-side, in Redis, under a random
ceremony id, with the facts the answer will be checked against, and taken (read and deleted
at once) when the answer comes, so a challenge is answered once; how many a session or a
client may start is limited. The relying party is the host of BASE_URL, the origin BASE_URL
itself."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from redis.exceptions import RedisError

from shared.ratelimit import Limit
from shared.services.context import ServiceContext

CEREMONY_SECONDS = 300
CEREMONIES_PER_WINDOW = 20  # per account (adding) or per client (signing in), in CEREMONY_SECONDS


def limit() -> Limit:
    return Limit("passkey-ceremony", CEREMONIES_PER_WINDOW, CEREMONY_SECONDS)


def relying_party(ctx: ServiceContext) -> tuple[str, str]:
    base = ctx.settings.base_url
    return urlsplit(base).hostname or "localhost", base


def _key(ctx: ServiceContext, ceremony: str) -> str:
    return f"{ctx.settings.REDIS_KEY_PREFIX}webauthn:{ceremony}"


async def keep(ctx: ServiceContext, challenge: bytes, about: dict[str, Any]) -> str:
    ceremony = secrets.token_urlsafe(18)
    value = json.dumps({"challenge": challenge.hex(), **about})
    await ctx.redis.set(_key(ctx, ceremony), value, ex=CEREMONY_SECONDS)
    return ceremony


async def take(ctx: ServiceContext, ceremony: str) -> dict[str, Any] | None:
    """The ceremony's challenge and facts, once: reading deletes it."""
    if not ceremony or len(ceremony) > 64:
        return None
    try:
        raw = await ctx.redis.getdel(_key(ctx, ceremony))
    except (RedisError, OSError):
        return None
    if raw is None:
        return None
    data: dict[str, Any] = json.loads(raw)
    return data


@dataclass(frozen=True, slots=True)
class Ceremony:
    ceremony: str  # the id the answer must come back with
    options: dict[str, Any]  # for navigator.credentials.create/get (base64url, as JSON)
