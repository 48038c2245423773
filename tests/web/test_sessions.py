"""Where you are signed in: the list, ending one sign-in, and signing out everywhere else,
through the pages and the API; a revoked sign-in's cookie is refused on its next request."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

from quart import Quart

from tests.web.browser import Browser

FIREFOX = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0"
API = "/api/v1"


def revoke_paths(page_text: str) -> list[str]:
    return re.findall(r'action="(/account/sessions/[^"/]+/revoke)"', page_text)


async def signed_in_twice(app: Quart) -> tuple[Browser, Browser]:
    here = Browser(app)
    await here.register()
    await here.login()
    elsewhere = Browser(app)
    await elsewhere.login()
    return here, elsewhere


async def test_the_list_marks_this_device_and_ends_another(app: Quart) -> None:
    here, elsewhere = await signed_in_twice(app)
    page = await here.get("/account/sessions")
    assert page.status == 200
    assert page.text.count("this device") == 1
    assert page.text.count("with password<") == 2  # how each was made
    paths = revoke_paths(page.text)
    assert len(paths) == 2
    # The other one is the row without the "this device" badge.
    rows = page.text.split("<tr>")[2:]
    other = next(path for path, row in zip(paths, rows, strict=True) if "this device" not in row)
    done = await here.post(other, {"csrf_token": page.csrf_token}, follow=True)
    assert done.flashes[0][0] == "info"
    assert (await elsewhere.get("/account")).status == 302  # refused on its next request
    assert (await here.get("/account")).status == 200
    assert len(revoke_paths((await here.get("/account/sessions")).text)) == 1


async def test_sign_out_everywhere_else(app: Quart) -> None:
    here, elsewhere = await signed_in_twice(app)
    third = Browser(app)
    await third.login()
    page = await here.get("/account/sessions")
    done = await here.post(
        "/account/sessions/revoke-others", {"csrf_token": page.csrf_token}, follow=True
    )
    assert ("info", "Signed out everywhere else (2 sessions ended).") in done.flashes
    assert (await elsewhere.get("/account")).status == 302
    assert (await third.get("/account")).status == 302
    assert (await here.get("/account")).status == 200


async def test_ending_this_sign_in_signs_out(app: Quart) -> None:
    here, _ = await signed_in_twice(app)
    page = await here.get("/account/sessions")
    rows = page.text.split("<tr>")[2:]
    mine = next(
        path
        for path, row in zip(revoke_paths(page.text), rows, strict=True)
        if "this device" in row
    )
    done = await here.post(mine, {"csrf_token": page.csrf_token})
    assert done.location == "/login"
    assert (await here.get("/account")).status == 302


async def test_ending_needs_the_form_token_and_ones_own_session(app: Quart) -> None:
    here, elsewhere = await signed_in_twice(app)
    path = revoke_paths((await here.get("/account/sessions")).text)[0]
    assert (await here.post(path, {})).status == 400  # no CSRF token: refused
    bob = Browser(app)
    await bob.register("bob", "bob@example.com")
    await bob.login("bob@example.com")
    page = await bob.get("/account/sessions")
    done = await bob.post(path, {"csrf_token": page.csrf_token}, follow=True)
    assert ("warning", "That session had already ended.") in done.flashes  # not Bob's
    assert (await here.get("/account")).status == 200
    assert (await elsewhere.get("/account")).status == 200


async def test_a_password_change_ends_the_other_sign_ins_only(app: Quart) -> None:
    here, elsewhere = await signed_in_twice(app)
    new = "new staple battery horse"
    await here.submit(
        "/account/password",
        {"current_password": "correct horse battery", "password": new, "confirm_password": new},
    )
    assert (await here.get("/account")).status == 200
    assert (await elsewhere.get("/account")).status == 302


async def test_the_api_lists_and_ends_sessions(app: Quart) -> None:
    await Browser(app).register()
    here, elsewhere = app.test_client(), app.test_client()
    for client in (here, elsewhere):
        response = await client.post(
            f"{API}/login",
            json={"email": "alice@example.com", "password": "correct horse battery"},
            headers={"User-Agent": FIREFOX},
        )
        assert response.status_code == 200
    listed = (await (await here.get(f"{API}/sessions")).get_json())["sessions"]
    assert [entry["device"] for entry in listed] == ["Firefox on Windows"] * 2
    assert sorted(entry["current"] for entry in listed) == [False, True]
    assert [entry["methods"] for entry in listed] == [["pwd"]] * 2
    for entry in listed:  # made by a password just now: authenticated as it was created
        made, proved = (
            datetime.fromisoformat(entry[k]) for k in ("created_at", "authenticated_at")
        )
        assert timedelta(0) <= proved - made < timedelta(seconds=5)
    other = next(entry["id"] for entry in listed if not entry["current"])

    missing = await here.post(f"{API}/sessions/not-a-session/revoke", json={})
    assert missing.status_code == 404
    assert missing.headers["Content-Type"] == "application/problem+json"
    assert (await here.post(f"{API}/sessions/{other}/revoke", json={})).status_code == 200
    assert (await elsewhere.get(f"{API}/me")).status_code == 401
    ended: Any = await (await here.post(f"{API}/sessions/revoke-others", json={})).get_json()
    assert ended["ended"] == 0
    assert (await here.get(f"{API}/me")).status_code == 200
