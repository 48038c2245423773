"""Rendering: subject, text and HTML from templates; headers that cannot be injected."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from shared.message_ids import email_id_in, message_id_for
from worker.mail.render import EmailRenderer, build_message

SENDER = "Accounts <noreply@accounts.test>"


@pytest.fixture
def renderer() -> EmailRenderer:
    return EmailRenderer(site_name="Accounts", base_url="https://accounts.test")


def test_test_email_is_multipart_alternative_with_seed_texts(renderer: EmailRenderer) -> None:
    rendered = renderer.render("test", {})
    assert rendered.subject == "test subject"
    message = build_message(
        rendered, sender=SENDER, recipient="you@example.com", message_id="<m.1@accounts.test>"
    )
    assert message.get_content_type() == "multipart/alternative"
    text, html = (part.get_content() for part in message.iter_parts())
    assert text.startswith("text body")
    assert "<h1" in html and "HTML body" in html
    # CSS is inlined for mail clients that drop <style> blocks.
    assert 'style="' in html
    assert message["From"] == SENDER
    assert message["To"] == "you@example.com"
    assert message["Message-ID"] == "<m.1@accounts.test>"
    assert message["Date"]


@pytest.mark.parametrize(
    "recipient",
    ["victim@example.com\r\nBcc: everyone@example.com", "victim@example.com\nSubject: hi"],
)
def test_line_breaks_in_a_recipient_cannot_inject_headers(
    renderer: EmailRenderer, recipient: str
) -> None:
    with pytest.raises(ValueError, match="line break"):
        build_message(
            renderer.render("test", {}),
            sender=SENDER,
            recipient=recipient,
            message_id="<m.2@accounts.test>",
        )


def test_message_id_is_traceable_to_the_outbox_row() -> None:
    created = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert (
        message_id_for(42, created, SENDER)
        == f"<outbox.42.{int(created.timestamp())}@accounts.test>"
    )
    # ... and read back from it (a provider's event names the message by it).
    assert email_id_in(message_id_for(42, created, SENDER).strip("<>")) == 42
    assert email_id_in("<someone.else.42@example.com>") is None


def test_missing_template_variable_is_an_error_not_a_blank(renderer: EmailRenderer) -> None:
    from jinja2 import UndefinedError

    env = renderer._env
    template = env.from_string("Hello {{ name }}")
    with pytest.raises(UndefinedError):
        template.render()
