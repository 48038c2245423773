"""The account's language and time zone (as on /account/preferences): what its pages and
emails speak, and the clock its times are shown on."""

from __future__ import annotations

from pydantic import BaseModel, Field
from quart_schema import document_response, validate_request, validate_response

from shared import i18n
from shared.services import preferences
from shared.services.sessions import Current
from web.api.base import ApiResult, blueprint, signed_in
from web.extensions import services
from web.problems import Problem


class PreferencesOut(BaseModel):
    language: str | None = Field(description="null: the browser's (Accept-Language)")
    time_zone: str | None = Field(description="an IANA zone; null: the browser's, else UTC")
    languages: list[str] = Field(description="what this deployment offers")


class PreferencesIn(BaseModel):
    language: str | None = Field(
        default=None, max_length=16, pattern=i18n.LANGUAGE_TAG, examples=["de"]
    )
    time_zone: str | None = Field(
        default=None, max_length=64, pattern=r"^[A-Za-z0-9_+/-]+$", examples=["Europe/Berlin"]
    )


@blueprint.get("/preferences")
@validate_response(PreferencesOut, 200)
@signed_in
async def get_preferences(current: Current) -> ApiResult:
    user = current.user
    return PreferencesOut(
        language=user.language,
        time_zone=user.time_zone,
        languages=services().settings.LANGUAGES,
    ), 200


@blueprint.put("/preferences")
@validate_request(PreferencesIn)
@validate_response(PreferencesOut, 200)
@document_response(Problem, 422)
@signed_in
async def put_preferences(current: Current, data: PreferencesIn) -> ApiResult:
    """Change the language, the time zone, or both (a field left out stays as it is)."""
    ctx = services()
    # A refused value is a 422 naming its field (web.api.base handles InvalidInput).
    chosen = await preferences.change(
        ctx, current.user.id, language=data.language, time_zone=data.time_zone
    )
    return PreferencesOut(
        language=chosen.language, time_zone=chosen.time_zone, languages=ctx.settings.LANGUAGES
    ), 200
