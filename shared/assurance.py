"""How a sign-in was made, in RFC 8176 terms ("Authentication Method Reference Values"), and
the one rule about what that is worth.

Every sign-in records its methods (``amr``) and when it was made. The values are the ones an
OpenID Connect provider hands to the services it signs people in to, so that what this
service decides and what it tells others cannot drift apart:

- ``pwd``: a password.
- ``otp``: a one-time code, from an authenticator app or a recovery code (the event's
  ``method`` still tells the two apart).
- ``hwk`` / ``swk``: a passkey bound to one device / synced between devices (what the
  authenticator reports as its device type; a backed-up key is a software key by RFC 8176's
  "proof of possession of a software-secured key").
- ``user``: the authenticator verified the person (PIN or biometrics: WebAuthn's UV flag). RFC
  8176 has no value for "PIN or biometrics, the service cannot tell which"; ``user`` (a test
  of the user at the device) is the nearest. With the key, that is two factors.
- ``email``: a code or link sent to the account's address (proof of holding its mailbox).
  RFC 8176 registers ``sms`` for a code by text message and nothing for email; ``email`` is
  the value other providers (Okta among them) use, and a one-time code by email is not the
  ``otp`` of an authenticator app (RFC 4226/6238): the two together are two factors.
- ``mfa``: added, never given: two different methods were shown (:func:`is_multi_factor`).
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

from shared import i18n
from shared.i18n import N_


class Method(StrEnum):
    PASSWORD = "pwd"  # noqa: S105 (a method's name, not a password)
    ONE_TIME_CODE = "otp"
    HARDWARE_KEY = "hwk"
    SOFTWARE_KEY = "swk"
    USER_VERIFIED = "user"
    EMAIL = "email"
    FEDERATED = "fed"  # another identity provider vouched (no RFC 8176 value says so)
    MULTIPLE_FACTORS = "mfa"


def passkey(*, synced: bool, user_verified: bool) -> list[Method]:
    """What a passkey assertion shows: the key, and the person when the authenticator
    verified them."""
    key = Method.SOFTWARE_KEY if synced else Method.HARDWARE_KEY
    return [key, Method.USER_VERIFIED] if user_verified else [key]


def combine(*steps: Iterable[Method]) -> list[Method]:
    """The methods of a sign-in made in steps (a first factor, then a second), in order,
    each once, with ``mfa`` added when they amount to two factors."""
    methods: list[Method] = []
    for step in steps:
        methods.extend(m for m in step if m not in methods and m is not Method.MULTIPLE_FACTORS)
    if is_multi_factor(methods):
        methods.append(Method.MULTIPLE_FACTORS)
    return methods


def is_multi_factor(methods: Iterable[str]) -> bool:
    """The assurance rule: two independent proofs, i.e. two different methods (a password
    and a code; a passkey and the person its authenticator verified; a passkey without that
    and a code, two separate things the person has, as the big providers count them too).
    Computed from the methods, never taken from an ``mfa`` someone wrote down; the same
    method twice (one passkey as both steps) is one."""
    return len(set(methods) - {Method.MULTIPLE_FACTORS}) >= 2


def parse(values: Iterable[str]) -> list[Method]:
    """Stored values back to methods (unknown ones, from a later version, are dropped:
    a method this code does not know is not one it can count)."""
    known = {m.value for m in Method}
    return [Method(v) for v in values if v in known]


_WORDS = {
    Method.PASSWORD: N_("password"),
    Method.ONE_TIME_CODE: N_("one-time code"),
    Method.HARDWARE_KEY: N_("passkey"),
    Method.SOFTWARE_KEY: N_("passkey"),
    Method.USER_VERIFIED: N_("PIN or biometrics"),
    Method.EMAIL: N_("code by email"),
    Method.FEDERATED: N_("another provider"),
}


def in_words(values: Iterable[str]) -> str:
    """What the sessions page says a sign-in was made with: "password and one-time code".
    Empty for sign-ins recorded before methods were (nothing is known of them)."""
    words = list(dict.fromkeys(i18n.gettext(_WORDS[m]) for m in parse(values) if m in _WORDS))
    if len(words) < 2:
        return "".join(words)
    return i18n.gettext("%(first)s and %(last)s") % {
        "first": ", ".join(words[:-1]),
        "last": words[-1],
    }
