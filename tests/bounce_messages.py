"""Realistic reports as mail servers send them: a Postfix-style delivery status notification
(RFC 3464) and a feedback-loop complaint in the Abuse Reporting Format (RFC 5965)."""

from __future__ import annotations


def dsn(
    *,
    to: str,
    recipient: str,
    status: str = "5.1.1",
    action: str = "failed",
    diagnostic: str = "smtp; 550 5.1.1 <{recipient}>: Recipient address rejected: User unknown",
    message_id: str = "<outbox.1.1700000000@example.com>",
) -> bytes:
    diagnostic = diagnostic.format(recipient=recipient)
    return f"""\
Return-Path: <>
From: MAILER-DAEMON@mx.example.net (Mail Delivery System)
To: {to}
Subject: Undelivered Mail Returned to Sender
Date: Mon, 23 Nov 2026 10:00:00 +0000
Message-ID: <20261123100000.ABC123@mx.example.net>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status;
\tboundary="B1"

This is a MIME-encapsulated message.

--B1
Content-Description: Notification
Content-Type: text/plain; charset=us-ascii

This is the mail system at host mx.example.net.

I'm sorry to have to inform you that your message could not
be delivered to one or more recipients.

<{recipient}>: host mx.example.net said: 550 5.1.1 User unknown

--B1
Content-Description: Delivery report
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.net
X-Postfix-Queue-ID: ABC123
Arrival-Date: Mon, 23 Nov 2026 09:59:58 +0000

Final-Recipient: rfc822; {recipient}
Original-Recipient: rfc822;{recipient}
Action: {action}
Status: {status}
Remote-MTA: dns; mx.example.net
Diagnostic-Code: {diagnostic}

--B1
Content-Description: Undelivered Message Headers
Content-Type: text/rfc822-headers

From: Accounts <noreply@example.com>
To: {recipient}
Subject: Reset your password
Message-ID: {message_id}

--B1--
""".replace("\n", "\r\n").encode()


def arf(*, to: str, original_mail_from: str, recipient: str) -> bytes:
    return f"""\
From: feedback@fbl.example.net
To: {to}
Subject: FW: Reset your password
Date: Mon, 23 Nov 2026 11:00:00 +0000
Message-ID: <fbl.42@fbl.example.net>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=feedback-report;
\tboundary="F1"

--F1
Content-Type: text/plain; charset="US-ASCII"

This is an email abuse report for an email message received from IP 192.0.2.1.

--F1
Content-Type: message/feedback-report

Feedback-Type: abuse
User-Agent: ExampleFBL/1.0
Version: 1
Original-Mail-From: <{original_mail_from}>
Original-Rcpt-To: <{recipient}>
Arrival-Date: Mon, 23 Nov 2026 10:30:00 +0000
Source-IP: 192.0.2.1

--F1
Content-Type: message/rfc822
Content-Disposition: inline

Return-Path: <{original_mail_from}>
From: Accounts <noreply@example.com>
To: {recipient}
Subject: Reset your password
Message-ID: <outbox.1.1700000000@example.com>

The message body.

--F1--
""".replace("\n", "\r\n").encode()
