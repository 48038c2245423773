"""The endpoints applications call directly (no browser, no cookie, no CSRF): token (RFC 6749
§3.2), userinfo (OIDC Core §5.3), introspection (RFC 7662) and revocation (RFC 7009).

They take ``application/x-www-form-urlencoded`` bodies, authenticate the client by HTTP Basic
or by ``client_id``/``client_secret`` in the body (RFC 6749 §2.3.1; never both), and answer
errors the OAuth way (``{"error", "error_description"}``; 401 with ``WWW-Authenticate`` for
a client or token that failed), with ``Cache-Control: no-store`` on anything holding a
token. CORS is open (no cookies are read here), so a single-page application can call them.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

from pydantic import ValidationError
from quart import Blueprint, Response, jsonify, request
from quart.typing import ResponseReturnValue
from quart_schema import DataSource, document_request, document_response
from werkzeug.datastructures import MultiDict

from shared.models import Client
from shared.services.identity import access, registration, tokens
from shared.services.identity.tokens import TokenError
from web.blueprints.oauth_models import (
    IntrospectionIn,
    IntrospectionOut,
    OAuthError,
    RegistrationIn,
    RegistrationOut,
    RevocationIn,
    Revoked,
    TokenIn,
    TokenOut,
    UserinfoOut,
)
from web.extensions import services
from web.ratelimit import limit_posts

blueprint = Blueprint("oauth", __name__)
CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Headers": "Authorization, Content-Type",
    "Access-Control-Allow-Methods": "GET, POST",
    "Access-Control-Max-Age": "600",
}


@blueprint.after_request
async def no_store_and_cors(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    response.headers.update(CORS_HEADERS)
    return response


def _error(error: TokenError) -> ResponseReturnValue:
    response = jsonify({"error": error.error, "error_description": error.description})
    if error.status == 401:
        response.headers["WWW-Authenticate"] = 'Basic realm="oauth", charset="UTF-8"'
    return response, error.status


@dataclass(frozen=True, slots=True)
class _Form:
    values: dict[str, str]
    basic: tuple[str, str] | None


async def _form() -> _Form:
    if request.mimetype != "application/x-www-form-urlencoded":
        raise TokenError("invalid_request", "send the parameters as a form (x-www-form-urlencoded)")
    raw: MultiDict[str, str] = await request.form
    repeated = sorted(name for name in raw if len(raw.getlist(name)) > 1)
    if repeated:
        raise TokenError("invalid_request", f"repeated parameter: {', '.join(repeated)}")
    return _Form({name: raw[name] for name in raw}, _basic())


def _basic() -> tuple[str, str] | None:
    """HTTP Basic credentials: each part form-encoded, then base64 (RFC 6749 §2.3.1)."""
    header = request.headers.get("Authorization", "")
    if not header.lower().startswith("basic "):
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError) as error:
        raise TokenError("invalid_client", "malformed Basic credentials", 401) from error
    client_id, colon, secret = decoded.partition(":")
    if not colon:
        raise TokenError("invalid_client", "malformed Basic credentials", 401)
    return unquote_plus(client_id), unquote_plus(secret)


async def _client(form: _Form, *, need_secret: bool = False) -> Client:
    body_id, body_secret = form.values.get("client_id"), form.values.get("client_secret")
    secret: str | None
    if form.basic is not None:
        if body_secret is not None or body_id not in (None, form.basic[0]):
            raise TokenError("invalid_request", "one way of authenticating the client, not two")
        client_id, secret = form.basic
    else:
        client_id, secret = body_id or "", body_secret
    if not client_id:
        raise TokenError("invalid_client", "the client is not identified", 401)
    return await tokens.authenticate(services(), client_id, secret, need_secret=need_secret)


@blueprint.post("/oauth/token")
@document_request(TokenIn, source=DataSource.FORM)
@document_response(TokenOut, 200)
@document_response(OAuthError, 400)
@document_response(OAuthError, 401)
async def token() -> ResponseReturnValue:
    """Exchange a code, rotate a refresh token, or get a token for the client itself."""
    ctx = services()
    try:
        form = await _form()
        client = await _client(form)
        values = form.values
        grant_type = values.get("grant_type")
        if grant_type == "authorization_code":
            issued = await tokens.exchange_code(
                ctx,
                client,
                values.get("code", ""),
                values.get("redirect_uri", ""),
                values.get("code_verifier"),
            )
        elif grant_type == "refresh_token":
            issued = await tokens.refresh(
                ctx, client, values.get("refresh_token", ""), values.get("scope")
            )
        elif grant_type == "client_credentials":
            issued = await tokens.for_service(ctx, client, values.get("scope"))
        else:
            raise TokenError("unsupported_grant_type", "grant_type is not one this server has")
    except TokenError as error:
        return _error(error)
    return jsonify(issued.as_json())


def _bearer() -> str | None:
    header = request.headers.get("Authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip()
    return None


def _invalid_token(description: str, status: int = 401) -> ResponseReturnValue:
    response = jsonify({"error": "invalid_token", "error_description": description})
    quoted = description.replace('"', "'")
    response.headers["WWW-Authenticate"] = (
        f'Bearer error="invalid_token", error_description="{quoted}"'
    )
    return response, status


@blueprint.route("/oauth/userinfo", methods=["GET", "POST"])
@document_response(UserinfoOut, 200)
@document_response(OAuthError, 401)
async def userinfo() -> ResponseReturnValue:
    """The claims the access token's scopes release (Bearer token, RFC 6750 §2.1)."""
    token = _bearer()
    if token is None:
        response = jsonify({"error": "invalid_request", "error_description": "no access token"})
        response.headers["WWW-Authenticate"] = 'Bearer realm="userinfo"'
        return response, 401
    try:
        claims: dict[str, Any] = await access.userinfo(services(), token)
    except access.InvalidToken as error:
        return _invalid_token(str(error))
    return jsonify(claims)


