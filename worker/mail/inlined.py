"""HTML email templates whose CSS is inlined once, not for every message.

Inlining CSS (css_inline) parses the whole document, matches its selectors and writes it out
again: half of a message's render time, and the same work for every message of a kind, since
only the values differ. The templates put values only as plain ``{{ name }}`` into text and
links, so a kind's document is inlined once with a unique placeholder in each value's place
and split there; a message's HTML is then those parts joined with its values, each escaped as
Jinja's autoescape escapes it. The static parts are exactly what inlining the whole message
gave; a value's text is the same characters, escaped by markupsafe rather than re-serialised
by the inliner (``O&#39;Brien`` where the inliner wrote ``O'Brien``: the same text to a mail
client).

A template that does more (a condition, a loop, a filter, an include) or puts a value where it
could change the styling (a class or style attribute, a <style> element) is not compiled
here; the renderer inlines it per message as before.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Any

import css_inline
from jinja2 import Environment, UndefinedError, nodes
from markupsafe import Markup, escape

# Attributes a value may fill: links and tooltips, which no selector here looks at.
_VALUE_ATTRIBUTES = frozenset({"href", "title", "alt"})
# Nodes a plain template is made of; a Name is allowed only directly in an Output, or as a
# value given to a translated sentence (``{% trans %}Hi {{ username }}{% endtrans %}`` is a
# gettext call with ``username`` as a keyword: its text is fixed for a language, so a
# language's document is still inlined once, its values in their places).
_STRUCTURE = (nodes.Template, nodes.Block, nodes.Output, nodes.TemplateData)
_TRANSLATION = (nodes.Const, nodes.Keyword, nodes.MarkSafeIfAutoescape)
_GETTEXT = frozenset({"gettext", "_", "pgettext"})  # not ngettext: a count changes the text


@dataclass(frozen=True, slots=True)
class InlinedTemplate:
    """A kind's inlined HTML as static parts with a named value between each two."""

    parts: tuple[str, ...]
    names: tuple[str, ...]  # len(parts) - 1 of them

    def render(self, context: Mapping[str, Any], defaults: Mapping[str, Any]) -> str:
        """The document for one message: ``context`` first, then ``defaults`` (the
        environment's globals), as Jinja looks names up; a missing one is an error."""
        pieces = [self.parts[0]]
        for name, part in zip(self.names, self.parts[1:], strict=True):
            if name in context:
                value = context[name]
            elif name in defaults:
                value = defaults[name]
            else:
                raise UndefinedError(f"{name!r} is undefined")
            pieces.append(escape(value))
            pieces.append(part)
        return "".join(pieces)


def inline_once(
    env: Environment,
    inliner: css_inline.CSSInliner,
    name: str,
    *,
    fixed: Mapping[str, str] | None = None,
) -> InlinedTemplate | None:
    """Compile template ``name`` (and the layouts it extends) to an :class:`InlinedTemplate`,
    or None when it is not plain enough to be inlined ahead of its values. ``fixed``: names
    whose value is the same for every message compiled this way (the language's tag and
    direction): written into the document, not left as values."""
    fixed = dict(fixed or {})
    names = _plain_names(env, name)
    if names is None:
        return None
    names -= fixed.keys()
    token = secrets.token_hex(8)
    marks = {f"inline{token}n{index}x": value for index, value in enumerate(sorted(names))}
    # Our own letters and digits: nothing to escape, and autoescape must leave them whole.
    placeholders = {value: Markup(mark) for mark, value in marks.items()}  # noqa: S704
    written = env.get_template(name).render({**placeholders, **fixed})
    html = inliner.inline(written)
    if not marks:
        return InlinedTemplate((html,), ())
    pattern = re.compile("|".join(marks))
    if len(pattern.findall(html)) != len(pattern.findall(written)):
        return None  # the inliner dropped or moved a value: not a plain document
    if not _values_only_in_text_and_links(html, pattern):
        return None
    pieces = re.split(f"({pattern.pattern})", html)
    return InlinedTemplate(tuple(pieces[0::2]), tuple(marks[mark] for mark in pieces[1::2]))


def _plain_names(env: Environment, name: str) -> set[str] | None:
    """Every name the template and its layouts output, if all they do is output plain names
    between fixed text in blocks; None otherwise."""
    assert env.loader is not None
    names: set[str] = set()
    current: str | None = name
    while current is not None:
        source = env.loader.get_source(env, current)[0]
        parent: str | None = None
        for node, within in _walk(env.parse(source), None):
            if isinstance(node, nodes.Extends) and isinstance(node.template, nodes.Const):
                parent = str(node.template.value)
            elif isinstance(node, nodes.Name) and isinstance(within, nodes.Output | nodes.Keyword):
                names.add(node.name)
            elif isinstance(node, nodes.Name) and isinstance(within, nodes.Call):
                if within.node is not node or node.name not in _GETTEXT:
                    return None
            elif isinstance(node, nodes.Call):
                if node.args and not all(isinstance(arg, nodes.Const) for arg in node.args):
                    return None
                if node.dyn_args is not None or node.dyn_kwargs is not None:
                    return None
            elif not isinstance(node, _STRUCTURE + _TRANSLATION):
                return None
        current = parent
    return names


def _walk(node: nodes.Node, within: nodes.Node | None) -> Iterator[tuple[nodes.Node, Any]]:
    yield node, within
    if isinstance(node, nodes.Extends):
        return  # its one child is the layout's name
    for child in node.iter_child_nodes():
        yield from _walk(child, node)


class _ValuePlaces(HTMLParser):
    """Whether any placeholder stands where it could change the styling."""

    def __init__(self, pattern: re.Pattern[str]) -> None:
        super().__init__(convert_charrefs=True)
        self.pattern = pattern
        self.styling = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self.pattern.search(tag):
            self.styling = True  # a value as (part of) a tag's name
        for attribute, value in attrs:
            if self.pattern.search(attribute):
                self.styling = True  # or as an attribute's name
            elif value and attribute not in _VALUE_ATTRIBUTES and self.pattern.search(value):
                self.styling = True

    handle_startendtag = handle_starttag

    def handle_data(self, data: str) -> None:
        if self.cdata_elem is not None and self.pattern.search(data):
            self.styling = True  # inside <style> or <script>

    def handle_comment(self, data: str) -> None:
        if self.pattern.search(data):
            self.styling = True  # conditional comments are markup to some clients


def _values_only_in_text_and_links(html: str, pattern: re.Pattern[str]) -> bool:
    places = _ValuePlaces(pattern)
    places.feed(html)
    places.close()
    return not places.styling
