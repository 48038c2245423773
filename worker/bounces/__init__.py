"""What comes back: the SMTP listener for the bounce addresses (:mod:`.listener`) and the
reading of DSN and ARF reports (:mod:`.reports`)."""
