"""Signing in, as a use case: confirmed addresses, the limits and who they stop, new browsers
and device cookies."""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from shared.assurance import Method
from shared.jobs import EmailKind
from shared.models import Email, User
from shared.services import second_step, signin
from shared.services.context import ServiceContext
from shared.services.signin import Attempt
from shared.tokens import Purpose
from tests.shared.services.helpers import (
    FIREFOX,
    PASSWORD,
    after_the_answer,
    emails,
    register_alice,
    user,
)


async def test_signing_in_needs_a_confirmed_address(services_ctx: ServiceContext) -> None:
    """Right password, unconfirmed address: the answer of a wrong password (registering an
    address and signing in with it must not tell a stranger the address was new), and a
    fresh confirmation link for the owner, after the answer."""
    alice = await register_alice(services_ctx)
    outcome = await signin.login(services_ctx, "alice@example.com", PASSWORD, Attempt(client="a"))
    assert outcome == signin.LoginOutcome()
    async with services_ctx.unit_of_work() as session:  # the first link is old enough now
        await session.execute(update(Email).values(created_at=func.now() - timedelta(hours=1)))
    outcome = await signin.login(services_ctx, "alice@example.com", PASSWORD, Attempt(client="a"))
    await after_the_answer(services_ctx)
    assert outcome == signin.LoginOutcome()
    assert await emails(services_ctx) == [(EmailKind.CONFIRM, "alice@example.com")] * 2
    assert (await user(services_ctx)).confirm_generation == alice.confirm_generation + 1


async def test_failures_lock_that_client_not_the_owner(services_ctx: ServiceContext) -> None:
    await register_alice(services_ctx, confirmed=True)
    limit = services_ctx.settings.LOGIN_FAILURES_BEFORE_LOCK
    for _ in range(limit):
        outcome = await signin.login(
            services_ctx, "alice@example.com", "wrong", Attempt(client="evil")
        )
        assert outcome.user is None and not outcome.locked_for
    locked = await signin.login(services_ctx, "alice@example.com", PASSWORD, Attempt(client="evil"))
    assert locked.user is None and locked.locked_for > 0  # even the right password waits
    owner = await signin.login(services_ctx, "alice@example.com", PASSWORD, Attempt(client="home"))
    assert owner.user is not None and owner.device_cookie


async def test_the_account_ceiling_stops_strangers_but_not_the_owners_device(
    services_ctx: ServiceContext,
) -> None:
    ctx = replace(services_ctx, settings=services_ctx.settings.with_values(LOGIN_ACCOUNT_CEILING=5))
    await register_alice(ctx, confirmed=True)
    device = (
        await signin.login(ctx, "alice@example.com", PASSWORD, Attempt(client="home"))
    ).device_cookie
    for n in range(5):  # five clients, one guess each: under their own limits
        await signin.login(ctx, "alice@example.com", "wrong", Attempt(client=f"bot{n}"))
    stranger = await signin.login(ctx, "alice@example.com", PASSWORD, Attempt(client="new-client"))
    assert stranger.locked_for > 0  # the ceiling holds every untrusted client back
    owner = await signin.login(
        ctx, "alice@example.com", PASSWORD, Attempt(client="cafe", device_cookie=device)
    )
    assert owner.user is not None  # a browser that signed in before is not a stranger
    # A device cookie is bound to its account: it does not exempt guesses at another one.
    other = await signin.login(
        ctx, "bob@example.com", "x", Attempt(client="bot0", device_cookie=device)
    )
    assert other == signin.LoginOutcome()


