"""Deferred work starts after the answer has been sent, in the request's context, and is
bounded: requests that may defer more wait while the process is behind (web.after_response)."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable
from typing import Any

import pytest
from quart import Quart

from tests.web.browser import Browser
from web.after_response import AfterResponse, DeferredWork, after_response

ORIGIN: contextvars.ContextVar[str] = contextvars.ContextVar("origin", default="-")


async def test_work_deferred_in_a_request_starts_after_its_last_byte() -> None:
    happened: list[str] = []
    tasks: list[asyncio.Task[None]] = []

    def start(func: Callable[..., Any], *args: Any) -> None:
        happened.append(f"started {args[0]}")
        tasks.append(asyncio.ensure_future(func(*args)))

    deferred = DeferredWork(10)
    defer = after_response(start, deferred)

    async def work(name: str) -> None:
        happened.append(f"{name} ran from {ORIGIN.get()}")
        if name == "first":
            defer(work, "nested")  # outside any request now: starts at once

    async def app(scope: Any, receive: Any, send: Any) -> None:
        ORIGIN.set("203.0.113.9")  # as the app's before_request notes the client
        defer(work, "first")
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await asyncio.sleep(0.01)  # the loop is free: nothing deferred may start yet
        await send({"type": "http.response.body", "body": b"done", "more_body": False})

    async def send(message: dict[str, Any]) -> None:
        happened.append(message["type"])

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    await AfterResponse(app, deferred)({"type": "http", "method": "POST"}, receive, send)
    await asyncio.gather(*tasks)
    await asyncio.gather(*tasks)  # the nested one, added while the first ran
    assert deferred.unfinished == 0

    assert happened == [
        "http.response.start",
        "http.response.body",
        "started first",
        "first ran from 203.0.113.9",  # the request's context, where the origin was set
        "started nested",
        "nested ran from 203.0.113.9",
    ]


async def test_outside_a_request_work_starts_at_once() -> None:
    started: list[tuple[Any, ...]] = []
    defer = after_response(
        lambda func, *args, **kwargs: started.append((*args, kwargs)), DeferredWork(10)
    )
    defer(print, "now", step="code")
    assert started == [("now", {"step": "code"})]


async def test_requests_that_may_defer_wait_while_the_deferred_work_is_full() -> None:
    """Limit 2: two works held unfinished close the door to POSTs (not to GETs) until one
    finishes; of the POSTs woken then, only as many as there is room for go in."""
    deferred = DeferredWork(2)
    release = {"/defer": asyncio.Event(), "/late": asyncio.Event()}
    handled: list[str] = []
    tasks: list[asyncio.Task[Any]] = []

    def start(func: Callable[..., Any], *args: Any) -> None:
        tasks.append(asyncio.ensure_future(func(*args)))

    defer = after_response(start, deferred)

    async def held_up(until: asyncio.Event) -> None:
        await until.wait()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        path = scope["path"]
        handled.append(path)
        if path != "/page":
            defer(held_up, release[path.rstrip("0123456789")])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def send(message: dict[str, Any]) -> None:
        pass

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    middleware = AfterResponse(app, deferred)

    def request(method: str, path: str) -> asyncio.Task[None]:
        return asyncio.ensure_future(
            middleware({"type": "http", "method": method, "path": path}, receive, send)
        )

    await asyncio.gather(request("POST", "/defer1"), request("POST", "/defer2"))
    assert deferred.unfinished == 2
    waiting = [request("POST", f"/late{n}") for n in range(3)]
    await request("GET", "/page")  # nothing to defer: served while the POSTs wait
    await asyncio.sleep(0.05)
    assert handled == ["/defer1", "/defer2", "/page"]
    assert not any(task.done() for task in waiting)

    release["/defer"].set()  # both held works finish: room for two of the three, not more
    await asyncio.sleep(0.05)
    assert len(handled) == 5 and deferred.unfinished == 2
    assert sum(task.done() for task in waiting) == 2

    release["/late"].set()  # and the third goes in once they have finished
    await asyncio.gather(*waiting)
    assert sorted(handled[3:]) == ["/late0", "/late1", "/late2"]
    await asyncio.gather(*tasks)
    assert deferred.unfinished == 0


async def test_a_work_that_fails_frees_its_place() -> None:
    deferred = DeferredWork(1)

    async def fails() -> None:
        raise RuntimeError("boom")

    tracked = deferred.tracked(fails)
    assert deferred.unfinished == 1
    with pytest.raises(RuntimeError):
        await tracked()
    assert deferred.unfinished == 0


async def test_a_failed_sign_in_is_recorded_after_the_answer_with_its_origin(
    app: Quart, browser: Browser
) -> None:
    """The one deferred insert only known accounts cause (timing must not tell them apart)."""
    from sqlalchemy import select

    from shared.models import SecurityEvent
    from web.extensions import SERVICES_KEY

    await browser.register()
    client = Browser(app)
    page = await client.submit(
        "/login", {"email": "alice@example.com", "password": "wrong guess"}, follow=False
    )
    assert page.status == 200
    while app.background_tasks:
        await asyncio.gather(*app.background_tasks)
    async with app.extensions[SERVICES_KEY].reading() as session:
        event = (
            await session.scalars(
                select(SecurityEvent).where(SecurityEvent.kind == "user.login_failed")
            )
        ).one()
    assert event.client_address is not None
