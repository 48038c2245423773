"""Job names and the ids that name a job or a queue's keys: what both processes call the work."""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    pass


# --- job names --------------------------------------------------------------------------------
SEND_EMAIL: Final = "send_email"
"""Hand one outbox row (argument: the ``emails.id``) to the due set. Versions before the due
set queued every email as this arq job; the worker still takes such jobs (a rolling upgrade
leaves some queued) and moves them over. Nothing queues it now."""

SWEEP_OUTBOX: Final = "sweep_outbox"
"""Cron: re-enqueue pending outbox rows whose turn has come (lost jobs, Redis outages)."""

SWEEP_WEBHOOKS: Final = "sweep_webhooks"
"""Cron: re-enqueue overdue pending webhook deliveries (each domain sweeps its own outbox)."""

PURGE: Final = "purge"
"""Cron: forget what is past its time (outbox rows past retention, accounts never confirmed,
username holds that ended)."""

DELIVER_WEBHOOK: Final = "deliver_webhook"
"""POST one webhook delivery row to its endpoint. Argument: the ``webhook_deliveries.id``.
Idempotent like ``send_email``: a delivered row is left alone."""

DELIVER_LOGOUT: Final = "deliver_logout"
"""Sign and POST one back-channel logout (argument: the ``oidc_logout_deliveries.id``);
idempotent like the others."""

SWEEP_LOGOUTS: Final = "sweep_logouts"
"""Cron: re-enqueue overdue pending back-channel logout deliveries."""

JOB_NAMES: Final = frozenset(
    {
        SEND_EMAIL,
        SWEEP_OUTBOX,
        SWEEP_WEBHOOKS,
        PURGE,
        DELIVER_WEBHOOK,
        DELIVER_LOGOUT,
        SWEEP_LOGOUTS,
    }
)


def email_job_id(email_id: int, queue_name: str) -> str:
    """How logs and the CLI name an outbox row's delivery (and the arq job id older versions
    gave it)."""
    return f"{queue_name}:email:{email_id}"


def emails_due_key(queue_name: str) -> str:
    """The sorted set of outbox ids waiting for delivery, scored by when each is due (ms)."""
    return f"{queue_name}:emails-due"


def webhook_job_id(delivery_id: int, queue_name: str) -> str:
    """arq job id for a webhook delivery row (enqueueing it twice is a no-op, as for emails)."""
    return f"{queue_name}:webhook:{delivery_id}"


def logout_job_id(delivery_id: int, queue_name: str) -> str:
    """arq job id for a back-channel logout delivery row."""
    return f"{queue_name}:logout:{delivery_id}"
