"""The passkey use cases on the real database and Redis, with the software authenticator:
the proof before a ceremony, what a ceremony accepts, and the refusals."""

from __future__ import annotations

import pytest

from shared.services import passkeys
from shared.services.context import ServiceContext
from shared.services.proof import Proof
from shared.services.refusals import NotAccepted, NotFound, WrongPassword
from shared.services.signin import Attempt
from shared.validation import InvalidInput
from tests.authenticator import Authenticator
from tests.shared.services.helpers import PASSWORD, register_alice


async def test_a_passkey_is_added_after_a_proof_and_signs_in(services_ctx: ServiceContext) -> None:
    ctx = services_ctx
    alice = await register_alice(ctx, confirmed=True)
    authenticator = Authenticator(ctx.settings.base_url)
    with pytest.raises(InvalidInput):
        await passkeys.registration_options(ctx, alice.id, Proof())
    with pytest.raises(WrongPassword):
        await passkeys.registration_options(ctx, alice.id, Proof(password="no"))
    ceremony = await passkeys.registration_options(ctx, alice.id, Proof(password=PASSWORD))
    credential = authenticator.create(ceremony.options)
    added = await passkeys.register(ctx, alice.id, ceremony.ceremony, "Laptop", credential)
    assert added.passkey_id is not None
    with pytest.raises(NotAccepted):  # a ceremony is answered once
        await passkeys.register(ctx, alice.id, ceremony.ceremony, "Again", credential)

    options = await passkeys.sign_in_options(ctx, client="a")
    signed_in = await passkeys.sign_in(
        ctx, options.ceremony, authenticator.get(options.options), Attempt(client="a")
    )
    assert signed_in.user is not None and signed_in.user.id == alice.id
    assert signed_in.session_id is not None and signed_in.second_step is None


async def test_removing_needs_the_password_and_an_existing_passkey(
    services_ctx: ServiceContext,
) -> None:
    ctx = services_ctx
    alice = await register_alice(ctx, confirmed=True)
    with pytest.raises(NotFound):
        await passkeys.remove(ctx, alice.id, 12345, PASSWORD)
    with pytest.raises(NotFound):
        await passkeys.remove(ctx, alice.id, 2**70, PASSWORD)
    with pytest.raises(WrongPassword):
        await passkeys.remove(ctx, alice.id, 12345, "no")
