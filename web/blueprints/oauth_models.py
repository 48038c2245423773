"""What the OpenAPI description says the OAuth endpoints take and answer (documentation
only: the handlers read the form themselves, so that a bad request gets an OAuth error, not
a validation problem)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class TokenIn(BaseModel):
    grant_type: Literal["authorization_code", "refresh_token", "client_credentials"]
    code: str | None = Field(None, description="authorization_code: the code")
    redirect_uri: str | None = Field(None, description="authorization_code: as in the request")
    code_verifier: str | None = Field(None, description="authorization_code: PKCE (RFC 7636)")
    refresh_token: str | None = Field(None, description="refresh_token: the token")
    scope: str | None = Field(None, description="refresh_token, client_credentials: fewer scopes")
    client_id: str | None = Field(None, description="when not in HTTP Basic")
    client_secret: str | None = Field(None, description="when not in HTTP Basic")


class TokenOut(BaseModel):
    access_token: str = Field(description="a JWT (RFC 9068), typ at+jwt")
    token_type: Literal["Bearer"]
    expires_in: int
    scope: str
    id_token: str | None = None
    refresh_token: str | None = Field(None, description="rotates at each use")


class OAuthError(BaseModel):
    error: str = Field(description="invalid_request, invalid_client, invalid_grant, ...")
    error_description: str


class UserinfoOut(BaseModel):
    sub: str
    email: str | None = None
    email_verified: bool | None = None
    preferred_username: str | None = None
    name: str | None = None


class IntrospectionIn(BaseModel):
    token: str
    token_type_hint: Literal["access_token", "refresh_token"] | None = None
    client_id: str | None = None
    client_secret: str | None = None


class IntrospectionOut(BaseModel):
    active: bool
    token_type: str | None = None
    scope: str | None = None
    client_id: str | None = None
    sub: str | None = None
    aud: str | None = None
    iss: str | None = None
    exp: int | None = None
    iat: int | None = None
    jti: str | None = None
    auth_time: int | None = None
    acr: str | None = None
    amr: list[str] | None = None
    sid: str | None = None


class RevocationIn(BaseModel):
    token: str
    token_type_hint: Literal["access_token", "refresh_token"] | None = None
    client_id: str | None = None
    client_secret: str | None = None


class Revoked(BaseModel):
    """Nothing: 200 says the token is no longer valid, whether or not it ever was."""


class RegistrationIn(BaseModel):
    """RFC 7591 §2 client metadata (the ones this provider uses)."""

    redirect_uris: list[str] = Field(max_length=20)
    client_name: str = Field("", max_length=100)
    token_endpoint_auth_method: Literal["client_secret_basic", "client_secret_post", "none"] = (
        "client_secret_basic"  # noqa: S105 (a method's name)
    )
    grant_types: (
        list[Literal["authorization_code", "refresh_token", "client_credentials"]] | None
    ) = None
    response_types: list[Literal["code"]] | None = None
    scope: str | None = Field(None, max_length=200)
    backchannel_logout_uri: str | None = Field(None, max_length=2000)
    post_logout_redirect_uris: list[str] | None = Field(None, max_length=20)


class RegistrationOut(BaseModel):
    client_id: str
    client_secret: str | None = Field(None, description="shown once; none for a public client")
    client_id_issued_at: int
    client_secret_expires_at: int | None = None
    client_name: str
    redirect_uris: list[str]
    grant_types: list[str]
    response_types: list[str]
    scope: str
    token_endpoint_auth_method: str
    post_logout_redirect_uris: list[str]
    backchannel_logout_uri: str | None = None
