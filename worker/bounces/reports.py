"""Reading what comes back: delivery status notifications (RFC 3464) and feedback-loop
complaints (ARF, RFC 5965), with the standard library's email parser.

Which message a report is about is read only from a validly signed bounce address
(:mod:`shared.verp`): the envelope recipient the bounce was sent to, or, in a complaint, the
``Original-Mail-From`` field or the returned headers' ``Return-Path``. A report that names no
such address changes nothing (it may be forged), and one that is neither a DSN nor an ARF
report is kept whole for an operator.
"""

from __future__ import annotations

import re
from email import message_from_bytes, policy
from email.message import EmailMessage, Message
from email.parser import HeaderParser

from shared.services.bounces import Outcome, Report
from shared.verp import email_id_from, find_email_id

# Mailbox full is temporary however the server words it (most say 5.2.2, some 4.2.2).
SOFT_STATUSES = ("5.2.2",)
_STATUS = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")


def understand(
    raw: bytes, rcpt_tos: list[str], *, domain: str, secret_key: str, source: str = "smtp"
) -> Report:
    """What a report received over SMTP says, and about which outbox row."""
    message = message_from_bytes(raw, policy=policy.default)
    email_id = next(
        (found for rcpt in rcpt_tos if (found := email_id_from(rcpt, domain, secret_key))),
        None,
    )
    report_type = (message.get_param("report-type") or "") if message.is_multipart() else ""
    kind = str(report_type).lower()
    if message.get_content_type() == "multipart/report" and kind == "delivery-status":
        outcome, detail = _delivery_status(message)
        return _matched(Report(source, "dsn", outcome, email_id, detail, raw))
    if message.get_content_type() == "multipart/report" and kind == "feedback-report":
        fields, returned = _feedback_parts(message)
        if email_id is None:
            email_id = find_email_id(
                f"{fields.get('Original-Mail-From', '')}\n{returned}", domain, secret_key
            )
        feedback = (fields.get("Feedback-Type") or "abuse").strip().lower()
        detail = f"complaint ({feedback})"
        if agent := fields.get("User-Agent"):
            detail += f" reported by {agent.strip()}"
        return _matched(Report(source, "arf", Outcome.COMPLAINT, email_id, detail, raw))
    subject = str(message.get("subject", ""))[:200]
    detail = f"not a delivery status or feedback report ({message.get_content_type()}): {subject}"
    return Report(source, "unknown", Outcome.UNPARSED, email_id, detail, raw)


def _matched(report: Report) -> Report:
    if report.email_id is not None:
        return report
    return Report(
        report.source,
        report.kind,
        Outcome.UNMATCHED,
        None,
        f"names no message of ours ({report.outcome.value}: {report.detail})",
        report.raw,
    )


def _delivery_status(message: EmailMessage) -> tuple[Outcome, str]:
    """The per-recipient fields of the message/delivery-status part: the worst outcome (our
    messages have one recipient, so there is one block in practice)."""
    for part in message.walk():
        if part.get_content_type() != "message/delivery-status":
            continue
        blocks = _status_blocks(part)
        outcomes = [_recipient_outcome(block) for block in blocks[1:]] or [
            (Outcome.UNPARSED, "a delivery status without recipient fields")
        ]
        order = [Outcome.HARD_BOUNCE, Outcome.SOFT_BOUNCE, Outcome.DELAYED, Outcome.UNPARSED]
        return min(outcomes, key=lambda item: order.index(item[0]) if item[0] in order else 9)
    return Outcome.UNPARSED, "a delivery-status report without its delivery-status part"


def _status_blocks(part: Message) -> list[Message]:
    """The part's field blocks: per-message first, then one per recipient."""
    payload = part.get_payload()
    if isinstance(payload, list):
        return [block for block in payload if isinstance(block, Message)]
    text = payload if isinstance(payload, str) else ""
    chunks = re.split(r"\r?\n\r?\n", text.strip())
    return [HeaderParser().parsestr(chunk) for chunk in chunks]


def _recipient_outcome(block: Message) -> tuple[Outcome, str]:
    action = str(block.get("Action", "")).strip().lower()
    status = str(block.get("Status", "")).strip()
    diagnostic = " ".join(str(block.get("Diagnostic-Code", "")).split())
    detail = " ".join(part for part in (status, diagnostic.split(";", 1)[-1].strip()) if part)
    match = _STATUS.search(status)
    if action == "delayed":
        return Outcome.DELAYED, f"delayed: {detail}".strip()
    if action != "failed":
        return Outcome.UNPARSED, f"action {action or 'missing'}: {detail}".strip()
    if match is None:
        return Outcome.HARD_BOUNCE, detail or "failed"
    code = ".".join(match.groups())
    if match.group(1) == "4" or code in SOFT_STATUSES:
        return Outcome.SOFT_BOUNCE, detail
    return Outcome.HARD_BOUNCE, detail


def _feedback_parts(message: EmailMessage) -> tuple[Message, str]:
    """The message/feedback-report fields, and the returned message's headers as text."""
    fields: Message = Message()
    returned = ""
    for part in message.walk():
        content_type = part.get_content_type()
        if content_type == "message/feedback-report":
            payload = part.get_payload()
            if isinstance(payload, list) and payload and isinstance(payload[0], Message):
                fields = payload[0]
            elif isinstance(payload, str):
                fields = HeaderParser().parsestr(payload)
        elif content_type in ("message/rfc822", "text/rfc822-headers"):
            payload = part.get_payload()
            if isinstance(payload, list) and payload and isinstance(payload[0], Message):
                returned = "\n".join(f"{k}: {v}" for k, v in payload[0].items())
            elif isinstance(payload, str):
                returned = payload
    return fields, returned
