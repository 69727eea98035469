"""The CA hierarchy (shared_pki.ca.hierarchy): structure, OpenSSL's verdict on chains with a
leaf we issue (international and SM2), our own path validation, the TSA and mail identity."""

from __future__ import annotations

import datetime
import hashlib

import pytest
from asn1crypto import x509 as asn1_x509
from cryptography.hazmat.primitives.asymmetric import rsa

from shared_pki import sm2
from shared_pki.ca import hierarchy as ca_hierarchy
from shared_pki.ca import profile
from shared_pki.ca.common import ProfileError, resign_sm2
from shared_pki.x509 import sm2_certs, validate

ADDRESS = "alice@example.org"
DISTID = "-vfyopt", "distid:1234567812345678"


def _days(cert: asn1_x509.Certificate) -> float:
    return (cert.not_valid_after - cert.not_valid_before).total_seconds() / 86400


def _uris(cert: asn1_x509.Certificate) -> tuple[list[str], list[str]]:
    crl = [
        name.native
        for point in (cert.crl_distribution_points or [])
        for name in point["distribution_point"].chosen
    ]
    aia = [
        item["access_location"].native
        for item in (cert.authority_information_access_value or [])
        if item["access_method"].native == "ca_issuers"
    ]
    return crl, aia


def test_structure(any_hierarchy: ca_hierarchy.Hierarchy) -> None:
    h = any_hierarchy
    for root in (h.intl_root, h.sm2_root):
        cert = root.certificate
        assert cert.self_signed == "maybe" or cert.self_issued
        assert cert.ca is True and cert.max_path_length is None
        assert cert.key_usage_value.native == {"key_cert_sign", "crl_sign"}
        assert cert.key_identifier == cert.authority_key_identifier
        assert 20 * 365 <= _days(cert) <= 20 * 366
        assert _uris(cert) == ([], [])
    for issuing, root, family in (
        (h.intl_issuing, h.intl_root, "intl"),
        (h.sm2_issuing, h.sm2_root, "sm2"),
    ):
        cert = issuing.certificate
        assert cert.ca is True and cert.max_path_length == 0
        assert cert.issuer == root.certificate.subject
        assert cert.authority_key_identifier == root.certificate.key_identifier
        assert 10 * 365 <= _days(cert) <= 10 * 366
        assert "email_protection" in cert.extended_key_usage_value.native
        assert _uris(cert) == (
            [f"http://pki.example.test/crl/{family}-root.crl"],
            [f"http://pki.example.test/ca/{family}-root.cer"],
        )
        policies = [p["policy_identifier"].dotted for p in cert.certificate_policies_value]
        assert "2.23.140.1.5.1.3" in policies
    expected = rsa.RSAPrivateKey if h.intl_key_type == "rsa-3072" else object
    assert isinstance(h.intl_root.key, expected)
    assert h.intl_root.family == "intl" and h.sm2_root.family == "sm2"
    assert isinstance(h.sm2_issuing.key, sm2.SM2PrivateKey)


def test_root_fingerprints(ec_hierarchy: ca_hierarchy.Hierarchy, openssl, write_pem) -> None:
    prints = ec_hierarchy.root_fingerprints()
    assert set(prints) == {"intl", "sm2"}
    for family, root in (("intl", ec_hierarchy.intl_root), ("sm2", ec_hierarchy.sm2_root)):
        assert prints[family] == hashlib.sha256(root.der).digest().hex(":").upper()
        path = write_pem(f"{family}.pem", root.der)
        shown = openssl("x509", "-in", path, "-noout", "-fingerprint", "-sha256").stdout
        assert shown.strip().split("=", 1)[1] == prints[family]
    assert ec_hierarchy.roots_pem().count(b"BEGIN CERTIFICATE") == 2
    assert ec_hierarchy.intermediates_pem().count(b"BEGIN CERTIFICATE") == 2


