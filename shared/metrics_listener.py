"""The internal metrics listener both ``python -m web`` and ``python -m worker`` run: a small
HTTP server in a thread of its own (it never touches the event loop), on the operator's
internal address. If its port is taken the process keeps serving; its metrics matter less."""

from __future__ import annotations

import logging

from prometheus_client import REGISTRY, CollectorRegistry, start_http_server


def serve_metrics(
    host: str, port: int, *, registry: CollectorRegistry = REGISTRY, hint: str = ""
) -> None:
    try:
        start_http_server(port, addr=host, registry=registry)
    except OSError as error:
        logging.getLogger("metrics").error(
            "metrics not served: %s:%s (%s)%s", host, port, error.strerror, hint
        )
