"""The identity provider's browser side (OpenID Connect): discovery, the key set, the
authorization endpoint with its consent page, and RP-initiated logout. The token, userinfo,
introspection and revocation endpoints, which applications call directly, are in
:mod:`web.blueprints.oauth`.

Every decision is the use cases' (:mod:`shared.services.identity`); these handlers read the
request, send the person to sign in (or prove it again) and back, and translate the outcome
into a page or a redirect.
"""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import urlencode, urlsplit

from quart import Blueprint, Response, jsonify, redirect, request, url_for
from quart.typing import ResponseReturnValue
from werkzeug.datastructures import MultiDict

from shared import i18n
from shared.i18n import gettext as _
from shared.services.identity import authorize, clients, discovery, logout_requests
from shared.services.identity import keys as signing_keys
from shared.services.identity.requests import AuthorizationRequest, Refusal, Unredirectable, judge
from shared.tokens import Purpose
from web import locale
from web.auth import current_sign_in, end_session
from web.extensions import services
from web.forms import ActionForm
from web.headers import form_action_to
from web.templating import render_template

blueprint = Blueprint("identity", __name__)

ASKED = "asked"  # our own parameter: when this request sent the person to sign in again
ASKED_MAX_AGE = 900  # seconds: a sign-in flow that takes longer starts over


@blueprint.get("/.well-known/jwks.json")
async def jwks() -> ResponseReturnValue:
    """Every published key's public half. Cached for OIDC_JWKS_MAX_AGE: a new key is
    published OIDC_KEY_PUBLISH_AHEAD (at least as long) before it signs."""
    context = services()
    response = jsonify(await signing_keys.key_set(context))
    response.headers["Cache-Control"] = f"public, max-age={context.settings.OIDC_JWKS_MAX_AGE}"
    response.headers["Access-Control-Allow-Origin"] = "*"  # public keys, for any client
    return response


@blueprint.get("/.well-known/openid-configuration")
async def openid_configuration() -> ResponseReturnValue:
    """OpenID Connect Discovery 1.0 §3 (and RFC 8414's fields for the OAuth endpoints)."""
    response = jsonify(discovery.document(services().settings))
    response.headers["Cache-Control"] = "public, max-age=3600"
    response.headers["Access-Control-Allow-Origin"] = "*"
    return response


def _parameters(values: MultiDict[str, str]) -> dict[str, str] | str:
    """The request's parameters, or what is wrong with them: none may be repeated
    (RFC 6749 §3.1)."""
    repeated = sorted(name for name in values if len(values.getlist(name)) > 1)
    if repeated:
        return f"repeated parameter: {', '.join(repeated)}"
    return {name: values[name] for name in values}


async def _unredirectable(message: str) -> ResponseReturnValue:
    page = await render_template(
        "errors/error.html",
        title=_("This sign-in link is not valid"),
        code=400,
        message=i18n.gettext(message)
        + " "
        + _(
            "Go back to the application and try again; if it happens again, tell the people who "
            "run it."
        ),
    )
    return page, 400


def _asked_at(values: dict[str, str], client_id: str) -> datetime | None:
    stamp = services().tokens.loads(
        Purpose.OIDC_ASKED, values.get(ASKED, ""), max_age=ASKED_MAX_AGE
    )
    if stamp is None or stamp.get("client") != client_id or not isinstance(stamp.get("at"), float):
        return None
    return datetime.fromtimestamp(stamp["at"], UTC)


def _come_back(values: dict[str, str], client_id: str) -> str:
    """This request, to come back to once the person has signed in (again)."""
    stamp = {"client": client_id, "at": datetime.now(UTC).timestamp()}
    again = {**values, ASKED: services().tokens.dumps(Purpose.OIDC_ASKED, stamp)}
    return f"{url_for('identity.authorize_endpoint')}?{urlencode(again)}"


@blueprint.route("/oauth/authorize", methods=["GET", "POST"])
async def authorize_endpoint() -> ResponseReturnValue:
    """OpenID Connect Core §3.1.2 (GET and POST, §3.1.2.1)."""
    ctx = services()
    issuer = ctx.settings.base_url
    values = _parameters(request.args if request.method == "GET" else await request.form)
    if isinstance(values, str):
        return await _unredirectable(
            _("The application's request is malformed (%(reason)s).") % {"reason": values}
        )
    client = await clients.by_id(ctx, values.get("client_id", ""))
    try:
        judged = judge(values, client)
        current = await current_sign_in()
        step = await authorize.decide(
            ctx, judged, current, asked_at=_asked_at(values, judged.client.client_id)
        )
    except Unredirectable as error:
        return await _unredirectable(error.message)
    except Refusal as refusal:
        return await _to_application(refusal.location(issuer))
    # OpenID Connect Core §3.1.2.1: the application's preferred languages for the pages
    # that follow (sign-in, consent), unless this browser chose one already.
    locale.prefer(list(judged.ui_locales))
    if step.step is authorize.Step.CODE:
        assert step.code is not None
        return await _to_application(judged.answer(issuer, step.code))
    back = _come_back(values, judged.client.client_id)
    if step.step is authorize.Step.SIGN_IN:
        if judged.login_hint:
            return redirect(url_for("accounts.login", next=back, login_hint=judged.login_hint))
        return redirect(url_for("accounts.login", next=back))
    if step.step is authorize.Step.REAUTHENTICATE:
        return redirect(url_for("reauthentication.reauthenticate", next=back))
    return await _consent_page(judged, values)


