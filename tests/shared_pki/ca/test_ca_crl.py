"""CRLs (shared_pki.ca.crl) for both CA families: OpenSSL verifies them and finds revoked
leaves through them, our reader gets the revoked list back, and wrong issuers fail."""

from __future__ import annotations

import datetime

import pytest
from asn1crypto import x509 as asn1_x509

from shared_pki import sm2
from shared_pki.ca import crl, profile
from shared_pki.ca.common import ProfileError
from shared_pki.errors import MalformedInput
from shared_pki.x509 import sm2_certs

ADDRESS = "alice@example.org"
T0 = (datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=1)).replace(microsecond=0)
REVOKED = [
    (profile.random_serial(), T0 - datetime.timedelta(days=2), "key_compromise"),
    (profile.random_serial(), T0 - datetime.timedelta(days=1), None),
    (profile.random_serial(), T0, 4),  # superseded
]


def _make(ca, revoked=REVOKED, **kw) -> bytes:
    kw.setdefault("this_update", T0)
    kw.setdefault("next_update", T0 + datetime.timedelta(days=7))
    kw.setdefault("number", 42)
    return crl.make_crl(ca, revoked, **kw)


@pytest.mark.parametrize("label", ["intl_issuing", "intl_root", "sm2_issuing", "sm2_root"])
def test_openssl_verifies_and_we_read_back(any_hierarchy, label, openssl, write_pem) -> None:
    ca = getattr(any_hierarchy, label)
    der = _make(ca)
    crl_path = write_pem("ca.crl", der, "X509 CRL")
    ca_path = write_pem("ca.pem", ca.der)
    result = openssl("crl", "-in", crl_path, "-noout", "-verify", "-CAfile", ca_path)
    assert result.returncode == 0 and "verify OK" in result.stderr + result.stdout, result
    assert crl.crl_revoked_serials(der) == [serial for serial, _, _ in REVOKED]
    entries = crl.crl_entries(der)
    assert [e.reason for e in entries] == [1, None, 4]
    assert [e.revocation_time for e in entries] == [when for _, when, _ in REVOKED]
    assert crl.crl_number(der) == 42
    assert crl.verify_crl(der, ca.certificate)
    text = openssl("crl", "-in", crl_path, "-noout", "-text").stdout
    assert "Key Compromise" in text and "Superseded" in text
    assert "X509v3 CRL Number" in text and "X509v3 Authority Key Identifier" in text
    # Another CA's certificate does not verify it (OpenSSL nor us).
    other = any_hierarchy.sm2_issuing if label.startswith("intl") else any_hierarchy.intl_issuing
    other_path = write_pem("other.pem", other.der)
    result = openssl("crl", "-in", crl_path, "-noout", "-verify", "-CAfile", other_path)
    assert "verify OK" not in result.stderr + result.stdout
    assert not crl.verify_crl(der, other.certificate)


def test_tampered_crl_fails(ec_hierarchy) -> None:
    for ca in (ec_hierarchy.intl_issuing, ec_hierarchy.sm2_issuing):
        der = bytearray(_make(ca))
        index = der.find(REVOKED[0][0].to_bytes(20, "big")[-8:])
        assert index > 0
        der[index] ^= 0x01
        assert crl.crl_revoked_serials(bytes(der))[0] != REVOKED[0][0]
        assert not crl.verify_crl(bytes(der), ca.certificate)


def test_openssl_finds_revoked_leaf(
    any_hierarchy, make_csr, issue_leaf, openssl, write_pem
) -> None:
    h = any_hierarchy
    leaf = asn1_x509.Certificate.load(issue_leaf(h, make_csr()))
    chain = ("-CAfile", write_pem("root.pem", h.intl_root.der),
             "-untrusted", write_pem("issuing.pem", h.intl_issuing.der))  # fmt: skip
    leaf_path = write_pem("leaf.pem", leaf.dump())
    clean = write_pem("clean.crl", _make(h.intl_issuing), "X509 CRL")
    result = openssl("verify", "-crl_check", "-CRLfile", clean, *chain, leaf_path)
    assert result.returncode == 0, result.stdout + result.stderr
    revoked = [*REVOKED, (leaf.serial_number, T0, "keyCompromise")]
    dirty = write_pem("dirty.crl", _make(h.intl_issuing, revoked), "X509 CRL")
    result = openssl("verify", "-crl_check", "-CRLfile", dirty, *chain, leaf_path)
    assert result.returncode != 0 and "revoked" in result.stdout + result.stderr


def test_sm2_signer_id(ec_hierarchy, openssl, write_pem) -> None:
    ca = ec_hierarchy.sm2_issuing
    standard = _make(ca, sm2_signer_id=sm2.DEFAULT_ID)
    path = write_pem("standard.crl", standard, "X509 CRL")
    result = openssl(
        "crl", "-in", path, "-noout", "-verify", "-CAfile", write_pem("ca.pem", ca.der)
    )
    assert "verify OK" not in result.stdout + result.stderr  # OpenSSL 3.0 checks the empty ID
    assert not crl.verify_crl(standard, ca.certificate)
    assert crl.verify_crl(standard, ca.certificate, sm2_ids=(sm2.DEFAULT_ID,))
    assert sm2_certs.is_sm2_certificate(ca.certificate)


def test_empty_crl(any_hierarchy, openssl, write_pem) -> None:
    for ca in (any_hierarchy.intl_issuing, any_hierarchy.sm2_issuing):
        der = _make(ca, [], number=0)
        assert crl.crl_revoked_serials(der) == []
        path = write_pem("empty.crl", der, "X509 CRL")
        result = openssl(
            "crl", "-in", path, "-noout", "-verify", "-CAfile", write_pem("c.pem", ca.der)
        )
        assert "verify OK" in result.stdout + result.stderr


def test_reasons() -> None:
    assert crl.reason_code("keyCompromise") == 1 == crl.reason_code("key_compromise")
    assert crl.reason_code("cessationOfOperation") == 5
    assert crl.reason_code(0) is None and crl.reason_code("unspecified") is None
    assert crl.reason_code(None) is None
    for bad in (7, 11, -1, "compromised", True):
        with pytest.raises(ProfileError):
            crl.reason_code(bad)


def test_refusals(ec_hierarchy) -> None:
    ca = ec_hierarchy.intl_issuing
    with pytest.raises(ProfileError):
        _make(ca, next_update=T0)
    with pytest.raises(ProfileError):
        _make(ca, number=-1)
    with pytest.raises(ProfileError):
        _make(ca, [(0, T0, None)])
    with pytest.raises(ProfileError):
        _make(ca, this_update=T0.replace(tzinfo=None))
    with pytest.raises(MalformedInput):
        crl.crl_revoked_serials(b"\x30\x00")
