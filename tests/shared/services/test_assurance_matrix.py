"""The one assurance rule, cell by cell: every first factor (password, emailed code, emailed
link, passkey with and without user verification) by what the account has enrolled (nothing
more, an authenticator app) by the browser (unknown, or one its owner asked to remember) →
signed in, or the second step. Through the use cases, on the real database and Redis, with a
software authenticator whose signatures py_webauthn verifies for real."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pyotp
import pytest
from sqlalchemy import select

from shared.models import LoginCode, TrustedBrowser
from shared.services import login_codes, passkeys, second_step, signin, two_factor
from shared.services.context import ServiceContext
from shared.services.proof import Proof
from shared.services.signin import Attempt
from shared.tokens import LoginCodeLink, login_code
from tests.authenticator import Authenticator
from tests.shared.services.helpers import PASSWORD, after_the_answer, register_alice

FIRST_FACTORS = ["password", "email code", "email link", "passkey (UV)", "passkey (no UV)"]
ONE_FACTOR = {"password", "email code", "email link", "passkey (no UV)"}


async def enrol_authenticator(ctx: ServiceContext, user_id: int) -> None:
    enrolment = await two_factor.begin_enrolment(ctx, user_id)
    assert enrolment is not None
    code = pyotp.TOTP(enrolment.secret).now()
    await two_factor.confirm_enrolment(ctx, user_id, code, PASSWORD)


async def remembered_browser(ctx: ServiceContext, user_id: int, key: str) -> str:
    """A device cookie for a browser its owner asked to remember (as a second step with
    "remember this browser" leaves it)."""
    cookie = signin.new_device_cookie(ctx, key, user_id, keep=None)
    device_id = signin.device_id(ctx, cookie)
    assert device_id is not None
    async with ctx.unit_of_work() as session:
        session.add(
            TrustedBrowser(
                user_id=user_id, device_id=device_id, device="Firefox", client_address="a",
                expires_at=datetime.now(UTC) + timedelta(days=30),
            )
        )  # fmt: skip
    return cookie


async def first_step(
    ctx: ServiceContext, factor: str, attempt: Attempt, keys: dict[str, Authenticator]
) -> tuple[str | None, str | None]:
    """(session id, second step) after the first factor alone."""
    if factor == "password":
        outcome = await signin.login(ctx, "alice@example.com", PASSWORD, attempt)
        return outcome.session_id, outcome.second_step
    if factor.startswith("email"):
        binding = await login_codes.request(ctx, "alice@example.com")
        await after_the_answer(ctx)
        async with ctx.reading() as session:
            (held,) = list(await session.scalars(select(LoginCode)))
        if factor == "email code":
            code = login_code(ctx.secret, held.user_id, held.generation, held.salt)
            result = await login_codes.with_code(ctx, "alice@example.com", code, attempt)
        else:
            token = ctx.tokens.mint(LoginCodeLink(held.user_id, held.generation))
            linked = await login_codes.with_link(ctx, token, binding, attempt)
            assert linked is not None
            result = linked
        return result.session_id, result.second_step
    key = keys["uv" if factor == "passkey (UV)" else "presence"]
    options = await passkeys.sign_in_options(ctx, client=attempt.client)
    signed = await passkeys.sign_in(ctx, options.ceremony, key.get(options.options), attempt)
    return signed.session_id, signed.second_step


@pytest.mark.parametrize("browser", ["unknown browser", "remembered browser"])
@pytest.mark.parametrize("enrolled", ["nothing more", "authenticator app"])
@pytest.mark.parametrize("factor", FIRST_FACTORS)
async def test_the_rule(
    services_ctx: ServiceContext, factor: str, enrolled: str, browser: str
) -> None:
    ctx = services_ctx
    alice = await register_alice(ctx, confirmed=True)
    keys = {
        "uv": Authenticator(ctx.settings.base_url, user_verified=True),
        "presence": Authenticator(ctx.settings.base_url, user_verified=False),
    }
    for key in keys.values():
        ceremony = await passkeys.registration_options(ctx, alice.id, Proof(password=PASSWORD))
        await passkeys.register(
            ctx, alice.id, ceremony.ceremony, "Key", key.create(ceremony.options)
        )
    if enrolled == "authenticator app":
        await enrol_authenticator(ctx, alice.id)
    cookie = None
    if browser == "remembered browser":
        cookie = await remembered_browser(ctx, alice.id, alice.email_key)
    attempt = Attempt(client="192.0.2.1", device_cookie=cookie)

    session_id, waiting = await first_step(ctx, factor, attempt, keys)

    needs_second = (
        enrolled == "authenticator app" and factor in ONE_FACTOR and browser == "unknown browser"
    )
    assert (waiting is not None) is needs_second, (factor, enrolled, browser)
    assert (session_id is None) is needs_second
    if needs_second:
        pending = second_step.pending(ctx, waiting or "")
        assert pending is not None and pending.user_id == alice.id
