"""The identity provider through the app (pages and endpoints), with the checks an attacker
would try: replayed codes, PKCE mismatch and downgrade, wrong redirect URIs, silent requests
without a session, reused refresh tokens, revoked and ended grants, and every way a sign-in
ends taking its tokens with it. The real relying parties (Authlib, openid-client,
mod_auth_openidc) are in tests/e2e/test_identity_provider*.py."""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import jwt as pyjwt
import pytest
from quart import Quart
from sqlalchemy import select

from shared.models import LogoutDelivery
from shared.services.identity import clients, signed
from shared.services.identity.clients import ClientSpec
from shared.settings import Settings
from tests.support import age_authentications
from tests.web.browser import CSRF, Browser
from web import create_app
from web.extensions import SERVICES_KEY

CALLBACK = "https://app.example.com/callback"
TOKEN_PATH = "/oauth/token"


@dataclass
class App:
    client_id: str
    secret: str | None


async def register_app(app: Quart, **overrides: Any) -> App:
    spec = ClientSpec(
        name=overrides.pop("name", "Example app"),
        redirect_uris=overrides.pop("redirect_uris", [CALLBACK]),
        **overrides,
    )
    registered = await clients.add(app.extensions[SERVICES_KEY], spec)
    return App(registered.client.client_id, registered.secret)


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def authorize_path(client: App, **extra: str) -> str:
    query = {
        "response_type": "code",
        "client_id": client.client_id,
        "redirect_uri": CALLBACK,
        "scope": "openid email profile",
        "state": "st-1",
        "nonce": "n-1",
        **extra,
    }
    return "/oauth/authorize?" + urlencode(query)


def answer(location: str | None) -> dict[str, str]:
    assert location is not None and location.startswith(CALLBACK), location
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


async def signed_in(browser: Browser) -> None:
    await browser.register()
    await browser.login()


async def code_for(browser: Browser, client: App, **extra: str) -> str:
    """Through the authorize endpoint to a code (consenting if asked)."""
    page = await browser.get(authorize_path(client, **extra))
    if page.status == 200 and "Allow" in page.text:
        page = await browser.post(
            "/oauth/consent", {**consent_fields(page.text), "decision": "allow"}
        )
    got = answer(page.location)
    assert got["state"] == "st-1" and got["iss"] == "http://localhost:8000", got
    return got["code"]


def consent_fields(text: str) -> dict[str, str]:
    """What the consent page's form sends (the request again, and the CSRF token)."""
    fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', text))
    fields["csrf_token"] = CSRF.search(text).group(1)  # type: ignore[union-attr]
    return {name: html.unescape(value) for name, value in fields.items()}


async def token(browser: Browser, client: App, **data: str) -> tuple[int, dict[str, Any]]:
    form = dict(data)
    if client.secret is not None:
        form.update(client_id=client.client_id, client_secret=client.secret)
    else:
        form["client_id"] = client.client_id
    response = await browser.client.post(TOKEN_PATH, form=form)
    assert response.headers["Cache-Control"] == "no-store"
    return response.status_code, await response.get_json()


async def exchange(browser: Browser, client: App, code: str, **extra: str) -> dict[str, Any]:
    status, body = await token(
        browser,
        client,
        grant_type="authorization_code",
        code=code,
        redirect_uri=CALLBACK,
        **extra,
    )
    assert status == 200, body
    return body


async def jwks(browser: Browser) -> pyjwt.PyJWKSet:
    response = await browser.client.get("/.well-known/jwks.json")
    return pyjwt.PyJWKSet.from_dict(await response.get_json())


async def decode(browser: Browser, value: str, audience: str) -> dict[str, Any]:
    header = pyjwt.get_unverified_header(value)
    key = (await jwks(browser))[header["kid"]]
    claims: dict[str, Any] = pyjwt.decode(
        value, key, algorithms=["RS256"], audience=audience, issuer="http://localhost:8000"
    )
    return claims


