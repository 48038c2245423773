"""Where the account is signed in: listed, ended one by one or all but this one; the browsers
its owner asked to remember, listed and forgotten one by one."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel
from quart_schema import document_response, validate_request, validate_response

from shared.i18n import N_
from shared.i18n import gettext as _
from shared.services import sessions, signin, trusted_browsers
from shared.services.sessions import Current
from web.api.base import ApiResult, blueprint, signed_in
from web.api.models import Empty, Message
from web.auth import device_cookie, end_session
from web.extensions import services
from web.problems import Problem, problem


class SessionOut(BaseModel):
    id: str  # the public id: the secret one stays in the signed cookie
    device: str
    client_address: str
    created_at: datetime
    last_seen_at: datetime
    # How the sign-in was made (RFC 8176 values: pwd, otp, hwk, swk, user, mfa) and when its
    # person last proved who they are.
    methods: list[str]
    authenticated_at: datetime
    current: bool


class SessionsOut(BaseModel):
    sessions: list[SessionOut]


class Ended(BaseModel):
    detail: str
    ended: int


@blueprint.get("/sessions")
@validate_response(SessionsOut, 200)
@signed_in
async def list_sessions(current: Current) -> ApiResult:
    """Where this account is signed in, most recently used first."""
    records = await sessions.active(services(), current.user.id)
    return SessionsOut(
        sessions=[
            SessionOut(
                id=record.public_id,
                device=record.device,
                client_address=record.client_address,
                created_at=record.created_at,
                last_seen_at=record.last_seen_at,
                methods=record.amr,
                authenticated_at=record.authenticated_at,
                current=record.id == current.session.id,
            )
            for record in records
        ]
    ), 200


@blueprint.post("/sessions/<public_id>/revoke")
@validate_request(Empty)
@validate_response(Message, 200)
@document_response(Problem, 404)
@signed_in
async def revoke_session(current: Current, public_id: str, data: Empty) -> ApiResult:
    """End one sign-in of this account (this one too: that is signing out)."""
    if public_id == current.session.public_id:
        await end_session()
        return Message(detail=_("Signed out.")), 200
    if not await sessions.revoke(services(), current.user.id, public_id, by=current.session.id):
        return problem(
            404, N_("No such session"), N_("This account has no live session with that id.")
        )
    return Message(detail=_("That session has been ended.")), 200


@blueprint.post("/sessions/revoke-others")
@validate_request(Empty)
@validate_response(Ended, 200)
@signed_in
async def revoke_other_sessions(current: Current, data: Empty) -> ApiResult:
    """Sign out everywhere else: every sign-in of this account but this one ends."""
    ended = await sessions.revoke_others(services(), current.user.id, keep=current.session.id)
    return Ended(detail=_("Signed out everywhere else."), ended=ended), 200


class TrustedBrowserOut(BaseModel):
    id: int
    device: str
    client_address: str
    created_at: datetime
    expires_at: datetime  # after this, signing in there asks for the second step again
    current: bool  # this browser


class TrustedBrowsersOut(BaseModel):
    trusted_browsers: list[TrustedBrowserOut]


@blueprint.get("/trusted-browsers")
@validate_response(TrustedBrowsersOut, 200)
@signed_in
async def list_trusted_browsers(current: Current) -> ApiResult:
    """The browsers this account's owner asked to remember on a second step: signing in from
    one needs the first factor only, until ``expires_at``."""
    this = signin.device_id(services(), device_cookie())
    browsers = await trusted_browsers.listed(services(), current.user.id)
    return TrustedBrowsersOut(
        trusted_browsers=[
            TrustedBrowserOut(
                id=browser.id,
                device=browser.device,
                client_address=browser.client_address,
                created_at=browser.created_at,
                expires_at=browser.expires_at,
                current=browser.device_id == this,
            )
            for browser in browsers
        ]
    ), 200


@blueprint.post("/trusted-browsers/<int:browser_id>/forget")
@validate_request(Empty)
@validate_response(Message, 200)
@document_response(Problem, 404)
@signed_in
async def forget_trusted_browser(current: Current, browser_id: int, data: Empty) -> ApiResult:
    """Forget one remembered browser: signing in there asks for the second step again."""
    if not await trusted_browsers.end(services(), current.user.id, browser_id):
        return problem(
            404, N_("No such browser"), N_("This account remembers no browser with that id.")
        )
    return Message(detail=_("That browser is forgotten.")), 200
