"""Changing the address, as a use case."""

from __future__ import annotations

from shared.jobs import EmailKind
from shared.services import email_change, passwords
from shared.services.context import ServiceContext
from shared.tokens import ChangeEmailLink, Purpose, ResetLink
from tests.shared.services.helpers import (
    PASSWORD,
    after_the_answer,
    emails,
    register_alice,
)


async def test_links_sent_to_the_old_address_stop_working_after_a_change(
    services_ctx: ServiceContext,
) -> None:
    alice = await register_alice(services_ctx, confirmed=True)
    reset = services_ctx.tokens.dumps(
        Purpose.RESET_PASSWORD,
        ResetLink.of(
            alice.id, alice.reset_generation, alice.password_hash, services_ctx.secret
        ).payload(),
    )
    assert await passwords.reset_link_works(services_ctx, reset)
    await email_change.request_change(services_ctx, alice.id, "new@example.com", PASSWORD)
    await after_the_answer(services_ctx)
    link = services_ctx.tokens.dumps(
        Purpose.CHANGE_EMAIL, ChangeEmailLink(alice.id, 1, "new@example.com").payload()
    )
    assert (
        await email_change.confirm_change(services_ctx, link) is email_change.ConfirmOutcome.CHANGED
    )
    assert not await passwords.reset_link_works(services_ctx, reset)
    assert [kind for kind, _ in await emails(services_ctx)][-3:] == [
        EmailKind.EMAIL_CHANGE_REQUESTED,
        EmailKind.EMAIL_CHANGE_CONFIRM,
        EmailKind.EMAIL_CHANGED,
    ]
