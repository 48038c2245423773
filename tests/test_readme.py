"""The documentation's examples work: the webhook receiver of docs/webhooks.md accepts what
the worker signs and refuses a tampered body, a wrong secret and a replayed (old) timestamp."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from shared.services.webhooks import new_secret
from tests.support import ROOT
from worker.webhooks.sender import signed_headers

Verify = Callable[[str, dict[str, str], bytes], bool]


def readme_receiver() -> Verify:
    text = (ROOT / "docs" / "webhooks.md").read_text()
    block = re.search(r"<!-- receiver example.*?-->\n```python\n(.*?)```", text, re.S)
    assert block is not None, "the receiver example is marked in docs/webhooks.md"
    namespace: dict[str, object] = {}
    exec(compile(block.group(1), "docs/webhooks.md", "exec"), namespace)  # noqa: S102 (our own docs)
    verify = namespace["verify"]
    assert callable(verify)
    return verify  # type: ignore[return-value]


def test_the_readme_receiver_verifies_what_the_worker_signs() -> None:
    verify = readme_receiver()
    secret, body = new_secret(), '{"type":"user.registered","data":{"user_id":1}}'
    headers = signed_headers(secret, "msg_abc", body, datetime.now(UTC))
    assert verify(secret, headers, body.encode())
    assert not verify(secret, headers, body.replace("1", "2").encode())
    assert not verify(new_secret(), headers, body.encode())
    old = signed_headers(secret, "msg_abc", body, datetime.now(UTC) - timedelta(minutes=10))
    assert not verify(secret, old, body.encode())
