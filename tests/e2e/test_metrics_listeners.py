"""The running processes serve their metrics on internal listeners only, and the web
server does not name itself."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from shared.settings import Settings
from tests.support import Stack


def get(url: str) -> tuple[int, str]:
    status, text, _ = fetch(url)
    return status, text


def fetch(url: str) -> tuple[int, str, str | None]:
    """Status, body and the Server header."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode(), response.headers.get("Server")
    except urllib.error.HTTPError as error:
        return error.code, "", error.headers.get("Server")


def test_metrics_listen_apart_from_the_public_port(
    settings: Settings, queue: Any, tmp_path: Path
) -> None:
    stack = Stack(settings, tmp_path)
    try:
        deadline = time.monotonic() + 60
        while not stack.up():
            assert time.monotonic() < deadline, "the web service did not start"
            time.sleep(0.2)
        assert get(f"{stack.base_url}/metrics")[0] == 404
        status, _, server = fetch(f"{stack.base_url}/login")
        assert (status, server) == (200, None)  # the public server does not name itself

        web = f"http://127.0.0.1:{stack.settings.METRICS_PORT}/metrics"
        status, text = get(web)
        assert status == 200
        assert 'accounts_http_requests_total{method="GET",route="/login",status="200"}' in text

        worker = f"http://127.0.0.1:{stack.settings.WORKER_METRICS_PORT}/metrics"
        while True:
            try:
                status, text = get(worker)
                break
            except OSError:
                assert time.monotonic() < deadline, "the worker's metrics never answered"
                time.sleep(0.2)
        assert status == 200
        assert "accounts_smtp_send_seconds_bucket" in text
    finally:
        stack.stop()