async def introspect(browser: Browser, client: App, value: str) -> dict[str, Any]:
    assert client.secret is not None
    response = await browser.client.post(
        "/oauth/introspect",
        form={"token": value, "client_id": client.client_id, "client_secret": client.secret},
    )
    assert response.status_code == 200
    body: dict[str, Any] = await response.get_json()
    return body


# --- discovery --------------------------------------------------------------------------------
async def test_discovery_names_every_endpoint_and_capability(browser: Browser) -> None:
    meta = await (await browser.client.get("/.well-known/openid-configuration")).get_json()
    base = "http://localhost:8000"
    assert meta["issuer"] == base
    for name, path in [
        ("authorization_endpoint", "/oauth/authorize"),
        ("token_endpoint", "/oauth/token"),
        ("userinfo_endpoint", "/oauth/userinfo"),
        ("jwks_uri", "/.well-known/jwks.json"),
        ("end_session_endpoint", "/oauth/logout"),
        ("introspection_endpoint", "/oauth/introspect"),
        ("revocation_endpoint", "/oauth/revoke"),
    ]:
        assert meta[name] == base + path
    assert meta["code_challenge_methods_supported"] == ["S256"]
    assert meta["authorization_response_iss_parameter_supported"] is True
    assert "registration_endpoint" not in meta  # off by default


# --- the code flow, consent and tokens --------------------------------------------------------
async def test_code_flow_with_sign_in_consent_and_tokens(app: Quart, browser: Browser) -> None:
    client = await register_app(app)
    await browser.register()
    # Nobody signed in: to the sign-in page, then back to the request.
    first = await browser.get(authorize_path(client, login_hint="alice@example.com"))
    assert first.status == 302 and first.location is not None
    assert first.location.startswith("/login?next=/oauth/authorize")
    assert "login_hint=alice@example.com" in first.location
    prefilled = await browser.get(first.location)
    assert 'value="alice@example.com"' in prefilled.text
    back = parse_qs(urlsplit(first.location).query)["next"][0]
    signed = await browser.login(next=back)
    assert signed.location == back
    consent = await browser.get(back)
    assert consent.status == 200 and "Example app" in consent.text
    assert "app.example.com" in consent.headers["Content-Security-Policy"]  # form-action
    done = await browser.post(
        "/oauth/consent", {**consent_fields(consent.text), "decision": "allow"}
    )
    got = answer(done.location)
    body = await exchange(browser, client, got["code"])
    assert body["token_type"] == "Bearer" and body["scope"] == "openid email profile"
    claims = await decode(browser, body["id_token"], client.client_id)
    assert claims["nonce"] == "n-1" and claims["email"] == "alice@example.com"
    assert claims["email_verified"] is True and claims["preferred_username"] == "alice"
    assert claims["amr"] == ["pwd"] and claims["acr"].endswith("single-factor")
    assert {"sid", "auth_time", "iat", "exp", "sub"} <= set(claims)
    header = pyjwt.get_unverified_header(body["access_token"])
    assert header["typ"] == "at+jwt"  # RFC 9068
    access = await decode(browser, body["access_token"], client.client_id)
    assert access["sub"] == claims["sub"] and access["client_id"] == client.client_id
    info = await browser.client.get(
        "/oauth/userinfo", headers={"Authorization": f"Bearer {body['access_token']}"}
    )
    assert (await info.get_json())["email"] == "alice@example.com"
    # The consent is remembered: the next request answers at once.
    again = await browser.get(authorize_path(client))
    assert "code" in answer(again.location)
    # The export says who the account is to applications, and what each was given.
    export = json.loads((await browser.get("/account/export")).text)
    assert export["subject"] == claims["sub"]
    assert [a["name"] for a in export["applications"]] == ["Example app"]
    assert export["grants"][0]["scopes"] == ["openid", "email", "profile"]


async def test_a_first_party_app_skips_consent(app: Quart, browser: Browser) -> None:
    client = await register_app(app, first_party=True)
    await signed_in(browser)
    page = await browser.get(authorize_path(client))
    assert "code" in answer(page.location)


