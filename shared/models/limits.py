"""The lengths the columns hold, which the input rules (``shared/validation.py``) derive from."""

USERNAME_MAX_LENGTH = 25
EMAIL_MAX_LENGTH = 254  # RFC 5321 path limit
TEXT_TITLE_MAX_LENGTH = 50
TEXT_CONTENT_MAX_LENGTH = 1000
PASSKEY_NAME_MAX_LENGTH = 60
WEBHOOK_URL_MAX_LENGTH = 2000
