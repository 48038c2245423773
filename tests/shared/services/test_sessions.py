"""Sign-in records: listed, ended, expired."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, update

from shared.assurance import Method
from shared.models import SignInSession
from shared.services import sessions
from shared.services.context import ServiceContext
from shared.services.refusals import ReauthenticationRequired
from tests.shared.services.helpers import (
    CHROME_LINUX,
    FIREFOX,
    register_alice,
)

PWD = [Method.PASSWORD]


async def test_sign_ins_are_listed_and_ended_one_or_all_but_this(
    services_ctx: ServiceContext,
) -> None:
    alice = await register_alice(services_ctx, confirmed=True)
    ids = [
        await sessions.start(
            services_ctx, alice, lifetime=3600, client=f"10.0.0.{n}", user_agent=agent, methods=PWD
        )
        for n, agent in enumerate((FIREFOX, CHROME_LINUX, "curl/8.0"))
    ]
    listed = await sessions.active(services_ctx, alice.id)
    assert {record.device for record in listed} == {
        "Firefox on Windows",
        "Chrome on Linux",
        "curl",
    }
    current = await sessions.resolve(services_ctx, ids[0])
    assert current is not None and current.user.id == alice.id
    public = {record.id: record.public_id for record in listed}
    assert await sessions.revoke(services_ctx, alice.id, public[ids[1]], by=ids[0])
    with pytest.raises(ReauthenticationRequired):  # not theirs to ask for
        await sessions.revoke(services_ctx, alice.id + 1, public[ids[2]], by=ids[0])
    assert not await sessions.revoke(services_ctx, alice.id, ids[2], by=ids[0])  # secret id: no
    assert await sessions.resolve(services_ctx, ids[1]) is None
    assert await sessions.revoke_others(services_ctx, alice.id, keep=ids[0]) == 1
    assert [record.id for record in await sessions.active(services_ctx, alice.id)] == [ids[0]]
    await sessions.end(services_ctx, ids[0])
    assert await sessions.active(services_ctx, alice.id) == []


async def test_ending_other_sign_ins_needs_a_recent_authentication(
    services_ctx: ServiceContext,
) -> None:
    alice = await register_alice(services_ctx, confirmed=True)
    here, other = [
        await sessions.start(services_ctx, alice, lifetime=3600, client="a", user_agent="",
                             methods=PWD)
        for _ in range(2)
    ]  # fmt: skip
    async with services_ctx.unit_of_work() as session:
        await session.execute(
            update(SignInSession).values(authenticated_at=func.now() - timedelta(minutes=6))
        )
    public = {r.id: r.public_id for r in await sessions.active(services_ctx, alice.id)}
    with pytest.raises(ReauthenticationRequired):
        await sessions.revoke(services_ctx, alice.id, public[other], by=here)
    with pytest.raises(ReauthenticationRequired):
        await sessions.revoke_others(services_ctx, alice.id, keep=here)
    async with services_ctx.unit_of_work() as session:
        assert await sessions.renew(session, here, alice.id)
    assert await sessions.revoke_others(services_ctx, alice.id, keep=here) == 1


async def test_an_expired_sign_in_is_refused(services_ctx: ServiceContext) -> None:
    alice = await register_alice(services_ctx, confirmed=True)
    session_id = await sessions.start(
        services_ctx, alice, lifetime=60, client="a", user_agent="", methods=PWD
    )
    async with services_ctx.unit_of_work() as session:
        await session.execute(
            update(SignInSession).values(expires_at=func.now() - timedelta(seconds=1))
        )
    assert await sessions.resolve(services_ctx, session_id) is None
