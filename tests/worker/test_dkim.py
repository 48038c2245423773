"""DKIM: the worker signs every message it sends, and the delivered bytes verify with the
library's verifier against the key `python -m worker dkim-keygen` tells to publish (a DNS
look-up function of the test's: no network)."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import dkim
import pytest
from arq.connections import ArqRedis
from dkim.crypto import parse_pem_private_key

from devstack.mailsink import MailSink
from shared.db import SessionMaker
from shared.jobs import EmailKind, TestEmail
from shared.outbox import add_email, transaction
from shared.settings import Settings
from tests.support import ROOT, run_burst_worker
from worker.mail.signing import (
    PURE_PYTHON_RSA_SIGN,
    _rsassa_pkcs1_v1_5_sign,
    generate_key,
)

pytestmark = pytest.mark.usefixtures("clean_db")


def keygen(tmp_path: Path, algorithm: str) -> tuple[Path, bytes]:
    """Run the command an operator runs; the key file and the DNS TXT value it prints."""
    key_file = tmp_path / f"dkim-{algorithm}.key"
    result = subprocess.run(
        [sys.executable, "-m", "worker", "dkim-keygen", "--domain", "accounts.test",
         "--selector", "mail", "--algorithm", algorithm, "--out", str(key_file)],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    (record,) = [line for line in result.stdout.splitlines() if "._domainkey." in line]
    assert record.strip().startswith("mail._domainkey.accounts.test. IN TXT")
    assert oct(key_file.stat().st_mode)[-3:] == "600"
    return key_file, record.split('"')[1].encode()


@pytest.mark.parametrize("algorithm", ["rsa-sha256", "ed25519-sha256"])
async def test_delivered_messages_carry_a_signature_that_verifies(
    settings: Settings,
    sessionmaker: SessionMaker,
    queue: ArqRedis,
    smtp: MailSink,
    tmp_path: Path,
    algorithm: str,
) -> None:
    key_file, dns_value = keygen(tmp_path, algorithm)
    signing = settings.with_values(
        DKIM_DOMAIN="accounts.test",
        DKIM_SELECTOR="mail",
        DKIM_PRIVATE_KEY=key_file.read_text(),
        DKIM_ALGORITHM=algorithm,
    )
    async with transaction(sessionmaker, queue, queue_name=settings.QUEUE_NAME) as session:
        await add_email(session, EmailKind.TEST, "you@example.com", TestEmail())
        await add_email(session, EmailKind.TEST, "dü@exämple.com", TestEmail())  # SMTPUTF8
    await run_burst_worker(signing)
    assert len(smtp.messages) == 2

    def dns(name: bytes, timeout: int = 5) -> bytes:
        assert name == b"mail._domainkey.accounts.test."
        return dns_value

    for received in smtp.messages:
        assert received.raw.startswith(b"DKIM-Signature:")
        assert dkim.verify(received.raw, dnsfunc=dns), received.raw[:400]
        tampered = received.raw.replace(b"test subject", b"paid invoice")
        assert not dkim.verify(tampered, dnsfunc=dns)


def test_openssl_signs_exactly_what_dkimpy_would() -> None:
    """The RSA step runs in OpenSSL (cryptography) instead of dkimpy's pure Python: the
    signature must be the very same bytes (PKCS#1 v1.5 is deterministic), and it must be the
    function dkimpy calls. Its cost is measured in `make bench` (scenario 2's DKIM rows)."""
    key = parse_pem_private_key(generate_key("rsa-sha256").private_key)
    for text in (b"", b"a message", b"x" * 10_000):
        digest = hashlib.sha256(text)
        assert _rsassa_pkcs1_v1_5_sign(digest, key) == PURE_PYTHON_RSA_SIGN(digest, key)
    assert dkim.RSASSA_PKCS1_v1_5_sign is _rsassa_pkcs1_v1_5_sign
