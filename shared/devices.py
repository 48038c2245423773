"""Browsers in words, from their user agent (ua-parser's rules, not regexes of our own).

Only names from the lists below are ever shown: ua-parser's generic rules echo words of the
user agent back as a "family" ("Do NOT click ... secure crawler" parses as the browser
"secure crawler"), and the name ends up in emails to the account's owner. A browser or
system that is not on the list is "an unknown browser": a sender cannot put words there.
"""

from __future__ import annotations

import asyncio

from ua_parser import parse

USER_AGENT_MAX = 512

BROWSERS = frozenset({
    "Chrome", "Chrome Mobile", "Chrome Mobile iOS", "Chrome Mobile WebView", "Chromium",
    "HeadlessChrome", "Firefox", "Firefox Mobile", "Firefox iOS", "Firefox Focus", "Safari",
    "Mobile Safari", "Mobile Safari UI/WKWebView", "Edge", "Edge Mobile", "IE", "IE Mobile",
    "Opera", "Opera Mobile", "Opera Mini", "Samsung Internet", "Brave", "Vivaldi",
    "Yandex Browser", "UC Browser", "DuckDuckGo Mobile", "Electron", "Thunderbird",
    "Android", "Silk", "MiuiBrowser", "Whale", "Puffin", "Pale Moon", "Waterfox",
    "SeaMonkey", "Epiphany", "Konqueror", "Facebook", "Instagram", "curl", "Wget",
    "Python Requests", "okhttp", "Go-http-client", "aiohttp", "HTTPie", "Java",
})  # fmt: skip
SYSTEMS = frozenset({
    "Windows", "Mac OS X", "iOS", "iPadOS", "Android", "Linux", "Ubuntu", "Debian", "Fedora",
    "Red Hat", "openSUSE", "Arch Linux", "Mint", "Chrome OS", "ChromeOS", "FreeBSD",
    "OpenBSD", "NetBSD", "Windows Phone", "KaiOS", "HarmonyOS", "Tizen", "Fire OS",
    "watchOS", "tvOS",
})  # fmt: skip


def describe_device(user_agent: str) -> str:
    """The user agent in words, as people name their devices: "Firefox on Windows"."""
    result = parse(user_agent[:USER_AGENT_MAX])
    browser = result.user_agent.family if result.user_agent else None
    system = result.os.family if result.os else None
    browser = browser if browser in BROWSERS else None
    system = system if system in SYSTEMS else None
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
