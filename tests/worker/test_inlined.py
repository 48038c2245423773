"""HTML inlined once per kind: the same document as inlining every message, values escaped,
and templates that could make a value change the styling left to per-message inlining."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from jinja2 import UndefinedError

from shared import i18n
from shared.jobs import EmailKind
from worker.mail.inlined import _plain_names, inline_once
from worker.mail.render import EmailRenderer

# Values a mail client must show as text: markup, quotes, ampersands, non-ASCII.
AWKWARD = '<b>O\'Brien</b> & "Zoë" <script>alert(1)</script>'


class _Document(HTMLParser):
    """What a mail client reads: tags with their attribute values and the text between,
    character references resolved (so two serialisations of the same text compare equal)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.items: list[Any] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.items.append(("start", tag, attrs))

    def handle_endtag(self, tag: str) -> None:
        self.items.append(("end", tag))

    def handle_data(self, data: str) -> None:
        if self.items and self.items[-1][0] == "text":
            self.items[-1] = ("text", self.items[-1][1] + data)
        else:
            self.items.append(("text", data))


def document(html: str) -> list[Any]:
    parsed = _Document()
    parsed.feed(html)
    parsed.close()
    return parsed.items


FIXED = {"lang": "en", "dir": "ltr"}  # what a language fixes in every one of its documents


def per_message(renderer: EmailRenderer, name: str, context: dict[str, Any]) -> str:
    """The HTML as it was made before: the template rendered, then inlined as a whole."""
    return renderer._inliner.inline(renderer._env.get_template(name).render({**context, **FIXED}))


@pytest.fixture
def renderer() -> EmailRenderer:
    return EmailRenderer(site_name="Accounts & Co", base_url="https://accounts.test")


@pytest.mark.parametrize("language", ["en", "de", "ar"])
@pytest.mark.parametrize("kind", list(EmailKind))
@pytest.mark.parametrize("value", ["plain value", AWKWARD])
def test_every_kind_is_inlined_once_and_reads_as_inlining_each_message(
    renderer: EmailRenderer, kind: EmailKind, value: str, language: str
) -> None:
    """In every language too: a translated sentence's values are values like any other."""
    name = f"email/{kind}.html"
    fixed = {"lang": language, "dir": i18n.direction(language)}
    with i18n.use(language):
        inlined = inline_once(renderer._env, renderer._inliner, name, fixed=fixed)
        assert inlined is not None, f"{name} fell back to inlining every message"
        names = (_plain_names(renderer._env, name) or set()) - fixed.keys()
        context = {variable: f"{variable}: {value}" for variable in names}
        context.pop("site_name", None)  # from the environment's globals, as in production
        context.pop("base_url", None)
        html = inlined.render(context, renderer._env.globals)
        expected = renderer._inliner.inline(
            renderer._env.get_template(name).render({**context, **fixed})
        )
    assert document(html) == document(expected)
    assert f'lang="{language}"' in html
    assert 'style="' in html and "<style" not in html
    if value == AWKWARD:
        assert "<script>" not in html and "&lt;script&gt;" in html


@pytest.mark.parametrize("kind", [EmailKind.RESET])
def test_the_english_document_is_the_one_inlined_per_message(
    renderer: EmailRenderer, kind: EmailKind
) -> None:
    name = f"email/{kind}.html"
    inlined = inline_once(renderer._env, renderer._inliner, name, fixed=FIXED)
    assert inlined is not None
    names = (_plain_names(renderer._env, name) or set()) - FIXED.keys()
    value = "plain value"
    context = {variable: f"{variable}: {value}" for variable in names}
    context.pop("site_name", None)  # from the environment's globals, as in production
    context.pop("base_url", None)
    html = inlined.render(context, renderer._env.globals)
    assert document(html) == document(per_message(renderer, name, context))
    assert 'style="' in html and "<style" not in html


def test_the_static_parts_are_the_inliners_own_bytes(renderer: EmailRenderer) -> None:
    """With values the inliner writes back unchanged, the two ways give the same bytes."""
    context = {"username": "alice", "link": "https://accounts.test/r/abc", "expires_in": "1 hour"}
    fast = renderer.render("reset", context).html
    assert fast == per_message(
        renderer, "email/reset.html", {**context, "subject": "Reset your password"}
    )


def test_a_missing_value_is_an_error_not_a_blank(renderer: EmailRenderer) -> None:
    with pytest.raises(UndefinedError, match="link"):
        renderer.render("reset", {"username": "alice", "expires_in": "1 hour"})


def test_a_context_value_wins_over_a_global_as_in_jinja(renderer: EmailRenderer) -> None:
    html = renderer.render("test", {"site_name": "Other"}).html
    assert "Other" in html and "Accounts &amp; Co" not in html


BASE = """<!doctype html>
<html><head><title>{{ subject }}</title>
<style>.note { color: #123456; } .warn { color: #ff0000; }</style></head>
<body>{% block content %}{% endblock %}</body></html>
"""


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ('<p class="note">{% if urgent %}now{% endif %}</p>', "a condition"),
        ('<p class="note">{{ username | upper }}</p>', "a filter"),
        ('<p class="{{ level }}">hello</p>', "a value in a class attribute"),
        ('<p style="color: {{ colour }}">hello</p>', "a value in a style attribute"),
        ("<style>.x { color: {{ colour }} }</style><p>hello</p>", "a value in a style element"),
        ('<p {{ level }}="1" class="note">hello</p>', "a value as an attribute's name"),
        (
            '<p class="note">{% trans count=n %}{{ count }} day{% pluralize %}{{ count }} days'
            "{% endtrans %}</p>",
            "a plural: its count changes the sentence",
        ),
        ('<p class="note">{{ _(level) }}</p>', "a sentence named by a value"),
    ],
)
def test_a_template_that_could_style_by_value_is_inlined_per_message(
    tmp_path: Path, body: str, reason: str
) -> None:
    (tmp_path / "email").mkdir()
    (tmp_path / "email" / "_base.html").write_text(BASE)
    (tmp_path / "email" / "odd.html").write_text(
        '{% extends "email/_base.html" %}{% block content %}' + body + "{% endblock %}"
    )
    (tmp_path / "email" / "odd.txt").write_text("{% set subject = 'Odd' %}text\n")
    renderer = EmailRenderer(site_name="Accounts", base_url="https://a.test", templates=tmp_path)
    assert inline_once(renderer._env, renderer._inliner, "email/odd.html") is None, reason
    context = {"urgent": True, "username": "alice", "level": "warn", "colour": "#00ff00", "n": 2}
    html = renderer.render("odd", context).html
    assert html == per_message(renderer, "email/odd.html", {**context, "subject": "Odd"})
