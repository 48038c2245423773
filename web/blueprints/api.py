"""The JSON API (``/api/v1``), on the same actions, validators and rate limits as the forms.

Sessions are the same quart-auth cookie. Against cross-site requests, every state-changing
call must be ``application/json`` (a cross-site HTML form cannot send that without a CORS
preflight, which this API never grants) and, when the browser sends an ``Origin``, it must be
this service's ``BASE_URL``. Errors are ``application/problem+json`` (RFC 9457).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field
from quart import Blueprint, request, session
from quart.typing import ResponseReturnValue
from quart_schema import (
    RequestSchemaValidationError,
    document_response,
    validate_request,
    validate_response,
)
from quart_schema.openapi import OpenAPIProvider
from werkzeug.routing import Rule

from shared.models import User
from shared.services import (
    account_data,
    accounts,
    bounces,
    email_change,
    events,
    passkeys,
    passwords,
    sessions,
    signin,
    two_factor,
)
from shared.services.account_data import DeleteOutcome
from shared.services.accounts import ConfirmOutcome, TooManyRegistrations, UsernameTaken
from shared.services.email_change import ConfirmOutcome as EmailChangeOutcome
from shared.services.email_change import RequestOutcome
from shared.services.passkeys import Outcome as PasskeyOutcome
from shared.services.passwords import ChangeOutcome
from shared.services.proof import Proof
from shared.services.two_factor import Outcome as TwoFactorOutcome
from shared.validation import (
    CODE,
    EMAIL,
    INVALID_TOKEN,
    NEW_PASSWORD,
    PASSWORD,
    TOKEN,
    USERNAME,
    InvalidInput,
)
from web import ratelimit
from web.auth import (
    SECOND_STEP,
    continue_session,
    current_account,
    current_session_id,
    current_sign_in,
    device_cookie,
    end_session,
    start_session,
)
from web.extensions import services
from web.problems import Problem, problem
from web.ratelimit import limit_posts

PREFIX = "/api/v1"
blueprint = Blueprint("api", __name__, url_prefix=PREFIX)
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# What an endpoint returns: a model (quart-schema validates and serialises it) with its
# status, or a problem Response.
ApiResult = ResponseReturnValue | tuple[BaseModel, int]


# --- models: each field's type is derived from its rule in shared.validation ---------------
Username = Annotated[str, USERNAME.field(), USERNAME.validator()]
EmailAddress = Annotated[str, EMAIL.field(), EMAIL.validator()]
NewPassword = Annotated[str, NEW_PASSWORD.field(), NEW_PASSWORD.validator()]
Password = Annotated[str, PASSWORD.field(), PASSWORD.validator()]
Token = Annotated[str, TOKEN.field(), TOKEN.validator()]
Code = Annotated[str, CODE.field(), CODE.validator()]


class Model(BaseModel):
    # python-re: the email pattern needs a look-ahead, which the default engine lacks.
    model_config = ConfigDict(extra="forbid", str_max_length=1000, regex_engine="python-re")


class Empty(Model):
    """No fields: the body is ``{}`` (state-changing calls always send JSON)."""


class RegisterIn(Model):
    username: Username
    email: EmailAddress
    password: NewPassword


class LoginIn(Model):
    email: EmailAddress
    password: Password
    remember: bool = False


class EmailIn(Model):
    email: EmailAddress


class TokenIn(Model):
    token: Token


class ResetIn(Model):
    token: Token
    password: NewPassword


class ChangePasswordIn(Model):
    current_password: Password
    password: NewPassword


class Message(BaseModel):
    detail: str


class SecondStepOut(BaseModel):
    detail: str
    second_step: bool


class CodeIn(Model):
    code: Code


class PasswordAndCodeIn(Model):
    password: Password
    code: Code


class EnrolmentConfirmIn(Model):
    """A code from the new secret, and the password: turning two-factor on needs a fresh
    proof that it is the owner, not only their session."""

    code: Code
    password: Password


class EnrolmentOut(BaseModel):
    secret: str
    otpauth_uri: str


class RecoveryCodesOut(BaseModel):
    recovery_codes: list[str]


class TwoFactorOut(BaseModel):
    enabled: bool
    recovery_codes_left: int


class DeliveryProblemOut(BaseModel):
    """Mail to the account's address bounced or was refused, so none is sent to it."""

    since: datetime
    reason: str
    can_retry: bool  # the owner may still ask once for the address to be tried again


