"""The use cases: every operation a person or an operator can ask for, each owning its whole
unit of work (its transaction, its row locks, its outbox rows, its rate limits).

The web layer (HTML forms and JSON API) and the command lines only translate their input
into a call here and the outcome into an answer; they never query. Each use case takes a
:class:`~shared.services.context.ServiceContext`, built once per process by that process's
composition root (``web.create_app``, ``worker.bootstrap``, the CLIs).
"""