# OpenSSL's smimeencrypt purpose demands keyEncipherment, so it judges RSA encryption
# certificates only; an EC encryption certificate (keyAgreement, BR strict) fails it by design.
@pytest.mark.parametrize(
    "key_type,usage,purpose",
    [
        ("ec", None, "smimesign"),
        ("rsa", None, "smimesign"),
        ("rsa", {"key_encipherment"}, "smimeencrypt"),
    ],
)
def test_intl_chain_in_openssl(
    any_hierarchy, make_csr, issue_leaf, openssl, write_pem, key_type, usage, purpose
) -> None:
    h = any_hierarchy
    key = rsa.generate_private_key(65537, 2048) if key_type == "rsa" else None
    leaf = issue_leaf(h, make_csr(key, key_usage=usage))
    root = write_pem("root.pem", h.intl_root.der)
    issuing = write_pem("issuing.pem", h.intl_issuing.der)
    leaf_path = write_pem("leaf.pem", leaf)
    args = ("verify", "-purpose", purpose, "-CAfile", root, "-untrusted", issuing, leaf_path)
    result = openssl(*args)
    assert result.returncode == 0, result.stdout + result.stderr
    # Can fail: without the issuing CA there is no path; the SM2 root is no anchor for it.
    assert openssl("verify", "-CAfile", root, leaf_path).returncode != 0
    sm2_root = write_pem("sm2root.pem", h.sm2_root.der)
    assert openssl("verify", "-CAfile", sm2_root, "-untrusted", issuing, leaf_path).returncode != 0
    if purpose == "smimeencrypt":  # an encryption-only certificate is no signing certificate
        signing = ("verify", "-purpose", "smimesign", "-CAfile", root, "-untrusted", issuing)
        assert openssl(*signing, leaf_path).returncode != 0


def test_sm2_chain_in_openssl(ec_hierarchy, openssl, write_pem) -> None:
    h = ec_hierarchy
    key = sm2.generate_private_key()
    csr = sm2_certs.build_csr(key, {"email_address": ADDRESS}, emails=[ADDRESS])
    info = profile.check_csr(csr, ADDRESS, family="sm2")
    leaf = profile.issue(
        info,
        h.sm2_issuing,
        serial=profile.random_serial(),
        not_before=h.sm2_issuing.certificate.not_valid_before,
        crl_url=h.crl_url("sm2-issuing"),
        aia_url=h.aia_url("sm2-issuing"),
    )
    root = write_pem("sm2root.pem", h.sm2_root.der)
    issuing = write_pem("sm2issuing.pem", h.sm2_issuing.der)
    leaf_path = write_pem("leaf.pem", leaf)
    result = openssl("verify", *DISTID, "-CAfile", root, "-untrusted", issuing, leaf_path)
    assert result.returncode == 0, result.stdout + result.stderr
    # The root's self-signature too (OpenSSL checks it with the empty ID, as we signed it).
    result = openssl("verify", "-check_ss_sig", "-CAfile", root, root)
    assert result.returncode == 0, result.stdout + result.stderr
    # End entities use the standard ID: without distid OpenSSL rejects the leaf.
    assert openssl("verify", "-CAfile", root, "-untrusted", issuing, leaf_path).returncode != 0
    # The measured trap our rule avoids: an intermediate signed with the standard ID fails.
    standard = resign_sm2(h.sm2_issuing.der, [], h.sm2_root.key, sm2.DEFAULT_ID)
    bad_issuing = write_pem("standard-id-issuing.pem", standard)
    result = openssl("verify", *DISTID, "-CAfile", root, "-untrusted", bad_issuing, leaf_path)
    assert result.returncode != 0
    # And our own signature check agrees with the rule, link by link.
    assert sm2_certs.verify_certificate_signature(leaf, h.sm2_issuing.certificate)
    assert sm2_certs.verify_certificate_signature(
        h.sm2_issuing.certificate, h.sm2_root.certificate, signer_id=b""
    )
    assert not sm2_certs.verify_certificate_signature(
        h.sm2_issuing.certificate, h.sm2_root.certificate
    )


def test_our_validate_accepts_intl_chain(any_hierarchy, make_csr, issue_leaf) -> None:
    h = any_hierarchy
    leaf = asn1_x509.Certificate.load(issue_leaf(h, make_csr()))
    for cert, address in ((leaf, ADDRESS), (h.mail_identity.certificate, h.mail_address)):
        result = validate.validate(
            cert,
            trust_anchors=[h.intl_root.certificate],
            intermediates=[h.intl_issuing.certificate],
            address=address,
        )
        assert result.valid, result.problems
        assert result.path[-1].dump() == h.intl_root.der
    wrong = validate.validate(
        leaf, trust_anchors=[h.sm2_root.certificate], intermediates=[h.intl_issuing.certificate]
    )
    assert not wrong.trusted