class UserOut(BaseModel):
    id: int
    username: str
    email: str
    confirmed: bool
    created_at: datetime
    # Only in GET /me: why mail is not reaching the address, if it is not.
    delivery_problem: DeliveryProblemOut | None = None


# --- cross-site protection and errors ----------------------------------------------------------
@blueprint.before_request
async def protect_against_cross_site_requests() -> ResponseReturnValue | None:
    if request.method not in UNSAFE_METHODS:
        return None
    if request.mimetype != "application/json":
        return problem(415, "Unsupported media type", "Send the body as application/json.")
    origin = request.headers.get("Origin")
    if origin is not None and _origin(origin) != _origin(services().settings.base_url):
        return problem(403, "Cross-site request refused", "This origin may not call the API.")
    return None


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme.lower(), parts.netloc.lower()


@blueprint.errorhandler(RequestSchemaValidationError)
async def invalid_body(error: RequestSchemaValidationError) -> ResponseReturnValue:
    cause = error.validation_error
    errors: dict[str, list[str]] = {}
    if hasattr(cause, "errors"):
        for item in cause.errors():
            field = ".".join(str(part) for part in item["loc"]) or "body"
            message = str(item["msg"]).removeprefix("Value error, ")
            errors.setdefault(field, []).append(message)
    else:
        errors["body"] = ["The body must be a JSON object matching the schema."]
    return problem(422, "Invalid request", "Some fields are not valid.", errors=errors)


@blueprint.errorhandler(InvalidInput)
async def refused_input(error: InvalidInput) -> ResponseReturnValue:
    """A use case refused a field (a rule that needs the account or several fields)."""
    return problem(
        422, "Invalid request", "Some fields are not valid.", errors={error.field: [error.message]}
    )


def not_logged_in() -> ResponseReturnValue:
    return problem(401, "Not logged in", "Log in first.")


def invalid_token() -> ResponseReturnValue:
    return problem(400, "Invalid token", INVALID_TOKEN)


def wrong_password(field: str = "password") -> ResponseReturnValue:
    """The account's password, typed to confirm an operation, is not the right one."""
    detail = (
        "Your current password is not correct."
        if field == "current_password"
        else ("Your password is not correct.")
    )
    return problem(400, "Wrong password", detail, errors={field: [detail]})


def too_many_attempts(retry_after: int) -> ResponseReturnValue:
    return problem(
        429,
        "Too many attempts",
        f"Too many wrong passwords. Try again in {retry_after} s.",
        headers={"Retry-After": str(retry_after)},
    )


# --- endpoints ---------------------------------------------------------------------------------
@blueprint.post("/register")
@limit_posts("register")
@validate_request(RegisterIn)
@validate_response(Message, 202)
@document_response(Problem, 409)
@document_response(Problem, 422)
@document_response(Problem, 429)
async def register(data: RegisterIn) -> ApiResult:
    """Create an account; a confirmation email follows. The same answer for an address that
    already has an account (its owner is emailed instead), to prevent account enumeration."""
    try:
        await accounts.register(services(), data.username, data.email, data.password)
    except UsernameTaken:
        return problem(
            409,
            "Username taken",
            "That username is taken.",
            errors={"username": ["That username is taken."]},
        )
    except TooManyRegistrations as error:
        return problem(
            429,
            "Too many registrations",
            f"Many people are registering right now. Try again in {error.retry_after} s.",
            headers={"Retry-After": str(error.retry_after)},
        )
    return Message(detail="Check your email to confirm your address."), 202


@blueprint.post("/login")
@limit_posts("login")
@validate_request(LoginIn)
@validate_response(UserOut, 200)
@validate_response(SecondStepOut, 202)
@document_response(Problem, 401)
@document_response(Problem, 422)
@document_response(Problem, 429)
async def login(data: LoginIn) -> ApiResult:
    """Start a session (the same cookie as the site)."""
    outcome = await signin.login(
        services(),
        data.email,
        data.password,
        client=ratelimit.client_address(),
        device_cookie=device_cookie(),
        user_agent=request.headers.get("User-Agent", ""),
    )
    if outcome.locked_for:
        return problem(
            429, "Account temporarily locked",
            "Too many failed attempts for this account from here. Try again in "
            f"{outcome.locked_for} s, or reset your password.",
            headers={"Retry-After": str(outcome.locked_for)},
        )  # fmt: skip
    if outcome.second_step is not None:
        session[SECOND_STEP] = {"pending": outcome.second_step, "remember": data.remember}
        return SecondStepOut(
            detail="Password accepted. Send a code from your authenticator app (or a recovery "
            "code) to /api/v1/login/two-factor.",
            second_step=True,
        ), 202
    if outcome.user is None:
        return problem(
            401,
            "Login unsuccessful",
            "Please check email and password. Registered recently? Confirm your address first.",
        )
    await start_session(outcome.user, remember=data.remember, device_cookie=outcome.device_cookie)
    return _user(outcome.user), 200


