"""What the service tests share: Alice, her password, the emails queued, running what a use
case deferred past its answer."""

from __future__ import annotations

from sqlalchemy import select

from shared.models import Email, User
from shared.services import accounts
from shared.services.accounts import ConfirmOutcome
from shared.services.context import ServiceContext
from shared.tokens import Purpose

PASSWORD = "correct horse battery"
FIREFOX = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0"
CHROME_LINUX = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)


async def emails(ctx: ServiceContext) -> list[tuple[str, str]]:
    async with ctx.reading() as session:
        rows = await session.execute(select(Email.kind, Email.recipient).order_by(Email.id))
        return [(kind, recipient) for kind, recipient in rows.all()]


async def user(ctx: ServiceContext, email: str = "alice@example.com") -> User:
    async with ctx.reading() as session:
        found = await session.scalar(select(User).where(User.email == email))
    assert found is not None
    return found


async def after_the_answer(ctx: ServiceContext) -> None:
    await ctx.defer.run()  # type: ignore[attr-defined]


async def register_alice(ctx: ServiceContext, *, confirmed: bool = False) -> User:
    await accounts.register(ctx, "alice", "alice@example.com", PASSWORD)
    await after_the_answer(ctx)
    alice = await user(ctx)
    if confirmed:
        token = ctx.tokens.dumps(Purpose.CONFIRM_EMAIL, {"uid": alice.id, "gen": 1})
        assert await accounts.confirm(ctx, token) is ConfirmOutcome.CONFIRMED
        alice = await user(ctx)
    return alice
