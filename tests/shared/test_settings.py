"""Settings come from the environment; bad values stop start-up with one line each."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from shared.settings import SettingsError, load_settings
from tests.support import ROOT, TEST_SECRET_KEY

VALID = {
    "SECRET_KEY": TEST_SECRET_KEY,
    "DATABASE_URL": "postgresql+asyncpg://postgres@127.0.0.1:5432/accounts",
}


def problems(env: dict[str, str]) -> list[str]:
    with pytest.raises(SettingsError) as caught:
        load_settings(env)
    return str(caught.value).splitlines()


def test_flask_mail_names_are_read() -> None:
    settings = load_settings(
        {
            **VALID,
            "MAIL_SERVER": "smtp.example.com",
            "MAIL_PORT": "587",
            "MAIL_USE_TLS": "1",
            "MAIL_USERNAME": "mailer",
            "MAIL_PASSWORD": "hunter2-but-longer",
            "MAIL_DEFAULT_SENDER": "Accounts <NoReply@Example.COM>",
            "ADMINS": "ops@example.com, Dev@Example.com",
            "BASE_URL": "https://accounts.example.com/",
        }
    )
    assert (settings.MAIL_SERVER, settings.MAIL_PORT) == ("smtp.example.com", 587)
    assert settings.MAIL_USE_TLS is True and settings.MAIL_USE_SSL is False
    assert settings.MAIL_DEFAULT_SENDER == "Accounts <NoReply@example.com>"
    assert settings.ADMINS == ["ops@example.com", "Dev@example.com"]
    assert settings.base_url == "https://accounts.example.com"
    assert settings.secure_cookies is True
    # The secret is not in the settings' repr, so it cannot leak through a log line.
    assert "hunter2" not in repr(settings)
    assert TEST_SECRET_KEY not in repr(settings)


def test_web_workers_default_to_the_cpus_this_process_may_use() -> None:
    assert load_settings(VALID).web_workers == len(os.sched_getaffinity(0))
    assert load_settings({**VALID, "WEB_WORKERS": "3"}).web_workers == 3


def test_missing_required_settings_each_get_one_line() -> None:
    assert problems({}) == [
        "SECRET_KEY is required but not set",
        "DATABASE_URL is required but not set",
    ]


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("SECRET_KEY", "changeme", "SECRET_KEY is a placeholder"),
        ("SECRET_KEY", "too-short", "SECRET_KEY must be at least 32 characters long"),
        ("DATABASE_URL", "postgresql://x@y/z", "DATABASE_URL must start with postgresql+asyncpg"),
        ("REDIS_URL", "http://127.0.0.1:6379", "REDIS_URL must be a redis://"),
        ("MAIL_PORT", "smtp", "MAIL_PORT input should be a valid integer"),
        ("MAIL_PORT", "70000", "MAIL_PORT input should be less than or equal to 65535"),
        ("MAIL_USE_TLS", "maybe", "MAIL_USE_TLS input should be a valid boolean"),
        ("ADMINS", "ops@example.com, not-an-address", "ADMINS 'not-an-address' is not a valid"),
        ("BASE_URL", "https://example.com/app", "BASE_URL must be an origin"),
        ("BASE_URL", "ftp://example.com", "BASE_URL must be an http:// or https:// URL"),
        ("WEB_WORKERS", "0", "WEB_WORKERS input should be greater than or equal to 1"),
        ("LANGUAGES", "en,xx", "LANGUAGES: xx has no catalog"),
        ("LANGUAGES", "en,Deutsch", "LANGUAGES: 'Deutsch' is not a language tag"),
        (
            "MAIL_DEFAULT_SENDER",
            "Accounts",
            "MAIL_DEFAULT_SENDER 'Accounts' is not a valid email address",
        ),
    ],
)
def test_malformed_setting_is_named(name: str, value: str, expected: str) -> None:
    lines = problems({**VALID, name: value})
    assert len(lines) == 1
    assert lines[0].startswith(expected), lines[0]


def test_bad_secret_is_never_echoed() -> None:
    secret = "short-but-very-secret"
    (line,) = problems({**VALID, "SECRET_KEY": secret})
    assert secret not in line


def test_tls_modes_are_exclusive() -> None:
    (line,) = problems({**VALID, "MAIL_USE_TLS": "true", "MAIL_USE_SSL": "true"})
    assert "MAIL_USE_TLS" in line and "MAIL_USE_SSL" in line


def test_secrets_can_come_from_files(tmp_path: Path) -> None:
    """Docker/Kubernetes secrets: NAME_FILE names a file holding the value."""
    (tmp_path / "secret_key").write_text(TEST_SECRET_KEY + "\n")
    (tmp_path / "mail_password").write_text("s3cret-from-a-file")
    (tmp_path / "database_url").write_text(VALID["DATABASE_URL"])
    settings = load_settings(
        {
            "SECRET_KEY_FILE": str(tmp_path / "secret_key"),
            "DATABASE_URL_FILE": str(tmp_path / "database_url"),
            "MAIL_USERNAME": "mailer",
            "MAIL_PASSWORD_FILE": str(tmp_path / "mail_password"),
        }
    )
    assert settings.SECRET_KEY.get_secret_value() == TEST_SECRET_KEY  # trailing newline gone
    assert VALID["DATABASE_URL"] == settings.DATABASE_URL
    assert settings.MAIL_PASSWORD is not None
    assert settings.MAIL_PASSWORD.get_secret_value() == "s3cret-from-a-file"


def test_secret_files_are_checked_like_values(tmp_path: Path) -> None:
    (tmp_path / "short").write_text("changeme")
    database = {"DATABASE_URL": VALID["DATABASE_URL"]}
    assert problems({**database, "SECRET_KEY_FILE": str(tmp_path / "short")}) == [
        "SECRET_KEY is a placeholder; generate one with `python -m web generate-secret`"
    ]
    assert problems({**VALID, "SECRET_KEY_FILE": str(tmp_path / "missing")}) == [
        "set SECRET_KEY or SECRET_KEY_FILE, not both"
    ]
    assert problems({**database, "SECRET_KEY_FILE": str(tmp_path / "missing")}) == [
        f"SECRET_KEY_FILE '{tmp_path / 'missing'}' cannot be read: No such file or directory"
    ]


@pytest.mark.parametrize("module", ["web", "worker"])
def test_entry_points_print_one_line_per_problem_and_no_traceback(module: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", module],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "DATABASE_URL": "mysql://nope"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        "configuration error:",
        "SECRET_KEY is required but not set",
        "DATABASE_URL must start with postgresql+asyncpg:// (PostgreSQL through asyncpg)",
    ]


def test_dkim_settings_go_together() -> None:
    (line,) = problems({**VALID, "DKIM_DOMAIN": "example.com"})
    assert "DKIM_DOMAIN, DKIM_SELECTOR and DKIM_PRIVATE_KEY" in line


def test_a_conflict_between_settings_is_reported_with_the_single_setting_errors() -> None:
    """One run names every problem: the rules between settings are not held back until
    each setting is valid on its own."""
    lines = problems({**VALID, "MAIL_USE_TLS": "1", "MAIL_USE_SSL": "yes", "MAIL_PORT": "many"})
    assert len(lines) == 2
    assert lines[0].startswith("MAIL_PORT ")
    assert "cannot both be on" in lines[1]


@pytest.mark.parametrize(
    "key",
    [
        "changemechangemechangemechangeme12",
        "please-CHANGE-ME-before-going-live-0123456789",
        "x" * 40,
        "12341234123412341234123412341234",
    ],
)
def test_padded_placeholders_and_predictable_keys_are_refused(key: str) -> None:
    (line,) = problems({**VALID, "SECRET_KEY": key})
    assert line.startswith("SECRET_KEY is ")
