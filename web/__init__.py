"""The web service: ``create_app()`` builds a Quart app from typed settings."""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, cast

from hypercorn.middleware import ProxyFixMiddleware
from quart import Quart, request
from quart_schema import QuartSchema

from shared import assurance, i18n
from shared.devices import warm_up as warm_up_device_names
from shared.heap import freeze_startup_objects
from shared.outages import is_unavailable
from shared.services import events
from shared.services.context import ServiceContext
from shared.services.passkeys import SITE_NAME
from shared.settings import Settings, load_settings
from web import ratelimit
from web.access_log import AccessLog
from web.after_response import AfterResponse, DeferredWork, after_response
from web.auth import AccountUser, current_account
from web.cookie_session import CookieSessionInterface
from web.errors import register_error_handlers
from web.extensions import SERVICES_KEY, auth_manager
from web.forms import blank_form
from web.headers import add_security_headers
from web.languages import install as install_languages
from web.metrics import DEFERRED, instrument
from web.requests import Request
from web.server_protocol import GuardedHttpTools
from web.templating import Environment as JinjaEnvironment
from web.templating import breakable
from web.widgets import install as install_fast_widgets


def create_app(settings: Settings | None = None) -> Quart:
    settings = settings or load_settings()
    install_fast_widgets()
    app = Quart(__name__)
    app.request_class = Request
    app.jinja_environment = JinjaEnvironment  # web.templating: no async rendering
    app.session_interface = CookieSessionInterface()
    app.config.update(
        SECRET_KEY=settings.SECRET_KEY.get_secret_value(),
        MAX_CONTENT_LENGTH=settings.MAX_CONTENT_LENGTH,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.secure_cookies,
        # quart-auth: the signed cookie is refused once older than this, whatever the browser
        # says; its default (a year) would let a stolen cookie work for a year.
        QUART_AUTH_DURATION=settings.REMEMBER_LIFETIME,
        QUART_AUTH_COOKIE_SECURE=settings.secure_cookies,
        QUART_AUTH_COOKIE_SAMESITE="Lax",
        QUART_AUTH_COOKIE_HTTP_ONLY=True,
        QUART_AUTH_SALT="accounts.auth-cookie",
    )
    app.config["ACCOUNTS_SETTINGS"] = settings

    auth_manager.user_class = AccountUser
    auth_manager.init_app(app)

    from web.api import PREFIX, ApiOnlyProvider
    from web.api import blueprint as api_blueprint
    from web.blueprints.account_data import blueprint as account_data_blueprint
    from web.blueprints.accounts import blueprint as accounts_blueprint
    from web.blueprints.activity import blueprint as activity_blueprint
    from web.blueprints.apps import blueprint as apps_blueprint
    from web.blueprints.email_change import blueprint as email_change_blueprint
    from web.blueprints.federation import blueprint as federation_blueprint
    from web.blueprints.identity import blueprint as identity_blueprint
    from web.blueprints.login_codes import blueprint as login_codes_blueprint
    from web.blueprints.main import blueprint as main_blueprint
    from web.blueprints.oauth import blueprint as oauth_blueprint
    from web.blueprints.ops import blueprint as ops_blueprint
    from web.blueprints.passkeys import blueprint as passkeys_blueprint
    from web.blueprints.preferences import blueprint as preferences_blueprint
    from web.blueprints.provider_hooks import blueprint as provider_hooks_blueprint
    from web.blueprints.reauthentication import blueprint as reauthentication_blueprint
    from web.blueprints.reset import blueprint as reset_blueprint
    from web.blueprints.sessions import blueprint as sessions_blueprint
    from web.blueprints.texts import blueprint as texts_blueprint
    from web.blueprints.two_factor import blueprint as two_factor_blueprint
    from web.locale import blueprint as locale_blueprint

    app.register_blueprint(ops_blueprint)
    app.register_blueprint(locale_blueprint)
    app.register_blueprint(preferences_blueprint)
    app.register_blueprint(main_blueprint)
    app.register_blueprint(accounts_blueprint)
    app.register_blueprint(texts_blueprint)
    app.register_blueprint(reset_blueprint)
    app.register_blueprint(sessions_blueprint)
    app.register_blueprint(account_data_blueprint)
    app.register_blueprint(activity_blueprint)
    app.register_blueprint(email_change_blueprint)
    app.register_blueprint(two_factor_blueprint)
    app.register_blueprint(login_codes_blueprint)
    app.register_blueprint(reauthentication_blueprint)
    app.register_blueprint(identity_blueprint)
    app.register_blueprint(oauth_blueprint)
    app.register_blueprint(apps_blueprint)
    app.register_blueprint(federation_blueprint)
    app.register_blueprint(passkeys_blueprint)
    app.register_blueprint(api_blueprint)
    app.register_blueprint(provider_hooks_blueprint)
    # The OpenAPI description of /api/v1. The docs UIs quart-schema offers load their assets
    # from CDNs, which this service never does, so they are off; the spec is served.
    QuartSchema(
        app,
        openapi_path=f"{PREFIX}/openapi.json",
        swagger_ui_path=None,
        redoc_ui_path=None,
        scalar_ui_path=None,
        info={"title": "Accounts API", "version": "1.0.0"},
        openapi_provider_class=ApiOnlyProvider,
    )
    register_error_handlers(app)
    instrument(app)
    add_security_headers(app, settings)
    i18n.configure(Path(settings.LOCALES_DIR) if settings.LOCALES_DIR else None)
    install_languages(app)
    app.jinja_env.globals["site_name"] = SITE_NAME  # a name, in every language the same
    app.jinja_env.globals["blank_form"] = blank_form
    app.jinja_env.filters["breakable"] = breakable
    app.jinja_env.globals["methods_in_words"] = assurance.in_words
    # "Continue with …" on the sign-in and sign-up pages (shared/federation.py).
    app.jinja_env.globals["federation_providers"] = settings.federation_providers

    @app.context_processor
    async def account_context() -> dict[str, object]:
        # Templates ask `account` (the logged-in User or None) instead of awaiting
        # quart-auth's async is_authenticated themselves.
        try:
            return {"account": await current_account()}
        except Exception as error:
            if is_unavailable(error):  # the 503 page must render without the database
                return {"account": None}
            raise

    run_context_processors_inline(app)

    @app.before_request
    async def note_origin() -> None:
        # Where this request's security events come from (shared.services.events).
        events.set_origin(ratelimit.client_address(), request.headers.get("User-Agent", ""))

    # The app writes the access log itself (no query strings), whichever server runs it;
    # inside the proxy fix, so it logs the client address the trusted proxies forwarded.
    # Work deferred past the answer starts once the answer has been sent (web.after_response).
    deferred = DeferredWork(settings.DEFERRED_WORK_LIMIT, on_change=DEFERRED.inc)
    app.asgi_app = AfterResponse(app.asgi_app, deferred)  # type: ignore[method-assign]
    app.asgi_app = AccessLog(app.asgi_app)  # type: ignore[method-assign]
    if settings.TRUSTED_PROXIES:
        # The client address (and scheme) the trusted proxies forwarded; with no proxies
        # configured the headers are ignored, since any client can send them.
        app.asgi_app = ProxyFixMiddleware(  # type: ignore[method-assign]
            app.asgi_app,
            mode="modern" if settings.PROXY_HEADER == "forwarded" else "legacy",
            trusted_hops=settings.TRUSTED_PROXIES,
        )

    @app.before_serving
    async def open_services() -> None:
        context = ServiceContext.open(
            settings,
            application_name="web",
            defer=after_response(app.add_background_task, deferred),
        )
        app.extensions[SERVICES_KEY] = context
        await warn_if_unreachable(context)
        # The user-agent parser compiles its patterns on first use (~150 ms holding the GIL,
        # which stalls every request in flight): pay that before serving, not in a request.
        await asyncio.to_thread(warm_up_device_names)

    @app.after_serving
    async def close_services() -> None:
        context: ServiceContext | None = app.extensions.pop(SERVICES_KEY, None)
        if context is not None:
            await context.close()

    return app


