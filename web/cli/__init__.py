"""The web side's operator commands (``python -m web ...``), one module per area."""