async def test_after_one_of_its_own_forms_a_page_takes_the_person_on(
    app: Quart, browser: Browser
) -> None:
    """Browsers hold a redirect chain that began with a form to the form's form-action
    ('self'); so when the answer ends such a chain, it is a page that navigates itself."""
    client = await register_app(app, first_party=True)
    await signed_in(browser)
    response = await browser.client.get(
        authorize_path(client), headers={"Sec-Fetch-Site": "same-origin"}
    )
    text = await response.get_data(as_text=True)
    assert response.status_code == 200 and 'http-equiv="refresh"' in text
    assert response.headers["Referrer-Policy"] == "no-referrer"
    location = re.search(r'<a href="([^"]+)">Continue</a>', text)
    assert location is not None and "code" in answer(html.unescape(location.group(1)))


async def test_denying_consent_tells_the_app(app: Quart, browser: Browser) -> None:
    client = await register_app(app)
    await signed_in(browser)
    consent = await browser.get(authorize_path(client))
    done = await browser.post(
        "/oauth/consent", {**consent_fields(consent.text), "decision": "deny"}
    )
    assert answer(done.location)["error"] == "access_denied"


async def test_consent_needs_a_recent_authentication(app: Quart, browser: Browser) -> None:
    client = await register_app(app)
    await signed_in(browser)
    await age_authentications(app.extensions[SERVICES_KEY].sessionmaker)
    page = await browser.get(authorize_path(client))
    assert page.location is not None and page.location.startswith("/account/reauthenticate")
    back = parse_qs(urlsplit(page.location).query)["next"][0]
    await browser.reauthenticate(next=back)
    assert "Allow" in (await browser.get(back)).text


# --- what the request may not do --------------------------------------------------------------
async def test_an_unknown_client_or_redirect_uri_gets_a_page_never_a_redirect(
    app: Quart, browser: Browser
) -> None:
    client = await register_app(app)
    for path in [
        authorize_path(App("nobody", None)),
        authorize_path(client, redirect_uri="https://evil.example/callback"),
        authorize_path(client, redirect_uri=CALLBACK + "/"),
    ]:
        page = await browser.get(path)
        assert page.status == 400 and page.location is None
        assert "not valid" in page.text


async def test_prompt_none_without_a_session_says_login_required(
    app: Quart, browser: Browser
) -> None:
    client = await register_app(app)
    page = await browser.get(authorize_path(client, prompt="none"))
    assert answer(page.location)["error"] == "login_required"
    await signed_in(browser)
    page = await browser.get(authorize_path(client, prompt="none"))
    assert answer(page.location)["error"] == "consent_required"


async def test_prompt_login_and_max_age_ask_for_a_fresh_sign_in(
    app: Quart, browser: Browser
) -> None:
    client = await register_app(app, first_party=True)
    await signed_in(browser)
    await age_authentications(app.extensions[SERVICES_KEY].sessionmaker, 120)
    assert "code" in answer((await browser.get(authorize_path(client, max_age="600"))).location)
    for extra in ({"max_age": "60"}, {"prompt": "login"}):
        page = await browser.get(authorize_path(client, **extra))
        assert page.location is not None and page.location.startswith("/account/reauthenticate")
        back = parse_qs(urlsplit(page.location).query)["next"][0]
        done = await browser.reauthenticate(next=back)
        assert done.location == back
        assert "code" in answer((await browser.get(back)).location)  # no loop


async def test_public_clients_must_use_pkce_and_plain_is_refused(
    app: Quart, browser: Browser
) -> None:
    client = await register_app(app, public=True, first_party=True,
                                redirect_uris=[CALLBACK])  # fmt: skip
    await signed_in(browser)
    page = await browser.get(authorize_path(client))
    assert answer(page.location)["error_description"] == "a public client must use PKCE (S256)"
    _, challenge = pkce()
    plain = await browser.get(
        authorize_path(client, code_challenge=challenge, code_challenge_method="plain")
    )
    assert answer(plain.location)["error"] == "invalid_request"


