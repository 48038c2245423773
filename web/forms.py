"""Form classes (WTForms) with CSRF tied to the session. Their fields are derived from the
rules in :mod:`shared.validation`; templates mirror them as HTML attributes (``required``,
``maxlength``) only to help people.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, ClassVar, Self

from quart import current_app, request, session
from werkzeug.exceptions import BadRequest
from wtforms import (
    BooleanField,
    Form,
    PasswordField,
    SelectField,
    StringField,
    SubmitField,
    TextAreaField,
)
from wtforms.csrf.session import SessionCSRF
from wtforms.validators import (
    DataRequired,
    EqualTo,
    InputRequired,
    Length,
    Optional,
    ValidationError,
)

from shared import i18n
from shared.i18n import N_
from shared.i18n import lazy_gettext as L_
from shared.services.refusals import Refused
from shared.validation import (
    CODE,
    EMAIL,
    NEW_PASSWORD,
    PASSWORD,
    TEXT_CONTENT,
    TEXT_TITLE,
    USERNAME,
    InvalidInput,
    TextRule,
)

CSRF_TIME_LIMIT = timedelta(hours=2)
NO_MATCH = L_("The two passwords are not the same.")


class CSRFError(BadRequest):
    """Missing, wrong or expired CSRF token: shown as "this form expired, try again"."""

    description = N_("This form has expired or was sent from another site. Please try again.")


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

    @classmethod
    def blank(cls) -> Self:
        """An empty one, to show beside the form that was sent."""
        return cls(formdata=None, meta=_csrf_meta())

    def validate_on_submit(self) -> bool:
        """True for a valid POST. A bad CSRF token raises CSRFError (a 400 page) instead of
        showing up as a field error, since no field of the form is at fault."""
        if request.method != "POST":
            return False
        valid: bool = self.validate()
        if self.meta.csrf and self.csrf_token.errors:
            raise CSRFError()
        return valid

    # A use case names a field as its API does; where a form names it otherwise.
    aliases: ClassVar[dict[str, str]] = {}

    def show(self, error: InvalidInput | Refused) -> None:
        """Show a use case's refusal of one field under that field (a refusal of no field
        is the caller's to show: a flash, say)."""
        field = error.field or ""
        getattr(self, self.aliases.get(field, field)).errors = [error.message]


def _csrf_meta() -> dict[str, Any]:
    return {
        "csrf_secret": str(current_app.secret_key).encode(),
        "csrf_context": session,
        # WTForms' own messages ("This field is required.") in its own catalogs.
        "locales": [i18n.current().replace("-", "_"), "en"],
    }


def blank_form() -> ActionForm:
    """An empty button-only form, for CSRF tokens in the layout (the logout button)."""
    return ActionForm(meta=_csrf_meta())


class Check:
    """A WTForms validator running a rule's check and keeping the normalised value it
    returns."""

    def __init__(self, rule: TextRule) -> None:
        self.rule = rule

    def __call__(self, form: Form, field: StringField) -> None:
        try:
            field.data = self.rule.check(field.data or "")
        except ValueError as error:
            raise ValidationError(str(error)) from None


def _strip(value: str | None) -> str | None:
    return value.strip() if isinstance(value, str) else value


def _length(rule: TextRule) -> Length:
    """Its bounds (a minimum of 1 is the "required" validator's business, and its message)."""
    return Length(min=rule.min_length if rule.min_length > 1 else -1, max=rule.max_length)


def text_field(label: Any, rule: TextRule, *, kind: type[StringField] = StringField) -> Any:
    """A text field under ``rule``: required, within its lengths, passing its check."""
    return kind(
        label,
        filters=[_strip],
        validators=[DataRequired(), _length(rule), Check(rule)],
    )


def password_field(label: Any, rule: TextRule) -> Any:
    """Passwords are taken as typed (no stripping); ``rule`` bounds their length."""
    return PasswordField(
        label,
        validators=[InputRequired(), _length(rule), Check(rule)],
    )


def repeat_field(label: Any, of: str) -> Any:
    return PasswordField(label, validators=[InputRequired(), EqualTo(of, message=NO_MATCH)])


