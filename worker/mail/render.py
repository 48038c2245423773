"""Rendering an email, kept apart from sending it.

Each kind has a ``<kind>.txt`` and a ``<kind>.html`` template extending one base layout. The
text template also sets ``subject`` at top level, so subject and body live side by side. HTML
is autoescaped and its CSS is inlined, because most mail clients ignore <style> blocks (once
per kind where the template allows it: :mod:`worker.mail.inlined`).
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import css_inline
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from shared import i18n
from worker.mail.inlined import InlinedTemplate, inline_once

TEMPLATES = Path(__file__).parent / "templates"


@dataclass(frozen=True, slots=True)
class RenderedEmail:
    subject: str
    text: str
    html: str
    language: str = i18n.DEFAULT  # its Content-Language


def wrap(text: str, width: int = 76) -> str:
    """Plain text as mail clients like it: each line longer than ``width`` wrapped at spaces
    (a link or any long word stays whole, so it still works), indentation and blank lines
    kept. The templates hold each paragraph as one sentence-long line (one catalog entry)."""
    lines = []
    for line in str(text).split("\n"):
        if len(line) <= width:
            lines.append(line)
            continue
        indent = line[: len(line) - len(line.lstrip())]
        lines.append(
            textwrap.fill(
                line.strip(),
                width,
                initial_indent=indent,
                subsequent_indent=indent,
                break_long_words=False,
                break_on_hyphens=False,
            )
        )
    return "\n".join(lines)


class EmailRenderer:
    """Jinja environment for emails. Undefined variables are errors, not blank links.

    A message speaks the current locale (:mod:`shared.i18n`: the worker sets the recipient's
    for each message), through Jinja's i18n extension."""

    def __init__(self, *, site_name: str, base_url: str, templates: Path = TEMPLATES) -> None:
        self._env = Environment(
            loader=FileSystemLoader(templates),
            autoescape=select_autoescape(enabled_extensions=("html",), default=False),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
            auto_reload=False,
            extensions=["jinja2.ext.i18n"],
        )
        self._env.policies["ext.i18n.trimmed"] = True  # one catalog entry per paragraph
        # Every render copies the globals into its context; Jinja's default ones (range,
        # dict, cycler, ...) are not used by these templates, and copying them cost 5 of a
        # render's 60 us. A template that used one would fail its test (undefined is an error).
        self._env.globals.clear()
        self._env.globals.update(site_name=site_name, base_url=base_url)
        self._env.install_gettext_callables(  # type: ignore[attr-defined]  # the extension's
            i18n.gettext, i18n.ngettext, newstyle=True, pgettext=i18n.pgettext
        )
        # The extension's "_" went with the cleared globals: the same gettext, by its short name.
        self._env.globals["_"] = self._env.globals["gettext"]
        self._env.filters["wrap"] = wrap
        self._inliner = css_inline.CSSInliner(load_remote_stylesheets=False)
        # Each kind's HTML in each language with its CSS inlined once (None: inlined per
        # message instead).
        self._inlined: dict[tuple[str, str], InlinedTemplate | None] = {}

    def render(self, kind: str, context: dict[str, Any]) -> RenderedEmail:
        text_module = self._env.get_template(f"email/{kind}.txt").make_module(context)
        subject = getattr(text_module, "subject", None)
        if not subject:
            raise LookupError(f"email/{kind}.txt does not set a subject")
        return RenderedEmail(
            subject=" ".join(str(subject).split()),  # one line, whatever the template did
            text=str(text_module),
            html=self._html(kind, {**context, "subject": subject}),
            language=i18n.current(),
        )

    def _html(self, kind: str, context: dict[str, Any]) -> str:
        name = f"email/{kind}.html"
        locale = i18n.current()
        # Fixed for a language: its tag and direction go into the document, not as values.
        fixed = {"lang": locale, "dir": i18n.direction(locale)}
        key = (kind, locale)
        if key not in self._inlined:
            self._inlined[key] = inline_once(self._env, self._inliner, name, fixed=fixed)
        inlined = self._inlined[key]
        if inlined is not None:
            return inlined.render(context, self._env.globals)
        return self._inliner.inline(self._env.get_template(name).render({**context, **fixed}))


def message_headers(
    rendered: RenderedEmail, *, sender: str, recipient: str, message_id: str, date: datetime
) -> list[tuple[str, str]]:
    """What every message carries above its MIME structure, in order: the one definition both
    ways of writing a message use (a new header is added here, once)."""
    return [
        ("Subject", rendered.subject),
        ("From", sender),
        ("To", recipient),
        ("Date", format_datetime(date)),
        ("Message-ID", message_id),
        ("Auto-Submitted", "auto-generated"),  # RFC 3834: vacation responders stay quiet
        ("Content-Language", rendered.language),  # RFC 3282
    ]


def build_message(
    rendered: RenderedEmail,
    *,
    sender: str,
    recipient: str,
    message_id: str,
    date: datetime | None = None,
) -> EmailMessage:
    """A multipart/alternative message (text first, HTML preferred by clients that can),
    built with the email package (for addresses beyond ASCII; see :mod:`worker.mail.mime`).

    Header values go through the email package's policy, which refuses CR or LF, so a name or
    address can never smuggle in extra headers.
    """
    _address(recipient)
    message = EmailMessage(policy=SMTP)
    for name, value in message_headers(
        rendered,
        sender=sender,
        recipient=recipient,
        message_id=message_id,
        date=date or datetime.now(UTC),
    ):
        message[name] = value
    message.set_content(rendered.text, cte="quoted-printable")
    message.add_alternative(rendered.html, subtype="html", cte="quoted-printable")
    return message


def _address(recipient: str) -> Address:
    if any(char in recipient for char in "\r\n"):
        raise ValueError("recipient address contains a line break")
    user, at, domain = recipient.rpartition("@")
    if not at or not user or not domain:
        raise ValueError(f"recipient {recipient!r} is not an email address")
    return Address(username=user, domain=domain)
