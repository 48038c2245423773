"""The web service: ``create_app()`` builds a Quart app from typed settings."""

from __future__ import annotations

import logging
from datetime import timedelta

from quart import Quart

from shared.db import create_engine, create_sessionmaker
from shared.jobs import create_queue
from shared.settings import Settings, load_settings
from web.extensions import RESOURCES_KEY, Resources, auth_manager

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> Quart:
    settings = settings or load_settings()
    app = Quart(__name__)
    app.config.update(
        SECRET_KEY=settings.SECRET_KEY.get_secret_value(),
        MAX_CONTENT_LENGTH=settings.MAX_CONTENT_LENGTH,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.secure_cookies,
        # quart-auth: the signed cookie is refused once older than this, whatever the browser
        # says; its default (a year) would let a stolen cookie work for a year.
        QUART_AUTH_DURATION=int(timedelta(days=30).total_seconds()),
        QUART_AUTH_COOKIE_SECURE=settings.secure_cookies,
        QUART_AUTH_COOKIE_SAMESITE="Lax",
        QUART_AUTH_COOKIE_HTTP_ONLY=True,
        QUART_AUTH_SALT="accounts.auth-cookie",
    )
    app.config["ACCOUNTS_SETTINGS"] = settings

    auth_manager.init_app(app)

    from web.blueprints.main import blueprint as main_blueprint

    app.register_blueprint(main_blueprint)

    @app.before_serving
    async def open_resources() -> None:
        engine = create_engine(settings.DATABASE_URL, application_name="web")
        # Connects lazily: the app starts, and keeps serving, while Redis is away; emails
        # then wait in the outbox for the sweeper.
        queue = create_queue(settings.REDIS_URL)
        app.extensions[RESOURCES_KEY] = Resources(
            settings=settings,
            engine=engine,
            sessionmaker=create_sessionmaker(engine),
            queue=queue,
        )

    @app.after_serving
    async def close_resources() -> None:
        res: Resources | None = app.extensions.pop(RESOURCES_KEY, None)
        if res is None:
            return
        await res.queue.aclose()
        await res.engine.dispose()

    return app
