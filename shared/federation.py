"""The outside identity providers people may sign in with ("Continue with Google"), as the
operator configures them: FEDERATION_PROVIDERS (or FEDERATION_PROVIDERS_FILE), a JSON list of

    {"id": "google", "preset": "google", "client_id": "...", "client_secret": "..."}
    {"id": "corp", "name": "Corp SSO", "issuer": "https://sso.corp.example",
     "client_id": "...", "client_secret": "...", "scopes": "openid email profile",
     "trusted_amr": ["hwk"]}

Any OpenID Connect issuer is found by its discovery document; the presets fill in the big
ones: Google, Microsoft (``"tenant"`` required: its issuer names the tenant), GitLab, and
GitHub, which is plain OAuth 2.0 (no ID token: the identity comes from its user and emails
APIs). The redirect URI to register at a provider is ``BASE_URL/login/federated/<id>/callback``.
``trusted_amr``: the ``amr`` values this provider asserts that count as a second factor here
(a phishing-resistant key, say), so that an account with two-factor sign-in does not ask
again. Parsed once, when the settings are loaded: a mistake is one clear error at start-up.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}$")
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


@dataclass(frozen=True, slots=True)
class OAuthEndpoints:
    """A plain OAuth 2.0 provider's endpoints (no discovery, no ID token)."""

    authorization: str
    token: str
    user: str
    emails: str


@dataclass(frozen=True, slots=True)
class Provider:
    id: str
    name: str
    issuer: str  # the identity's namespace: (issuer, subject) is who someone is there
    client_id: str
    client_secret: str = field(repr=False)
    scopes: str = "openid email profile"
    trusted_amr: frozenset[str] = field(default_factory=frozenset)
    oauth: OAuthEndpoints | None = None  # set for plain OAuth 2.0 (GitHub)

    @property
    def is_oidc(self) -> bool:
        return self.oauth is None


GITHUB = OAuthEndpoints(
    authorization="https://github.com/login/oauth/authorize",
    token="https://github.com/login/oauth/access_token",  # noqa: S106 (a URL)
    user="https://api.github.com/user",
    emails="https://api.github.com/user/emails",
)

PRESETS: dict[str, dict[str, Any]] = {
    "google": {"name": "Google", "issuer": "https://accounts.google.com"},
    "microsoft": {"name": "Microsoft", "issuer": "https://login.microsoftonline.com/{tenant}/v2.0"},
    "gitlab": {"name": "GitLab", "issuer": "https://gitlab.com"},
    "github": {"name": "GitHub", "issuer": "https://github.com", "scopes": "read:user user:email"},
}


class ProviderConfigError(ValueError):
    pass


def parse(raw: str) -> tuple[Provider, ...]:
    """FEDERATION_PROVIDERS' value, checked: every problem is raised at once."""
    try:
        entries = json.loads(raw or "[]")
    except json.JSONDecodeError as error:
        raise ProviderConfigError(f"is not JSON ({error.msg}, at {error.pos})") from None
    if not isinstance(entries, list):
        raise ProviderConfigError("must be a JSON list of providers")
    providers, problems = [], []
    for index, entry in enumerate(entries):
        try:
            providers.append(_provider(entry))
        except ProviderConfigError as error:
            problems.append(f"provider {index + 1}: {error}")
    ids = [p.id for p in providers]
    problems += [
        f"the id {i!r} is used twice" for i in sorted({i for i in ids if ids.count(i) > 1})
    ]
    if problems:
        raise ProviderConfigError("; ".join(problems))
    return tuple(providers)


def _provider(entry: object) -> Provider:
    if not isinstance(entry, dict):
        raise ProviderConfigError("must be a JSON object")
    values = dict(entry)
    preset = values.pop("preset", None)
    if preset is not None:
        if preset not in PRESETS:
            raise ProviderConfigError(f"unknown preset {preset!r} (one of {', '.join(PRESETS)})")
        values = {**PRESETS[preset], **values}
        if preset == "microsoft":
            tenant = values.pop("tenant", None)
            if not isinstance(tenant, str) or not re.fullmatch(r"[A-Za-z0-9.-]{1,100}", tenant):
                raise ProviderConfigError('the microsoft preset needs "tenant" (its id or domain)')
            values["issuer"] = values["issuer"].format(tenant=tenant)
    unknown = set(values) - {"id", "name", "issuer", "client_id", "client_secret", "scopes",
                             "trusted_amr"}  # fmt: skip
    if unknown:
        raise ProviderConfigError(f"unknown fields: {', '.join(sorted(unknown))}")
    ident = values.get("id")
    if not isinstance(ident, str) or not ID.match(ident):
        raise ProviderConfigError('"id" is 1-32 lower-case letters, digits and dashes')
    for name in ("client_id", "client_secret", "issuer"):
        if not isinstance(values.get(name), str) or not values[name]:
            raise ProviderConfigError(f'"{name}" is required')
    issuer = values["issuer"].rstrip("/") if preset != "google" else values["issuer"]
    parts = urlsplit(issuer)
    if not (parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in LOOPBACK)):
        raise ProviderConfigError('"issuer" must be https:// (http:// only on loopback)')
    amr = values.get("trusted_amr", [])
    if not isinstance(amr, list) or not all(isinstance(a, str) for a in amr):
        raise ProviderConfigError('"trusted_amr" is a list of amr values, like ["hwk"]')
    return Provider(
        id=ident,
        name=str(values.get("name") or ident),
        issuer=issuer,
        client_id=values["client_id"],
        client_secret=values["client_secret"],
        scopes=str(values.get("scopes") or "openid email profile"),
        trusted_amr=frozenset(amr),
        oauth=GITHUB if preset == "github" else None,
    )
