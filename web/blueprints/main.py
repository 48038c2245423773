"""The home page: the newest Texts."""

from __future__ import annotations

from quart import Blueprint, request
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