def create_server_app() -> Quart:
    """The app as ``python -m web`` serves it: once ready to serve, each server process
    freezes what start-up made, so the collector's full collections skip it
    (:mod:`shared.heap`). Tests use :func:`create_app`, which leaves their process's
    collector alone."""
    app = create_app()
    GuardedHttpTools.configure(app.config["ACCOUNTS_SETTINGS"])

    @app.before_serving
    async def freeze_startup() -> None:  # registered last, so it runs after the others
        freeze_startup_objects()

    return app


async def warn_if_unreachable(context: ServiceContext) -> None:
    """Start anyway (the backends may come up later; pages answer 503 meanwhile), but say
    once, at start-up, which one cannot be reached."""
    for name, error in (await context.unreachable()).items():
        logging.getLogger("web").warning(
            "%s cannot be reached at start-up (%s); serving anyway", name, type(error).__name__
        )


def run_context_processors_inline(app: Quart) -> None:
    """Run the synchronous template context processors on the event loop.

    Quart runs a sync context processor in its thread pool, a hop per processor per rendered
    page. Two come with the libraries (quart-auth's ``current_user``, and the Flask default
    each blueprint registers, which finds no Flask context under Quart and adds nothing);
    both only read context variables, so calling them inline is the same, minus the hops
    (profiled: a pool hop per page was a measurable share of the web process's CPU).
    """
    for name, processors in app.template_context_processors.items():
        app.template_context_processors[name] = [
            processor
            if inspect.iscoroutinefunction(processor)
            else _inline(cast(Callable[[], dict[str, Any]], processor))
            for processor in processors
        ]


def _inline(processor: Callable[[], dict[str, Any]]) -> Callable[[], Awaitable[dict[str, Any]]]:
    @functools.wraps(processor)
    async def run_inline() -> dict[str, Any]:
        return processor()

    return run_inline
