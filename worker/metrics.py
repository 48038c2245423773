"""The worker's Prometheus metrics, served on its own internal listener
(``METRICS_HOST``:``WORKER_METRICS_PORT``, loopback by default), never on a public port.

Counters and the latency histogram move as deliveries happen; the outbox gauges are
refreshed by the sweeper, every ``OUTBOX_SWEEP_EVERY`` seconds.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

EMAILS = Counter(
    "accounts_emails",
    "Delivery outcomes by email kind: sent, failed, skipped, retried (a temporary failure), "
    "held (held back by the budget or the circuit breaker, no attempt made).",
    ["kind", "outcome"],
)
SMTP_SECONDS = Histogram(
    "accounts_smtp_send_seconds",
    "Time for one SMTP transaction (MAIL FROM to the reply to DATA), failures included.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
SMTP_CONNECTIONS = Gauge(
    "accounts_smtp_connections_allowed",
    "SMTP connections this worker allows itself now: what the provider sustains, as found "
    "(worker/mail/concurrency.py).",
)
BREAKER_OPEN = Gauge(
    "accounts_smtp_breaker_open", "1 while the circuit breaker pauses sending, else 0."
)
OUTBOX = Gauge(
    "accounts_outbox_emails",
    "Outbox emails waiting (pending), or given up on in the last 24 hours (failed).",
    ["status"],
)
OLDEST_PENDING = Gauge(
    "accounts_outbox_oldest_pending_seconds", "Age of the oldest pending email (0 if none)."
)
QUEUE_DEPTH = Gauge(
    "accounts_queue_jobs", "Work waiting in Redis: arq jobs and emails in the due set."
)
LAST_SWEEP = Gauge(
    "accounts_worker_last_sweep_timestamp_seconds", "When this worker last swept the outbox."
)
WEBHOOKS = Counter(
    "accounts_webhook_deliveries",
    "Webhook delivery outcomes: sent, failed, retried (a temporary failure), held (the "
    "endpoint's circuit breaker is open, no attempt made).",
    ["outcome"],
)
WEBHOOK_SECONDS = Histogram(
    "accounts_webhook_post_seconds",
    "Time for one webhook POST (connect to the end of the answer), failures included.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
SUPPRESSIONS = Gauge(
    "accounts_suppressed_addresses",
    "Addresses on the suppression list, by cause (hard_bounce, complaint, rejected, "
    "soft_bounces, operator).",
    ["cause"],
)
BOUNCE_REPORTS = Gauge(
    "accounts_bounce_reports_last_hour",
    "Bounce reports received in the last hour, by outcome (hard_bounce, soft_bounce, "
    "complaint, delayed, unmatched, unparsed).",
    ["outcome"],
)
