"""The links the service mails and the routes that answer them, written once: the worker mints
a link with :meth:`Link.url`, the web serves it at :attr:`Link.route`, and the log filter
redacts the token of every :data:`TOKEN_LINKS` path (``shared.logs``). A new emailed link is a
new :class:`Link` here, and the three stay in step."""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Link:
    """A path that ends in a token: ``prefix`` + token."""

    prefix: str  # "/confirm/"

    def url(self, base: str, token: str) -> str:
        return f"{base}{self.prefix}{token}"

    @property
    def route(self) -> str:
        """The route rule that answers it (``/confirm/<token>``)."""
        return f"{self.prefix}<token>"


CONFIRM_EMAIL = Link("/confirm/")
RESET_PASSWORD = Link("/reset-password/")
# The path reset links had before the routes were named alike (hyphens, as every other):
# links already in inboxes still work (web.blueprints.reset) and are still redacted.
FORMER_RESET_PASSWORD = Link("/reset_password/")
NOT_ME = Link("/account/not-me/")
CHANGE_EMAIL = Link("/account/email/confirm/")
LOGIN_CODE = Link("/login/code/")
TOKEN_LINKS = (
    CONFIRM_EMAIL, RESET_PASSWORD, FORMER_RESET_PASSWORD, NOT_ME, CHANGE_EMAIL, LOGIN_CODE,
)  # fmt: skip

# Pages the emails point at without a token.
LOGIN = "/login"
REQUEST_RESET = "/reset-password"
FORMER_REQUEST_RESET = "/reset_password"
RESEND_CONFIRMATION = "/confirm/resend"

# Paths that are not a token although they follow a prefix above ("/confirm/resend", the
# API's "/api/v1/confirm/request", the page where a sign-in code is typed).
NOT_TOKENS = ("resend", "request", "enter")


def token_paths() -> re.Pattern[str]:
    """What follows each token link's prefix, up to the end of the path: for redaction."""
    prefixes = "|".join(re.escape(link.prefix) for link in TOKEN_LINKS)
    not_tokens = "|".join(NOT_TOKENS)
    return re.compile(rf"({prefixes})(?!(?:{not_tokens})\b)[^\s\"'?#<>/]+")
