"""The catalogs: extract every message from the code and templates, and bring each language's
catalog up to date with it (``make messages``), or check that they are (``--check``).

    python scripts/messages.py            # extract, update shared/locales/*/messages.po
    python scripts/messages.py --init xx  # start a catalog for language xx
    python scripts/messages.py --check    # exit 1 if a catalog is behind or incomplete

Messages come from ``babel.cfg`` (Python: ``_``, ``N_``, ``L_``, ``gettext``, ``ngettext``,
``pgettext``, ``flash``; Jinja: ``{% trans %}`` and ``_()``) and from zxcvbn's feedback
sentences (the password-strength hints, which that library writes in English only).
"""

from __future__ import annotations

import argparse
import io
import re
import shutil
import sys
from collections.abc import Iterable
from pathlib import Path

import zxcvbn.feedback
from babel import Locale
from babel.messages.catalog import Catalog, Message
from babel.messages.extract import extract_from_dir, extract_from_file
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po, write_po

from shared.i18n import catalog_path

ROOT = Path(__file__).resolve().parent.parent
LOCALES = ROOT / "shared" / "locales"
TEMPLATE = LOCALES / "messages.pot"
KEYWORDS = {
    "_": None,
    "gettext": None,
    "ngettext": (1, 2),
    "pgettext": ((1, "c"), 2),
    "N_": None,
    "L_": None,
    "lazy_gettext": None,
    "flash": None,
    "N_plural": (1, 2),
}
DIRECTORIES = ("shared", "web", "worker")


def extract() -> Catalog:
    """Every message of the project, in a stable order (no line numbers: a moved line is no
    change to the catalogs)."""
    with (ROOT / "babel.cfg").open() as config:
        method_map, options_map = parse_mapping_cfg(config)
    template = Catalog(project="accounts", charset="utf-8", fuzzy=False)
    found: list[tuple[str, int, str | tuple[str, ...], list[str], str | None]] = []

    def ours(path: str) -> bool:  # the project's own packages only (not .venv, tests, ...)
        relative = Path(path).resolve().relative_to(ROOT)
        return relative.parts[0] in DIRECTORIES and "__pycache__" not in relative.parts

    for filename, lineno, message, comments, context in extract_from_dir(
        ROOT, method_map, options_map, keywords=KEYWORDS, directory_filter=ours
    ):
        found.append((filename, lineno, message, comments, context))
    feedback = Path(zxcvbn.feedback.__file__)
    for lineno, message, comments, context in extract_from_file(
        "python", str(feedback), keywords={"_": None}
    ):
        found.append(("zxcvbn/feedback.py", lineno, message, comments, context))
    for filename, lineno, message, comments, context in found:
        template.add(message, None, [(filename, lineno)], auto_comments=comments, context=context)
    return template


def _write(catalog: Catalog, path: Path) -> None:
    buffer = io.BytesIO()
    write_po(buffer, catalog, width=100, omit_header=False, no_location=True, sort_output=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buffer.getvalue())


def catalogs() -> Iterable[Path]:
    return sorted(LOCALES.glob("*/LC_MESSAGES/messages.po"))


def read(path: Path) -> Catalog:
    with path.open("rb") as po:
        return read_po(po, locale=path.parent.parent.name)


def update(template: Catalog) -> None:
    _write(template, TEMPLATE)
    for path in catalogs():
        catalog = read(path)
        catalog.update(template, no_fuzzy_matching=True)
        catalog.obsolete.clear()  # what no code says any more is gone, not kept
        _write(catalog, path)
        print(f"{path.relative_to(ROOT)}: {problems_of(catalog) or 'complete'}")


def init(code: str, template: Catalog) -> None:
    path = catalog_path(LOCALES, code)
    catalog = Catalog(locale=Locale.parse(code), project="accounts", charset="utf-8")
    catalog.update(template, no_fuzzy_matching=True)
    _write(catalog, path)
    print(f"started {path.relative_to(ROOT)}")