@blueprint.post("/logout")
@validate_request(Empty)
@validate_response(Message, 200)
async def logout(data: Empty) -> ApiResult:
    await end_session()
    return Message(detail="Logged out."), 200


@blueprint.get("/me")
@validate_response(UserOut, 200)
@document_response(Problem, 401)
async def me() -> ApiResult:
    user = await current_account()
    if user is None:
        return not_logged_in()
    out = _user(user)
    found = await bounces.delivery_problem(services(), user)
    if found is not None:
        out.delivery_problem = DeliveryProblemOut(
            since=found.since, reason=found.reason, can_retry=found.can_retry
        )
    return out, 200


@blueprint.post("/confirm/request")
@limit_posts("confirm")
@validate_request(EmailIn)
@validate_response(Message, 202)
@document_response(Problem, 422)
@document_response(Problem, 429)
async def confirm_request(data: EmailIn) -> ApiResult:
    """Send a fresh confirmation link if the address has an account waiting for
    confirmation (at most one per 3 minutes; older links stop working); the same answer
    either way."""
    await accounts.request_confirmation(services(), data.email)
    return Message(detail="If an account with that address is waiting for confirmation, "
                   "a new link is on its way."), 202  # fmt: skip


@blueprint.post("/confirm")
@validate_request(TokenIn)
@validate_response(Message, 200)
@document_response(Problem, 400)
@document_response(Problem, 422)
async def confirm(data: TokenIn) -> ApiResult:
    outcome = await accounts.confirm(services(), data.token)
    if outcome is ConfirmOutcome.INVALID:
        return invalid_token()
    if outcome is ConfirmOutcome.ALREADY_CONFIRMED:
        return Message(detail="Your email address is already confirmed."), 200
    return Message(detail="Your email address is confirmed."), 200


@blueprint.post("/password-reset/request")
@limit_posts("reset")
@validate_request(EmailIn)
@validate_response(Message, 202)
@document_response(Problem, 422)
@document_response(Problem, 429)
async def password_reset_request(data: EmailIn) -> ApiResult:
    """Email a reset link if the address has an account; the same answer either way."""
    await passwords.request_reset(services(), data.email)
    return Message(detail="If an account exists for that email, you will receive "
                   "instructions to reset your password."), 202  # fmt: skip


@blueprint.post("/password-reset/confirm")
@limit_posts("reset")
@validate_request(ResetIn)
@validate_response(Message, 200)
@document_response(Problem, 400)
@document_response(Problem, 422)
@document_response(Problem, 429)
async def password_reset_confirm(data: ResetIn) -> ApiResult:
    if not await passwords.reset_password(
        services(), data.token, data.password, client=ratelimit.client_address()
    ):
        return invalid_token()
    return Message(detail="Your password has been updated! You are now able to log in"), 200


@blueprint.post("/password/change")
@validate_request(ChangePasswordIn)
@validate_response(Message, 200)
@document_response(Problem, 400)
@document_response(Problem, 401)
@document_response(Problem, 422)
@document_response(Problem, 429)
async def password_change(data: ChangePasswordIn) -> ApiResult:
    """Change the password; every other session ends, this one stays."""
    current = await current_sign_in()
    if current is None:
        return not_logged_in()
    result = await passwords.change_password(
        services(),
        current.user.id,
        data.current_password,
        data.password,
        keep_session=current.session.id,
    )
    if result.outcome is ChangeOutcome.LOCKED:
        return too_many_attempts(result.retry_after)
    if result.outcome is ChangeOutcome.WRONG_PASSWORD or result.user is None:
        return wrong_password("current_password")
    await continue_session(result.session_id)
    return Message(detail="Your password has been updated!"), 200


class SessionOut(BaseModel):
    id: str  # the public id: the secret one stays in the signed cookie
    device: str
    client_address: str
    created_at: datetime
    last_seen_at: datetime
    current: bool


class SessionsOut(BaseModel):
    sessions: list[SessionOut]


class Ended(BaseModel):
    detail: str
    ended: int


