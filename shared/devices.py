"""Browsers in words, from their user agent (ua-parser's rules, not regexes of our own)."""

from __future__ import annotations

import asyncio

from ua_parser import parse

USER_AGENT_MAX = 512


def describe_device(user_agent: str) -> str:
    """The user agent in words, as people name their devices: "Firefox on Windows"."""
    result = parse(user_agent[:USER_AGENT_MAX])
    browser = result.user_agent.family if result.user_agent else None
    system = result.os.family if result.os else None
    browser = None if browser in (None, "Other") else browser
    system = None if system in (None, "Other") else system
    if browser and system:
        return f"{browser} on {system}"[:120]
    return (browser or system or "An unknown browser")[:120]


def warm_up() -> None:
    """Make the parser compile its patterns now (the first parse takes ~150 ms)."""
    describe_device("Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0")


_NAMES: dict[str, str] = {}
_NAMES_MAX = 10_000


async def device_name(user_agent: str) -> str:
    """:func:`describe_device` off the event loop the first time a user agent is seen (the
    parser is slow on a new string), from a bounded cache afterwards (no thread hop)."""
    known = _NAMES.get(user_agent)
    if known is None:
        known = await asyncio.to_thread(describe_device, user_agent)
        if len(_NAMES) >= _NAMES_MAX:
            _NAMES.clear()
        _NAMES[user_agent] = known
    return known
