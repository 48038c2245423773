"""The operator's commands of ``python -m worker`` beyond running it: bounces and
suppressions (:mod:`.bounces`), webhooks (:mod:`.webhooks`), and their output (:mod:`.output`)."""
