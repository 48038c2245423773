"""Pages rendered by Jinja's synchronous renderer.

Quart turns on Jinja's async mode, in which every template, block, macro call and output
step is a coroutine or an async generator; these templates await nothing (their context is
gathered before rendering: ``account`` by a context processor, flashed messages and URLs are
plain calls), so that machinery only costs time: about a fifth of a form page's rendering,
measured on the reset form. :class:`Environment` turns the async mode off and
:func:`render_template` is Quart's, minus the awaits (the context processors and the
rendering signals still run). Quart's own ``render_template`` refuses a synchronous
environment, so a page rendered by it fails loudly instead of rendering differently.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from jinja2 import Environment as JinjaEnvironment
from jinja2 import Template
from markupsafe import Markup, escape
from quart import current_app
from quart.signals import before_render_template, template_rendered
from quart.templating import Environment as QuartEnvironment

if TYPE_CHECKING:
    from quart import Quart


class Environment(QuartEnvironment):
    """Quart's environment (its loader of the app's and blueprints' templates), synchronous."""

    def __init__(self, app: Quart, **options: Any) -> None:
        options.setdefault("loader", app.create_global_jinja_loader())
        options["enable_async"] = False
        JinjaEnvironment.__init__(self, **options)


async def render_template(template_name_or_list: str | list[str], **context: Any) -> str:
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    await app.update_template_context(context)
    template = app.jinja_env.get_or_select_template(template_name_or_list)
    return await _render(app, template, context)


async def render_template_string(source: str, **context: Any) -> str:
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    await app.update_template_context(context)
    return await _render(app, app.jinja_env.from_string(source), context)


async def _render(app: Quart, template: Template, context: dict[str, Any]) -> str:
    await before_render_template.send_async(
        app,
        _sync_wrapper=app.ensure_async,  # type: ignore[arg-type]  # as in Quart
        template=template,
        context=context,
    )
    rendered = template.render(context)
    await template_rendered.send_async(
        app,
        _sync_wrapper=app.ensure_async,  # type: ignore[arg-type]  # as in Quart
        template=template,
        context=context,
    )
    return rendered


def breakable(address: str) -> Markup:
    """An email address that may wrap after its "@" and its dots, and nowhere else (on a
    phone, a long address otherwise breaks mid-word, or spills out of its card), isolated
    from the text around it (<bdi>), so that in a right-to-left page it still reads left to
    right, its dots where they belong."""
    escaped = str(escape(address)).replace("@", "@<wbr>").replace(".", ".<wbr>")
    return Markup(f"<bdi>{escaped}</bdi>")  # noqa: S704 (escaped)
