"""docker-compose.yml and the Dockerfile agree with the code (no Docker engine runs here, so
this checks what can be checked without one)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from shared.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parent.parent
APP_SERVICES = ("migrate", "web", "worker", "bounces")
INTERPOLATION = re.compile(r"\$\{(\w+)(?:(:-|:\?)([^}]*))?\}")
# What `make compose-env` writes to .env (values of the same shape).
COMPOSE_ENV = {
    "SECRET_KEY": "kq3VbN7xW2pL9tYcR5mZ8hJ4dF6gS1aE0uIoP-_Tn",
    "POSTGRES_PASSWORD": "Hj8-2kLm9Qw4Er7Ty1Ui6Op3As5Df0Gz",
}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(data, dict)
    return data


def interpolate(value: str, env: dict[str, str] | None = None) -> str:
    """Compose's interpolation: ``${VAR:-default}`` and ``${VAR:?error}`` (which stops
    compose when VAR is unset or empty), with ``env`` as the environment and .env."""
    env = COMPOSE_ENV if env is None else env

    def one(match: re.Match[str]) -> str:
        name, kind, rest = match.group(1), match.group(2), match.group(3) or ""
        if env.get(name):
            return env[name]
        if kind == ":?":
            raise LookupError(f"{name}: {rest}")
        return rest

    return INTERPOLATION.sub(one, value)


def test_services(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == {"postgres", "redis", "mailpit", *APP_SERVICES}


def test_app_environment_is_valid_settings(compose: dict[str, Any]) -> None:
    for name in APP_SERVICES:
        env = {
            key: interpolate(str(value))
            for key, value in compose["services"][name]["environment"].items()
        }
        unknown = set(env) - set(Settings.model_fields)
        assert not unknown, f"{name} sets variables the code never reads: {unknown}"
        settings = load_settings(env)  # raises with the variable's name if one is wrong
        assert settings.MAIL_SERVER == "mailpit"
        assert settings.DATABASE_URL.endswith("@postgres:5432/accounts")


def test_database_credentials_match_postgres_service(compose: dict[str, Any]) -> None:
    postgres = compose["services"]["postgres"]["environment"]
    url = interpolate(compose["services"]["web"]["environment"]["DATABASE_URL"])
    user, password, db = (
        postgres["POSTGRES_USER"],
        interpolate(postgres["POSTGRES_PASSWORD"]),
        postgres["POSTGRES_DB"],
    )
    assert url == f"postgresql+asyncpg://{user}:{password}@postgres:5432/{db}"


def test_no_secret_is_in_the_file_and_none_has_a_fallback(compose: dict[str, Any]) -> None:
    """SECRET_KEY and the database password come from .env, and compose stops with their
    names when they are missing: no fixed fallback that a forgotten .env would run with."""
    text = (ROOT / "docker-compose.yml").read_text()
    for name in ("SECRET_KEY", "POSTGRES_PASSWORD"):
        assert f"${{{name}:?" in text
        assert f"${{{name}:-" not in text
        with pytest.raises(LookupError, match=name):
            interpolate(f"${{{name}:?set {name}}}", {})
    web = compose["services"]["web"]["environment"]
    assert "accounts:accounts@" not in web["DATABASE_URL"]
    assert not str(compose["services"]["postgres"]["environment"]["POSTGRES_PASSWORD"]).isalnum()


def test_compose_env_writes_both_secrets_once(tmp_path: Path) -> None:
    script = ROOT / "scripts" / "compose_env.sh"
    copy = tmp_path / "scripts"
    copy.mkdir()
    (copy / "compose_env.sh").write_text(script.read_text())
    (copy / "compose_env.sh").chmod(0o755)
    subprocess.run([str(copy / "compose_env.sh")], check=True, capture_output=True)
    first = (tmp_path / ".env").read_text()
    subprocess.run([str(copy / "compose_env.sh")], check=True, capture_output=True)
    assert (tmp_path / ".env").read_text() == first  # kept, not replaced
    values = dict(line.split("=", 1) for line in first.splitlines())
    assert set(values) == {"SECRET_KEY", "POSTGRES_PASSWORD"}
    load_settings(
        {"SECRET_KEY": values["SECRET_KEY"], "DATABASE_URL": "postgresql+asyncpg://a@b/c"}
    )
    assert (tmp_path / ".env").stat().st_mode & 0o077 == 0


def test_published_ports_listen_on_this_machine_only(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for mapping in service.get("ports", []):
            assert str(mapping).startswith("127.0.0.1:"), f"{name} publishes {mapping} widely"


def test_images_are_pinned_and_the_app_image_is_named_once(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in ("postgres", "redis", "mailpit"):
        image = services[name]["image"]
        tag = image.rpartition(":")[2]
        assert tag != "latest" and re.match(r"v?\d+\.\d+", tag), f"{name}: {image} is not pinned"
    images = {services[name]["image"] for name in APP_SERVICES}
    assert images == {"accounts-app:local"}


def test_commands_exist_in_the_code(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["migrate"]["command"] == ["alembic", "upgrade", "head"]
    assert (ROOT / "alembic.ini").is_file()
    for name, module in (("web", "web"), ("worker", "worker")):
        command = services[name]["command"]
        assert command == ["python", "-m", module]
        assert (ROOT / module / "__main__.py").is_file()
    assert services["bounces"]["command"] == ["python", "-m", "worker", "bounces"]
    listen = services["bounces"]["environment"]["BOUNCE_LISTEN"]
    assert services["bounces"]["ports"] == [f"127.0.0.1:2525:{listen.rpartition(':')[2]}"]
    assert "2525" in " ".join(services["bounces"]["healthcheck"]["test"])
    # The worker's healthcheck sub-command is one the worker knows.
    test = services["worker"]["healthcheck"]["test"]
    assert test[:4] == ["CMD", "python", "-m", "worker"]
    result = subprocess.run(
        [sys.executable, "-m", "worker", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert test[4] in result.stdout
    assert "bounces" in result.stdout
    # The web healthcheck asks an endpoint that exists.
    assert "/readyz" in " ".join(services["web"]["healthcheck"]["test"])


def test_start_order_uses_healthchecks(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name, service in services.items():
        for dependency, rule in (service.get("depends_on") or {}).items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            if rule["condition"] == "service_healthy":
                assert "healthcheck" in services[dependency], f"{dependency} has no healthcheck"
            else:
                assert rule["condition"] == "service_completed_successfully"
                assert dependency == "migrate"
    for name in ("web", "worker"):
        assert services[name]["depends_on"]["migrate"]["condition"] == (
            "service_completed_successfully"
        )
    assert services["worker"]["depends_on"]["mailpit"]["condition"] == "service_healthy"
    assert services["web"]["ports"] == ["127.0.0.1:8000:8000"]
    assert services["web"]["environment"]["HOST"] == "0.0.0.0"


def test_dockerfile_is_slim_non_root_and_locked() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.\d+-slim", dockerfile, re.M)
    assert re.search(r"^USER (?!root)\w+", dockerfile, re.M)
    assert "uv sync --locked --no-dev" in dockerfile
    for package in ("shared", "web", "worker"):
        assert f"COPY {package} " in dockerfile


def test_metrics_stay_on_the_compose_network(compose: dict[str, Any]) -> None:
    """The metrics listeners are exposed to the services beside them, never published."""
    services = compose["services"]
    defaults = Settings.model_fields
    for name, port in (("web", "METRICS_PORT"), ("worker", "WORKER_METRICS_PORT")):
        expected = str(defaults[port].default)
        assert services[name]["expose"] == [expected]
        published = [str(mapping) for mapping in services[name].get("ports", [])]
        assert not any(mapping.endswith(f":{expected}") for mapping in published)