@blueprint.get("/sessions")
@validate_response(SessionsOut, 200)
@document_response(Problem, 401)
async def list_sessions() -> ApiResult:
    """Where this account is signed in, most recently used first."""
    current = await current_sign_in()
    if current is None:
        return not_logged_in()
    records = await sessions.active(services(), current.user.id)
    return SessionsOut(
        sessions=[
            SessionOut(
                id=record.public_id,
                device=record.device,
                client_address=record.client_address,
                created_at=record.created_at,
                last_seen_at=record.last_seen_at,
                current=record.id == current.session.id,
            )
            for record in records
        ]
    ), 200


@blueprint.post("/sessions/<public_id>/revoke")
@validate_request(Empty)
@validate_response(Message, 200)
@document_response(Problem, 401)
@document_response(Problem, 404)
async def revoke_session(public_id: str, data: Empty) -> ApiResult:
    """End one sign-in of this account (this one too: that is signing out)."""
    current = await current_sign_in()
    if current is None:
        return not_logged_in()
    if public_id == current.session.public_id:
        await end_session()
        return Message(detail="Signed out."), 200
    if not await sessions.revoke(services(), current.user.id, public_id):
        return problem(404, "No such session", "This account has no live session with that id.")
    return Message(detail="That session has been ended."), 200


@blueprint.post("/sessions/revoke-others")
@validate_request(Empty)
@validate_response(Ended, 200)
@document_response(Problem, 401)
async def revoke_other_sessions(data: Empty) -> ApiResult:
    """Sign out everywhere else: every sign-in of this account but this one ends."""
    current = await current_sign_in()
    if current is None:
        return not_logged_in()
    ended = await sessions.revoke_others(services(), current.user.id, keep=current.session.id)
    return Ended(detail="Signed out everywhere else.", ended=ended), 200


class ChangeEmailIn(Model):
    new_email: EmailAddress
    password: Password


@blueprint.post("/account/email")
@validate_request(ChangeEmailIn)
@validate_response(Message, 202)
@document_response(Problem, 400)
@document_response(Problem, 401)
@document_response(Problem, 422)
@document_response(Problem, 429)
async def change_email(data: ChangeEmailIn) -> ApiResult:
    """Ask to move the account to a new address: it receives a link, the current address a
    notice. The same answer whether or not the new address has an account."""
    user = await current_account()
    if user is None:
        return not_logged_in()
    result = await email_change.request_change(
        services(), user.id, data.new_email, data.password, sign_in=current_session_id()
    )
    if result.outcome is RequestOutcome.LOCKED:
        return too_many_attempts(result.retry_after)
    if result.outcome is RequestOutcome.WRONG_PASSWORD:
        return wrong_password()
    return Message(detail="Check the new address for a link to confirm the change."), 202


@blueprint.post("/account/email/retry")
@validate_request(Empty)
@validate_response(Message, 202)
@document_response(Problem, 401)
@document_response(Problem, 409)
async def retry_email_delivery(data: Empty) -> ApiResult:
    """After mail to the account's address bounced (see ``delivery_problem`` in ``/me``):
    try the address once more and resend the last message it missed. Once per account;
    after that, change the address."""
    user = await current_account()
    if user is None:
        return not_logged_in()
    if not await bounces.retry_for_owner(services(), user.id):
        return problem(
            409,
            "Nothing to retry",
            "There is no delivery problem to retry, or it was retried once already: change "
            "the address instead.",
        )
    return Message(detail="We will try your address again."), 202


@blueprint.post("/account/email/confirm")
@validate_request(TokenIn)
@validate_response(Message, 200)
@document_response(Problem, 400)
@document_response(Problem, 422)
async def confirm_email_change(data: TokenIn) -> ApiResult:
    if await email_change.confirm_change(services(), data.token) is not EmailChangeOutcome.CHANGED:
        return invalid_token()
    return Message(detail="Your email address has been changed."), 200


class DeleteIn(Model):
    password: Password
    username: Annotated[str, Field(min_length=1, max_length=USERNAME.max_length)]


class ProfileExport(BaseModel):
    username: str
    email: str
    confirmed_at: str | None
    created_at: str | None
    last_sign_in_at: str | None
    two_factor_enabled_at: str | None


class TextExport(BaseModel):
    title: str
    content: str
    created_at: str | None


class SessionExport(BaseModel):
    device: str
    client_address: str
    user_agent: str
    created_at: str | None
    last_seen_at: str | None
    expires_at: str | None
    ended_at: str | None


class EmailExport(BaseModel):
    kind: str
    to: str
    status: str
    queued_at: str | None
    sent_at: str | None


