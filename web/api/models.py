"""The types and models more than one area of the API uses; each field's type is derived
from its rule in :mod:`shared.validation`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, StrictBool

from shared.models import User
from shared.validation import CODE, EMAIL, NEW_PASSWORD, PASSWORD, TOKEN, USERNAME

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


class EmailIn(Model):
    email: EmailAddress


class TokenIn(Model):
    token: Token


class Message(BaseModel):
    detail: str


class SecondStepOut(BaseModel):
    detail: str
    second_step: bool


class CodeIn(Model):
    code: Code


class SecondStepIn(Model):
    code: Code
    # Remember this browser (TRUSTED_BROWSER_DAYS): its next sign-ins to this account need
    # one factor, until trust ends (see docs/security.md).
    trust_browser: StrictBool = False


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


def user_out(user: User) -> UserOut:
    return UserOut(
        id=user.id,
        username=user.username,
        email=user.email,
        confirmed=user.confirmed_at is not None,
        created_at=user.created_at,
    )


class ProofIn(Model):
    """For a sensitive change: a sign-in that authenticated within REAUTHENTICATION_TIMEOUT
    needs nothing more; otherwise the answer is 401 with the problem type
    ``/problems/reauthentication-required``: re-authenticate (``/api/v1/reauthenticate``),
    or send the password (or, with two-factor sign-in on, a current code) here."""

    password: Password | None = None
    code: Code | None = None
