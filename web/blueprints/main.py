"""The home page: the newest Texts."""

from __future__ import annotations

from quart import Blueprint, current_app, request, send_from_directory
from quart.typing import ResponseReturnValue

from shared.services import texts
from web.extensions import services
from web.templating import render_template

blueprint = Blueprint("main", __name__)


@blueprint.get("/")
async def home() -> ResponseReturnValue:
    page = await texts.newest_texts(services(), request.args.get("page", 1, type=int) or 1)
    return await render_template(
        "main/home.html", texts=page.texts, page=page.page, pages=page.pages
    )


@blueprint.get("/favicon.ico")
async def favicon() -> ResponseReturnValue:
    """Browsers ask for /favicon.ico whatever the page says: the same icon, not a 404 in
    every log."""
    response = await send_from_directory(current_app.static_folder or "static", "favicon.svg")
    response.headers["Cache-Control"] = "public, max-age=86400"
    return response