class PasskeyExport(BaseModel):
    name: str
    created_at: str | None
    last_used_at: str | None


class EventExport(BaseModel):
    kind: str
    at: str | None
    client_address: str
    device: str
    details: dict[str, Any]


class AccountExport(BaseModel):
    format: int
    profile: ProfileExport
    texts: list[TextExport]
    sessions: list[SessionExport]
    passkeys: list[PasskeyExport]
    events: list[EventExport]
    emails: list[EmailExport]


@blueprint.get("/account/export")
@validate_response(AccountExport, 200)
@document_response(Problem, 401)
async def export_account() -> ApiResult:
    """Everything stored about this account (profile, Texts, sign-ins, emails), as JSON."""
    user = await current_account()
    if user is None:
        return not_logged_in()
    data = await account_data.export_account(services(), user.id)
    return AccountExport.model_validate(data), 200


@blueprint.post("/account/delete")
@validate_request(DeleteIn)
@validate_response(Message, 200)
@document_response(Problem, 400)
@document_response(Problem, 401)
@document_response(Problem, 422)
@document_response(Problem, 429)
async def delete_account(data: DeleteIn) -> ApiResult:
    """Delete this account and everything that is its own; signs out. Needs the password
    and the username typed as confirmation."""
    user = await current_account()
    if user is None:
        return not_logged_in()
    result = await account_data.delete_account(services(), user.id, data.password, data.username)
    if result.outcome is DeleteOutcome.LOCKED:
        return too_many_attempts(result.retry_after)
    if result.outcome is DeleteOutcome.WRONG_CONFIRMATION:
        return problem(
            422,
            "Invalid request",
            "Some fields are not valid.",
            errors={"username": ["Type your username exactly."]},
        )
    if result.outcome is DeleteOutcome.WRONG_PASSWORD:
        return wrong_password()
    await end_session()
    return Message(detail="Your account has been deleted."), 200


def _refused(result: two_factor.Result) -> ResponseReturnValue | None:
    """The problem answer for a two-factor outcome other than DONE, if any."""
    if result.outcome is TwoFactorOutcome.LOCKED:
        return too_many_attempts(result.retry_after)
    if result.outcome is TwoFactorOutcome.WRONG_PASSWORD:
        return wrong_password()
    if result.outcome is TwoFactorOutcome.WRONG_CODE:
        return problem(
            400,
            "Wrong code",
            "That code is not right.",
            errors={"code": ["That code is not right."]},
        )
    if result.outcome is TwoFactorOutcome.NOT_APPLICABLE:
        return problem(409, "Not applicable", "Nothing to do: check two-factor's state first.")
    return None


@blueprint.post("/login/two-factor")
@limit_posts("login")
@validate_request(CodeIn)
@validate_response(UserOut, 200)
@document_response(Problem, 400)
@document_response(Problem, 409)
@document_response(Problem, 429)
async def login_second_step(data: CodeIn) -> ApiResult:
    """The second step of signing in to an account with two-factor sign-in on."""
    state = session.get(SECOND_STEP)
    if not isinstance(state, dict) or not isinstance(state.get("pending"), str):
        return problem(409, "Not applicable", "Sign in with the password first.")
    result = await two_factor.complete_sign_in(
        services(),
        state["pending"],
        data.code,
        client=ratelimit.client_address(),
        device_cookie=device_cookie(),
        user_agent=request.headers.get("User-Agent", ""),
    )
    refused = _refused(result)
    if refused is not None:
        if result.outcome is TwoFactorOutcome.NOT_APPLICABLE:
            session.pop(SECOND_STEP, None)
        return refused
    assert result.user is not None
    await start_session(
        result.user, remember=bool(state.get("remember")), device_cookie=result.device_cookie
    )
    return _user(result.user), 200


@blueprint.get("/two-factor")
@validate_response(TwoFactorOut, 200)
@document_response(Problem, 401)
async def two_factor_status() -> ApiResult:
    user = await current_account()
    if user is None:
        return not_logged_in()
    state = await two_factor.status(services(), user.id)
    return TwoFactorOut(enabled=state.enabled, recovery_codes_left=state.recovery_codes_left), 200


