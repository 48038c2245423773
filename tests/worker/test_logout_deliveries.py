"""Back-channel logout through the real worker to a real HTTP receiver on loopback: a sign-in
ended with tokens issued through it owes the application one signed logout token, retried
while the application answers 5xx, failed with the reason when it refuses, and written only
when the ending commits. (The live stack with Authlib is in tests/e2e.)"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from urllib.parse import parse_qs

import jwt as pyjwt
import pytest
from arq.connections import ArqRedis
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from devstack.servers import free_port
from shared.db import SessionMaker
from shared.models import EmailStatus, Grant, LogoutDelivery, SignInSession, User
from shared.services import sessions
from shared.services.context import ServiceContext
from shared.services.identity import clients, keys
from shared.services.identity.clients import ClientSpec
from shared.settings import Settings
from tests.receiver import Receiver, serving
from tests.support import add_accounts, committing_context, run_burst_worker

pytestmark = pytest.mark.usefixtures("clean_db")


@pytest.fixture
def hook_settings(settings: Settings) -> Settings:
    return settings.with_values(
        WEBHOOKS_ALLOW_PRIVATE=True,
        WEBHOOK_RETRY_BASE_DELAY=0.05,
        WEBHOOK_RETRY_MAX_DELAY=0.2,
        WEBHOOK_MAX_ATTEMPTS=3,
        WEBHOOK_TIMEOUT=2.0,
    )


@pytest.fixture
def ctx(
    hook_settings: Settings, engine: AsyncEngine, sessionmaker: SessionMaker, queue: ArqRedis
) -> ServiceContext:
    return committing_context(hook_settings, engine, sessionmaker, queue)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with serving(Receiver(free_port())) as running:
        yield running


async def signed_in_through_app(ctx: ServiceContext, uri: str) -> tuple[str, str, str]:
    """An account signed in, with a grant whose code was exchanged, for an application that
    hears of logouts at ``uri``: (its sign-in's id, its public id, the client id)."""
    (user_id,) = await add_accounts(ctx.sessionmaker, ["alice@example.com"])
    async with ctx.unit_of_work() as session:
        user = await session.get(User, user_id)
        assert user is not None
        sign_in = await sessions.add(
            session, user, lifetime=3600, client="127.0.0.1", user_agent="test", methods=[]
        )
    registered = await clients.add(
        ctx, ClientSpec(name="App", redirect_uris=["https://app.example.com/cb"],
                        backchannel_logout_uri=uri)
    )  # fmt: skip
    now = datetime.now(UTC)
    async with ctx.unit_of_work() as session:
        session.add(
            Grant(id="g" * 24, client_id=registered.client.client_id, user_id=user_id,
                  session_id=sign_in, scopes=["openid"], redirect_uri="https://app.example.com/cb",
                  code_expires_at=now, code_used_at=now, offline=False, expires_at=now)
        )  # fmt: skip
        public_id = await session.scalar(
            select(SignInSession.public_id).where(SignInSession.id == sign_in)
        )
    assert public_id is not None
    return sign_in, public_id, registered.client.client_id


async def deliveries(sessionmaker: SessionMaker) -> list[LogoutDelivery]:
    async with sessionmaker() as session:
        return list(await session.scalars(select(LogoutDelivery).order_by(LogoutDelivery.id)))


async def test_a_signed_logout_token_after_retries(
    ctx: ServiceContext, receiver: Receiver, hook_settings: Settings, sessionmaker: SessionMaker
) -> None:
    sign_in, public_id, client_id = await signed_in_through_app(ctx, receiver.url)
    receiver.statuses = [503, 500]  # down twice, then up
    await sessions.end(ctx, sign_in)
    await run_burst_worker(hook_settings)
    assert len(receiver.received) == 3
    token = parse_qs(receiver.received[-1].body.decode())["logout_token"][0]
    public = (await keys.key_set(ctx))["keys"]
    header = pyjwt.get_unverified_header(token)
    key = pyjwt.PyJWK(
        {k: v for k, v in next(k for k in public if k["kid"] == header["kid"]).items()}
    )
    claims = pyjwt.decode(token, key, algorithms=["RS256"], audience=client_id,
                          issuer=hook_settings.base_url)  # fmt: skip
    assert header["typ"] == "logout+jwt" and claims["sid"] == public_id
    (row,) = await deliveries(sessionmaker)
    assert (row.status, row.attempts, row.last_error) == (EmailStatus.SENT, 3, None)
    async with sessionmaker() as session:
        grant = await session.get(Grant, "g" * 24)
    assert grant is not None and grant.revoked_why == "signed out"


async def test_a_refusal_fails_the_delivery_with_its_reason(
    ctx: ServiceContext, receiver: Receiver, hook_settings: Settings, sessionmaker: SessionMaker
) -> None:
    sign_in, _, _ = await signed_in_through_app(ctx, receiver.url)
    receiver.statuses = [400]  # the application refuses the token (Back-Channel Logout §2.8)
    await sessions.end(ctx, sign_in)
    await run_burst_worker(hook_settings)
    (row,) = await deliveries(sessionmaker)
    assert row.status == EmailStatus.FAILED and row.attempts == 1
    assert row.last_error is not None and "400" in row.last_error


async def test_nothing_is_owed_when_the_ending_rolls_back(
    ctx: ServiceContext, receiver: Receiver, sessionmaker: SessionMaker
) -> None:
    await signed_in_through_app(ctx, receiver.url)

    async def change_that_fails() -> None:
        async with ctx.unit_of_work() as session:
            await sessions.end_all(session, 1, why="test")
            raise RuntimeError("the change failed after it ended the sign-ins")

    with pytest.raises(RuntimeError):
        await change_that_fails()
    assert await deliveries(sessionmaker) == []
    async with sessionmaker() as session:
        still = await session.scalar(select(Grant.revoked_at))
    assert still is None  # the grant lives on, as the sign-in does
