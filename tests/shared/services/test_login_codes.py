"""The emailed sign-in code's use cases against what an attacker would try: guessing from many
client addresses, the link without the code, and a code of one generation with the link of
another (a code used in many browsers at once: tests/shared/test_signin_races.py)."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from shared.models import LoginCode
from shared.services import login_codes
from shared.services.context import ServiceContext
from shared.services.refusals import CodeSpent, WrongCode
from shared.services.signin import Attempt
from shared.tokens import LoginCodeLink, login_code
from tests.shared.services.helpers import after_the_answer, register_alice

ALICE = "alice@example.com"


async def ask(ctx: ServiceContext) -> tuple[str, str, str]:
    """(binding, code, link token) of a fresh code for Alice."""
    binding = await login_codes.request(ctx, ALICE)
    await after_the_answer(ctx)
    async with ctx.reading() as session:
        held = await session.scalar(select(LoginCode))
    assert held is not None
    code = login_code(ctx.secret, held.user_id, held.generation, held.salt)
    return binding, code, ctx.tokens.mint(LoginCodeLink(held.user_id, held.generation))


async def test_guesses_from_many_addresses_share_one_codes_tries(
    services_ctx: ServiceContext,
) -> None:
    ctx = services_ctx
    await register_alice(ctx, confirmed=True)
    _, code, _ = await ask(ctx)
    tries = ctx.settings.LOGIN_CODE_MAX_ATTEMPTS
    for n in range(tries):
        with pytest.raises(WrongCode):
            await login_codes.with_code(ctx, ALICE, f"{n:08d}", Attempt(client=f"203.0.113.{n}"))
    with pytest.raises(CodeSpent):  # a new address changes nothing: the code is spent
        await login_codes.with_code(ctx, ALICE, code, Attempt(client="198.51.100.99"))
    # A new code starts afresh, and works.
    _, code, _ = await ask(ctx)
    result = await login_codes.with_code(ctx, ALICE, code, Attempt(client="198.51.100.99"))
    assert result.session_id is not None


async def test_the_link_needs_the_asking_browser_or_the_code(
    services_ctx: ServiceContext,
) -> None:
    ctx = services_ctx
    await register_alice(ctx, confirmed=True)
    binding, _, old_token = await ask(ctx)
    assert await login_codes.with_link(ctx, old_token, "not the binding", Attempt("a")) is None
    assert await login_codes.with_link(ctx, old_token, "", Attempt("a")) is None
    new_binding, code, _ = await ask(ctx)
    # The old link with the new code: the generations differ, refused.
    with pytest.raises(WrongCode):
        await login_codes.with_link_and_code(ctx, old_token, code, Attempt(client="a"))
    # The old link in the browser that asked first: superseded, it signs nothing in.
    assert await login_codes.with_link(ctx, old_token, binding, Attempt("a")) is None
    assert await login_codes.with_link(ctx, old_token, new_binding, Attempt("a")) is None
