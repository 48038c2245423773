"""Rendering pages stays on the event loop."""

from __future__ import annotations

import inspect

from quart import Quart

from web.templating import render_template_string


async def test_no_context_processor_hops_to_the_thread_pool(app: Quart) -> None:
    # Quart runs sync processors in its thread pool, once per processor per page.
    for processors in app.template_context_processors.values():
        assert all(inspect.iscoroutinefunction(processor) for processor in processors)


async def test_library_context_still_reaches_templates(app: Quart) -> None:
    async with app.test_request_context("/reset-password"):
        page = await render_template_string(
            "{{ current_user.auth_id is none }} {{ account is none }}"
        )
    assert page == "True True"


async def test_pages_render_without_jinjas_async_mode(app: Quart) -> None:
    # web.templating: nothing in the templates awaits, so the async machinery only cost time.
    assert app.jinja_env.is_async is False
    async with app.test_request_context("/reset-password"):
        page = await render_template_string("{{ url_for('reset.request_reset') }}")
    assert page == "/reset-password"