async def test_pkce_mismatch_and_downgrade_are_refused(app: Quart, browser: Browser) -> None:
    client = await register_app(app, first_party=True)
    await signed_in(browser)
    verifier, challenge = pkce()
    code = await code_for(browser, client, code_challenge=challenge, code_challenge_method="S256")
    status, body = await token(
        browser, client, grant_type="authorization_code", code=code, redirect_uri=CALLBACK,
        code_verifier=pkce()[0],
    )  # fmt: skip
    assert status == 400 and body["error"] == "invalid_grant"
    status, body = await token(
        browser, client, grant_type="authorization_code", code=code, redirect_uri=CALLBACK
    )
    assert status == 400 and "code_verifier" in body["error_description"]
    # Downgrade: a verifier for a request that sent no challenge.
    plain_code = await code_for(browser, client)
    status, body = await token(
        browser, client, grant_type="authorization_code", code=plain_code,
        redirect_uri=CALLBACK, code_verifier=verifier,
    )  # fmt: skip
    assert status == 400 and "no code_challenge" in body["error_description"]


async def test_a_replayed_code_revokes_what_it_issued(app: Quart, browser: Browser) -> None:
    client = await register_app(app, first_party=True)
    await signed_in(browser)
    code = await code_for(browser, client)
    first = await exchange(browser, client, code)
    status, body = await token(
        browser, client, grant_type="authorization_code", code=code, redirect_uri=CALLBACK
    )
    assert status == 400 and "already used" in body["error_description"]
    assert (await introspect(browser, client, first["access_token"]))["active"] is False
    status, _ = await token(
        browser, client, grant_type="refresh_token", refresh_token=first["refresh_token"]
    )
    assert status == 400


async def test_a_wrong_secret_or_redirect_uri_is_refused(app: Quart, browser: Browser) -> None:
    client = await register_app(app, first_party=True)
    await signed_in(browser)
    code = await code_for(browser, client)
    wrong = App(client.client_id, "not-the-secret")
    status, body = await token(
        browser, wrong, grant_type="authorization_code", code=code, redirect_uri=CALLBACK
    )
    assert status == 401 and body["error"] == "invalid_client"
    status, body = await token(
        browser, client, grant_type="authorization_code", code=code,
        redirect_uri="https://app.example.com/other",
    )  # fmt: skip
    assert status == 400 and body["error"] == "invalid_grant"


# --- refresh tokens ----------------------------------------------------------------------------
async def test_refresh_tokens_rotate_and_reuse_revokes_the_family(
    app: Quart, browser: Browser
) -> None:
    client = await register_app(app, first_party=True)
    await signed_in(browser)
    first = await exchange(browser, client, await code_for(browser, client))
    status, second = await token(
        browser, client, grant_type="refresh_token", refresh_token=first["refresh_token"]
    )
    assert status == 200 and second["refresh_token"] != first["refresh_token"]
    # The old one again: a stolen copy. The whole family ends, the new one too.
    status, body = await token(
        browser, client, grant_type="refresh_token", refresh_token=first["refresh_token"]
    )
    assert status == 400 and "family is revoked" in body["error_description"]
    status, _ = await token(
        browser, client, grant_type="refresh_token", refresh_token=second["refresh_token"]
    )
    assert status == 400
    assert (await introspect(browser, client, second["access_token"]))["active"] is False


# --- introspection and revocation --------------------------------------------------------------
async def test_introspection_and_revocation(app: Quart, browser: Browser) -> None:
    client = await register_app(app, first_party=True)
    await signed_in(browser)
    body = await exchange(browser, client, await code_for(browser, client))
    active = await introspect(browser, client, body["access_token"])
    assert active["active"] is True and active["client_id"] == client.client_id
    assert (await introspect(browser, client, "garbage"))["active"] is False
    assert client.secret is not None
    revoked = await browser.client.post(
        "/oauth/revoke",
        form={"token": body["access_token"], "client_id": client.client_id,
              "client_secret": client.secret},
    )  # fmt: skip
    assert revoked.status_code == 200
    assert (await introspect(browser, client, body["access_token"]))["active"] is False
    refresh = await introspect(browser, client, body["refresh_token"])
    assert refresh["active"] is True and refresh["token_type"] == "refresh_token"
    await browser.client.post(
        "/oauth/revoke",
        headers={"Authorization": "Basic " + base64.b64encode(
            f"{client.client_id}:{client.secret}".encode()).decode()},
        form={"token": body["refresh_token"], "token_type_hint": "refresh_token"},
    )  # fmt: skip
    assert (await introspect(browser, client, body["refresh_token"]))["active"] is False


