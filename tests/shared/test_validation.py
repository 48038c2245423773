"""The key an address is known by: the domain as DNS resolves it, the local part with at most
ASCII case folding; and the shortcut for ASCII domains gives exactly IDNA's answer."""

from __future__ import annotations

import string

import idna
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.validation import email_key


def idna_key(domain: str) -> str:
    """The domain part of the key by the full IDNA 2008 + UTS 46 mapping, as for any domain
    that is not ASCII."""
    try:
        domain = idna.encode(domain, uts46=True, transitional=False).decode("ascii")
    except (idna.IDNAError, UnicodeError):
        domain = domain.lower()
    return domain.lower()


@pytest.mark.parametrize(
    ("address", "key"),
    [
        ("Alice@Example.COM", "alice@example.com"),
        ("  bob@example.com ", "bob@example.com"),
        ("ÉLODIE@Example.com", "Élodie@example.com"),  # ASCII case folding only
        ("anna@Bücher.Example", "anna@xn--bcher-kva.example"),
        ("anna@XN--BCHER-KVA.example", "anna@xn--bcher-kva.example"),  # the same domain
        ("max@straße.de", "max@xn--strae-oqa.de"),  # ß stays distinct from ss
        ("max@strasse.de", "max@strasse.de"),
        ("a@b@Example.com", "a@b@example.com"),  # the domain follows the last @
        ("not-an-address", "not-an-address"),
        ("Trailing@Example.com.", "trailing@example.com."),
    ],
)
def test_email_key(address: str, key: str) -> None:
    assert email_key(address) == key


ascii_domains = st.one_of(
    st.text(alphabet=string.ascii_letters + string.digits + "-.", max_size=80),
    st.text(alphabet=st.characters(max_codepoint=127), max_size=40),
    st.builds(
        "xn--{}".format, st.text(alphabet=string.ascii_letters + string.digits + "-", max_size=20)
    ),
    st.sampled_from(["xn--bcher-kva.example", "XN--STRAE-OQA.DE", "xn--zz.example", "a..b", "."]),
)


@settings(max_examples=3000, deadline=None)
@given(ascii_domains)
def test_an_ascii_domain_keys_as_idna_maps_it(domain: str) -> None:
    address = f"Some.One@{domain}"
    # As email_key reads it: white space around the address is not part of it, and the
    # domain follows the last @.
    local, _, as_read = address.strip().rpartition("@")
    assert email_key(address) == f"{local.lower()}@{idna_key(as_read)}"