class RegistrationForm(CSRFForm):
    """The password is optional: without one, the account signs in with a code by email
    (the first one finishes signing up) or a passkey."""

    username = text_field(L_("Username"), USERNAME)
    email = text_field(L_("Email"), EMAIL)
    password = PasswordField(
        L_("Password"), validators=[Optional(), _length(NEW_PASSWORD), Check(NEW_PASSWORD)]
    )
    confirm_password = PasswordField(
        L_("Repeat the password"), validators=[EqualTo("password", message=NO_MATCH)]
    )
    submit = SubmitField(L_("Sign up"))


class FederatedSignUpForm(CSRFForm):
    """A new account for an identity from another provider: only the username is asked (the
    address is the provider's, verified there)."""

    username = text_field(L_("Username"), USERNAME)
    submit = SubmitField(L_("Create my account"))


class LoginForm(CSRFForm):
    email = text_field(L_("Email"), EMAIL)
    password = password_field(L_("Password"), PASSWORD)
    remember = BooleanField(L_("Remember me"))
    submit = SubmitField(L_("Sign in"))


class LoginCodeRequestForm(CSRFForm):
    email = text_field(L_("Email"), EMAIL)
    remember = BooleanField(L_("Remember me"))
    submit = SubmitField(L_("Email me a code"))


class LoginCodeForm(CSRFForm):
    code = text_field(L_("Code from the email"), CODE)
    submit = SubmitField(L_("Sign in"))


class RequestResetForm(CSRFForm):
    email = text_field(L_("Email"), EMAIL)
    submit = SubmitField(L_("Send me a reset link"))


class ResendConfirmationForm(CSRFForm):
    email = text_field(L_("Email"), EMAIL)
    submit = SubmitField(L_("Send the link again"))


class ResetPasswordForm(CSRFForm):
    password = password_field(L_("Password"), NEW_PASSWORD)
    confirm_password = repeat_field(L_("Repeat the password"), of="password")
    submit = SubmitField(L_("Set my new password"))


class ChangePasswordForm(CSRFForm):
    password = password_field(L_("Password"), NEW_PASSWORD)
    confirm_password = repeat_field(L_("Repeat the password"), of="password")
    submit = SubmitField(L_("Change my password"))


class PasswordForm(CSRFForm):
    password = password_field(L_("Your password"), PASSWORD)
    submit = SubmitField(L_("Confirm"))


class CodeForm(CSRFForm):
    code = text_field(L_("Code"), CODE)
    submit = SubmitField(L_("Verify"))


class SecondStepForm(CodeForm):
    trust_browser = BooleanField(L_("Remember this browser"))


class EnrolmentForm(CSRFForm):
    """Turning two-factor on: a code from the new secret (the page needs a recent
    authentication, the fresh proof)."""

    code = text_field(L_("Code from the app"), CODE)
    submit = SubmitField(L_("Turn on"))


class ChangeEmailForm(CSRFForm):
    new_email = text_field(L_("New email address"), EMAIL)
    submit = SubmitField(L_("Change my address"))


class DeleteAccountForm(CSRFForm):
    aliases: ClassVar[dict[str, str]] = {"username": "confirm_username"}
    confirm_username = text_field(L_("Type your username to confirm"), USERNAME)
    submit = SubmitField(L_("Delete my account"))


class ActionForm(CSRFForm):
    """A form that is only a button: logout, resend confirmation, confirm my address."""

    submit = SubmitField(L_("Submit"))


class PreferencesForm(CSRFForm):
    """Choices are set per request: the deployment's languages, this machine's zones."""

    language = SelectField(L_("Language"), validate_choice=True)
    time_zone = SelectField(L_("Time zone"), validate_choice=True)
    submit = SubmitField(L_("Save"))


class TextForm(CSRFForm):
    title = text_field(L_("Title"), TEXT_TITLE)
    content = text_field(L_("Content"), TEXT_CONTENT, kind=TextAreaField)
    submit = SubmitField(L_("Post"))
