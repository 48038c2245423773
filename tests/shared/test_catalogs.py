"""Every shipped catalog: complete, in step with the code, and compiling.

``scripts/messages.py --check`` extracts the messages again and compares: a string added to
a template or a flash without its translations fails here, as does a translation whose
placeholders or markup differ from the original's. Babel's own compiler then compiles each
catalog and reports its statistics, as ``pybabel compile`` does for a release."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from babel.messages.pofile import read_po

from scripts.messages import LOCALES, PSEUDO, extract, pseudo_text, read
from shared import i18n
from tests.support import ROOT

CATALOGS = sorted(LOCALES.glob("*/LC_MESSAGES/messages.po"))
TAG = re.compile(r"</?[a-z]+[^>]*>")


def test_every_shipped_language_has_a_catalog() -> None:
    shipped = {path.parent.parent.name for path in CATALOGS}
    assert shipped == set(i18n.SHIPPED) - {i18n.DEFAULT}


def test_the_catalogs_are_in_step_with_the_code_and_complete() -> None:
    done = subprocess.run(
        [sys.executable, "scripts/messages.py", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("path", CATALOGS, ids=lambda path: path.parent.parent.name)
def test_each_catalog_compiles_with_every_message_translated(path: Path, tmp_path: Path) -> None:
    compiled = tmp_path / "messages.mo"
    done = subprocess.run(
        [sys.executable, "-m", "babel.messages.frontend", "compile", "--statistics",
         "-i", str(path), "-o", str(compiled), "-l", path.parent.parent.name],
        capture_output=True,
        text=True,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    total = len([message for message in read(path) if message.id])
    assert f"{total} of {total} messages (100%) translated" in done.stderr, done.stderr
    assert compiled.stat().st_size > 0


@pytest.mark.parametrize("path", CATALOGS, ids=lambda path: path.parent.parent.name)
def test_translations_keep_the_markup_and_placeholders(path: Path) -> None:
    """Babel checks the placeholders; the tags (<strong>) must come through too, and no
    translation may be marked fuzzy (a guess that was never reviewed)."""
    with path.open("rb") as po:
        catalog = read_po(po)
    wrong = []
    for message in catalog:
        if not message.id:
            continue
        originals = message.id if isinstance(message.id, tuple) else (message.id,)
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        tags = sorted(TAG.findall(originals[0]))
        wrong += [
            str(originals[0])
            for string in strings
            if sorted(TAG.findall(string)) != tags or message.fuzzy
        ]
    assert wrong == []


def test_the_pseudo_locale_keeps_what_code_reads() -> None:
    """Placeholders, tags and paths stay as they are; every letter else is swapped."""
    said = pseudo_text("Hi %(username)s, open <strong>/account</strong> now")
    assert said.startswith("⟦") and said.endswith("⟧")
    assert "%(username)s" in said and "<strong>/account</strong>" in said
    assert not re.search(r"[A-Za-z]{2,}", said.replace("%(username)s", "").replace(
        "<strong>/account</strong>", ""))  # fmt: skip
    assert PSEUDO not in i18n.SHIPPED and len(list(extract())) > 500