async def _about_a_token(*, need_secret: bool) -> tuple[Client, str, str | None]:
    """Introspection's and revocation's request: the client, the token, the type hint."""
    form = await _form()
    client = await _client(form, need_secret=need_secret)
    token = form.values.get("token")
    if not token:
        raise TokenError("invalid_request", "token is required")
    return client, token, form.values.get("token_type_hint")


@blueprint.post("/oauth/introspect")
@document_request(IntrospectionIn, source=DataSource.FORM)
@document_response(IntrospectionOut, 200)
@document_response(OAuthError, 400)
@document_response(OAuthError, 401)
async def introspect() -> ResponseReturnValue:
    """Whether a token is active, and what it says (confidential clients only)."""
    try:
        client, token, hint = await _about_a_token(need_secret=True)
    except TokenError as error:
        return _error(error)
    return jsonify(await access.introspect(services(), client, token, hint))


@blueprint.post("/oauth/revoke")
@document_request(RevocationIn, source=DataSource.FORM)
@document_response(Revoked, 200)
@document_response(OAuthError, 400)
@document_response(OAuthError, 401)
async def revoke() -> ResponseReturnValue:
    """Revoke a token; the answer is 200 whether or not it was valid (RFC 7009 §2.2)."""
    try:
        client, token, hint = await _about_a_token(need_secret=False)
    except TokenError as error:
        return _error(error)
    await access.revoke(services(), client, token, hint)
    return jsonify({})  # RFC 7009 §2.2: the body is not read; an empty object is still JSON


@blueprint.post("/oauth/register")
@limit_posts("register-client")
@document_request(RegistrationIn)
@document_response(RegistrationOut, 201)
@document_response(OAuthError, 400)
@document_response(OAuthError, 404)
async def register_client() -> ResponseReturnValue:
    """Dynamic client registration (RFC 7591), when OIDC_DYNAMIC_REGISTRATION is on (404
    otherwise). A confidential client's secret is in the answer, once."""
    if not services().settings.OIDC_DYNAMIC_REGISTRATION:
        answer = {"error": "not_found", "error_description": "registration is not open here"}
        return jsonify(answer), 404
    body = await request.get_json(silent=True) if request.is_json else None
    try:
        metadata = RegistrationIn.model_validate(body)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in error.errors()
        )
        described = problems if body is not None else "send the metadata as a JSON object"
        return jsonify({"error": "invalid_client_metadata", "error_description": described}), 400
    try:
        answer = await registration.register(
            services(), registration.Metadata(**metadata.model_dump())
        )
    except registration.RegistrationError as error:
        return jsonify({"error": error.error, "error_description": error.description}), 400
    return jsonify(answer), 201
