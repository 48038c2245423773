"""The JSON API: the same rules and outcomes as the forms, errors as problem+json."""

from __future__ import annotations

from typing import Any

import pytest
from openapi_spec_validator import validate
from openapi_spec_validator.versions import OPENAPIV31 as OpenAPIV31
from openapi_spec_validator.versions.shortcuts import get_spec_version
from quart import Quart
from sqlalchemy import func, update

from devstack.mailsink import MailSink
from shared.db import SessionMaker
from shared.models import User
from shared.settings import Settings
from shared.validation import LINK_DEAD
from tests.support import settle

API = "/api/v1"
ALICE = {"username": "alice", "email": "alice@example.com", "password": "correct horse battery"}


@pytest.fixture
def api(app: Quart) -> Any:
    return app.test_client()


async def register(api: Any, sessionmaker: SessionMaker, *, confirmed: bool = True) -> Any:
    """Register Alice; with ``confirmed``, as if she had followed her confirmation link."""
    response = await api.post(f"{API}/register", json=ALICE)
    await settle()  # what the registration does after its answer
    if confirmed:
        async with sessionmaker() as session, session.begin():
            await session.execute(update(User).values(confirmed_at=func.now()))
    return response


def link_token(smtp: MailSink, subject: str, marker: str) -> str:
    message = [m for m in smtp.messages if m.message["Subject"] == subject][-1]
    (link,) = [link for link in message.links if marker in link and not link.endswith("/resend")]
    return link.rsplit("/", 1)[1]


async def assert_problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status
    assert response.headers["Content-Type"] == "application/problem+json"
    body = await response.get_json(force=True)
    assert body["status"] == status
    assert {"type", "title", "detail"} <= set(body)
    return body  # type: ignore[no-any-return]


async def test_register_confirm_login_me_logout(api: Any, smtp: MailSink, run_worker: Any) -> None:
    response = await api.post(f"{API}/register", json=ALICE)
    assert response.status_code == 202
    first = await response.get_json()
    # An address that already has an account: exactly the same answer.
    response = await api.post(f"{API}/register", json={**ALICE, "username": "mallory"})
    assert response.status_code == 202
    assert await response.get_json() == first

    await run_worker()
    token = link_token(smtp, "Confirm your email address", "/confirm/")
    response = await api.post(f"{API}/confirm", json={"token": token})
    assert (await response.get_json())["detail"] == "Your email address is confirmed."
    response = await api.post(f"{API}/confirm", json={"token": token})
    assert (await response.get_json())["detail"] == "Your email address is already confirmed."

    await assert_problem(await api.get(f"{API}/me"), 401)
    response = await api.post(
        f"{API}/login", json={"email": ALICE["email"], "password": ALICE["password"]}
    )
    assert response.status_code == 200
    assert any(c.startswith("QUART_AUTH=") for c in response.headers.get_all("Set-Cookie"))
    me = await (await api.get(f"{API}/me")).get_json()
    assert (me["username"], me["email"], me["confirmed"]) == ("alice", "alice@example.com", True)

    assert (await api.post(f"{API}/logout", json={})).status_code == 200
    await assert_problem(await api.get(f"{API}/me"), 401)


async def test_validation_errors_name_each_field(api: Any) -> None:
    body = await assert_problem(
        await api.post(
            f"{API}/register", json={"username": "a", "email": "nope", "password": "x" * 129}
        ),
        422,
    )
    assert set(body["errors"]) == {"username", "email", "password"}
    body = await assert_problem(
        await api.post(f"{API}/register", json={**ALICE, "password": "alice@example.com"}), 422
    )
    assert body["errors"]["password"] == [
        "Your password must not be your username or email address."
    ]
    body = await assert_problem(await api.post(f"{API}/register", json={**ALICE, "extra": 1}), 422)
    assert "extra" in body["errors"]


async def test_username_taken_is_409(api: Any, sessionmaker: SessionMaker) -> None:
    await register(api, sessionmaker, confirmed=False)
    body = await assert_problem(
        await api.post(
            f"{API}/register", json={**ALICE, "username": "ALICE", "email": "other@example.com"}
        ),
        409,
    )
    assert body["errors"] == {"username": ["That username is taken."]}


async def test_wrong_password_and_unknown_email_are_the_same_401(
    api: Any, sessionmaker: SessionMaker
) -> None:
    await register(api, sessionmaker)
    wrong = await assert_problem(
        await api.post(
            f"{API}/login", json={"email": ALICE["email"], "password": "wrong password"}
        ),
        401,
    )
    unknown = await assert_problem(
        await api.post(
            f"{API}/login", json={"email": "nobody@example.com", "password": "wrong password"}
        ),
        401,
    )
    assert wrong == unknown


async def test_cross_site_requests_are_refused(api: Any, settings: Settings) -> None:
    # A form post (what a cross-site page can send without a preflight) is not JSON.
    await assert_problem(await api.post(f"{API}/register", form=ALICE), 415)
    await assert_problem(
        await api.post(f"{API}/register", json=ALICE, headers={"Origin": "https://evil.example"}),
        403,
    )
    response = await api.post(f"{API}/register", json=ALICE, headers={"Origin": settings.base_url})
    assert response.status_code == 202