def test_our_validate_accepts_sm2_chain(ec_hierarchy) -> None:
    h = ec_hierarchy
    key = sm2.generate_private_key()
    info = profile.check_csr(sm2_certs.build_csr(key, emails=[ADDRESS]), ADDRESS)
    leaf = profile.issue(
        info,
        h.sm2_issuing,
        serial=profile.random_serial(),
        not_before=h.sm2_issuing.certificate.not_valid_before,
        crl_url=h.crl_url("sm2-issuing"),
        aia_url=h.aia_url("sm2-issuing"),
    )
    cert = asn1_x509.Certificate.load(leaf)
    kwargs = {
        "trust_anchors": [h.sm2_root.certificate],
        "intermediates": [h.sm2_issuing.certificate],
        "address": ADDRESS,
    }
    result = validate.validate(cert, sm2_ids=(sm2.DEFAULT_ID, b""), **kwargs)
    assert result.valid, result.problems
    # With the standard ID only, the CA link (empty ID, by our rule) does not verify.
    assert not validate.validate(cert, sm2_ids=(sm2.DEFAULT_ID,), **kwargs).trusted


def test_tsa_certificate(any_hierarchy, openssl, write_pem) -> None:
    h = any_hierarchy
    cert = h.tsa.certificate
    eku = [
        e
        for e in cert["tbs_certificate"]["extensions"]
        if e["extn_id"].native == "extended_key_usage"
    ]
    assert len(eku) == 1 and eku[0]["critical"].native is True
    assert eku[0]["extn_value"].native == ["time_stamping"]
    assert cert.key_usage_value.native == {"digital_signature", "non_repudiation"}
    assert cert.key_usage_value is not None and "key_usage" in cert.critical_extensions
    assert cert.ca is False and cert.issuer == h.intl_issuing.certificate.subject
    assert 5 * 365 <= _days(cert) <= 5 * 366
    assert cert.authority_key_identifier == h.intl_issuing.certificate.key_identifier
    root = write_pem("root.pem", h.intl_root.der)
    issuing = write_pem("issuing.pem", h.intl_issuing.der)
    tsa = write_pem("tsa.pem", h.tsa.der)
    chain = ("-CAfile", root, "-untrusted", issuing, tsa)
    result = openssl("verify", "-purpose", "timestampsign", *chain)
    assert result.returncode == 0, result.stdout + result.stderr
    assert openssl("verify", "-purpose", "smimesign", *chain).returncode != 0


def test_mail_identity(any_hierarchy, openssl, write_pem) -> None:
    h = any_hierarchy
    cert = h.mail_identity.certificate
    assert validate.certificate_addresses(cert) == (h.mail_address,)
    assert cert.key_usage_value.native == {"digital_signature"}
    assert cert.extended_key_usage_value.native == ["email_protection"]
    assert cert.issuer == h.intl_issuing.certificate.subject
    root = write_pem("root.pem", h.intl_root.der)
    issuing = write_pem("issuing.pem", h.intl_issuing.der)
    mail = write_pem("mail.pem", h.mail_identity.der)
    result = openssl(
        "verify", "-purpose", "smimesign", "-CAfile", root, "-untrusted", issuing, mail
    )
    assert result.returncode == 0, result.stdout + result.stderr
    key, certificate = h.mail_identity  # each item unpacks as (key, certificate)
    assert certificate is cert and key is h.mail_identity.key


def test_every_item_key_matches_certificate(ec_hierarchy) -> None:
    for label, (key, cert) in ec_hierarchy.items().items():
        if isinstance(key, sm2.SM2PrivateKey):
            assert sm2_certs.certificate_public_key(cert) == key.public_key, label
        else:
            from cryptography.hazmat.primitives import serialization

            spki = key.public_key().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            assert spki == cert.public_key.dump(), label


def test_refuses_bad_arguments() -> None:
    kwargs = {"crl_base_url": "http://x/crl", "aia_base_url": "http://x/ca", "mail_address": "a@x"}
    with pytest.raises(ProfileError):
        ca_hierarchy.create_hierarchy("T", intl_key_type="dsa-1024", **kwargs)
    with pytest.raises(ProfileError):
        ca_hierarchy.create_hierarchy(" ", **kwargs)
    with pytest.raises(ProfileError):
        ca_hierarchy.create_hierarchy("T", now=datetime.datetime(2026, 1, 1), **kwargs)
    with pytest.raises(ProfileError):
        ca_hierarchy.Hierarchy.issuing(None, "rsa")  # type: ignore[arg-type]