async def test_an_expired_or_forged_access_token_is_inactive(app: Quart, browser: Browser) -> None:
    client = await register_app(app, first_party=True)
    await signed_in(browser)
    body = await exchange(browser, client, await code_for(browser, client))
    claims = pyjwt.decode(body["access_token"], options={"verify_signature": False})
    ctx = app.extensions[SERVICES_KEY]
    expired = await signed.sign(ctx, {**claims, "exp": claims["iat"] - 1}, typ="at+jwt")
    assert (await introspect(browser, client, expired))["active"] is False
    # Signed by us, but an ID token (typ JWT), not an access token: not accepted as one.
    assert (await introspect(browser, client, body["id_token"]))["active"] is False
    # The same claims under another key.
    other = pyjwt.encode(claims, "not our key" * 4, algorithm="HS256", headers={"typ": "at+jwt"})
    assert (await introspect(browser, client, other))["active"] is False
    info = await browser.client.get(
        "/oauth/userinfo", headers={"Authorization": f"Bearer {expired}"}
    )
    assert info.status_code == 401


async def test_client_credentials_for_a_service(app: Quart, browser: Browser) -> None:
    service = await register_app(
        app, grants=["client_credentials"], scopes=["openid", "email"], redirect_uris=[]
    )
    status, body = await token(browser, service, grant_type="client_credentials")
    assert status == 200 and "refresh_token" not in body and "id_token" not in body
    claims = await decode(browser, body["access_token"], service.client_id)
    assert claims["sub"] == service.client_id and claims["scope"] == "email"
    assert (await introspect(browser, service, body["access_token"]))["active"] is True
    status, body = await token(browser, service, grant_type="client_credentials", scope="openid")
    assert status == 400 and body["error"] == "invalid_scope"


# --- the lifecycle ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "how",
    ["sign out", "sign out everywhere else", "remove access", "password change", "client removed"],
)
async def test_ending_the_sign_in_ends_its_tokens(app: Quart, browser: Browser, how: str) -> None:
    client = await register_app(app, backchannel_logout_uri="https://app.example.com/bcl")
    await signed_in(browser)
    body = await exchange(browser, client, await code_for(browser, client))
    if how == "sign out":
        await browser.logout()
    elif how == "sign out everywhere else":
        other = Browser(app)
        await other.login()
        page = await other.get("/account/sessions")
        await other.post("/account/sessions/revoke-others", {"csrf_token": page.csrf_token})
    elif how == "password change":
        done = await browser.submit(
            "/account/password",
            {
                "password": "a brand new passphrase 42",
                "confirm_password": "a brand new passphrase 42",
            },
        )
        assert done.status == 302, done.text[:300]  # this browser stays signed in ...
    elif how == "client removed":
        assert await clients.remove(app.extensions[SERVICES_KEY], client.client_id)
    else:
        page = await browser.get("/account/apps")
        assert "Example app" in page.text and "email" in page.text
        done = await browser.post(
            f"/account/apps/{client.client_id}/remove", {"csrf_token": page.csrf_token}
        )
        assert done.status == 302
        assert "Example app" not in (await browser.get("/account/apps")).text
    if how == "client removed":  # it can no longer ask; what it held is gone with it
        observer = await register_app(app, name="Resource server")
        assert (await introspect(browser, observer, body["access_token"]))["active"] is False
        return
    assert (await introspect(browser, client, body["access_token"]))["active"] is False
    status, _ = await token(
        browser, client, grant_type="refresh_token", refresh_token=body["refresh_token"]
    )
    assert status == 400
    info = await browser.client.get(
        "/oauth/userinfo", headers={"Authorization": f"Bearer {body['access_token']}"}
    )
    assert info.status_code == 401 and "invalid_token" in info.headers["WWW-Authenticate"]
    async with app.extensions[SERVICES_KEY].reading() as session:
        told = list(await session.scalars(select(LogoutDelivery)))
    if how == "remove access":
        assert told == []
    else:
        assert len(told) == 1 and told[0].uri == "https://app.example.com/bcl"