@blueprint.post("/two-factor/enrol")
@validate_request(Empty)
@validate_response(EnrolmentOut, 200)
@document_response(Problem, 401)
@document_response(Problem, 409)
async def two_factor_enrol(data: Empty) -> ApiResult:
    """A secret for an authenticator app; two-factor sign-in turns on when a code from it
    is sent to /two-factor/confirm."""
    user = await current_account()
    if user is None:
        return not_logged_in()
    enrolment = await two_factor.begin_enrolment(services(), user.id)
    if enrolment is None:
        return problem(409, "Already on", "Two-factor sign-in is on already.")
    return EnrolmentOut(secret=enrolment.secret, otpauth_uri=enrolment.uri), 200


@blueprint.post("/two-factor/confirm")
@validate_request(EnrolmentConfirmIn)
@validate_response(RecoveryCodesOut, 200)
@document_response(Problem, 400)
@document_response(Problem, 401)
@document_response(Problem, 409)
@document_response(Problem, 429)
async def two_factor_confirm(data: EnrolmentConfirmIn) -> ApiResult:
    """Turn two-factor sign-in on (with the account's password and a code from the new
    secret); the recovery codes are in the answer, once. The session's cookie is renewed."""
    user = await current_account()
    if user is None:
        return not_logged_in()
    result = await two_factor.confirm_enrolment(
        services(), user.id, data.code, data.password, sign_in=current_session_id()
    )
    refused = _refused(result)
    if refused is not None:
        return refused
    await continue_session(result.session_id)
    return RecoveryCodesOut(recovery_codes=result.recovery_codes), 200


@blueprint.post("/two-factor/recovery-codes")
@validate_request(PasswordAndCodeIn)
@validate_response(RecoveryCodesOut, 200)
@document_response(Problem, 400)
@document_response(Problem, 401)
@document_response(Problem, 409)
@document_response(Problem, 429)
async def two_factor_recovery_codes(data: PasswordAndCodeIn) -> ApiResult:
    """New recovery codes (the old ones stop working)."""
    user = await current_account()
    if user is None:
        return not_logged_in()
    result = await two_factor.regenerate_codes(services(), user.id, data.password, data.code)
    return _refused(result) or (RecoveryCodesOut(recovery_codes=result.recovery_codes), 200)


@blueprint.post("/two-factor/disable")
@validate_request(PasswordAndCodeIn)
@validate_response(Message, 200)
@document_response(Problem, 400)
@document_response(Problem, 401)
@document_response(Problem, 409)
@document_response(Problem, 429)
async def two_factor_disable(data: PasswordAndCodeIn) -> ApiResult:
    user = await current_account()
    if user is None:
        return not_logged_in()
    result = await two_factor.disable(
        services(), user.id, data.password, data.code, sign_in=current_session_id()
    )
    refused = _refused(result)
    if refused is not None:
        return refused
    await continue_session(result.session_id)
    return Message(detail="Two-factor sign-in is off."), 200


class CeremonyOut(BaseModel):
    ceremony: str
    options: dict[str, Any]


# WebAuthn's JSON (what PublicKeyCredential.toJSON() gives): binary fields as base64url. The
# shapes are stated so that a malformed answer is refused with 422 before py_webauthn reads
# it, and so that a fuzzer reading the schema sends structured answers, not only {}.
Base64Url = Annotated[str, Field(max_length=8_000, pattern=r"^[A-Za-z0-9_-]*$")]


class WebAuthnModel(BaseModel):
    # Browsers add fields (authenticatorAttachment, publicKey ...) that change nothing here.
    model_config = ConfigDict(extra="ignore", str_max_length=8_000, regex_engine="python-re")


class AttestationResponseIn(WebAuthnModel):
    clientDataJSON: Base64Url
    attestationObject: Base64Url
    transports: list[Annotated[str, Field(max_length=32)]] = Field(default=[], max_length=8)


class AssertionResponseIn(WebAuthnModel):
    clientDataJSON: Base64Url
    authenticatorData: Base64Url
    signature: Base64Url
    userHandle: Base64Url | None = None


class RegistrationCredentialIn(WebAuthnModel):
    id: Base64Url
    rawId: Base64Url
    type: Literal["public-key"]
    response: AttestationResponseIn


class AuthenticationCredentialIn(WebAuthnModel):
    id: Base64Url
    rawId: Base64Url
    type: Literal["public-key"]
    response: AssertionResponseIn


class ProofIn(Model):
    """A fresh proof that it is the owner: the password, or (with two-factor sign-in on) a
    current authenticator code or an unused recovery code."""

    password: Password | None = None
    code: Code | None = None


class PasskeyIn(Model):
    ceremony: Annotated[str, Field(min_length=1, max_length=64)]
    name: Annotated[str, Field(min_length=1, max_length=60)] = "Passkey"
    credential: RegistrationCredentialIn


