"""Resets, password changes and "this wasn't me", as use cases."""

from __future__ import annotations

from dataclasses import replace

import pytest

from shared.assurance import Method
from shared.jobs import EmailKind
from shared.services import passwords, sessions, signin
from shared.services.context import ServiceContext
from shared.services.refusals import Locked, WrongPassword
from shared.services.signin import Attempt
from shared.tokens import Purpose, ResetLink
from shared.validation import InvalidInput
from tests.shared.services.helpers import (
    FIREFOX,
    PASSWORD,
    after_the_answer,
    emails,
    register_alice,
    user,
)
from tests.support import reset_payload

PWD = [Method.PASSWORD]


async def test_a_reset_lifts_the_ceiling(services_ctx: ServiceContext) -> None:
    ctx = replace(services_ctx, settings=services_ctx.settings.with_values(LOGIN_ACCOUNT_CEILING=2))
    alice = await register_alice(ctx, confirmed=True)
    for n in range(2):
        await signin.login(ctx, "alice@example.com", "wrong", Attempt(client=f"bot{n}"))
    assert (
        await signin.login(ctx, "alice@example.com", PASSWORD, Attempt(client="home"))
    ).locked_for
    token = ctx.tokens.dumps(
        Purpose.RESET_PASSWORD,
        reset_payload(alice, ctx.secret),
    )
    assert await passwords.reset_password(ctx, token, "a brand new secret", client="home")
    signed_in = await signin.login(
        ctx, "alice@example.com", "a brand new secret", Attempt(client="home")
    )
    assert signed_in.user is not None


async def test_a_reset_link_works_once_and_lifts_the_lock(services_ctx: ServiceContext) -> None:
    alice = await register_alice(services_ctx, confirmed=True)
    await passwords.request_reset(services_ctx, "alice@example.com")
    await passwords.request_reset(services_ctx, "nobody@example.com")
    await after_the_answer(services_ctx)
    assert (await emails(services_ctx))[-1] == (EmailKind.RESET, "alice@example.com")

    alice = await user(services_ctx)
    token = services_ctx.tokens.dumps(
        Purpose.RESET_PASSWORD,
        ResetLink.of(
            alice.id, alice.reset_generation, alice.password_hash, services_ctx.secret
        ).payload(),
    )
    assert await passwords.reset_link_works(services_ctx, token)
    with pytest.raises(InvalidInput):
        await passwords.reset_password(services_ctx, token, "alice@example.com")
    assert await passwords.reset_password(services_ctx, token, "a brand new secret")
    assert not await passwords.reset_password(services_ctx, token, "another new secret")
    assert (await emails(services_ctx))[-1] == (EmailKind.PASSWORD_CHANGED, "alice@example.com")
    signed_in = await signin.login(
        services_ctx, "alice@example.com", "a brand new secret", Attempt(client="a")
    )
    assert signed_in.user is not None


async def test_changing_the_password_needs_the_current_one_and_ends_other_sessions(
    services_ctx: ServiceContext,
) -> None:
    alice = await register_alice(services_ctx, confirmed=True)
    here, elsewhere = [
        await sessions.start(
            services_ctx, alice, lifetime=3600, client="a", user_agent=agent, methods=PWD
        )
        for agent in (FIREFOX, "curl/8.0")
    ]
    with pytest.raises(WrongPassword) as wrong:
        await passwords.change_password(services_ctx, alice.id, "nope", "a new secret 1")
    assert wrong.value.field == "current_password"
    result = await passwords.change_password(
        services_ctx, alice.id, PASSWORD, "a new secret 1", keep_session=here
    )
    assert result.user.id == alice.id
    # The one that asked carries on under a new id; a copy of its old cookie is useless.
    assert result.session_id is not None and result.session_id != here
    assert await sessions.resolve(services_ctx, result.session_id) is not None
    assert await sessions.resolve(services_ctx, here) is None
    assert await sessions.resolve(services_ctx, elsewhere) is None


async def test_current_password_checks_are_limited(services_ctx: ServiceContext) -> None:
    alice = await register_alice(services_ctx, confirmed=True)
    for _ in range(services_ctx.settings.LOGIN_FAILURES_BEFORE_LOCK):
        with pytest.raises(WrongPassword):
            await passwords.change_password(services_ctx, alice.id, "guess", "new secret 1")
    with pytest.raises(Locked) as locked:
        await passwords.change_password(services_ctx, alice.id, PASSWORD, "new secret 1")
    assert locked.value.retry_after > 0


async def test_this_wasnt_me_ends_sessions_and_sends_a_reset_link_once(
    services_ctx: ServiceContext,
) -> None:
    alice = await register_alice(services_ctx, confirmed=True)
    token = services_ctx.tokens.dumps(
        Purpose.NOT_ME, {"uid": alice.id, "sv": alice.session_version}
    )
    assert await passwords.disown_change(services_ctx, token)
    assert not await passwords.disown_change(services_ctx, token)  # used: the version moved
    assert (await emails(services_ctx))[-1] == (EmailKind.RESET, "alice@example.com")
    # Whoever changed the password knows it: it works no more until the owner sets one.
    outcome = await signin.login(services_ctx, "alice@example.com", PASSWORD, Attempt(client="a"))
    assert outcome.user is None
    disowned = await user(services_ctx)
    token = services_ctx.tokens.dumps(
        Purpose.RESET_PASSWORD,
        ResetLink.of(
            disowned.id, disowned.reset_generation, disowned.password_hash, services_ctx.secret
        ).payload(),
    )
    assert await passwords.reset_password(services_ctx, token, "the owner's new secret")
