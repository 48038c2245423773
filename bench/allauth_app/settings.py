"""Django 5.2 + django-allauth 65 as the allauth quickstart configures it, on the bench's
database and SMTP sink: email sign-in, mandatory verification, Django's SMTP backend sending
inside the request (allauth's default), argon2 at this service's parameters (the control:
the hash's cost is then the same on both sides). It exists only to be measured against."""

from __future__ import annotations

import os
from urllib.parse import urlsplit

_db = urlsplit(os.environ["DATABASE_URL"].replace("postgresql+asyncpg", "postgresql"))

SECRET_KEY = os.environ["SECRET_KEY"]
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
ROOT_URLCONF = "bench.allauth_app.urls"
WSGI_APPLICATION = "bench.allauth_app.wsgi.application"
INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "allauth",
    "allauth.account",
]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "allauth.account.middleware.AccountMiddleware",
]
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": _db.path.lstrip("/"),
        "USER": _db.username or "postgres",
        "PASSWORD": _db.password or "",
        "HOST": _db.hostname or "127.0.0.1",
        "PORT": str(_db.port or 5432),
        "CONN_MAX_AGE": 60,  # persistent connections, as a production deployment sets
    }
}
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]
# The control row: argon2id at this service's parameters (shared/passwords.py), so that a
# sign-in costs one hash of the same price on both sides.
PASSWORD_HASHERS = ["bench.allauth_app.hashers.SameArgon2"]
ACCOUNT_LOGIN_METHODS = {"email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "password1*", "password2*"]
ACCOUNT_EMAIL_VERIFICATION = "mandatory"
ACCOUNT_LOGIN_BY_CODE_ENABLED = True  # sign-in by emailed code (scenario 10)
ACCOUNT_RATE_LIMITS = False  # the bench's traffic is one client address, as for ours
EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
EMAIL_HOST = os.environ["MAIL_SERVER"]
EMAIL_PORT = int(os.environ["MAIL_PORT"])
DEFAULT_FROM_EMAIL = os.environ.get("MAIL_DEFAULT_SENDER", "noreply@example.com")
USE_TZ = True
LANGUAGE_CODE = "en"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
LOGGING = {"version": 1, "disable_existing_loggers": False, "root": {"level": "WARNING"}}
