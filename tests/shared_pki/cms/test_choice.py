"""Algorithm choice per message: strongest common cipher, OAEP/stronger KDF only where advertised,
the fallback every client reads, capabilities from the certificate or the caller, and the sender
always among the recipients."""

from __future__ import annotations

import datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID
from harness import pki

from shared_pki.cms import capabilities, choice, enveloped
from shared_pki.cms.capabilities import (
    ADVERTISED,
    OID_AES128_CBC,
    OID_AES128_GCM,
    OID_AES256_CBC,
    OID_AES256_GCM,
    OID_ECDH_STD_SHA256KDF,
    OID_RSAES_OAEP,
    OID_RSAES_PKCS1V15,
    Capability,
)
from shared_pki.cms.recipients import oaep_parameters
from shared_pki.errors import EncryptionError

LEGACY = (Capability(OID_AES256_CBC), Capability(OID_AES128_CBC), Capability(OID_RSAES_PKCS1V15))


@pytest.fixture(scope="module")
def root() -> pki.Authority:
    return pki.root()


@pytest.fixture(scope="module")
def rsa(root):
    return root.smime("rsa@example.test", "rsa2048")


@pytest.fixture(scope="module")
def p256(root):
    return root.smime("p256@example.test", "p256")


@pytest.fixture(scope="module")
def p384(root):
    return root.smime("p384@example.test", "p384")


def with_capabilities_extension(root: pki.Authority, caps: bytes) -> pki.Party:
    """An RSA S/MIME certificate carrying the smimeCapabilities extension (RFC 4262)."""
    key = pki.new_key("rsa2048")
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "caps@example.test")]))
        .issuer_name(root.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(
            x509.UnrecognizedExtension(
                x509.ObjectIdentifier(choice.OID_SMIME_CAPABILITIES_EXTENSION), caps
            ),
            critical=False,
        )
        .sign(root.key, hashes.SHA256())
    )
    return pki.Party(key, cert, [root.cert])


def test_nothing_advertised_falls_back_to_what_every_client_reads(rsa, p256, p384):
    picked = choice.choose([(rsa.asn1, None), (p256.asn1, None), (p384.asn1, None)])
    assert picked == choice.Choice(
        "aes256_cbc", ("rsa_pkcs1v15", "ecdh_sha256kdf", "ecdh_sha256kdf")
    )


def test_everyone_advertising_everything_gets_the_strongest(rsa, p256, p384):
    picked = choice.choose(
        [(rsa.asn1, ADVERTISED), (p256.asn1, ADVERTISED), (p384.asn1, ADVERTISED)]
    )
    assert picked == choice.Choice("aes256_gcm", ("rsa_oaep", "ecdh_sha384kdf", "ecdh_sha384kdf"))


def test_strongest_common_cipher(rsa, p256):
    only_gcm128 = (Capability(OID_AES128_GCM), Capability(OID_AES256_CBC))
    picked = choice.choose([(rsa.asn1, ADVERTISED), (p256.asn1, only_gcm128)])
    assert picked.cipher == "aes128_gcm"
    cbc_only = (Capability(OID_AES128_CBC), Capability(OID_AES256_CBC))
    assert choice.choose([(rsa.asn1, ADVERTISED), (p256.asn1, cbc_only)]).cipher == "aes256_cbc"


def test_one_silent_recipient_forces_the_fallback_cipher_but_not_others_transports(rsa, root, p256):
    other_rsa = root.smime("rsa2@example.test", "rsa2048")
    picked = choice.choose([(rsa.asn1, ADVERTISED), (other_rsa.asn1, None), (p256.asn1, ())])
    assert picked.cipher == "aes256_cbc"
    assert picked.key_transports == ("rsa_oaep", "rsa_pkcs1v15", "ecdh_sha256kdf")


def test_no_common_cipher_falls_back(rsa, p256):
    picked = choice.choose(
        [(rsa.asn1, (Capability(OID_AES128_CBC),)), (p256.asn1, (Capability(OID_AES256_GCM),))]
    )
    assert picked.cipher == "aes256_cbc"


def test_oaep_only_for_recipients_advertising_sha256_oaep(rsa):
    sha1_oaep = (Capability(OID_AES256_CBC), Capability(OID_RSAES_OAEP, b"\x30\x00"))
    assert choice.choose([(rsa.asn1, sha1_oaep)]).key_transports == ("rsa_pkcs1v15",)
    sha256_oaep = (Capability(OID_RSAES_OAEP, oaep_parameters("sha256").dump()),)
    assert choice.choose([(rsa.asn1, sha256_oaep)]).key_transports == ("rsa_oaep",)
    assert choice.choose([(rsa.asn1, LEGACY)]).key_transports == ("rsa_pkcs1v15",)


def test_ecdh_transport_follows_advertisement(p384):
    sha256_only = (Capability(OID_AES256_GCM), Capability(OID_ECDH_STD_SHA256KDF))
    assert choice.choose([(p384.asn1, sha256_only)]).key_transports == ("ecdh_sha256kdf",)


def test_capabilities_from_the_certificate_extension(root, p256):
    party = with_capabilities_extension(root, capabilities.encode(ADVERTISED).dump())
    assert choice.certificate_capabilities(party.asn1) == ADVERTISED
    assert choice.choose([(party.asn1, None)]) == choice.Choice("aes256_gcm", ("rsa_oaep",))
    # What the caller read from the last signed message wins over the certificate.
    assert choice.choose([(party.asn1, LEGACY)]) == choice.Choice("aes256_cbc", ("rsa_pkcs1v15",))
    assert choice.certificate_capabilities(p256.asn1) is None


def test_broken_capabilities_extension_means_the_fallback(root):
    party = with_capabilities_extension(root, b"\x30\x03\x02\x01\x00")
    assert choice.certificate_capabilities(party.asn1) is None
    assert choice.choose([(party.asn1, None)]) == choice.Choice("aes256_cbc", ("rsa_pkcs1v15",))


def test_no_recipients_is_an_error():
    with pytest.raises(EncryptionError):
        choice.choose([])


def test_encrypt_for_includes_the_sender_once(rsa, p256, p384):
    der = choice.encrypt_for(b"hi", p256.asn1, [(rsa.asn1, ADVERTISED), (p256.asn1, None)])
    info = enveloped.inspect(der)
    assert len(info.recipients) == 2
    assert info.cipher == "aes256_gcm"
    # RecipientInfos is a DER SET OF: sorted by encoding, not in the order given.
    assert sorted(r.key_encryption for r in info.recipients) == [
        "dh_single_pass_std_dh_sha384kdf",
        "rsaes_oaep",
    ]
    for party in (rsa, p256):
        assert enveloped.decrypt(der, [(party.asn1, party.key)]) == b"hi"
    legacy = choice.encrypt_for(b"hi", p384.asn1, [(rsa.asn1, None)])
    assert enveloped.inspect(legacy).cipher == "aes256_cbc"
    assert enveloped.decrypt(legacy, [(p384.asn1, p384.key)]) == b"hi"
