"""The outside providers' configuration (FEDERATION_PROVIDERS): presets, checks that name
every mistake at start-up, and GitHub's user and emails answers read as an identity."""

from __future__ import annotations

import json

import pytest

from shared.federation import GITHUB, ProviderConfigError, parse
from shared.services.federation.client import ProviderRefused, github_identity


def test_presets_fill_in_the_big_providers() -> None:
    google, microsoft, github = parse(json.dumps([
        {"id": "google", "preset": "google", "client_id": "a", "client_secret": "b"},
        {"id": "work", "preset": "microsoft", "tenant": "contoso.example", "client_id": "a",
         "client_secret": "b"},
        {"id": "github", "preset": "github", "client_id": "a", "client_secret": "b"},
    ]))  # fmt: skip
    assert (google.issuer, google.is_oidc) == ("https://accounts.google.com", True)
    assert microsoft.issuer == "https://login.microsoftonline.com/contoso.example/v2.0"
    assert github.oauth is GITHUB and github.scopes == "read:user user:email"
    assert "b" not in repr(google)  # the secret stays out of logs


@pytest.mark.parametrize(
    ("entry", "says"),
    [
        ({"id": "Bad Id", "issuer": "https://x.example", "client_id": "a", "client_secret": "b"},
         '"id"'),
        ({"id": "x", "issuer": "http://x.example", "client_id": "a", "client_secret": "b"},
         "https://"),
        ({"id": "x", "issuer": "https://x.example", "client_id": "a"}, '"client_secret"'),
        ({"id": "x", "preset": "myspace", "client_id": "a", "client_secret": "b"},
         "unknown preset"),
        ({"id": "x", "preset": "microsoft", "client_id": "a", "client_secret": "b"}, "tenant"),
        ({"id": "x", "issuer": "https://x.example", "client_id": "a", "client_secret": "b",
          "colour": "blue"}, "unknown fields"),
    ],
)  # fmt: skip
def test_each_mistake_is_named(entry: dict[str, str], says: str) -> None:
    with pytest.raises(ProviderConfigError, match=says):
        parse(json.dumps([entry]))


def test_an_id_used_twice_is_refused() -> None:
    entry = {"id": "x", "issuer": "https://x.example", "client_id": "a", "client_secret": "b"}
    with pytest.raises(ProviderConfigError, match="used twice"):
        parse(json.dumps([entry, entry]))
    with pytest.raises(ProviderConfigError, match="not JSON"):
        parse("[{")


def test_github_answers_read_as_an_identity() -> None:
    (github,) = parse(json.dumps([
        {"id": "github", "preset": "github", "client_id": "a", "client_secret": "b"}
    ]))  # fmt: skip
    user = {"id": 583231, "login": "octocat", "name": "The Octocat", "email": None}
    emails = [
        {"email": "octo@old.example", "primary": False, "verified": True},
        {"email": "octocat@github.example", "primary": True, "verified": True},
    ]
    identity = github_identity(github, user, emails)
    assert (identity.issuer, identity.subject) == ("https://github.com", "583231")
    assert identity.email == "octocat@github.example" and identity.email_verified
    unverified = github_identity(github, user, [{**emails[1], "verified": False}])
    assert not unverified.email_verified
    with pytest.raises(ProviderRefused):
        github_identity(github, {"login": "no id"}, emails)


def test_only_a_trusted_amr_counts_as_a_second_factor() -> None:
    from shared.assurance import is_multi_factor
    from shared.services.federation.client import Identity
    from shared.services.federation.flows import methods_of

    (corp,) = parse(json.dumps([
        {"id": "corp", "issuer": "https://sso.example", "client_id": "a", "client_secret": "b",
         "trusted_amr": ["hwk"]}
    ]))  # fmt: skip
    with_key = Identity("https://sso.example", "s", "a@example.com", True, amr=("hwk", "pin"))
    with_password = Identity("https://sso.example", "s", "a@example.com", True, amr=("pwd",))
    assert is_multi_factor(methods_of(corp, with_key))
    assert not is_multi_factor(methods_of(corp, with_password))
    (plain,) = parse(json.dumps([
        {"id": "plain", "issuer": "https://sso.example", "client_id": "a", "client_secret": "b"}
    ]))  # fmt: skip
    assert not is_multi_factor(methods_of(plain, with_key))  # not trusted: one factor