class PasskeySignInIn(Model):
    ceremony: Annotated[str, Field(min_length=1, max_length=64)]
    credential: AuthenticationCredentialIn


class PasskeyOut(BaseModel):
    id: int
    name: str
    created_at: datetime
    last_used_at: datetime | None


class PasskeysOut(BaseModel):
    passkeys: list[PasskeyOut]


class PasswordIn(Model):
    password: Password


def _passkey_refused(result: passkeys.Result) -> ResponseReturnValue | None:
    if result.outcome is PasskeyOutcome.LOCKED:
        return too_many_attempts(result.retry_after)
    if result.outcome is PasskeyOutcome.WRONG_PASSWORD:
        return wrong_password()
    if result.outcome is PasskeyOutcome.WRONG_CODE:
        return problem(
            400,
            "Wrong code",
            "That code is not right.",
            errors={"code": ["That code is not right."]},
        )
    if result.outcome is PasskeyOutcome.REFUSED:
        return problem(400, "Passkey refused", result.detail or "The passkey was not accepted.")
    return None


@blueprint.get("/passkeys")
@validate_response(PasskeysOut, 200)
@document_response(Problem, 401)
async def list_passkeys() -> ApiResult:
    user = await current_account()
    if user is None:
        return not_logged_in()
    found = await passkeys.listed(services(), user.id)
    return PasskeysOut(
        passkeys=[
            PasskeyOut(id=p.id, name=p.name, created_at=p.created_at, last_used_at=p.last_used_at)
            for p in found
        ]
    ), 200


@blueprint.post("/passkeys/register/options")
@validate_request(ProofIn)
@validate_response(CeremonyOut, 200)
@document_response(Problem, 400)
@document_response(Problem, 401)
@document_response(Problem, 422)
@document_response(Problem, 429)
async def passkey_registration_options(data: ProofIn) -> ApiResult:
    """Options for navigator.credentials.create(), once the password (or a current
    authenticator code) proves it is the owner; answer with /passkeys/register."""
    user = await current_account()
    if user is None:
        return not_logged_in()
    offered = Proof(password=data.password or "", code=data.code or "")
    ceremony = await passkeys.registration_options(services(), user.id, offered)
    if isinstance(ceremony, passkeys.Result):
        return _passkey_refused(ceremony) or not_logged_in()
    return CeremonyOut(ceremony=ceremony.ceremony, options=ceremony.options), 200


@blueprint.post("/passkeys/register")
@validate_request(PasskeyIn)
@validate_response(Message, 201)
@document_response(Problem, 400)
@document_response(Problem, 401)
async def passkey_register(data: PasskeyIn) -> ApiResult:
    user = await current_account()
    if user is None:
        return not_logged_in()
    result = await passkeys.register(
        services(),
        user.id,
        data.ceremony,
        data.name,
        data.credential.model_dump(exclude_none=True),
        sign_in=current_session_id(),
    )
    refused = _passkey_refused(result)
    if refused is not None:
        return refused
    await continue_session(result.session_id)
    return Message(detail="Passkey added."), 201


@blueprint.post("/passkeys/<int:passkey_id>/remove")
@validate_request(PasswordIn)
@validate_response(Message, 200)
@document_response(Problem, 400)
@document_response(Problem, 401)
@document_response(Problem, 404)
@document_response(Problem, 429)
async def passkey_remove(passkey_id: int, data: PasswordIn) -> ApiResult:
    user = await current_account()
    if user is None:
        return not_logged_in()
    result = await passkeys.remove(
        services(), user.id, passkey_id, data.password, sign_in=current_session_id()
    )
    refused = _passkey_refused(result)
    if refused is not None:
        return refused
    await continue_session(result.session_id)
    return Message(detail="Passkey removed."), 200


@blueprint.post("/login/passkey/options")
@limit_posts("login")
@validate_request(Empty)
@validate_response(CeremonyOut, 200)
@document_response(Problem, 429)
async def passkey_sign_in_options(data: Empty) -> ApiResult:
    """Options for navigator.credentials.get(): any passkey of this site, or, while a
    two-factor sign-in waits for its second step, that account's."""
    state = session.get(SECOND_STEP)
    pending = state.get("pending") if isinstance(state, dict) else None
    ceremony = await passkeys.sign_in_options(
        services(),
        client=ratelimit.client_address(),
        second_step=pending if isinstance(pending, str) else None,
    )
    if isinstance(ceremony, passkeys.Result):
        return too_many_attempts(ceremony.retry_after)
    return CeremonyOut(ceremony=ceremony.ceremony, options=ceremony.options), 200