async def test_rp_initiated_logout(app: Quart, browser: Browser) -> None:
    client = await register_app(app, first_party=True)
    ctx = app.extensions[SERVICES_KEY]
    async with ctx.unit_of_work() as session:
        from shared.models import Client

        row = await session.get(Client, client.client_id)
        assert row is not None
        row.post_logout_redirect_uris = ["https://app.example.com/bye"]
    await signed_in(browser)
    body = await exchange(browser, client, await code_for(browser, client))
    # Not registered: a page, no redirect.
    bad = await browser.get(
        "/oauth/logout?" + urlencode({"client_id": client.client_id,
                                       "post_logout_redirect_uri": "https://evil.example/"})
    )  # fmt: skip
    assert bad.status == 400
    # Without a hint naming this sign-in: asked first.
    asked = await browser.get("/oauth/logout?client_id=" + client.client_id)
    assert asked.status == 200 and "Sign out?" in asked.text
    # With it: signed out at once, and back to the app with its state.
    done = await browser.get(
        "/oauth/logout?" + urlencode({
            "id_token_hint": body["id_token"],
            "post_logout_redirect_uri": "https://app.example.com/bye",
            "state": "s2",
        })
    )  # fmt: skip
    assert done.location == "https://app.example.com/bye?state=s2"
    assert (await browser.get("/account")).status == 302  # signed out
    assert (await introspect(browser, client, body["access_token"]))["active"] is False


# --- dynamic registration (RFC 7591) ------------------------------------------------------------
async def test_registration_is_closed_unless_opened(browser: Browser) -> None:
    response = await browser.client.post("/oauth/register", json={"redirect_uris": [CALLBACK]})
    assert response.status_code == 404


async def test_an_application_registers_itself_and_signs_people_in(
    app: Quart, settings: Settings
) -> None:
    opened = create_app(settings.with_values(OIDC_DYNAMIC_REGISTRATION=True))
    async with opened.test_app():
        await _register_and_sign_in(Browser(opened))


async def _register_and_sign_in(browser: Browser) -> None:
    meta = await (await browser.client.get("/.well-known/openid-configuration")).get_json()
    assert meta["registration_endpoint"] == "http://localhost:8000/oauth/register"
    bad = await browser.client.post(
        "/oauth/register", json={"redirect_uris": ["http://evil.example/cb"]}
    )
    assert bad.status_code == 400
    assert (await bad.get_json())["error"] == "invalid_redirect_uri"
    garbage = await browser.client.post("/oauth/register", json={"redirect_uris": "x"})
    assert (await garbage.get_json())["error"] == "invalid_client_metadata"
    made = await browser.client.post(
        "/oauth/register", json={"redirect_uris": [CALLBACK], "client_name": "Self-made"}
    )
    assert made.status_code == 201
    body = await made.get_json()
    assert body["client_secret"] and body["client_secret_expires_at"] == 0
    client = App(body["client_id"], body["client_secret"])
    await signed_in(browser)
    page = await browser.get(authorize_path(client))
    assert "Self-made" in page.text and "Allow" in page.text  # never first-party


async def test_apps_with_access_through_the_api(app: Quart, browser: Browser) -> None:
    client = await register_app(app)
    await signed_in(browser)
    await exchange(browser, client, await code_for(browser, client))
    listed = await (await browser.client.get("/api/v1/apps")).get_json()
    (only,) = listed["apps"]
    assert only["name"] == "Example app" and only["last_used_at"] is not None
    assert only["scopes"] == ["email", "openid", "profile"]
    gone = await browser.client.post(f"/api/v1/apps/{client.client_id}/remove", json={})
    assert gone.status_code == 200
    again = await browser.client.post(f"/api/v1/apps/{client.client_id}/remove", json={})
    assert again.status_code == 404
    assert (await (await browser.client.get("/api/v1/apps")).get_json())["apps"] == []
