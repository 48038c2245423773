"""Webhook delivery: the signed POST behind the SSRF guard (:mod:`.sender`), and the delivery
job and its sweep (:mod:`.jobs`)."""
