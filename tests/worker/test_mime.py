"""The fast composer writes what the email package would: checked by parsing its output with
the email package, as a mail client would."""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, datetime
from email.message import EmailMessage

import pytest

from worker.mail.mime import _header, compose
from worker.mail.render import EmailRenderer, RenderedEmail, build_message

DATE = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
SENDER = "Accounts <noreply@accounts.test>"


def parse(raw: bytes) -> EmailMessage:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


@pytest.fixture
def rendered() -> RenderedEmail:
    renderer = EmailRenderer(site_name="Accounts", base_url="https://accounts.test")
    return renderer.render(
        "confirm",
        {
            "username": "zoë",
            "expires_in": "24 hours",
            "resend_link": "https://accounts.test/confirm/resend",
            "link": "https://accounts.test/confirm/" + "x" * 120,
        },
    )


def test_same_message_as_the_email_package(rendered: RenderedEmail) -> None:
    options = {
        "sender": SENDER,
        "recipient": "you@example.com",
        "message_id": "<outbox.1.2@accounts.test>",
        "date": DATE,
    }
    raw = compose(rendered, **options)
    assert isinstance(raw, bytes)
    fast, reference = parse(raw), parse(build_message(rendered, **options).as_bytes())
    for header in ("Subject", "From", "To", "Date", "Message-ID", "Auto-Submitted", "MIME-Version"):
        assert fast[header] == reference[header], header
    assert fast.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in fast.iter_parts()] == ["text/plain", "text/html"]
    for subtype in ("plain", "html"):
        assert fast.get_body((subtype,)).get_content() == (  # type: ignore[union-attr]
            reference.get_body((subtype,)).get_content()
        )  # type: ignore[union-attr]
    assert "zoë" in fast.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    # SMTP's line limits hold, with CRLF everywhere.
    assert all(len(line) <= 78 for line in raw.split(b"\r\n"))
    assert b"\n" not in raw.replace(b"\r\n", b"")


@pytest.mark.parametrize(
    "value",
    [
        "Accounts <noreply@accounts.test>",
        "Reset your password",
        "x" * 69,  # "Subject: " + 69 = 78 characters, the longest line written as it is
        "x" * 70,
        "A subject long enough that the policy folds it onto a second line, as RFC 5322 asks",
        "Mon, 23 Nov 2026 12:00:00 +0000",
    ],
)
def test_plain_headers_are_what_the_policys_fold_gives(value: str) -> None:
    assert _header("Subject", value) == email.policy.SMTP.fold("Subject", value)


def test_non_ascii_subject_is_encoded(rendered: RenderedEmail) -> None:
    subject = RenderedEmail("Bestätigen Sie Ihre Adresse ✓", rendered.text, rendered.html)
    raw = compose(
        subject,
        sender=SENDER,
        recipient="you@example.com",
        message_id="<m@accounts.test>",
        date=DATE,
    )
    assert isinstance(raw, bytes)
    assert raw.isascii()
    assert parse(raw)["Subject"] == "Bestätigen Sie Ihre Adresse ✓"


@pytest.mark.parametrize("field", ["recipient", "sender", "message_id", "subject"])
def test_line_breaks_never_reach_the_headers(rendered: RenderedEmail, field: str) -> None:
    values = {"sender": SENDER, "recipient": "you@example.com", "message_id": "<m@accounts.test>"}
    if field == "subject":
        rendered = RenderedEmail("Hi\r\nBcc: all@example.com", rendered.text, rendered.html)
    else:
        values[field] += "\r\nBcc: all@example.com"
    with pytest.raises(ValueError, match="line break"):
        compose(rendered, date=DATE, **values)


def test_internationalised_address_goes_through_the_email_package(
    rendered: RenderedEmail,
) -> None:
    message = compose(
        rendered,
        sender=SENDER,
        recipient="zoë@example.com",
        message_id="<m@accounts.test>",
        date=DATE,
    )
    assert isinstance(message, EmailMessage)
    assert message["To"] == "zoë@example.com"
