"""An account's language and time zone: what its pages and emails speak, and the clock its
times are shown on."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select, update

from shared import i18n
from shared.i18n import N_
from shared.models import User
from shared.services.context import ServiceContext
from shared.validation import InvalidInput

UNKNOWN_LANGUAGE = N_("Choose one of the languages in the list.")
UNKNOWN_ZONE = N_("Choose a time zone from the list, such as Europe/Berlin or UTC.")


@dataclass(frozen=True, slots=True)
class Preferences:
    language: str | None
    time_zone: str | None


async def change(
    ctx: ServiceContext,
    user_id: int,
    *,
    language: str | None = None,
    time_zone: str | None = None,
) -> Preferences:
    """Set what is given (None leaves it); refuses a language this deployment does not
    ship, or a zone that is not an IANA name, with the field it was given for."""
    values: dict[str, str] = {}
    if language is not None:
        if language not in ctx.settings.LANGUAGES:
            raise InvalidInput("language", UNKNOWN_LANGUAGE)
        values["language"] = language
    if time_zone is not None:
        zone = i18n.valid_zone(time_zone)
        if zone is None:
            raise InvalidInput("time_zone", UNKNOWN_ZONE)
        values["time_zone"] = zone
    columns = (User.language, User.time_zone)
    async with ctx.unit_of_work() as session:
        if values:
            changed = update(User).where(User.id == user_id).values(**values).returning(*columns)
            row = (await session.execute(changed)).one_or_none()
        else:  # nothing to change: what there is
            row = (await session.execute(select(*columns).where(User.id == user_id))).one_or_none()
    if row is None:
        raise LookupError(f"no account {user_id}")
    return Preferences(row.language, row.time_zone)
