"""One email of each kind in each language: rendered, checked, and kept as a file under
artifacts/emails/<language>/<kind>.eml for a person to read.

The pseudo-locale (scripts/messages.py: every catalog letter swapped for an accented one)
shows any template text that skipped the catalogs: after the values are taken out, no plain
ASCII word may be left in a subject, a text body or the HTML's visible text."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from jinja2 import meta

from scripts.messages import PSEUDO, with_pseudo
from shared import i18n
from shared.jobs import EmailKind
from tests.support import ROOT
from worker.mail.mime import compose
from worker.mail.render import EmailRenderer

ARTIFACTS = ROOT / "artifacts" / "emails"
LANGUAGES = [*i18n.SHIPPED, PSEUDO]
SITE, BASE = "Accounts", "https://accounts.test"


@pytest.fixture(scope="module")
def catalogs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The shipped catalogs and the pseudo-locale's, side by side."""
    directory = with_pseudo(tmp_path_factory.mktemp("locales"))
    i18n.configure(directory)
    yield directory
    i18n.configure(None)


@pytest.fixture(scope="module")
def renderer(catalogs: Path) -> EmailRenderer:
    return EmailRenderer(site_name=SITE, base_url=BASE)


def values_for(renderer: EmailRenderer, kind: str) -> dict[str, str]:
    """A value for every name the kind's templates use: links as links, the rest as text a
    check can find and take out again."""
    env = renderer._env
    names: set[str] = set()
    for name in (f"email/{kind}.txt", f"email/{kind}.html", "email/_base.html"):
        source = env.loader.get_source(env, name)[0]  # type: ignore[union-attr]
        names |= meta.find_undeclared_variables(env.parse(source))
    names -= {"site_name", "base_url", "lang", "dir", "subject", "_", "gettext"}
    values = {}
    for name in sorted(names):
        if name.endswith("link"):
            values[name] = f"{BASE}/{kind}/{name.replace('_', '-')}/tok3n"
        elif name == "code":
            values[name] = "1234 5678"
        else:
            values[name] = f"Zoë-{name}"
    return values


class _Visible(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.text: list[str] = []
        self.links: list[str] = []
        self.lang: str | None = None
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag in ("style", "title"):
            self._skip += 1
        if tag == "a" and found.get("href"):
            self.links.append(str(found["href"]))
        if tag == "html":
            self.lang = found.get("lang")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("style", "title"):
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.text.append(data)


def leftover_words(text: str, values: dict[str, str]) -> list[str]:
    """Plain ASCII words in ``text`` once the values, the site's name and its address are
    taken out: what did not come from a catalog."""
    for value in sorted([*values.values(), SITE, BASE], key=len, reverse=True):
        text = text.replace(value, " ")
    return re.findall(r"(?<![\w/@.-])[A-Za-z]{2,}(?![\w@])", text)


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("kind", [kind.value for kind in EmailKind])
def test_each_kind_in_each_language(renderer: EmailRenderer, kind: str, language: str) -> None:
    values = values_for(renderer, kind)
    with i18n.use(language):
        rendered = renderer.render(kind, values)
    wire = compose(
        rendered,
        sender="Accounts <noreply@accounts.test>",
        recipient="zoe@accounts.test",
        message_id="<1@accounts.test>",
        date=datetime(2026, 12, 6, 12, 0, tzinfo=UTC),
    )
    raw = wire if isinstance(wire, bytes) else wire.as_bytes()
    (ARTIFACTS / language).mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / language / f"{kind}.eml").write_bytes(raw)

    parsed = message_from_bytes(raw, policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    assert parsed["Content-Language"] == language
    text_part = parsed.get_body(("plain",))
    html_part = parsed.get_body(("html",))
    assert text_part is not None and html_part is not None
    text, html = text_part.get_content(), html_part.get_content()
    visible = _Visible()
    visible.feed(html)
    assert visible.lang == language

    # Links intact: each link value whole in the text body, and a working href in the HTML.
    for name, value in values.items():
        if name.endswith("link"):
            assert value in text.split(), f"{name} broken in the text of {kind}/{language}"
            assert value in visible.links, f"{name} not a link in the HTML of {kind}/{language}"
    assert all(len(line) <= 76 or " " not in line.strip() for line in text.splitlines())

    if language == PSEUDO:
        subject = str(parsed["Subject"])
        words = {
            "subject": leftover_words(subject, values) if kind != "test" else [],
            "text": leftover_words(text, values),
            "html": leftover_words(" ".join(visible.text), values),
        }
        if kind == "test":  # the operator's test message keeps its fixed English markers
            words = {part: [w for w in found if w not in ("text", "body", "HTML")]
                     for part, found in words.items()}  # fmt: skip
        if kind == "admin_alert":  # "ADMINS" is the setting's name
            words = {part: [w for w in found if w != "ADMINS"] for part, found in words.items()}
        assert words == {"subject": [], "text": [], "html": []}, f"{kind}: untranslated {words}"
    elif language != i18n.DEFAULT and kind not in ("test", "admin_alert"):
        with i18n.use(i18n.DEFAULT):
            english = renderer.render(kind, values)
        assert rendered.subject != english.subject, f"{kind} subject not in {language}"
        assert rendered.text != english.text


def test_an_unknown_language_is_english(renderer: EmailRenderer) -> None:
    values: dict[str, Any] = values_for(renderer, "reset")
    with i18n.use("xx"):
        rendered = renderer.render("reset", values)
    with i18n.use("en"):
        assert rendered.text == renderer.render("reset", values).text