async def test_a_lock_does_not_end_at_a_clock_boundary(
    services_ctx: ServiceContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Windows slide: ten failures just before a window boundary still lock just after it
    (a clock-aligned window would have started afresh and let ten more through)."""
    await register_alice(services_ctx, confirmed=True)
    window = services_ctx.settings.LOGIN_LOCK_SECONDS
    boundary = (time.time() // window + 1) * window
    monkeypatch.setattr("time.time", lambda: boundary - 1)
    for _ in range(services_ctx.settings.LOGIN_FAILURES_BEFORE_LOCK):
        await signin.login(services_ctx, "alice@example.com", "wrong", Attempt(client="evil"))
    monkeypatch.setattr("time.time", lambda: boundary + 1)
    locked = await signin.login(services_ctx, "alice@example.com", PASSWORD, Attempt(client="evil"))
    assert locked.locked_for >= window - 5


async def test_a_sign_in_from_a_new_browser_tells_the_owner_once(
    services_ctx: ServiceContext,
) -> None:
    await register_alice(services_ctx, confirmed=True)

    async def sign_in(device_cookie: str | None = None) -> signin.LoginOutcome:
        return await signin.login(
            services_ctx,
            "alice@example.com",
            PASSWORD,
            Attempt(client="192.0.2.7", device_cookie=device_cookie, user_agent=FIREFOX),
        )

    async def notices() -> int:
        return sum(kind == EmailKind.NEW_DEVICE for kind, _ in await emails(services_ctx))

    first = await sign_in()
    assert await notices() == 0  # the first sign-in after registering is expected
    second = await sign_in()  # another browser (no device cookie)
    assert await notices() == 1
    await sign_in(second.device_cookie)  # that browser again
    await sign_in(first.device_cookie)
    assert await notices() == 1
    await sign_in()  # yet another browser, within the quiet period: no second email
    assert await notices() == 1
    async with services_ctx.reading() as session:
        context = await session.scalar(
            select(Email.context).where(Email.kind == EmailKind.NEW_DEVICE)
        )
    assert context is not None
    assert (context["device"], context["client_address"]) == ("Firefox on Windows", "192.0.2.7")


async def test_a_device_cookie_belongs_to_its_account_not_its_address(
    services_ctx: ServiceContext,
) -> None:
    """After a deletion and a new registration of the same address, the old account's
    browsers are strangers to the new one: no shared lock, and a new-device notice."""
    ctx = services_ctx
    alice = await register_alice(ctx, confirmed=True)
    cookie = signin.new_device_cookie(ctx, alice.email_key, alice.id, keep=None)
    mine = signin.scopes_for(
        ctx, alice.email_key, client="a", device_cookie=cookie, user_id=alice.id
    )
    assert [limit.name for limit, _ in mine] == ["login-device"]
    other = signin.scopes_for(
        ctx, alice.email_key, client="a", device_cookie=cookie, user_id=alice.id + 1
    )
    assert [limit.name for limit, _ in other] == ["login-client", "login-account"]
    assert signin._recent_device(ctx, alice, cookie)
    assert not signin._recent_device(ctx, User(id=alice.id + 1, email_key=alice.email_key), cookie)


def test_device_names_show_only_what_the_parser_recognised() -> None:
    from shared.devices import describe_device

    lure = (
        "Safe sign-in by Support. Do NOT click the link below - secure your account at "
        "https://evil.example/secure crawler"
    )
    assert describe_device(lure) == "An unknown browser"
    assert describe_device("SecureYourAccount/1.0 (Windows NT 10.0; Win64; x64)") == "Windows"
    assert describe_device(FIREFOX) == "Firefox on Windows"


def test_a_second_step_token_carries_the_first_steps_methods(
    services_ctx: ServiceContext,
) -> None:
    """What the first step showed travels in its signed token; one handed out by the version
    before methods were recorded ("via" only) still reads as what it was; one naming no
    method this code knows is no first step at all."""
    ctx = services_ctx
    alice = User(id=7, session_version=3)
    token = second_step.token(ctx, alice, "k", [Method.HARDWARE_KEY])
    pending = second_step.pending(ctx, token)
    assert pending == second_step.PendingSignIn(7, 3, "k", [Method.HARDWARE_KEY])
    assert pending.first == "passkey"
    older = ctx.tokens.dumps(Purpose.SECOND_STEP, {"uid": 7, "sv": 3, "key": "k", "via": "passkey"})
    assert second_step.pending(ctx, older) == second_step.PendingSignIn(
        7, 3, "k", [Method.SOFTWARE_KEY]
    )
    for amr in ([], ["sms"]):
        unknown = ctx.tokens.dumps(Purpose.SECOND_STEP, {"uid": 7, "sv": 3, "key": "k", "amr": amr})
        assert second_step.pending(ctx, unknown) is None
