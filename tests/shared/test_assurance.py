"""The assurance rule, on its own: what a sign-in's methods are worth."""

from __future__ import annotations

import pytest

from shared import assurance
from shared.assurance import Method

PWD, OTP, HWK, SWK, USER, MFA = (
    Method.PASSWORD,
    Method.ONE_TIME_CODE,
    Method.HARDWARE_KEY,
    Method.SOFTWARE_KEY,
    Method.USER_VERIFIED,
    Method.MULTIPLE_FACTORS,
)


@pytest.mark.parametrize(
    ("steps", "recorded"),
    [
        ([[PWD]], [PWD]),
        ([[PWD], [OTP]], [PWD, OTP, MFA]),
        ([[HWK, USER]], [HWK, USER, MFA]),  # a passkey that verified its person
        ([[SWK]], [SWK]),  # one that only saw someone touch it
        ([[SWK], [OTP]], [SWK, OTP, MFA]),
        ([[PWD], [HWK]], [PWD, HWK, MFA]),
        ([[HWK], [HWK]], [HWK]),  # the same thing twice is one proof
        ([[PWD, MFA]], [PWD]),  # "mfa" is concluded here, never carried in
    ],
)
def test_methods_combine_and_mfa_is_concluded(
    steps: list[list[Method]], recorded: list[Method]
) -> None:
    assert assurance.combine(*steps) == recorded
    assert assurance.is_multi_factor(recorded) == (MFA in recorded)


def test_passkeys_say_what_they_showed() -> None:
    assert assurance.passkey(synced=False, user_verified=True) == [HWK, USER]
    assert assurance.passkey(synced=True, user_verified=False) == [SWK]


def test_stored_values_from_elsewhere_count_for_nothing() -> None:
    assert assurance.parse(["pwd", "sms", "otp", ""]) == [PWD, OTP]
    assert not assurance.is_multi_factor(["mfa", "pwd"])