async def _to_application(location: str) -> ResponseReturnValue:
    """Back to the application. Usually a redirect; but when this request is the end of a
    chain that began with one of this site's own forms (signing in, the second step,
    re-authenticating: ``Sec-Fetch-Site: same-origin``), browsers hold the redirect to the
    form's ``form-action 'self'`` and refuse it. Then a page takes the person on instead (a
    meta refresh, and a link), which is a navigation of its own."""
    if request.headers.get("Sec-Fetch-Site") != "same-origin":
        return redirect(location)
    page = await render_template(
        "identity/continue.html", title=_("Signed in"), location=location, origin=_origin(location)
    )
    return page, 200, {"Referrer-Policy": "no-referrer"}


async def _consent_page(judged: AuthorizationRequest, values: dict[str, str]) -> Response:
    current = await current_sign_in()
    assert current is not None
    page = await render_template(
        "identity/consent.html",
        title=_("Sign in to %(name)s") % {"name": judged.client.name},
        client=judged.client,
        scopes=judged.scopes,
        offline="offline_access" in judged.scopes,
        account=current.user,
        values={k: v for k, v in values.items() if k != ASKED},
        form=await ActionForm.from_request(),
        origin=_origin(judged.redirect_uri),
    )
    response = Response(page)
    form_action_to(response, _origin(judged.redirect_uri))
    return response


def _origin(uri: str) -> str:
    parts = urlsplit(uri)
    return f"{parts.scheme}://{parts.netloc}"


@blueprint.post("/oauth/consent")
async def consent() -> ResponseReturnValue:
    """The consent page's answer: the request again (judged again: nothing in the form is
    trusted), and "allow" or "deny"."""
    ctx = services()
    form_data = await request.form
    form = await ActionForm.from_request()
    form.validate_on_submit()  # raises on a bad CSRF token
    fields = {k: v for k, v in form_data.items() if k not in ("csrf_token", "decision", "submit")}
    client = await clients.by_id(ctx, fields.get("client_id", ""))
    try:
        judged = judge(fields, client)
    except Unredirectable as error:
        return await _unredirectable(error.message)
    except Refusal as refusal:
        return redirect(refusal.location(ctx.settings.base_url))
    current = await current_sign_in()
    if current is None:
        return redirect(url_for("accounts.login", next=_come_back(fields, judged.client.client_id)))
    if form_data.get("decision") != "allow":
        denied = Refusal("access_denied", "the person declined", judged.redirect_uri, judged.state)
        return redirect(denied.location(ctx.settings.base_url))
    code = await authorize.consent(ctx, judged, current)  # ReauthenticationRequired: the page
    return redirect(judged.answer(ctx.settings.base_url, code))


@blueprint.route("/oauth/logout", methods=["GET", "POST"])
async def end_session_endpoint() -> ResponseReturnValue:
    """OpenID Connect RP-Initiated Logout 1.0. Signed out at once when the application's
    ``id_token_hint`` names this very sign-in; otherwise the person is asked (a link on
    another site must not sign anyone out). ``post_logout_redirect_uri`` must be one the
    application registered, matched exactly, and goes with the ``state`` it sent."""
    values = _parameters(request.args if request.method == "GET" else await request.form)
    if isinstance(values, str):
        return await _unredirectable(
            _("The sign-out request is malformed (%(reason)s).") % {"reason": values}
        )
    try:
        leaving = await logout_requests.judge(services(), values)
    except logout_requests.BadLogout as error:
        return await _unredirectable(error.message)
    current = await current_sign_in()
    if current is None:
        return await _signed_out(leaving)
    if leaving.names(current):
        await end_session()
        return await _signed_out(leaving)
    page = await render_template(
        "identity/logout.html",
        title=_("Sign out"),
        leaving=leaving,
        account=current.user,
        form=await ActionForm.from_request(),
    )
    response = Response(page)
    if leaving.target is not None:
        form_action_to(response, _origin(leaving.target))
    return response


@blueprint.post("/oauth/logout/confirm")
async def confirm_logout() -> ResponseReturnValue:
    form = await ActionForm.from_request()
    form.validate_on_submit()  # raises on a bad CSRF token
    fields = {k: v for k, v in (await request.form).items() if k not in ("csrf_token", "submit")}
    try:
        leaving = await logout_requests.judge(services(), fields)
    except logout_requests.BadLogout as error:
        return await _unredirectable(error.message)
    if await current_sign_in() is not None:
        await end_session()
    return await _signed_out(leaving)


async def _signed_out(leaving: logout_requests.Leaving) -> ResponseReturnValue:
    if leaving.target is not None:
        return redirect(leaving.location())
    return await render_template("identity/signed_out.html", title=_("Signed out"), leaving=leaving)
