"""Extensions created bare here and bound to the app in :func:`web.create_app`, and the
process's :class:`~shared.services.context.ServiceContext`, made in ``before_serving``."""

from __future__ import annotations

from quart import current_app
from quart_auth import QuartAuth

from shared.services.context import ServiceContext

auth_manager = QuartAuth()  # user_class is set in create_app (web.auth imports this module)

SERVICES_KEY = "accounts.services"


def services() -> ServiceContext:
    """What the use cases need, for the request being handled."""
    value = current_app.extensions[SERVICES_KEY]
    assert isinstance(value, ServiceContext)
    return value
