"""Signing in with another identity provider ("Continue with …"), and the account's
"Connected accounts". The rules are the use cases' (shared/services/federation/flows.py);
these handlers carry the flow's browser cookie and the waiting identity between the pages,
and turn each outcome into a page a person understands (never a provider's raw error).

Two cookies, both HttpOnly, SameSite=Lax (the provider's redirect back is a top-level GET)
and scoped to ``/login/federated``: ``federation_browser`` binds a flow to the browser that
started it; ``federation_pending`` (signed, 15 minutes) holds an identity waiting for its
owner to sign in to the matching account, or to choose a username.
"""

from __future__ import annotations

import logging

from quart import Blueprint, redirect, request, url_for
from quart.typing import ResponseReturnValue
from quart_auth import login_required
from werkzeug.wrappers.response import Response as WerkzeugResponse

from shared import i18n
from shared.federation import Provider
from shared.i18n import N_
from shared.i18n import gettext as _
from shared.ratelimit import Limit
from shared.services import proof
from shared.services.accounts import TooManyRegistrations, UsernameTaken
from shared.services.federation import client, flows
from shared.services.federation import connected as connected_accounts
from shared.services.refusals import NotApplicable
from shared.validation import InvalidInput
from web.auth import current_sign_in, sign_in_attempt, start_session
from web.blueprints.two_factor import remember_second_step
from web.extensions import services
from web.flashes import flash
from web.forms import ActionForm, FederatedSignUpForm
from web.ratelimit import client_address, limit_posts, too_many
from web.reauth import fresh_authentication
from web.security import safe_next
from web.templating import render_template

log = logging.getLogger(__name__)
blueprint = Blueprint("federation", __name__)

BROWSER_COOKIE = "federation_browser"
PENDING_COOKIE = "federation_pending"
COOKIE_PATH = "/login/federated"


def _cookie(response: WerkzeugResponse, name: str, value: str, max_age: int) -> None:
    response.set_cookie(
        name, value, max_age=max_age, path=COOKIE_PATH, httponly=True, samesite="Lax",
        secure=services().settings.secure_cookies,
    )  # fmt: skip


async def _problem(
    message: str, status: int, provider: Provider | None = None
) -> ResponseReturnValue:
    page = await render_template(
        "federation/problem.html",
        title=_("Signing in did not work"),
        message=message,
        provider=provider,
    )
    return page, status


async def _go(
    provider: Provider, *, intent: flows.Intent, next_url: str, user_id: int | None = None
) -> ResponseReturnValue:
    try:
        started = await flows.start(
            services(), provider, intent=intent, next_url=next_url, user_id=user_id
        )
    except (client.ProviderDown, client.ProviderRefused) as error:
        log.warning("federation: %s discovery failed: %s", provider.id, error)
        return await _problem(
            _("%(name)s cannot be reached right now. Try again in a few minutes.")
            % {"name": provider.name},
            502,
            provider,
        )
    response = redirect(started.url)
    _cookie(response, BROWSER_COOKIE, started.browser, flows.STATE_TTL)
    return response


@blueprint.get("/login/federated/<provider_id>")
async def begin(provider_id: str) -> ResponseReturnValue:
    """Leave for the provider (a link, not a form: browsers would hold the redirect to
    another site to the form's ``form-action 'self'``)."""
    ctx = services()
    provider = flows.provider_named(ctx, provider_id)
    if provider is None:
        return await _problem(N_("There is no such way to sign in here."), 404)
    # Each start keeps a state in Redis for a while: as many a minute per client address as
    # the forms' POSTs, so that a loop of requests cannot fill it.
    limit = Limit("federation-start", ctx.settings.POSTS_PER_MINUTE, 60)
    verdict = await ctx.limits.hit(limit, client_address())
    if not verdict.allowed:
        raise too_many(
            _("Too many attempts from your network. Please wait %(wait)s.")
            % {"wait": i18n.format_duration(verdict.retry_after)},
            verdict.retry_after,
        )
    return await _go(provider, intent="sign_in", next_url=safe_next(request.args.get("next")))


@blueprint.get("/login/federated/<provider_id>/callback")
async def callback(provider_id: str) -> ResponseReturnValue:
    ctx = services()
    provider = flows.provider_named(ctx, provider_id)
    if provider is None:
        return await _problem(N_("There is no such way to sign in here."), 404)
    args = request.args
    current = await current_sign_in()
    try:
        flow = await flows.take_flow(
            ctx, args.get("state", ""), request.cookies.get(BROWSER_COOKIE)
        )
        if flow.provider != provider.id:
            raise flows.Refused(
                "This answer is for another provider. Start again.", "provider mismatch"
            )
        arrived = await flows.finish(
            ctx, provider, flow, code=args.get("code"), error=args.get("error"),
            iss=args.get("iss"), attempt=sign_in_attempt(remember=False),
            current_user=current.user.id if current else None,
        )  # fmt: skip
    except flows.Refused as refused:
        log.info("federation: %s refused: %s", provider.id, refused)
        return await _problem(refused.message, refused.status, provider)
    except client.ProviderDown as error:
        log.warning("federation: %s is down: %s", provider.id, error)
        return await _problem(
            _("%(name)s did not answer. Try again in a few minutes.") % {"name": provider.name},
            502,
            provider,
        )
    except client.ProviderRefused as error:
        log.warning("federation: %s answered what we cannot accept: %s", provider.id, error)
        return await _problem(
            _("The answer from %(name)s could not be accepted. Start again.")
            % {"name": provider.name},
            502,
            provider,
        )
    return await _arrived(provider, arrived)


