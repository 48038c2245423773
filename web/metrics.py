"""HTTP metrics (Prometheus): requests by route and status, and their latency.

They are served by a second listener of ``python -m web`` (``METRICS_HOST``:``METRICS_PORT``,
loopback by default), never by the public app: counts that move with what strangers do are
an oracle, and what a scrape reveals is the operator's business.
"""

from __future__ import annotations

import time

from prometheus_client import Counter, Histogram, make_asgi_app
from quart import Quart, Response, g, request

REQUESTS = Counter(
    "accounts_http_requests", "HTTP requests by route template, method and status.",
    ["route", "method", "status"],
)  # fmt: skip
LATENCY = Histogram(
    "accounts_http_request_seconds", "Time to answer an HTTP request, by route template.",
    ["route"], buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)  # fmt: skip


def instrument(app: Quart) -> None:
    @app.before_request
    async def start_timer() -> None:
        g.metrics_started = time.perf_counter()

    @app.after_request
    async def count(response: Response) -> Response:
        # The route's template, not the path: tokens in paths and scanners' made-up URLs
        # must not become label values.
        route = request.url_rule.rule if request.url_rule is not None else "unmatched"
        REQUESTS.labels(route, request.method, str(response.status_code)).inc()
        started = g.get("metrics_started")
        if started is not None:
            LATENCY.labels(route).observe(time.perf_counter() - started)
        return response


metrics_app = make_asgi_app()
"""The ASGI app the metrics listener serves: the process's default registry."""
