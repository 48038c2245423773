"""Django's argon2 hasher at this service's parameters (shared/passwords.py)."""

from __future__ import annotations

from django.contrib.auth.hashers import Argon2PasswordHasher

from shared.passwords import HASHER


class SameArgon2(Argon2PasswordHasher):
    time_cost = HASHER.time_cost
    memory_cost = HASHER.memory_cost
    parallelism = HASHER.parallelism
