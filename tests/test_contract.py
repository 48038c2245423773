"""The web <-> worker contract: every job name has a function in the worker, and every email
kind has a context model and both templates."""

from __future__ import annotations

import ast
from pathlib import Path

from shared.jobs import EMAIL_CONTEXTS, JOB_NAMES, EmailKind
from shared.settings import Settings
from worker.bootstrap import worker_options
from worker.mail.render import TEMPLATES

ROOT = Path(__file__).resolve().parent.parent


def test_every_job_name_is_registered_in_the_worker(base_settings: Settings) -> None:
    options = worker_options(base_settings)
    registered = {function.name for function in options["functions"]}
    registered |= {job.name for job in options["cron_jobs"]}
    assert registered == JOB_NAMES


def test_every_email_kind_has_a_context_model_and_templates() -> None:
    assert set(EMAIL_CONTEXTS) == set(EmailKind)
    for kind in EmailKind:
        assert (TEMPLATES / "email" / f"{kind}.txt").is_file(), kind
        assert (TEMPLATES / "email" / f"{kind}.html").is_file(), kind


def imports(path: Path) -> list[str]:
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
    return names


def test_web_and_worker_never_import_each_other() -> None:
    for package, forbidden in (("web", "worker"), ("worker", "web")):
        for path in (ROOT / package).rglob("*.py"):
            for name in imports(path):
                assert name.split(".")[0] != forbidden, f"{path} imports {name}"


def test_the_web_layer_never_queries() -> None:
    """Routes and API handlers translate HTTP; the use cases in shared/services own every
    query, transaction and lock. Nothing in web/ may import SQLAlchemy or a model's table
    machinery to run a statement of its own."""
    for path in (ROOT / "web").rglob("*.py"):
        for name in imports(path):
            assert name.split(".")[0] != "sqlalchemy", f"{path} imports {name}"
            assert name not in {"shared.db", "shared.outbox"}, f"{path} imports {name}"


def calls(path: Path) -> list[str]:
    """The names of the attributes a module calls (``ctx.unit_of_work()`` -> unit_of_work)."""
    return [
        node.func.attr
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path)))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
    ]


def test_the_web_layer_opens_no_transaction() -> None:
    """A transaction is a use case's (shared/services): nothing in web/ opens one."""
    for path in (ROOT / "web").rglob("*.py"):
        opened = {"unit_of_work", "reading", "commit_together", "begin"} & set(calls(path))
        assert not opened, f"{path} opens a transaction ({', '.join(sorted(opened))})"


WORKER_DOMAINS = ("mail", "webhooks", "bounces", "cli")


def test_the_worker_domains_keep_to_themselves() -> None:
    """worker/<domain>/ imports shared, the worker's top-level modules (bootstrap, context,
    dispatch, throttle, metrics) and its own package: never another domain's internals."""
    for domain in WORKER_DOMAINS:
        others = {f"worker.{other}" for other in WORKER_DOMAINS if other != domain}
        for path in (ROOT / "worker" / domain).rglob("*.py"):
            for name in imports(path):
                owner = ".".join(name.split(".")[:2])
                assert owner not in others, f"{path} imports {name}"


def string_constants(path: Path) -> list[str]:
    return [
        node.value
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path)))
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    ]


def test_links_and_message_ids_are_written_in_their_one_module() -> None:
    """Emailed links come from shared/links.py (the worker mints them, the web routes them,
    the log filter redacts them from the same definitions); the Message-ID format from
    shared/message_ids.py."""
    from shared.links import NOT_TOKENS, TOKEN_LINKS

    prefixes = tuple(link.prefix for link in TOKEN_LINKS)
    allowed = {prefix + word for prefix in prefixes for word in NOT_TOKENS}
    for package in ("web", "worker", "shared"):
        for path in (ROOT / package).rglob("*.py"):
            if path.name in {"links.py", "message_ids.py"} and path.parent.name == "shared":
                continue
            for text in string_constants(path):
                if text.startswith(prefixes) and text not in allowed:
                    raise AssertionError(f"{path} spells a link: {text!r}")
                assert "<outbox." not in text, f"{path} spells a Message-ID: {text!r}"


def test_emailed_link_tokens_are_made_and_read_by_their_codec() -> None:
    """An emailed link's payload is written and read in shared/tokens.py only (its codec):
    nothing else names those purposes to sign or read a raw dict."""
    link_purposes = {"CONFIRM_EMAIL", "RESET_PASSWORD", "NOT_ME", "CHANGE_EMAIL"}
    for package in ("web", "worker", "shared"):
        for path in (ROOT / package).rglob("*.py"):
            if path == ROOT / "shared" / "tokens.py":
                continue
            tree = ast.parse(path.read_text(), filename=str(path))
            for node in ast.walk(tree):
                if (
                    isinstance(node, ast.Attribute)
                    and isinstance(node.value, ast.Name)
                    and node.value.id == "Purpose"
                ):
                    assert node.attr not in link_purposes, f"{path} uses Purpose.{node.attr}"
