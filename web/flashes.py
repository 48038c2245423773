"""Flash messages that do not pile up in the session cookie.

Quart's ``flash`` appends to a list in the signed session cookie until a page shows them.
A form posted again before that (a double click, a retry, a script that does not follow the
redirect) added the same message once per post: the browser would show it several times,
and the cookie, re-signed and re-sent with every request, grew with each post, and so did
the work of reading and writing it on every request that carried it (after 350 such
posts, some 800 tagged values to decode and re-encode per request), until browsers drop a
cookie over 4 KB and the visitor is signed out.

Here a message already waiting is not added again and the session is left untouched (no new
cookie), and at most :data:`MAX_WAITING` messages wait, the newest kept.
"""

from __future__ import annotations

from quart import flash as quart_flash  # noqa: TID251 (the one place that may)
from quart import session

from shared import i18n

MAX_WAITING = 8  # more than any page flashes before the next one shows them


async def flash(message: str, category: str = "message") -> None:
    """Show ``message`` on the next page, once however many times it was flashed: in the
    language of this request (a catalog's message id is translated here; the pages show
    what was stored)."""
    message = i18n.gettext(message)
    waiting = session.get("_flashes", [])
    if any(tuple(entry) == (category, message) for entry in waiting):
        return
    if len(waiting) >= MAX_WAITING:
        session["_flashes"] = waiting[len(waiting) - MAX_WAITING + 1 :]
    await quart_flash(message, category)
