"""The passkey use cases on the real database and Redis, with the software authenticator:
the proof before a ceremony, what a ceremony accepts, and the refusals."""

from __future__ import annotations

import time
from datetime import timedelta

import pyotp
import pytest
from sqlalchemy import func, select, update

from shared.models import SignInSession, User
from shared.services import accounts, passkeys, sessions, signin, two_factor
from shared.services.context import ServiceContext
from shared.services.proof import Proof
from shared.services.refusals import (
    NotAccepted,
    NotFound,
    ReauthenticationRequired,
    WrongPassword,
)
from shared.services.signin import Attempt
from tests.authenticator import Authenticator
from tests.shared.services.helpers import PASSWORD, after_the_answer, register_alice


async def test_a_passkey_is_added_after_a_proof_and_signs_in(services_ctx: ServiceContext) -> None:
    ctx = services_ctx
    alice = await register_alice(ctx, confirmed=True)
    authenticator = Authenticator(ctx.settings.base_url)
    with pytest.raises(ReauthenticationRequired):  # no recent sign-in, nothing typed
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


async def test_a_passkey_reauthenticates_its_own_accounts_sign_in(
    services_ctx: ServiceContext,
) -> None:
    ctx = services_ctx
    alice = await register_alice(ctx, confirmed=True)
    await accounts.register(ctx, "bob", "bob@example.com", PASSWORD)
    await after_the_answer(ctx)
    async with ctx.reading() as session:
        bob_id = await session.scalar(select(User.id).where(User.username == "bob"))
    assert bob_id is not None
    authenticator = Authenticator(ctx.settings.base_url)
    ceremony = await passkeys.registration_options(ctx, alice.id, Proof(password=PASSWORD))
    await passkeys.register(
        ctx, alice.id, ceremony.ceremony, "Laptop", authenticator.create(ceremony.options)
    )
    here = await sessions.start(ctx, alice, lifetime=60, client="a", user_agent="", methods=[])
    async with ctx.unit_of_work() as session:
        await session.execute(
            update(SignInSession).values(authenticated_at=func.now() - timedelta(hours=1))
        )
    with pytest.raises(ReauthenticationRequired):
        await passkeys.registration_options(ctx, alice.id, Proof(sign_in=here))
    # Bob's ceremony cannot take Alice's passkey, nor the other way round.
    theirs = await passkeys.reauthentication_options(ctx, bob_id)
    with pytest.raises(NotAccepted):
        await passkeys.reauthenticate(
            ctx, alice.id, here, theirs.ceremony, authenticator.get(theirs.options)
        )
    options = await passkeys.reauthentication_options(ctx, alice.id)
    assert [c["id"] for c in options.options["allowCredentials"]] != []
    await passkeys.reauthenticate(
        ctx, alice.id, here, options.ceremony, authenticator.get(options.options)
    )
    # Sudo mode: the sign-in alone is the proof now.
    await passkeys.registration_options(ctx, alice.id, Proof(sign_in=here))


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


async def methods_of(ctx: ServiceContext, session_id: str | None) -> list[str]:
    async with ctx.reading() as session:
        record = await session.get(SignInSession, session_id)
    assert record is not None
    return record.amr


async def test_each_path_records_the_methods_it_was_made_with(
    services_ctx: ServiceContext,
) -> None:
    """The assurance matrix's recording half: password alone; a passkey that verified its
    person; on a two-factor account, a passkey without that and then a code, or a password
    and then that passkey. Each sign-in carries what its steps showed."""
    ctx = services_ctx
    alice = await register_alice(ctx, confirmed=True)
    by_password = await signin.login(ctx, "alice@example.com", PASSWORD, Attempt(client="a"))
    assert await methods_of(ctx, by_password.session_id) == ["pwd"]

    authenticator = Authenticator(ctx.settings.base_url)
    ceremony = await passkeys.registration_options(ctx, alice.id, Proof(password=PASSWORD))
    await passkeys.register(
        ctx, alice.id, ceremony.ceremony, "Key", authenticator.create(ceremony.options)
    )
    options = await passkeys.sign_in_options(ctx, client="a")
    verified = await passkeys.sign_in(
        ctx, options.ceremony, authenticator.get(options.options), Attempt(client="a")
    )
    assert await methods_of(ctx, verified.session_id) == ["hwk", "user", "mfa"]

    enrolment = await two_factor.begin_enrolment(ctx, alice.id)
    assert enrolment is not None
    code = pyotp.TOTP(enrolment.secret)
    await two_factor.confirm_enrolment(ctx, alice.id, code.now(), PASSWORD)
    authenticator.user_verified = False
    options = await passkeys.sign_in_options(ctx, client="a")
    touched = await passkeys.sign_in(
        ctx, options.ceremony, authenticator.get(options.options), Attempt(client="a")
    )
    assert touched.session_id is None and touched.second_step is not None
    later = code.at(int(time.time()) + 30)  # the enrolment spent the current code
    done = await two_factor.complete_sign_in(ctx, touched.second_step, later, Attempt(client="a"))
    assert await methods_of(ctx, done.session_id) == ["hwk", "otp", "mfa"]

    first = await signin.login(ctx, "alice@example.com", PASSWORD, Attempt(client="a"))
    assert first.second_step is not None
    options = await passkeys.sign_in_options(ctx, client="a", second_step=first.second_step)
    second = await passkeys.sign_in(
        ctx, options.ceremony, authenticator.get(options.options), Attempt(client="a")
    )
    assert await methods_of(ctx, second.session_id) == ["pwd", "hwk", "mfa"]
