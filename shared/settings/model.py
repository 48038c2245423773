"""The settings themselves: one typed field per environment variable, with its default and
its rule."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AnyUrl,
    BeforeValidator,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from shared.i18n import languages_problem
from shared.settings.rules import (
    MIN_DISTINCT_CHARACTERS,
    MIN_SECRET_KEY_LENGTH,
    PLACEHOLDER_SECRETS,
    PLACEHOLDER_WORDS,
    TOGETHER,
    check_address,
    conflicts,
    split_addresses,
)
from shared.settings.sources import (
    ENVIRON,
    FileValueSource,
    MappingEnvSource,
    SettingsError,
    describe,
)


class Settings(BaseSettings):
    """Everything a process needs to know about its environment.

    Field names are the environment variable names. Values arrive as strings and pydantic's
    lax mode converts them ("1"/"true"/"yes" for booleans, digits for numbers).
    """

    model_config = SettingsConfigDict(
        extra="forbid",
        frozen=True,
        case_sensitive=True,
        hide_input_in_errors=True,  # never echo a secret back in an error message
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Explicit values first, then ``NAME``, then ``NAME_FILE`` (setting both is an
        error, reported by the file source)."""
        environ = ENVIRON.get()
        return (
            init_settings,
            MappingEnvSource(settings_cls, environ),
            FileValueSource(settings_cls, environ),
        )

    # --- secrets and public origin -------------------------------------------------------
    SECRET_KEY: SecretStr
    BASE_URL: AnyUrl = AnyUrl("http://127.0.0.1:8000")

    # --- backing services ------------------------------------------------------------------
    DATABASE_URL: str
    REDIS_URL: str = "redis://127.0.0.1:6379/0"
    QUEUE_NAME: str = "arq:queue"
    # Prefix of this deployment's own Redis keys (rate limits, alert de-duplication), so that
    # two deployments or test runs can share one Redis database.
    REDIS_KEY_PREFIX: str = "accounts:"

    # --- mail (Flask-Mail names) -----------------------------------------------------------
    MAIL_SERVER: str = "localhost"
    MAIL_PORT: int = Field(default=25, ge=1, le=65535)
    MAIL_USE_TLS: bool = False  # STARTTLS on a plain connection (usually port 587)
    MAIL_USE_SSL: bool = False  # implicit TLS from the first byte (usually port 465)
    MAIL_USERNAME: str | None = None
    MAIL_PASSWORD: SecretStr | None = None
    MAIL_DEFAULT_SENDER: str = "Accounts <noreply@example.com>"
    MAIL_TIMEOUT: float = Field(default=30.0, gt=0)
    # SMTP connections: MAIL_POOL_SIZE to begin with, and up to MAIL_MAX_CONNECTIONS as the
    # provider sustains them (worker/mail/concurrency.py finds how many, by itself).
    MAIL_POOL_SIZE: int = Field(default=8, ge=1, le=64)
    MAIL_MAX_CONNECTIONS: int = Field(default=64, ge=1, le=1000)
    MAIL_VALIDATE_CERTS: bool = True
    MAIL_CA_BUNDLE: str | None = None  # PEM file of CAs to trust for the SMTP server's cert
    ADMINS: Annotated[list[str], NoDecode, BeforeValidator(split_addresses)] = []
    # DKIM: all three set, or none (DKIM_PRIVATE_KEY_FILE works too, like every NAME_FILE).
    DKIM_DOMAIN: str | None = None
    DKIM_SELECTOR: str | None = None
    DKIM_PRIVATE_KEY: SecretStr | None = None
    DKIM_ALGORITHM: Literal["rsa-sha256", "ed25519-sha256"] = "rsa-sha256"
    # Bounces (see README, "Bounces and suppression"): with BOUNCE_DOMAIN set, every message
    # is sent with its own signed envelope sender, bounces+<id>.<signature>@BOUNCE_DOMAIN, and
    # `python -m worker bounces` receives what comes back on BOUNCE_LISTEN.
    BOUNCE_DOMAIN: str | None = None
    BOUNCE_LISTEN: str = "127.0.0.1:2525"  # host:port of the bounce receiver's SMTP listener
    SOFT_BOUNCE_THRESHOLD: int = Field(default=3, ge=1)  # soft bounces within the window ...
    SOFT_BOUNCE_WINDOW_DAYS: int = Field(default=7, ge=1)  # ... suppress the address
    COMPLAINT_ALERT_PER_HOUR: int = Field(default=5, ge=1)  # complaints that alert ADMINS
    # Mailgun's "HTTP webhook signing key": turns on POST /hooks/mailgun (bounce events).
    MAILGUN_WEBHOOK_SIGNING_KEY: SecretStr | None = None

    # --- languages (see README, "Languages") ---------------------------------------------------
    # What people may choose; the first is the default when nothing else says. A language
    # needs a catalog under LOCALES_DIR (English, the source, needs none).
    LANGUAGES: Annotated[list[str], NoDecode, BeforeValidator(split_addresses)] = [
        "en", "de", "fr", "es", "pl", "ar",
    ]  # fmt: skip
    LOCALES_DIR: str | None = None  # default: shared/locales

    # --- accounts -----------------------------------------------------------------------------
    CONFIRM_TOKEN_MAX_AGE: int = Field(default=24 * 3600, ge=60)  # seconds a confirm link works
    RESET_TOKEN_MAX_AGE: int = Field(default=1800, ge=60)  # seconds a reset link works
    CONFIRM_RESEND_INTERVAL: int = Field(default=180, ge=0)  # one confirmation email per 3 min
    NOT_ME_TOKEN_MAX_AGE: int = Field(default=7 * 24 * 3600, ge=60)  # "this wasn't me" links
    # Sign-in by emailed code (see README, "Ways to sign in"): how long a code and its link
    # work, and how many wrong tries one code takes before a new one is needed.
    LOGIN_CODE_MAX_AGE: int = Field(default=600, ge=60, le=24 * 3600)
    LOGIN_CODE_MAX_ATTEMPTS: int = Field(default=3, ge=1, le=10)
    LOGIN_CODES_PER_HOUR: int = Field(default=5, ge=1)  # sign-in code emails per account
    # Sensitive changes (password, address, passkeys, two-factor, export, delete, ending
    # other sessions) need the sign-in's person to have authenticated within this many
    # seconds; otherwise they re-authenticate first (/account/reauthenticate).
    REAUTHENTICATION_TIMEOUT: int = Field(default=300, ge=30, le=24 * 3600)
    # "Remember this browser" on a second step: days it then signs in with one factor.
    TRUSTED_BROWSER_DAYS: int = Field(default=30, ge=1, le=365)
    # Rate limits (Redis, so they hold across web processes).
    RESET_EMAILS_PER_HOUR: int = Field(default=3, ge=1)  # per account
    POSTS_PER_MINUTE: int = Field(default=10, ge=1)  # login/reset POSTs per client address
    # Failed sign-ins: LOGIN_FAILURES_BEFORE_LOCK per (account, client address), or per
    # (account, trusted device), within LOGIN_LOCK_SECONDS (a moving window) lock that client
    # or device only; all untrusted clients of one account together may fail at most
    # LOGIN_ACCOUNT_CEILING times per LOGIN_ACCOUNT_WINDOW. See README, "Sign-in limits".
    LOGIN_FAILURES_BEFORE_LOCK: int = Field(default=10, ge=1)
    LOGIN_LOCK_SECONDS: int = Field(default=15 * 60, ge=1)
    LOGIN_ACCOUNT_CEILING: int = Field(default=100, ge=1)
    LOGIN_ACCOUNT_WINDOW: int = Field(default=3600, ge=1)
    REGISTRATIONS_PER_MINUTE: int = Field(default=60, ge=1)  # overall, every client together
    # Behind reverse proxies: how many proxy hops in front of the web service append to
    # X-Forwarded-For (0: none, the peer address is the client). Never trust more hops than
    # you run: a client can put anything in the header.
    TRUSTED_PROXIES: int = Field(default=0, ge=0, le=10)
    PROXY_HEADER: Literal["x-forwarded-for", "forwarded"] = "x-forwarded-for"
    SESSION_LIFETIME: int = Field(default=12 * 3600, ge=60)  # without "remember me"
    REMEMBER_LIFETIME: int = Field(default=30 * 24 * 3600, ge=60)  # with "remember me"

    # --- the identity provider (OpenID Connect) ----------------------------------------------
    # Lifetimes of the tokens it issues (seconds); a retired signing key stays published
    # until the longest of them has passed.
    OIDC_ID_TOKEN_LIFETIME: int = Field(default=600, ge=60, le=24 * 3600)
    OIDC_ACCESS_TOKEN_LIFETIME: int = Field(default=600, ge=60, le=24 * 3600)
    # An authorization code is exchanged by the application's server at once (RFC 6749
    # §4.1.2 says at most ten minutes; a minute is plenty).
    OIDC_CODE_LIFETIME: int = Field(default=60, ge=10, le=600)
    # How long a family of refresh tokens may be used at most, however often it rotates.
    OIDC_REFRESH_TOKEN_LIFETIME: int = Field(default=30 * 24 * 3600, ge=300, le=365 * 24 * 3600)
    # Dynamic client registration (RFC 7591): off, or on for anyone who can reach the service.
    OIDC_DYNAMIC_REGISTRATION: bool = False

    # --- signing in with other identity providers (shared/federation.py) ---------------------
    # A JSON list of providers (or FEDERATION_PROVIDERS_FILE); parsed into
    # `federation_providers` once, with one clear error for a mistake.
    FEDERATION_PROVIDERS: SecretStr = SecretStr("[]")  # it holds the client secrets
    FEDERATION_TIMEOUT: float = Field(default=10.0, gt=0, le=60)  # seconds per call to one
    # A new signing key is published this long before it signs (longer than relying parties
    # keep the JWKS: it says max-age OIDC_JWKS_MAX_AGE), so none meets a key it has not seen.
    OIDC_KEY_PUBLISH_AHEAD: int = Field(default=3600, ge=0, le=7 * 24 * 3600)
    OIDC_JWKS_MAX_AGE: int = Field(default=600, ge=0, le=24 * 3600)

    LOG_LEVEL: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    # --- the database's connection budget (see README, "Running more than one process") ---
    # The most connections one process opens: each web server process (WEB_WORKERS of them
    # per `python -m web`) and each worker. Keep (web processes + workers) x this, plus a few
    # for the bounce receiver and the command line, under the server's max_connections. A
    # request that finds every connection busy waits up to DATABASE_POOL_TIMEOUT seconds,
    # then is answered 503 (never 500).
    DATABASE_CONNECTIONS: int = Field(default=10, ge=4, le=1000)
    DATABASE_POOL_TIMEOUT: float = Field(default=5.0, gt=0, le=120)

    # --- web server --------------------------------------------------------------------------
    HOST: str = "127.0.0.1"
    PORT: int = Field(default=8000, ge=1, le=65535)
    # Server processes for `python -m web`; unset: one per CPU this process may run on.
    WEB_WORKERS: int | None = Field(default=None, ge=1, le=256)
    MAX_CONTENT_LENGTH: int = Field(default=64 * 1024, ge=1024)
    # What a client can make a server process hold before its request begins
    # (web/server_protocol.py): the request head's size and fields (431 beyond), the time
    # from its first byte to its end (408 beyond), connections at once per client address
    # and server process (0: no cap; not applied behind TRUSTED_PROXIES, where all come from
    # the proxy; generous, as an office's NAT is one address for many people).
    WEB_MAX_HEADER_BYTES: int = Field(default=32 * 1024, ge=4096, le=1024 * 1024)
    WEB_MAX_HEADERS: int = Field(default=100, ge=16, le=1000)
    WEB_HEADER_TIMEOUT: float = Field(default=10.0, gt=0, le=300)
    WEB_CONNECTIONS_PER_CLIENT: int = Field(default=256, ge=0, le=100_000)
    # Work a process defers past its answers (reset links, new accounts) and has not finished
    # yet: past this many, requests that may defer more wait for room (web.after_response),
    # so what a crash can lose, and the memory it takes, stay bounded under any load.
    DEFERRED_WORK_LIMIT: int = Field(default=128, ge=1, le=100_000)
    # When busy, a deferred write waits up to this long (seconds) so that the writes around it
    # commit in one transaction (shared/group_commit.py); they run after the answers, so no
    # answer waits for it, only the emails they queue. An isolated write never waits.
    DEFERRED_WRITE_LINGER: float = Field(default=0.02, ge=0, le=1)

    # --- metrics: Prometheus text on internal listeners, never on the public port ----------
    METRICS_HOST: str = "127.0.0.1"
    METRICS_PORT: int = Field(default=9100, ge=0, le=65535)  # python -m web; 0 turns it off
    WORKER_METRICS_PORT: int = Field(default=9101, ge=0, le=65535)  # python -m worker; 0: off

    # --- worker ------------------------------------------------------------------------------
    # arq polls Redis for due jobs: the delay bounds the pickup of webhook deliveries, of
    # retries coming due and of emails whose doorbell ring was missed, at the cost of two
    # cheap Redis round trips per delay per worker process. Announced emails do not wait
    # for it (worker/dispatch.py).
    WORKER_POLL_DELAY: float = Field(default=0.2, gt=0, le=5)
    # Deliveries in flight per worker process. A delivery holds no database connection while
    # the SMTP server answers, only a slot; MAIL_POOL_SIZE bounds the SMTP connections.
    WORKER_MAX_JOBS: int = Field(default=64, ge=1, le=1000)
    # When busy, a delivery's claim/record statement waits up to this long (seconds) so that
    # the deliveries starting around it share one statement (see shared/batching.py), and a
    # doorbell ring so that the announcements around it share one take.
    WORKER_BATCH_LINGER: float = Field(default=0.01, ge=0, le=1)
    # One delivery is a render plus one SMTP transaction: 60 s is generous, and a killed
    # worker's job becomes runnable again after job_timeout + 10 s, so keep it short.
    WORKER_JOB_TIMEOUT: int = Field(default=60, ge=5)
    MAIL_MAX_ATTEMPTS: int = Field(default=12, ge=1)
    MAIL_RETRY_BASE_DELAY: float = Field(default=10.0, gt=0)
    MAIL_RETRY_MAX_DELAY: float = Field(default=3600.0, gt=0)
    # Outbound budget (in Redis: in total for all worker processes) and circuit breaker: see
    # worker/throttle.py.
    MAIL_RATE_PER_SECOND: float = Field(default=200.0, gt=0)
    MAIL_DOMAIN_RATE_PER_MINUTE: float = Field(default=600.0, gt=0)
    MAIL_BREAKER_THRESHOLD: int = Field(default=5, ge=1)  # temporary failures in a row
    MAIL_BREAKER_COOLDOWN: float = Field(default=30.0, gt=0)  # seconds paused, doubling
    OUTBOX_SWEEP_AFTER: int = Field(default=60, ge=1)  # seconds a pending row may wait
    OUTBOX_SWEEP_EVERY: int = Field(default=15, ge=1, le=60)  # seconds between sweeps
    # Sent and skipped outbox rows (addresses, names) are deleted after this many days,
    # failed ones after OUTBOX_FAILED_RETENTION_DAYS (an operator may still need them).
    OUTBOX_RETENTION_DAYS: int = Field(default=30, ge=1)
    OUTBOX_FAILED_RETENTION_DAYS: int = Field(default=90, ge=1)
    SECURITY_EVENTS_RETENTION_DAYS: int = Field(default=365, ge=1)  # the activity page's past
    # Bounce reports (the soft-bounce count looks back SOFT_BOUNCE_WINDOW_DAYS), and
    # suppressions not renewed by a report (or lifted) for SUPPRESSIONS_RETENTION_DAYS: an
    # address that bounced a year ago may work again; if not, the next bounce says so.
    BOUNCE_REPORTS_RETENTION_DAYS: int = Field(default=30, ge=1)
    SUPPRESSIONS_RETENTION_DAYS: int = Field(default=365, ge=1)

    # --- webhooks (see worker/webhooks/sender.py) ---------------------------------------------
    # Deliver to loopback/private/link-local addresses too. Off: a webhook URL must not be a
    # way into the internal network (server-side request forgery); tests turn it on for
    # their loopback receiver.
    WEBHOOKS_ALLOW_PRIVATE: bool = False
    # Seconds for one whole attempt; never more than 80 % of WORKER_JOB_TIMEOUT (the job's).
    WEBHOOK_TIMEOUT: float = Field(default=10.0, gt=0, le=30)
    # About a day and a half of retries with the defaults (5 s doubling to 6 h, jittered).
    WEBHOOK_MAX_ATTEMPTS: int = Field(default=12, ge=1)
    WEBHOOK_RETRY_BASE_DELAY: float = Field(default=5.0, gt=0)
    WEBHOOK_RETRY_MAX_DELAY: float = Field(default=6 * 3600.0, gt=0)
    WEBHOOK_BREAKER_THRESHOLD: int = Field(default=5, ge=1)  # failures in a row per endpoint
    WEBHOOK_BREAKER_COOLDOWN: float = Field(default=60.0, gt=0)  # seconds paused, doubling

    @field_validator("SECRET_KEY")
    @classmethod
    def _secret_key_is_real(cls, value: SecretStr) -> SecretStr:
        raw = value.get_secret_value()
        letters = "".join(char for char in raw.lower() if char.isalnum())
        if raw.strip().lower() in PLACEHOLDER_SECRETS or any(
            word in letters for word in PLACEHOLDER_WORDS
        ):
            raise ValueError("is a placeholder; generate one with `python -m web generate-secret`")
        if len(raw) < MIN_SECRET_KEY_LENGTH:
            raise ValueError(f"must be at least {MIN_SECRET_KEY_LENGTH} characters long")
        if len(set(raw)) < MIN_DISTINCT_CHARACTERS:
            raise ValueError(
                "is too predictable; generate one with `python -m web generate-secret`"
            )
        return value

    @field_validator("BOUNCE_DOMAIN")
    @classmethod
    def _bounce_domain_is_a_domain(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        value = value.strip().lower().rstrip(".")
        if not re.fullmatch(r"(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}", value):
            raise ValueError(f"{value!r} is not a domain such as bounces.example.com")
        return value

    @field_validator("BOUNCE_LISTEN")
    @classmethod
    def _listen_is_host_port(cls, value: str) -> str:
        host, _, port = value.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError("must be host:port, such as 0.0.0.0:25")
        return value

    @field_validator("DATABASE_URL")
    @classmethod
    def _database_url_is_asyncpg(cls, value: str) -> str:
        if not value.startswith("postgresql+asyncpg://"):
            raise ValueError("must start with postgresql+asyncpg:// (PostgreSQL through asyncpg)")
        return value

    @field_validator("REDIS_URL")
    @classmethod
    def _redis_url_scheme(cls, value: str) -> str:
        if urlsplit(value).scheme not in {"redis", "rediss", "unix"}:
            raise ValueError("must be a redis://, rediss:// or unix:// URL")
        return value

    @field_validator("FEDERATION_PROVIDERS")
    @classmethod
    def _providers_parse(cls, value: SecretStr) -> SecretStr:
        from shared.federation import ProviderConfigError, parse

        try:
            parse(value.get_secret_value())
        except ProviderConfigError as error:
            raise ValueError(str(error)) from None
        return value

    @property
    def federation_providers(self) -> tuple[Any, ...]:
        """The configured providers (shared.federation.Provider), in their order."""
        from shared.federation import parse

        return parse(self.FEDERATION_PROVIDERS.get_secret_value())

    @field_validator("BASE_URL")
    @classmethod
    def _base_url_is_origin(cls, value: AnyUrl) -> AnyUrl:
        if value.scheme not in {"http", "https"}:
            raise ValueError("must be an http:// or https:// URL")
        if value.path not in (None, "", "/") or value.query or value.fragment:
            raise ValueError("must be an origin such as https://accounts.example.com (no path)")
        return value

    @field_validator("MAIL_DEFAULT_SENDER")
    @classmethod
    def _sender_is_address(cls, value: str) -> str:
        from email.headerregistry import Address
        from email.utils import parseaddr

        if "\r" in value or "\n" in value:
            raise ValueError("must not contain line breaks")
        name, address = parseaddr(value)
        if not address:
            raise ValueError(f"{value!r} is not an address such as 'Site <noreply@example.com>'")
        normalized = check_address(address)
        user, _, domain = normalized.rpartition("@")
        return str(Address(display_name=name, username=user, domain=domain))

    @field_validator("ADMINS")
    @classmethod
    def _admins_are_addresses(cls, value: list[str]) -> list[str]:
        return [check_address(address) for address in value]

    @model_validator(mode="after")
    def _settings_agree(self) -> Settings:
        found = conflicts({name: getattr(self, name) for name in TOGETHER})
        if found:
            raise ValueError("\n".join(found))
        return self

    @model_validator(mode="after")
    def _languages_have_catalogs(self) -> Settings:
        directory = Path(self.LOCALES_DIR) if self.LOCALES_DIR else None
        if problem := languages_problem(self.LANGUAGES, directory):
            raise ValueError(problem)
        return self

    @model_validator(mode="wrap")
    @classmethod
    def _every_problem_at_once(cls, data: Any, handler: Any) -> Any:
        """The rules between settings are checked even when a single setting is wrong too,
        so that one run reports every problem (the "after" check above only runs once each
        setting is valid on its own)."""
        try:
            return handler(data)
        except ValidationError as error:
            problems: list[Any] = list(error.errors(include_url=False))
            if isinstance(data, Mapping) and all(p["loc"] for p in problems):
                problems += [
                    {"type": "value_error", "loc": (), "input": None,
                     "ctx": {"error": ValueError(conflict)}}
                    for conflict in conflicts(data)
                ]  # fmt: skip
            raise ValidationError.from_exception_data(cls.__name__, problems) from None

    def with_values(self, **values: Any) -> Settings:
        """A validated copy with some values replaced (``model_copy`` would not validate)."""
        try:
            return Settings.model_validate({**self.model_dump(), **values})
        except ValidationError as error:
            raise SettingsError(describe(error)) from None

    # --- derived values ----------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        """The public origin without a trailing slash, ready for f"{base_url}/path"."""
        return str(self.BASE_URL).rstrip("/")

    @property
    def webhook_timeout(self) -> float:
        """WEBHOOK_TIMEOUT, within the delivery job's own time limit."""
        return min(self.WEBHOOK_TIMEOUT, self.WORKER_JOB_TIMEOUT * 0.8)

    @property
    def web_workers(self) -> int:
        """WEB_WORKERS, or one server process per CPU this process may run on (an affinity
        mask or cpuset counts; a container's CPU quota does not: set WEB_WORKERS there)."""
        if self.WEB_WORKERS:
            return self.WEB_WORKERS
        try:
            return len(os.sched_getaffinity(0))
        except AttributeError:  # pragma: no cover - not on Linux
            return os.cpu_count() or 1

    @property
    def secure_cookies(self) -> bool:
        return self.BASE_URL.scheme == "https"
