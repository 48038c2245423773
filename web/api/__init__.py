"""The JSON API (``/api/v1``), on the same use cases, validators and rate limits as the pages,
one module per area (as ``web/blueprints/`` is for the pages) over one blueprint.

Sessions are the same quart-auth cookie. Against cross-site requests, every state-changing
call must be ``application/json`` (a cross-site HTML form cannot send that without a CORS
preflight, which this API never grants) and, when the browser sends an ``Origin``, it must be
this service's ``BASE_URL``. Errors are ``application/problem+json`` (RFC 9457). An endpoint
for a signed-in account says so with ``@signed_in`` (:mod:`web.api.base`), which answers 401
for everyone else and hands the handler the sign-in.
"""

from web.api import (  # noqa: F401 (each registers its routes on the blueprint)
    account_data,
    accounts,
    activity,
    apps,
    connected,
    email_change,
    login_codes,
    passkeys,
    preferences,
    reauthentication,
    reset,
    sessions,
    signin,
    two_factor,
)
from web.api.base import PREFIX, blueprint
from web.api.openapi import ApiOnlyProvider

__all__ = ["PREFIX", "ApiOnlyProvider", "blueprint"]
