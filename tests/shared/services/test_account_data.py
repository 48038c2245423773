"""Exporting and deleting an account, as use cases: the confirmation, the proof, and what
goes with the account."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from shared.models import Email, User
from shared.services import account_data
from shared.services.context import ServiceContext
from shared.services.refusals import WrongConfirmation, WrongPassword
from tests.shared.test_services import PASSWORD, register_alice


async def test_deleting_needs_the_username_and_the_password(services_ctx: ServiceContext) -> None:
    ctx = services_ctx
    alice = await register_alice(ctx, confirmed=True)
    exported = await account_data.export_account(ctx, alice.id)
    assert exported["profile"]["username"] == "alice"
    with pytest.raises(WrongConfirmation) as refused:
        await account_data.delete_account(ctx, alice.id, PASSWORD, "Alice ")
    assert refused.value.field == "username"
    with pytest.raises(WrongPassword):
        await account_data.delete_account(ctx, alice.id, "no", "alice")
    await account_data.delete_account(ctx, alice.id, PASSWORD, "alice")
    async with ctx.reading() as session:
        assert await session.scalar(select(func.count()).select_from(User)) == 0
        kinds = list(await session.scalars(select(Email.kind)))
    assert kinds == ["account_deleted"]  # the goodbye; every email about the account is gone