async def test_password_reset_through_the_api(
    api: Any, sessionmaker: SessionMaker, smtp: MailSink, run_worker: Any
) -> None:
    # Never confirmed: a reset through the emailed link proves the address as well.
    await register(api, sessionmaker, confirmed=False)
    known = await api.post(f"{API}/password-reset/request", json={"email": ALICE["email"]})
    unknown = await api.post(f"{API}/password-reset/request", json={"email": "no@example.com"})
    assert known.status_code == unknown.status_code == 202
    assert await known.get_json() == await unknown.get_json()
    await run_worker()
    token = link_token(smtp, "Reset your password", "/reset-password/")

    await assert_problem(
        await api.post(f"{API}/password-reset/confirm", json={"token": token, "password": "alice"}),
        422,
    )
    response = await api.post(
        f"{API}/password-reset/confirm", json={"token": token, "password": "new staple battery"}
    )
    assert response.status_code == 200
    body = await assert_problem(
        await api.post(
            f"{API}/password-reset/confirm", json={"token": token, "password": "another new one"}
        ),
        400,
    )
    assert body["detail"] == LINK_DEAD
    response = await api.post(
        f"{API}/login", json={"email": ALICE["email"], "password": "new staple battery"}
    )
    assert response.status_code == 200


async def test_password_change(api: Any, sessionmaker: SessionMaker) -> None:
    await assert_problem(
        await api.post(
            f"{API}/password/change", json={"current_password": "x" * 8, "password": "y" * 8}
        ),
        401,
    )
    await register(api, sessionmaker)
    await api.post(f"{API}/login", json={"email": ALICE["email"], "password": ALICE["password"]})
    body = await assert_problem(
        await api.post(
            f"{API}/password/change",
            json={"current_password": "not it at all", "password": "new staple battery"},
        ),
        400,
    )
    assert "current_password" in body["errors"]
    response = await api.post(
        f"{API}/password/change",
        json={"current_password": ALICE["password"], "password": "new staple battery"},
    )
    assert response.status_code == 200
    assert (await api.get(f"{API}/me")).status_code == 200  # this session stays


async def test_confirmation_resend_answers_alike_for_any_address(
    api: Any, sessionmaker: SessionMaker, smtp: MailSink, run_worker: Any
) -> None:
    await register(api, sessionmaker, confirmed=False)
    answers = []
    for address in (ALICE["email"], "nobody@example.com"):
        response = await api.post(f"{API}/confirm/request", json={"email": address})
        assert response.status_code == 202
        answers.append(await response.get_json())
    assert answers[0] == answers[1]
    await run_worker()
    assert len(smtp.messages) == 1  # the registration's link went out moments ago


async def test_rate_limits_apply_to_the_api_too(api: Any, settings: Settings) -> None:
    for _ in range(settings.POSTS_PER_MINUTE):
        await api.post(f"{API}/password-reset/request", json={"email": "a@example.com"})
    response = await api.post(f"{API}/password-reset/request", json={"email": "a@example.com"})
    await assert_problem(response, 429)
    assert int(response.headers["Retry-After"]) >= 1


async def test_errors_are_problems_never_html(api: Any) -> None:
    await assert_problem(await api.get(f"{API}/nothing-here"), 404)
    await assert_problem(await api.get(f"{API}/register"), 405)
    response = await api.post(
        f"{API}/login", data=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert response.status_code in (400, 422)
    assert response.headers["Content-Type"] == "application/problem+json"


async def test_openapi_describes_the_api_and_oauth_endpoints_only(api: Any) -> None:
    spec = await (await api.get(f"{API}/openapi.json")).get_json()
    validate(spec)  # a valid OpenAPI 3.1 document, every $ref resolving
    assert get_spec_version(spec) == OpenAPIV31
    assert "Problem" in spec["components"]["schemas"]
    assert spec["info"]["title"] == "Accounts API"
    paths = set(spec["paths"])
    assert f"{API}/register" in paths and f"{API}/password-reset/confirm" in paths
    oauth = {"/oauth/token", "/oauth/userinfo", "/oauth/introspect", "/oauth/revoke",
             "/oauth/register"}  # fmt: skip
    assert {path for path in paths if not path.startswith(API)} == oauth  # no HTML pages
    responses = spec["paths"][f"{API}/login"]["post"]["responses"]
    assert "application/problem+json" in responses["401"]["content"]
    # The OAuth endpoints answer OAuth errors, and take forms.
    token = spec["paths"]["/oauth/token"]["post"]
    assert "application/json" in token["responses"]["400"]["content"]
    assert "application/x-www-form-urlencoded" in token["requestBody"]["content"]


@pytest.mark.parametrize(
    "body",
    [
        b'{"email": "a@example.com", "password": "\xff\xfe"}',  # not UTF-8
        b"[" * 100_000 + b"]" * 100_000,  # nested past any parser's recursion limit
        b'{"email": ' + b"[" * 5000 + b"]" * 5000 + b"}",
        b"\x00\x01\x02",
        b'"just a string"',
        b"1e999999",
    ],
    ids=["not-utf8", "deep-array", "deep-field", "binary", "string", "huge-number"],
)
async def test_malformed_json_is_a_problem_not_a_server_error(api: Any, body: bytes) -> None:
    response = await api.post(
        f"{API}/login", data=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code in (400, 413, 422)
    assert response.headers["Content-Type"] == "application/problem+json"


async def test_nonsense_page_numbers_are_pages_not_errors(api: Any) -> None:
    for page in ("99999999999999999999999", "-1", "abc", "1e9", str(2**63)):
        assert (await api.get(f"/?page={page}")).status_code == 200
