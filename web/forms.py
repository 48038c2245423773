"""Form classes (WTForms) with CSRF tied to the session, and their validators.

The server's rules are the authority; templates mirror them as HTML attributes
(``required``, ``maxlength``) only to help people.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any, Self

from quart import current_app, request, session
from werkzeug.exceptions import BadRequest
from wtforms import BooleanField, Form, PasswordField, StringField, SubmitField, TextAreaField
from wtforms.csrf.session import SessionCSRF
from wtforms.validators import DataRequired, EqualTo, InputRequired, Length, ValidationError

from shared.models import EMAIL_MAX_LENGTH, TEXT_CONTENT_MAX_LENGTH, TEXT_TITLE_MAX_LENGTH, User
from shared.validation import (
    PASSWORD_MAX_LENGTH,
    PASSWORD_MIN_LENGTH,
    check_email,
    check_password,
    check_username,
)

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


class Rule:
    """A WTForms validator running one of shared.validation's rules and keeping the
    normalised value it returns."""

    def __init__(self, check: Callable[[str], str]) -> None:
        self.check = check

    def __call__(self, form: Form, field: StringField) -> None:
        try:
            field.data = self.check(field.data or "")
        except ValueError as error:
            raise ValidationError(str(error)) from None


def EmailAddress() -> Rule:
    return Rule(check_email)


def Username() -> Rule:
    return Rule(check_username)


def _strip(value: str | None) -> str | None:
    return value.strip() if isinstance(value, str) else value


class PlainText:
    """Refuse control characters (NUL and the like; tabs and line breaks are fine): they have
    no business in a title or a text, and PostgreSQL cannot even store NUL."""

    message = "This field contains characters that are not allowed."

    def __call__(self, form: Form, field: StringField) -> None:
        if any(
            (ord(char) < 32 and char not in "\t\r\n") or ord(char) == 127
            for char in field.data or ""
        ):
            raise ValidationError(self.message)


def password_field(label: str) -> PasswordField:
    return PasswordField(
        label,
        validators=[
            InputRequired(),
            Length(min=PASSWORD_MIN_LENGTH, max=PASSWORD_MAX_LENGTH),
        ],
    )


def _not_personal(form: Form, password: str, *names: str) -> None:
    try:
        check_password(password, *(getattr(form, name).data for name in names))
    except ValueError as error:
        raise ValidationError(str(error)) from None


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
        if self.user is not None:
            try:
                check_password(field.data or "", self.user.username, self.user.email)
            except ValueError as error:
                raise ValidationError(str(error)) from None


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
        validators=[DataRequired(), Length(max=TEXT_TITLE_MAX_LENGTH), PlainText()],
    )
    content = TextAreaField(
        "Content",
        filters=[_strip],
        validators=[DataRequired(), Length(max=TEXT_CONTENT_MAX_LENGTH), PlainText()],
    )
    submit = SubmitField("Post")
