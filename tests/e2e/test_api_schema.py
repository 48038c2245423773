"""Schemathesis against the live OpenAPI description: property-based requests to every API
operation of a running server (bounded, to fit CI). No 5xx, and every response matches the
status codes, content types and schemas the description promises."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from shared.settings import Settings
from tests.support import Stack

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("clean_db")]


@pytest.fixture
def live_api(settings: Settings, queue: Any, tmp_path: Path) -> Iterator[Stack]:
    import time
    import urllib.request

    stack = Stack(settings, tmp_path, POSTS_PER_MINUTE=100000)
    deadline = time.monotonic() + 60
    while not stack.up():
        assert time.monotonic() < deadline, "the web service did not start"
        time.sleep(0.2)
    with urllib.request.urlopen(f"{stack.base_url}/api/v1/openapi.json", timeout=5) as response:
        assert response.status == 200
    yield stack
    stack.stop()


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


def test_api_matches_its_description(live_api: Stack) -> None:
    # Schemathesis' own pytest plugin does not run under this pytest version, so each
    # operation's Hypothesis strategy is driven directly; the checks are the same.
    schema = schemathesis.openapi.from_url(f"{live_api.base_url}/api/v1/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 9  # every /api/v1 operation

    calls: list[int] = []
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=25,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def conforms(case: Any) -> None:
            calls.append(case.call_and_validate(checks=CHECKS).status_code)

        conforms()
    # Each operation was really exercised, with both accepted and refused inputs.
    assert len(calls) >= 9 * 10
    assert {200, 202} & set(calls) and 401 in calls
