"""HTTP metrics (Prometheus): requests by route and status, and their latency.

They are served by a second listener of ``python -m web`` (``METRICS_HOST``:``METRICS_PORT``,
loopback by default), never by the public app: counts that move with what strangers do are
an oracle, and what a scrape reveals is the operator's business.

With several server processes (WEB_WORKERS) each writes its counts to files in one
directory (prometheus_client's multiprocess mode) and the listener, in the supervising
process, adds them up: one scrape gives the totals of every process.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import time
from pathlib import Path

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    multiprocess,
)
from quart import Quart, Response, g, request

from shared.metrics_listener import serve_metrics as serve_metrics_on
from shared.settings import Settings

MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"

REQUESTS = Counter(
    "accounts_http_requests", "HTTP requests by route template, method and status.",
    ["route", "method", "status"],
)  # fmt: skip
LATENCY = Histogram(
    "accounts_http_request_seconds", "Time to answer an HTTP request, by route template.",
    ["route"], buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)  # fmt: skip

DEFERRED = Gauge(
    "accounts_deferred_work",
    "Work deferred past answers and not finished yet, with the POSTs in progress that may "
    "defer more: what DEFERRED_WORK_LIMIT bounds.",
    multiprocess_mode="livesum",
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


def use_shared_metrics_dir() -> Path:
    """Point the server processes this process will start at one directory for their
    counts: PROMETHEUS_MULTIPROC_DIR if the operator set it (emptied: the counts of an earlier
    run are not this run's), else a fresh temporary one removed at exit."""
    given = os.environ.get(MULTIPROCESS_DIR)
    if given:
        path = Path(given)
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob("*.db"):
            stale.unlink()
        return path
    path = Path(tempfile.mkdtemp(prefix="accounts-web-metrics-"))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    os.environ[MULTIPROCESS_DIR] = str(path)
    return path


def serve_metrics(settings: Settings) -> None:
    """The internal metrics listener, in a thread of this process; if its port is taken,
    the site still serves. With one server process the app runs here and its counts are in
    this process's registry; with several they are added up from the shared directory."""
    if settings.web_workers == 1:
        registry = REGISTRY
    else:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    serve_metrics_on(settings.METRICS_HOST, settings.METRICS_PORT, registry=registry)
