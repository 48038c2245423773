"""Email delivery: an outbox row's preparation at send time (:mod:`.prepare`), rendering
(:mod:`.render`, :mod:`.inlined`), MIME and DKIM (:mod:`.mime`, :mod:`.signing`), the SMTP
pool (:mod:`.smtp`), the outbox statements batched across jobs (:mod:`.store`), and the
delivery job and its sweep (:mod:`.delivery`)."""
