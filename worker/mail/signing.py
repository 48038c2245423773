"""DKIM signatures (dkimpy): every message the worker sends carries one when DKIM_DOMAIN,
DKIM_SELECTOR and DKIM_PRIVATE_KEY (or DKIM_PRIVATE_KEY_FILE) are set, so providers that
check the sending domain's DMARC policy accept it. Signed once per message, over the final
wire bytes (relaxed/relaxed), right before it is sent.
"""

from __future__ import annotations

import base64
import functools
from dataclasses import dataclass
from typing import Any

import dkim
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa, utils

# The headers whose change would change what the reader is told, and the MIME structure.
SIGNED_HEADERS = [
    b"from", b"to", b"subject", b"date", b"message-id",
    b"mime-version", b"content-type", b"auto-submitted",
]  # fmt: skip
ALGORITHMS = {"rsa-sha256": b"rsa-sha256", "ed25519-sha256": b"ed25519-sha256"}


@functools.lru_cache(maxsize=8)
def _openssl_key(
    modulus: int, public: int, private: int, p: int, q: int, dp: int, dq: int, qi: int
) -> rsa.RSAPrivateKey:
    numbers = rsa.RSAPrivateNumbers(
        p, q, private, dp, dq, qi, rsa.RSAPublicNumbers(public, modulus)
    )
    return numbers.private_key()


_DIGESTS: dict[str, hashes.HashAlgorithm] = {"sha256": hashes.SHA256()}  # rsa-sha256 only


def _rsassa_pkcs1_v1_5_sign(digest: Any, key: dict[str, int]) -> bytes:
    """dkimpy's RSA signature step done by OpenSSL (through cryptography) instead of in
    pure Python: the same bytes (PKCS#1 v1.5 is deterministic; a test compares them), about
    a tenth of the CPU. dkimpy still canonicalizes, hashes and builds the header."""
    private_key = _openssl_key(
        key["modulus"], key["publicExponent"], key["privateExponent"], key["prime1"],
        key["prime2"], key["exponent1"], key["exponent2"], key["coefficient"],
    )  # fmt: skip
    algorithm = _DIGESTS[digest.name.lower()]
    return private_key.sign(digest.digest(), padding.PKCS1v15(), utils.Prehashed(algorithm))


PURE_PYTHON_RSA_SIGN = dkim.RSASSA_PKCS1_v1_5_sign
# dkimpy looks these up in its module when it signs: the RSA step in OpenSSL, and the
# key's PEM parsed once (in pure Python it costs as much as the signature) instead of per
# message; the parsed key is only read.
dkim.RSASSA_PKCS1_v1_5_sign = _rsassa_pkcs1_v1_5_sign
dkim.parse_pem_private_key = functools.lru_cache(maxsize=8)(dkim.parse_pem_private_key)


@dataclass(frozen=True, slots=True)
class DkimSigner:
    domain: str
    selector: str
    private_key: bytes  # PEM for RSA; base64 of the 32-byte seed for ed25519 (dkimpy's forms)
    algorithm: str = "rsa-sha256"

    def sign(self, message: bytes) -> bytes:
        """``message`` with its DKIM-Signature header prepended."""
        header = dkim.sign(
            message,
            self.selector.encode(),
            self.domain.encode(),
            self.private_key,
            canonicalize=(b"relaxed", b"relaxed"),
            signature_algorithm=ALGORITHMS[self.algorithm],
            include_headers=SIGNED_HEADERS,
        )
        return bytes(header) + message


@dataclass(frozen=True, slots=True)
class KeyPair:
    private_key: bytes  # what DKIM_PRIVATE_KEY holds
    dns_value: str  # the TXT record's value: "v=DKIM1; k=...; p=..."


def generate_key(algorithm: str = "rsa-sha256") -> KeyPair:
    """A new signing key and the DNS record that publishes its public half."""
    if algorithm == "ed25519-sha256":
        key = ed25519.Ed25519PrivateKey.generate()
        seed = key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        public = key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        return KeyPair(
            base64.b64encode(seed), f"v=DKIM1; k=ed25519; p={base64.b64encode(public).decode()}"
        )
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = rsa_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    der = rsa_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return KeyPair(pem, f"v=DKIM1; k=rsa; p={base64.b64encode(der).decode()}")
