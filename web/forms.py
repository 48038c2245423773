"""Form classes (WTForms) with CSRF tied to the session, and their validators.

The server's rules are the authority; templates mirror them as HTML attributes
(``required``, ``maxlength``) only to help people.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Self

from email_validator import EmailNotValidError, validate_email
from quart import current_app, request, session
from werkzeug.exceptions import BadRequest
from wtforms import BooleanField, Form, PasswordField, StringField, SubmitField, TextAreaField
from wtforms.csrf.session import SessionCSRF
from wtforms.validators import DataRequired, EqualTo, InputRequired, Length, ValidationError

from shared.models import EMAIL_MAX_LENGTH, TEXT_CONTENT_MAX_LENGTH, TEXT_TITLE_MAX_LENGTH, User
from shared.services.accounts import USERNAME_PATTERN, normalize_username

PASSWORD_MIN_LENGTH = 8
PASSWORD_MAX_LENGTH = 128  # also keeps a megabyte "password" away from argon2
CSRF_TIME_LIMIT = timedelta(hours=2)


class CSRFError(BadRequest):
    """Missing, wrong or expired CSRF token: shown as "this form expired, try again"."""

    description = "This form has expired or was sent from another site. Please try again."


class CSRFForm(Form):  # type: ignore[misc]  # WTForms ships no type information
    """Base form: a CSRF token bound to the visitor's session cookie."""

    class Meta:
        csrf = True
        csrf_class = SessionCSRF
        csrf_time_limit = CSRF_TIME_LIMIT

    @classmethod
    async def from_request(cls, **kwargs: Any) -> Self:
        formdata = await request.form if request.method == "POST" else None
        return cls(formdata=formdata, meta=_csrf_meta(), **kwargs)

    def validate_on_submit(self) -> bool:
        """True for a valid POST. A bad CSRF token raises CSRFError (a 400 page) instead of
        showing up as a field error, since no field of the form is at fault."""
        if request.method != "POST":
            return False
        valid: bool = self.validate()
        if self.meta.csrf and self.csrf_token.errors:
            raise CSRFError()
        return valid


def _csrf_meta() -> dict[str, Any]:
    return {"csrf_secret": str(current_app.secret_key).encode(), "csrf_context": session}


def blank_form() -> ActionForm:
    """An empty button-only form, for CSRF tokens in the layout (the logout button)."""
    return ActionForm(meta=_csrf_meta())


class EmailAddress:
    """Syntax check with email-validator (no DNS), and normalise the field's data."""

    def __call__(self, form: Form, field: StringField) -> None:
        try:
            field.data = validate_email(field.data or "", check_deliverability=False).normalized
        except EmailNotValidError as error:
            raise ValidationError(str(error)) from None


class Username:
    def __call__(self, form: Form, field: StringField) -> None:
        field.data = normalize_username(field.data or "")
        if not USERNAME_PATTERN.match(field.data):
            raise ValidationError(
                "Use 2 to 25 characters: letters, digits, underscores, dots or hyphens."
            )


def _strip(value: str | None) -> str | None:
    return value.strip() if isinstance(value, str) else value


def password_field(label: str) -> PasswordField:
    return PasswordField(
        label,
        validators=[
            InputRequired(),
            Length(min=PASSWORD_MIN_LENGTH, max=PASSWORD_MAX_LENGTH),
        ],
    )


def _not_personal(form: Form, password: str, *names: str) -> None:
    lowered = password.casefold()
    for name in names:
        value = getattr(form, name).data
        if value and lowered == str(value).casefold():
            raise ValidationError("Your password must not be your username or email address.")


class RegistrationForm(CSRFForm):
    username = StringField(
        "Username", filters=[_strip], validators=[DataRequired(), Length(min=2, max=25), Username()]
    )
    email = StringField(
        "Email",
        filters=[_strip],
        validators=[DataRequired(), Length(max=EMAIL_MAX_LENGTH), EmailAddress()],
    )
    password = password_field("Password")
    confirm_password = PasswordField(
        "Confirm Password", validators=[InputRequired(), EqualTo("password")]
    )
    submit = SubmitField("Sign Up")

    def validate_password(self, field: PasswordField) -> None:
        _not_personal(self, field.data or "", "username", "email")


class LoginForm(CSRFForm):
    email = StringField(
        "Email",
        filters=[_strip],
        validators=[DataRequired(), Length(max=EMAIL_MAX_LENGTH), EmailAddress()],
    )
    # No length rule beyond the maximum: the message must not hint at the rules.
    password = PasswordField(
        "Password", validators=[InputRequired(), Length(max=PASSWORD_MAX_LENGTH)]
    )
    remember = BooleanField("Remember me")
    submit = SubmitField("Login")


class RequestResetForm(CSRFForm):
    email = StringField(
        "Email",
        filters=[_strip],
        validators=[DataRequired(), Length(max=EMAIL_MAX_LENGTH), EmailAddress()],
    )
    submit = SubmitField("Request Password Reset")


class ResetPasswordForm(CSRFForm):
    password = password_field("Password")
    confirm_password = PasswordField(
        "Confirm Password", validators=[InputRequired(), EqualTo("password")]
    )
    submit = SubmitField("Reset Password")

    def __init__(self, *args: Any, user: User | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.user = user

    def validate_password(self, field: PasswordField) -> None:
        password = (field.data or "").casefold()
        if self.user is not None and password in (
            self.user.username.casefold(),
            self.user.email.casefold(),
        ):
            raise ValidationError("Your password must not be your username or email address.")


class ChangePasswordForm(ResetPasswordForm):
    current_password = PasswordField(
        "Current Password", validators=[InputRequired(), Length(max=PASSWORD_MAX_LENGTH)]
    )
    submit = SubmitField("Change Password")


class ActionForm(CSRFForm):
    """A form that is only a button: logout, resend confirmation, confirm my address."""

    submit = SubmitField("Submit")


class TextForm(CSRFForm):
    title = StringField(
        "Title",
        filters=[_strip],
        validators=[DataRequired(), Length(max=TEXT_TITLE_MAX_LENGTH)],
    )
    content = TextAreaField(
        "Content",
        filters=[_strip],
        validators=[DataRequired(), Length(max=TEXT_CONTENT_MAX_LENGTH)],
    )
    submit = SubmitField("Post")
