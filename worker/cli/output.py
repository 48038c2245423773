"""What the ``retry`` commands print (emails and webhook deliveries alike)."""

from __future__ import annotations

import sys


def report_requeued(requeued: list[int], asked: list[int], *, nothing: str) -> int:
    """Say what went back in the queue and which asked-for ids were not failed; the exit
    status is 1 when some were not."""
    missing = sorted(set(asked) - set(requeued))
    if requeued:
        print(f"queued again: {', '.join(map(str, requeued))}")
    if missing:
        print(f"not failed (left alone): {', '.join(map(str, missing))}", file=sys.stderr)
    if not requeued and not missing:
        print(nothing)
    return 1 if missing else 0
