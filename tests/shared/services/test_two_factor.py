"""The two-factor use cases on the real database (inside a rolled-back transaction): what
each refuses, with which refusal, and what a refusal leaves behind (nothing)."""

from __future__ import annotations

import time
from datetime import timedelta

import pyotp
import pytest

from shared.models import SignInSession
from shared.services import signin, two_factor
from shared.services.context import ServiceContext
from shared.services.refusals import Locked, NotApplicable, WrongCode, WrongPassword
from shared.services.signin import Attempt
from tests.shared.services.helpers import PASSWORD, register_alice, user


def code_at(secret: str, steps: int) -> str:
    return pyotp.TOTP(secret).at(int(time.time()) + 30 * steps)


async def enrolled(ctx: ServiceContext) -> tuple[int, str, list[str]]:
    alice = await register_alice(ctx, confirmed=True)
    enrolment = await two_factor.begin_enrolment(ctx, alice.id)
    assert enrolment is not None
    result = await two_factor.confirm_enrolment(
        ctx, alice.id, code_at(enrolment.secret, 0), PASSWORD
    )
    return alice.id, enrolment.secret, result.recovery_codes


async def test_turning_it_on_needs_the_password_then_the_code(services_ctx: ServiceContext) -> None:
    ctx = services_ctx
    alice = await register_alice(ctx, confirmed=True)
    enrolment = await two_factor.begin_enrolment(ctx, alice.id)
    assert enrolment is not None
    with pytest.raises(WrongPassword):
        await two_factor.confirm_enrolment(ctx, alice.id, code_at(enrolment.secret, 0), "no")
    with pytest.raises(WrongCode):
        await two_factor.confirm_enrolment(ctx, alice.id, "000000", PASSWORD)
    assert (await two_factor.status(ctx, alice.id)).enabled is False  # refusals left nothing
    done = await two_factor.confirm_enrolment(ctx, alice.id, code_at(enrolment.secret, 0), PASSWORD)
    assert len(done.recovery_codes) == 10
    with pytest.raises(NotApplicable):  # on already
        await two_factor.confirm_enrolment(ctx, alice.id, code_at(enrolment.secret, 1), PASSWORD)


async def test_turning_it_off_needs_the_password_and_a_factor(services_ctx: ServiceContext) -> None:
    ctx = services_ctx
    user_id, _, codes = await enrolled(ctx)
    with pytest.raises(WrongPassword):
        await two_factor.disable(ctx, user_id, "no", codes[0])
    with pytest.raises(WrongCode):
        await two_factor.disable(ctx, user_id, PASSWORD, "000000")
    assert (await two_factor.status(ctx, user_id)).recovery_codes_left == 10  # none spent
    await two_factor.disable(ctx, user_id, PASSWORD, codes[0])
    assert (await two_factor.status(ctx, user_id)).enabled is False
    assert (await user(ctx)).totp_secret is None
    with pytest.raises(NotApplicable):
        await two_factor.regenerate_codes(ctx, user_id, PASSWORD, codes[1])


async def test_code_attempts_are_counted_before_they_are_checked(
    services_ctx: ServiceContext,
) -> None:
    ctx = services_ctx
    user_id, _, codes = await enrolled(ctx)
    for _ in range(ctx.settings.LOGIN_FAILURES_BEFORE_LOCK - 1):
        with pytest.raises(WrongCode):
            await two_factor.regenerate_codes(ctx, user_id, PASSWORD, "000000")
    with pytest.raises(Locked) as locked:
        await two_factor.regenerate_codes(ctx, user_id, PASSWORD, codes[0])  # right, but late
    assert locked.value.retry_after > 0


async def test_a_lapsed_second_step_is_not_applicable(services_ctx: ServiceContext) -> None:
    with pytest.raises(NotApplicable):
        await two_factor.complete_sign_in(
            services_ctx, "not a token", "123456", Attempt(client="a")
        )


async def test_a_sign_in_records_both_steps(services_ctx: ServiceContext) -> None:
    """Password then a code, or then a recovery code: the sign-in records both methods, in
    RFC 8176 terms, and the time it was made (what re-authentication and an identity
    provider read)."""
    ctx = services_ctx
    user_id, secret, codes = await enrolled(ctx)
    for second in (code_at(secret, 1), codes[0]):
        first = await signin.login(ctx, "alice@example.com", PASSWORD, Attempt(client="a"))
        assert first.second_step is not None and first.session_id is None
        done = await two_factor.complete_sign_in(
            ctx, first.second_step, second, Attempt(client="a")
        )
        async with ctx.reading() as session:
            record = await session.get(SignInSession, done.session_id)
        assert record is not None and record.user_id == user_id
        assert record.amr == ["pwd", "otp", "mfa"]
        assert abs(record.authenticated_at - record.created_at) < timedelta(seconds=5)
