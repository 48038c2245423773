"""Judging an OpenID Connect authorization request before anything happens: an unknown client
or a redirect URI that is not exactly one of the client's gets a page, never a redirect;
every other problem goes back to the client with ``error``, ``state`` and ``iss``; PKCE is
S256 only and required of public clients (no downgrade to plain)."""

from __future__ import annotations

import base64
import hashlib
from urllib.parse import parse_qs, urlsplit

import pytest

from shared.models import Client
from shared.services.identity.requests import (
    Refusal,
    Unredirectable,
    judge,
    with_query,
)

ISSUER = "https://accounts.example.com"
CALLBACK = "https://app.example.com/callback"
CHALLENGE = base64.urlsafe_b64encode(hashlib.sha256(b"v" * 43).digest()).rstrip(b"=").decode()


def client(*, public: bool = False, grants: tuple[str, ...] = ("authorization_code",)) -> Client:
    return Client(
        client_id="app",
        name="App",
        secret_hash=None if public else "0" * 64,
        redirect_uris=[CALLBACK, "https://app.example.com/cb?tenant=1"],
        scopes=["openid", "profile", "email"],
        grants=list(grants),
        first_party=False,
    )


def query(**changes: str) -> dict[str, str]:
    base = {
        "client_id": "app", "redirect_uri": CALLBACK, "response_type": "code",
        "scope": "openid email", "state": "xyz", "nonce": "n-1",
        "code_challenge": CHALLENGE, "code_challenge_method": "S256",
    }  # fmt: skip
    base.update(changes)
    return {name: value for name, value in base.items() if value != "-"}


def test_a_good_request_and_its_answer() -> None:
    request = judge(query(prompt="login", max_age="300", ui_locales="de fr"), client())
    assert request.scopes == ("openid", "email") and request.max_age == 300
    assert request.prompt == frozenset({"login"}) and request.ui_locales == ("de", "fr")
    answer = urlsplit(request.answer(ISSUER, "the-code"))
    assert parse_qs(answer.query) == {"code": ["the-code"], "state": ["xyz"], "iss": [ISSUER]}
    kept = judge(query(redirect_uri="https://app.example.com/cb?tenant=1"), client())
    assert parse_qs(urlsplit(kept.answer(ISSUER, "c")).query)["tenant"] == ["1"]


@pytest.mark.parametrize(
    "redirect_uri",
    [
        "https://app.example.com/callback/",  # not exactly
        "https://app.example.com/callback?x=1",
        "https://APP.example.com/callback",
        "https://evil.example.com/callback",
        "-",
    ],
)
def test_an_unregistered_redirect_uri_gets_a_page_never_a_redirect(redirect_uri: str) -> None:
    with pytest.raises(Unredirectable):
        judge(query(redirect_uri=redirect_uri), client())
    with pytest.raises(Unredirectable):
        judge(query(), None)  # an unknown client


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"response_type": "token"}, "unsupported_response_type"),
        ({"response_type": "code id_token"}, "unsupported_response_type"),
        ({"scope": "email"}, "invalid_scope"),
        ({"scope": "openid admin"}, "invalid_scope"),
        ({"code_challenge_method": "plain"}, "invalid_request"),  # no downgrade
        ({"code_challenge": "too-short"}, "invalid_request"),
        ({"code_challenge": "-"}, "invalid_request"),  # a method without a challenge
        ({"prompt": "none login"}, "invalid_request"),
        ({"prompt": "select_account"}, "invalid_request"),
        ({"max_age": "-5"}, "invalid_request"),
        ({"max_age": "٣٠٠"}, "invalid_request"),
        ({"response_mode": "fragment"}, "invalid_request"),
        ({"request": "eyJ..."}, "request_not_supported"),
    ],
)
def test_other_problems_go_back_to_the_client(changes: dict[str, str], error: str) -> None:
    with pytest.raises(Refusal) as refused:
        judge(query(**changes), client())
    location = urlsplit(refused.value.location(ISSUER))
    said = parse_qs(location.query)
    assert location.netloc == "app.example.com"
    assert said["error"] == [error] and said["state"] == ["xyz"] and said["iss"] == [ISSUER]


def test_a_public_client_must_use_pkce_and_a_confidential_one_may() -> None:
    without = query(code_challenge="-", code_challenge_method="-")
    with pytest.raises(Refusal, match="public client must use PKCE"):
        judge(without, client(public=True))
    assert judge(without, client()).code_challenge is None
    assert judge(query(), client(public=True)).code_challenge == CHALLENGE


def test_a_client_without_the_code_grant_is_refused() -> None:
    with pytest.raises(Refusal, match="unauthorized_client"):
        judge(query(), client(grants=("client_credentials",)))


def test_with_query_keeps_what_the_uri_has() -> None:
    assert with_query("https://a.example/cb?x=1", {"code": "c", "state": None}) == (
        "https://a.example/cb?x=1&code=c"
    )
