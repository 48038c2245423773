"""The web <-> worker contract: job names, typed email payloads and the enqueue helpers.

Both processes import this module and nothing from each other. The worker registers a function
for every name in :data:`JOB_NAMES` (a test checks it); the web process only ever enqueues
through :func:`enqueue_send_email` and :func:`enqueue_deliver_webhook`, so arq's surface
stays in one place.

Emails do not travel as one arq job each. arq's protocol costs about eight Redis round trips
a job (poll, WATCH/EXISTS/ZSCORE and MULTI to start it, GET and INCR, the finishing MULTI),
which was a third of the worker's CPU per message. An email's outbox id is instead a member
of one sorted set per queue (:func:`emails_due_key`), scored by when it is due: one ``ZADD``
to announce it, one script call takes a whole batch of due ids, and the worker runs each as
a task beside its arq jobs (``worker.dispatch``). The row in PostgreSQL stays the truth: an id
lost from Redis (a crash after it was taken, Redis restarted empty) is put back by the sweeper.

The contract is in three parts: :mod:`.names` (job names and ids), :mod:`.payloads` (email
kinds and their typed contexts) and :mod:`.queue` (the transport); everything is importable
from here.
"""

from shared.jobs.names import *  # noqa: F403
from shared.jobs.payloads import *  # noqa: F403
from shared.jobs.queue import *  # noqa: F403
