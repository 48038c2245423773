"""A message flashed again before a page shows it is shown once, and the session cookie does
not grow (nor is it re-sent) with every repeat; at most MAX_WAITING messages wait."""

from __future__ import annotations

from quart import Quart, session

from tests.web.browser import Browser
from web.flashes import MAX_WAITING, flash

REQUESTED = (
    "If an account exists for that email, you will receive instructions to reset your password."
)


async def test_a_form_posted_again_flashes_its_message_once(browser: Browser) -> None:
    form = await browser.get("/reset-password")
    data = {"csrf_token": form.csrf_token, "email": "nobody@example.com"}
    first = await browser.post("/reset-password", data)
    assert first.status == 302
    assert "session" in first.headers.get("Set-Cookie", "")  # the message is stored
    for _ in range(5):  # a double click, a retry, a script that ignores the redirect
        again = await browser.post("/reset-password", data)
        assert again.status == 302
        assert "session=" not in again.headers.get("Set-Cookie", "")  # nothing new to store
    page = await browser.get("/login")
    assert page.flashes == [("info", REQUESTED)]
    assert (await browser.get("/login")).flashes == []  # shown, then gone


async def test_the_same_words_in_another_category_are_another_message(app: Quart) -> None:
    async with app.test_request_context("/"):
        await flash("Saved.", "success")
        await flash("Saved.", "success")
        await flash("Saved.", "warning")
        assert session["_flashes"] == [("success", "Saved."), ("warning", "Saved.")]


async def test_at_most_max_waiting_messages_wait_the_newest_kept(app: Quart) -> None:
    async with app.test_request_context("/"):
        for n in range(MAX_WAITING + 3):
            await flash(f"message {n}", "info")
        assert session["_flashes"] == [("info", f"message {n}") for n in range(3, MAX_WAITING + 3)]