def problems_of(catalog: Catalog) -> list[str]:
    """What keeps a catalog from being shipped: messages without a translation or marked
    fuzzy, and translations whose placeholders differ from the original's (Babel's
    checks: a missing ``%(name)s`` is a KeyError at run time)."""
    problems = []
    for message in catalog:
        if not message.id:
            continue
        if message.fuzzy:
            problems.append(f"fuzzy: {_id(message)}")
        elif not _translated(message):
            problems.append(f"untranslated: {_id(message)}")
    for message, errors in catalog.check():
        problems += [f"{error}: {_id(message)}" for error in errors]
    return problems


def _translated(message: Message) -> bool:
    if isinstance(message.string, tuple | list):
        return all(message.string)
    return bool(message.string)


def _id(message: Message) -> str:
    return str(message.id[0] if isinstance(message.id, tuple | list) else message.id)[:70]


# Pseudo-localisation: every letter of a message swapped for an accented look-alike and the
# whole bracketed, placeholders and markup kept. A page or email rendered in it shows at a
# glance (and to a test, by its plain ASCII letters) any text that skipped the catalogs.
PSEUDO = "en-XA"
_LOOK_ALIKES = str.maketrans(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
    "åƀçðéƒĝĥîĵķļɱñöþǫŕšţûṽŵẋýžÅƁÇÐÉƑĜĤÎĴĶĻṀÑÖÞǪŔŠŢÛṼŴẊÝŽ",
)
_KEEP = re.compile(r"(%\([a-z_]+\)[sd]|%[sd]|<[^>]+>|&[a-z]+;|https?://\S+|/[a-z0-9/_.-]+)")


def pseudo_text(message: str) -> str:
    parts = _KEEP.split(message)
    return (
        "⟦"
        + "".join(part if _KEEP.fullmatch(part) else part.translate(_LOOK_ALIKES) for part in parts)
        + "⟧"
    )


def write_pseudo(template: Catalog, directory: Path) -> Path:
    """The pseudo-locale's catalog under ``directory`` (a test's LOCALES_DIR)."""
    catalog = Catalog(locale=Locale.parse("en"), project="accounts", charset="utf-8")
    for message in template:
        if not message.id:
            continue
        if isinstance(message.id, tuple | list):
            string: str | tuple[str, ...] = tuple(pseudo_text(form) for form in message.id)
        else:
            string = pseudo_text(message.id)
        catalog.add(message.id, string, context=message.context)
    path = catalog_path(directory, PSEUDO)
    _write(catalog, path)
    return path


def with_pseudo(directory: Path) -> Path:
    """``directory`` holding the shipped catalogs and the pseudo-locale's: a LOCALES_DIR for
    a test that looks for untranslated text."""
    for shipped in LOCALES.iterdir():
        if shipped.is_dir():
            shutil.copytree(shipped, directory / shipped.name, dirs_exist_ok=True)
    write_pseudo(extract(), directory)
    return directory


def check(template: Catalog) -> int:
    """0 when every catalog has exactly the template's messages, each translated."""
    wanted = {(message.id if isinstance(message.id, str) else message.id[0], message.context)
              for message in template if message.id}  # fmt: skip
    failures = 0
    for path in catalogs():
        catalog = read(path)
        have = {(message.id if isinstance(message.id, str) else message.id[0], message.context)
                for message in catalog if message.id}  # fmt: skip
        problems = problems_of(catalog)
        problems += [f"missing: {key[0][:70]}" for key in sorted(wanted - have, key=str)]
        problems += [f"no longer used: {key[0][:70]}" for key in sorted(have - wanted, key=str)]
        for problem in problems:
            print(f"{path.relative_to(ROOT)}: {problem}")
        failures += bool(problems)
    return 1 if failures else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only check; exit 1 if behind")
    parser.add_argument("--init", metavar="LANG", help="start a catalog for a new language")
    parser.add_argument("--pseudo", metavar="DIR", help=f"write the {PSEUDO} pseudo-locale to DIR")
    args = parser.parse_args()
    template = extract()
    if args.check:
        return check(template)
    if args.init:
        init(args.init, template)
        return 0
    if args.pseudo:
        print(write_pseudo(template, Path(args.pseudo)))
        return 0
    update(template)
    return 0


if __name__ == "__main__":
    sys.exit(main())
