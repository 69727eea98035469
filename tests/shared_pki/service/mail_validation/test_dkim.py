"""DKIM on challenge replies (dkimpy against a test zone): aligned, whole-body signatures only."""

from __future__ import annotations

import base64

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from shared_pki.service.mail_validation.dkim import DkimResult, aligned, verify_dkim, zone_resolver

MESSAGE = (
    b"From: alice@mail.example.test\r\n"
    b"To: ca@pki.example.test\r\n"
    b"Subject: Re: ACME: abc\r\n"
    b"Message-ID: <1@mail.example.test>\r\n"
    b"\r\n"
    b"-----BEGIN ACME RESPONSE-----\r\n"
    b"digest\r\n"
    b"-----END ACME RESPONSE-----\r\n"
)


def _key(bits: int = 2048) -> tuple[bytes, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    spki = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return pem, f"v=DKIM1; k=rsa; p={base64.b64encode(spki).decode()}"


@pytest.fixture(scope="module")
def key() -> tuple[bytes, str]:
    return _key()


def _signed(pem: bytes, domain: bytes, message: bytes = MESSAGE, **options: object) -> bytes:
    return dkim.sign(message, b"s1", domain, pem, **options) + message


@pytest.mark.parametrize(
    ("d", "sender", "ok"),
    [
        ("example.test", "example.test", True),
        ("example.test", "mail.example.test", True),
        ("EXAMPLE.TEST.", "mail.example.test", True),
        ("mail.example.test", "example.test", False),
        ("xample.test", "example.test", False),
        ("test", "example.test", False),
        ("evil.test", "example.test", False),
    ],
)
def test_alignment(d: str, sender: str, ok: bool) -> None:
    assert aligned(d, sender) is ok


def test_an_aligned_signature_verifies(key: tuple[bytes, str]) -> None:
    dns = zone_resolver({"s1._domainkey.example.test": key[1]})
    result = verify_dkim(
        _signed(key[0], b"example.test"), from_domain="mail.example.test", dnsfunc=dns
    )
    assert result.valid and result.domain == "example.test"


def test_what_is_refused(key: tuple[bytes, str]) -> None:
    dns = zone_resolver({"s1._domainkey.example.test": key[1], "s1._domainkey.evil.test": key[1]})

    def check(raw: bytes) -> DkimResult:
        return verify_dkim(raw, from_domain="mail.example.test", dnsfunc=dns)

    assert "no DKIM signature" in check(MESSAGE).detail
    tampered = _signed(key[0], b"example.test").replace(b"digest", b"digesT")
    assert "body hash mismatch" in check(tampered).detail
    assert "is by evil.test" in check(_signed(key[0], b"evil.test")).detail
    partial = _signed(key[0], b"example.test", length=True)
    assert "part of the body only" in check(partial).detail
    unpublished = verify_dkim(
        _signed(key[0], b"example.test"), from_domain="example.test", dnsfunc=zone_resolver({})
    )
    assert not unpublished.valid
    # One good aligned signature among bad ones is enough.
    evil = _signed(key[0], b"evil.test")
    assert check(dkim.sign(evil, b"s1", b"example.test", key[0]) + evil).valid