async def _arrived(provider: Provider, arrived: flows.Arrived) -> ResponseReturnValue:
    ctx = services()
    if arrived.linked is not None:
        await flash(
            _("Your %(name)s account is connected: you can sign in with it.")
            % {"name": arrived.linked},
            "success",
        )
        return redirect(url_for("federation.connected"))
    if arrived.concluded is not None:
        concluded = arrived.concluded
        if concluded.second_step is not None:
            remember_second_step(concluded.second_step, remember=False, next_url=arrived.next_url)
            return redirect(url_for("two_factor.second_step"))
        await start_session(
            concluded.session_id, remember=False, device_cookie=concluded.device_cookie
        )
        return redirect(arrived.next_url)
    pending = arrived.needs_proof or arrived.needs_username
    assert pending is not None
    if arrived.needs_proof is not None:
        await flash(
            _(
                "An account here uses the address of your %(name)s account. Sign in to it (any "
                "way you usually do) to connect %(name)s: it is never connected by the address "
                "alone."
            )
            % {"name": provider.name},
            "info",
        )
        response = redirect(url_for("accounts.login", next=url_for("federation.connect")))
    else:
        response = redirect(url_for("federation.sign_up"))
    _cookie(response, PENDING_COOKIE, pending.sealed(ctx), flows.PENDING_TTL)
    return response


def _pending() -> flows.Pending | None:
    return flows.Pending.opened(services(), request.cookies.get(PENDING_COOKIE))


@blueprint.route("/login/federated/sign-up", methods=["GET", "POST"])
@limit_posts("register")
async def sign_up() -> ResponseReturnValue:
    ctx = services()
    pending = _pending()
    provider = flows.provider_named(ctx, pending.provider) if pending else None
    if pending is None or provider is None:
        return await _problem(N_("This sign-up has expired. Start again."), 400)
    form = await FederatedSignUpForm.from_request()
    if form.validate_on_submit():
        try:
            concluded = await flows.sign_up(
                ctx, pending, form.username.data, sign_in_attempt(remember=False)
            )
        except UsernameTaken:
            form.username.errors.append(N_("That username is taken. Choose another."))
        except InvalidInput as error:
            form.username.errors.append(error.message)
        except TooManyRegistrations as error:
            return await _problem(
                _("Too many sign-ups right now. Try again in %(wait)s.")
                % {"wait": i18n.format_duration(error.args[0])},
                429,
            )
        except NotApplicable as error:
            return await _problem(error.message, 409, provider)
        else:
            await start_session(
                concluded.session_id, remember=False, device_cookie=concluded.device_cookie
            )
            await flash(
                _("Welcome! Your account is ready; you sign in with %(name)s.")
                % {"name": provider.name},
                "success",
            )
            response = redirect(url_for("accounts.account"))
            response.delete_cookie(PENDING_COOKIE, path=COOKIE_PATH)
            return response
    return await render_template(
        "federation/sign_up.html", title=_("Choose a username"), form=form, provider=provider,
        email=pending.email,
    )  # fmt: skip


@blueprint.route("/login/federated/connect", methods=["GET", "POST"])
@login_required
async def connect() -> ResponseReturnValue:
    """After signing in to the account whose address the identity carried: confirm."""
    ctx = services()
    pending = _pending()
    provider = flows.provider_named(ctx, pending.provider) if pending else None
    if pending is None or provider is None:
        return await _problem(
            N_("Nothing is waiting to be connected (it expires after 15 minutes). Start again."),
            400,
        )
    current = await current_sign_in()
    assert current is not None
    form = await ActionForm.from_request()
    if form.validate_on_submit():
        try:
            name = await flows.link(
                ctx, pending, user_id=current.user.id, sign_in=current.session.id
            )
        except NotApplicable as error:
            return await _problem(error.message, 409, provider)
        await flash(
            _("Your %(name)s account is connected: you can sign in with it.") % {"name": name},
            "success",
        )
        response = redirect(url_for("federation.connected"))
        response.delete_cookie(PENDING_COOKIE, path=COOKIE_PATH)
        return response
    return await render_template(
        "federation/connect.html", title=_("Connect %(name)s") % {"name": provider.name}, form=form,
        provider=provider, pending=pending, account=current.user,
    )  # fmt: skip


@blueprint.get("/account/connected")
@login_required
async def connected() -> ResponseReturnValue:
    current = await current_sign_in()
    assert current is not None
    ctx = services()
    identities = await connected_accounts.listed(ctx, current.user.id)
    return await render_template(
        "federation/connected.html", title=_("Connected accounts"), identities=identities,
        providers=ctx.settings.federation_providers, form=await ActionForm.from_request(),
    )  # fmt: skip


@blueprint.get("/account/connected/<provider_id>/connect")
@login_required
@fresh_authentication
async def connect_another(provider_id: str) -> ResponseReturnValue:
    """Link another provider: a recent authentication, then the provider."""
    provider = flows.provider_named(services(), provider_id)
    if provider is None:
        return await _problem(N_("There is no such provider here."), 404)
    current = await current_sign_in()
    assert current is not None
    return await _go(
        provider, intent="link", next_url="/account/connected", user_id=current.user.id
    )


@blueprint.post("/account/connected/<int:identity_id>/unlink")
@login_required
async def unlink(identity_id: int) -> ResponseReturnValue:
    form = await ActionForm.from_request()
    form.validate_on_submit()  # raises on a bad CSRF token
    current = await current_sign_in()
    assert current is not None
    try:
        done = await connected_accounts.unlink(
            services(), current.user.id, identity_id, proof.Proof(sign_in=current.session.id)
        )
    except NotApplicable as error:
        await flash(error.message, "warning")
        return redirect(url_for("federation.connected"))
    await flash(
        N_("Disconnected.") if done else N_("That account was not connected any more."), "info"
    )
    return redirect(url_for("federation.connected"))