@blueprint.post("/login/passkey")
@limit_posts("login")
@validate_request(PasskeySignInIn)
@validate_response(UserOut, 200)
@validate_response(SecondStepOut, 202)
@document_response(Problem, 400)
@document_response(Problem, 429)
async def passkey_sign_in(data: PasskeySignInIn) -> ApiResult:
    """Sign in with a passkey (the whole sign-in, or a two-factor sign-in's second step).
    A passkey without user verification is one factor: on an account with two-factor
    sign-in, the answer is 202 and the second step follows, as after a password."""
    state = session.get(SECOND_STEP)
    remember = bool(state.get("remember")) if isinstance(state, dict) else False
    result = await passkeys.sign_in(
        services(),
        data.ceremony,
        data.credential.model_dump(exclude_none=True),
        client=ratelimit.client_address(),
        device_cookie=device_cookie(),
        user_agent=request.headers.get("User-Agent", ""),
    )
    refused = _passkey_refused(result)
    if refused is not None:
        return refused
    if result.second_step is not None:
        session[SECOND_STEP] = {"pending": result.second_step, "remember": remember}
        return SecondStepOut(
            detail="Passkey accepted. Send a code from your authenticator app (or a recovery "
            "code) to /api/v1/login/two-factor.",
            second_step=True,
        ), 202
    assert result.user is not None
    await start_session(result.user, remember=remember, device_cookie=result.device_cookie)
    return _user(result.user), 200


class EventOut(BaseModel):
    kind: str  # a dotted event type, e.g. user.password_changed
    description: str  # in words: "Password changed from Firefox on Windows, 2 hours ago"
    created_at: datetime
    client_address: str
    device: str


class ActivityOut(BaseModel):
    events: list[EventOut]
    page: int
    pages: int


@blueprint.get("/account/activity")
@validate_response(ActivityOut, 200)
@document_response(Problem, 401)
async def account_activity() -> ApiResult:
    """The account's security events, newest first, 20 a page (``?page=2``)."""
    user = await current_account()
    if user is None:
        return not_logged_in()
    page = await events.activity(services(), user.id, request.args.get("page", 1, type=int) or 1)
    return ActivityOut(
        events=[
            EventOut(
                kind=e.kind,
                description=events.in_words(e),
                created_at=e.created_at,
                client_address=e.client_address,
                device=e.device,
            )
            for e in page.events
        ],
        page=page.page,
        pages=page.pages,
    ), 200


def _user(user: User) -> UserOut:
    return UserOut(
        id=user.id,
        username=user.username,
        email=user.email,
        confirmed=user.confirmed_at is not None,
        created_at=user.created_at,
    )


class ApiOnlyProvider(OpenAPIProvider):
    """The spec describes the API only (not the HTML pages), and says that errors are
    application/problem+json."""

    def generate_rules(self) -> Any:
        for rule in super().generate_rules():
            if isinstance(rule, Rule) and rule.rule.startswith(PREFIX):
                yield rule

    # What any state-changing call can answer before its handler runs.
    COMMON_ERRORS = {
        400: "The body is not valid JSON.",
        403: "Cross-site request refused (Origin is not this service).",
        413: "The body is larger than this service accepts.",
        415: "The body is not application/json.",
        422: "The body is JSON, but not an object of the fields this call takes.",
    }

    def schema(self) -> dict[str, Any]:
        spec = super().schema()
        problem_ref = {"$ref": "#/components/schemas/Problem"}
        spec.setdefault("components", {}).setdefault("schemas", {})["Problem"] = (
            Problem.model_json_schema(ref_template="#/components/schemas/{model}")
        )
        for methods in spec.get("paths", {}).values():
            for method, operation in methods.items():
                responses = operation.setdefault("responses", {})
                if method.upper() in UNSAFE_METHODS:
                    for status, description in self.COMMON_ERRORS.items():
                        responses.setdefault(status, {
                            "description": description,
                            "content": {"application/json": {"schema": problem_ref}},
                        })  # fmt: skip
                if "requestBody" in operation:
                    operation["requestBody"]["required"] = True  # a JSON object, even {}
                for status, response in responses.items():
                    content = response.get("content", {})
                    if str(status).startswith(("4", "5")) and "application/json" in content:
                        content["application/problem+json"] = content.pop("application/json")
        return spec
