"""The mailbox-validated strict profile (shared_pki.ca.profile): every CSR refusal with its ACME
problem type, OpenSSL-made CSRs accepted, keyUsage per request, validity and serial rules, and
what `openssl x509 -text` shows in the certificates we issue."""

from __future__ import annotations

import datetime

import pytest
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from shared_pki import sm2
from shared_pki.ca import profile
from shared_pki.ca.common import ProfileError
from shared_pki.x509 import sm2_certs

ADDRESS = "alice@example.org"


def _refused(csr: bytes, kind: type[profile.CsrRefused], problem: str, **kw) -> None:
    with pytest.raises(kind) as caught:
        profile.check_csr(csr, ADDRESS, **kw)
    assert caught.value.problem_type == problem
    assert caught.value.acme_type == f"urn:ietf:params:acme:error:{problem}"


# ---- refusals --------------------------------------------------------------------------------


def test_other_address_in_san(make_csr) -> None:
    csr = make_csr(san=[x509.RFC822Name("mallory@example.org")])
    _refused(csr, profile.RejectedIdentifier, "rejectedIdentifier")


def test_extra_san(make_csr) -> None:
    csr = make_csr(san=[x509.RFC822Name(ADDRESS), x509.RFC822Name("bob@example.org")])
    _refused(csr, profile.RejectedIdentifier, "rejectedIdentifier")
    twice = make_csr(san=[x509.RFC822Name(ADDRESS), x509.RFC822Name(ADDRESS)])
    _refused(twice, profile.RejectedIdentifier, "rejectedIdentifier")


def test_dns_san(make_csr) -> None:
    csr = make_csr(san=[x509.RFC822Name(ADDRESS), x509.DNSName("example.org")])
    _refused(csr, profile.RejectedIdentifier, "rejectedIdentifier")
    only_dns = make_csr(san=[x509.DNSName("example.org")])
    _refused(only_dns, profile.RejectedIdentifier, "rejectedIdentifier")


def test_no_san(make_csr) -> None:
    _refused(make_csr(san=[]), profile.BadCsr, "badCSR")


def test_subject_names(make_csr) -> None:
    other_cn = make_csr(subject=[(NameOID.COMMON_NAME, "Mallory")])
    _refused(other_cn, profile.RejectedIdentifier, "rejectedIdentifier")
    other_email = make_csr(subject=[(NameOID.EMAIL_ADDRESS, "bob@example.org")])
    _refused(other_email, profile.RejectedIdentifier, "rejectedIdentifier")
    organization = make_csr(
        subject=[(NameOID.EMAIL_ADDRESS, ADDRESS), (NameOID.ORGANIZATION_NAME, "Example")]
    )
    _refused(organization, profile.BadCsr, "badCSR")
    # Accepted: empty subject; CN and emailAddress equal to the address.
    assert profile.check_csr(make_csr(subject=[]), ADDRESS).address == ADDRESS
    both = [(NameOID.COMMON_NAME, ADDRESS), (NameOID.EMAIL_ADDRESS, ADDRESS)]
    assert profile.check_csr(make_csr(subject=both), ADDRESS).usage == profile.DUAL


def test_address_comparison(make_csr) -> None:
    upper_domain = "alice@EXAMPLE.org"
    csr = make_csr(subject=[], san=[x509.RFC822Name(upper_domain)])
    assert profile.check_csr(csr, ADDRESS).address == ADDRESS  # the validated spelling
    upper_local = make_csr(subject=[], san=[x509.RFC822Name("Alice@example.org")])
    _refused(upper_local, profile.RejectedIdentifier, "rejectedIdentifier")


def test_weak_rsa(make_csr) -> None:
    weak = rsa.generate_private_key(65537, 1024)
    _refused(make_csr(weak), profile.WeakKey, "badCSR")
    odd_size = rsa.generate_private_key(65537, 2056)
    assert profile.check_csr(make_csr(odd_size), ADDRESS).key_size == 2056
    accepted = profile.check_csr(make_csr(rsa.generate_private_key(65537, 2048)), ADDRESS)
    assert (accepted.key_type, accepted.key_size, accepted.family) == ("rsa", 2048, "intl")


@pytest.mark.parametrize("curve", [ec.SECP192R1(), ec.BrainpoolP256R1(), ec.SECP256K1()])
def test_unapproved_curves(make_csr, curve) -> None:
    try:
        key = ec.generate_private_key(curve)
    except Exception as error:  # pragma: no cover - depends on the OpenSSL build
        pytest.skip(f"cryptography cannot make {curve.name}: {error}")
    _refused(make_csr(key), profile.WeakKey, "badCSR")


@pytest.mark.parametrize("curve", [ec.SECP256R1(), ec.SECP384R1(), ec.SECP521R1()])
def test_approved_curves(make_csr, curve) -> None:
    info = profile.check_csr(make_csr(ec.generate_private_key(curve)), ADDRESS)
    assert (info.key_type, info.curve, info.family) == ("ec", curve.name, "intl")


def test_bad_signature(make_csr) -> None:
    csr = bytearray(make_csr())
    csr[-3] ^= 0x01  # inside the ECDSA signature value
    _refused(bytes(csr), profile.BadCsr, "badCSR")
    key = sm2.generate_private_key()
    sm2_csr = bytearray(sm2_certs.build_csr(key, emails=[ADDRESS]))
    sm2_csr[-3] ^= 0x01
    _refused(bytes(sm2_csr), profile.BadCsr, "badCSR")
    # A CSR signed by another key than the one it carries.
    good = x509.load_der_x509_csr(make_csr())
    other = x509.load_der_x509_csr(make_csr(ec.generate_private_key(ec.SECP256R1())))
    swapped = _swap_key(good, other)
    _refused(swapped, profile.BadCsr, "badCSR")


def _swap_key(csr: x509.CertificateSigningRequest, donor: x509.CertificateSigningRequest) -> bytes:
    from asn1crypto import csr as asn1_csr

    request = asn1_csr.CertificationRequest.load(csr.public_bytes(serialization.Encoding.DER))
    donor_request = asn1_csr.CertificationRequest.load(
        donor.public_bytes(serialization.Encoding.DER)
    )
    info = request["certification_request_info"]
    new_info = asn1_csr.CertificationRequestInfo(
        {
            "version": info["version"],
            "subject": info["subject"],
            "subject_pk_info": donor_request["certification_request_info"]["subject_pk_info"],
            "attributes": info["attributes"],
        }
    )
    return asn1_csr.CertificationRequest(
        {
            "certification_request_info": new_info,
            "signature_algorithm": request["signature_algorithm"],
            "signature": request["signature"],
        }
    ).dump()


def test_sha1_signature_refused(openssl, tmp_path) -> None:
    # cryptography refuses to sign with SHA-1; OpenSSL still does.
    key, csr = tmp_path / "k.pem", tmp_path / "csr.der"
    assert openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
                   "-out", key).returncode == 0  # fmt: skip
    result = openssl(
        "req", "-new", "-key", key, "-sha1", "-subj", f"/emailAddress={ADDRESS}",
        "-addext", f"subjectAltName=email:{ADDRESS}", "-outform", "DER", "-out", csr,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    _refused(csr.read_bytes(), profile.BadCsr, "badCSR")


def test_garbage(make_csr) -> None:
    _refused(b"\x30\x03\x02\x01\x00", profile.BadCsr, "badCSR")
    _refused(make_csr()[:-5], profile.BadCsr, "badCSR")
    _refused(b"", profile.BadCsr, "badCSR")


def test_sm2_csr_for_intl_ca(ec_hierarchy) -> None:
    key = sm2.generate_private_key()
    csr = sm2_certs.build_csr(key, emails=[ADDRESS])
    _refused(csr, profile.WrongFamily, "badCSR", family="intl")
    info = profile.check_csr(csr, ADDRESS)  # fine as such, for the SM2 CA
    assert (info.family, info.key_type, info.sm2_csr_id) == ("sm2", "sm2", sm2.DEFAULT_ID)
    with pytest.raises(profile.WrongFamily):
        profile.issue(
            info,
            ec_hierarchy.intl_issuing,
            serial=profile.random_serial(),
            not_before=ec_hierarchy.intl_issuing.certificate.not_valid_before,
            crl_url="http://x/c.crl",
            aia_url="http://x/c.cer",
        )


def test_intl_csr_for_sm2_ca(make_csr, ec_hierarchy) -> None:
    _refused(make_csr(), profile.WrongFamily, "badCSR", family="sm2")
    info = profile.check_csr(make_csr(), ADDRESS)
    with pytest.raises(profile.WrongFamily):
        profile.issue(
            info,
            ec_hierarchy.sm2_issuing,
            serial=profile.random_serial(),
            not_before=ec_hierarchy.sm2_issuing.certificate.not_valid_before,
            crl_url="http://x/c.crl",
            aia_url="http://x/c.cer",
        )


def test_requests_beyond_the_profile(make_csr) -> None:
    ca = make_csr(extensions=[(x509.BasicConstraints(ca=True, path_length=None), True)])
    _refused(ca, profile.BadCsr, "badCSR")
    server = x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH])
    _refused(make_csr(extensions=[(server, False)]), profile.BadCsr, "badCSR")
    _refused(make_csr(key_usage={"key_cert_sign"}), profile.BadCsr, "badCSR")
    email = x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION])
    assert profile.check_csr(make_csr(extensions=[(email, False)]), ADDRESS)


# ---- OpenSSL-made CSRs -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "genkey",
    [
        ("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"),
        ("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"),
        ("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384"),
        ("genpkey", "-algorithm", "SM2"),
    ],
    ids=["rsa2048", "p256", "p384", "sm2"],
)
def test_openssl_csr_accepted(openssl, tmp_path, genkey, ec_hierarchy) -> None:
    key = tmp_path / "k.pem"
    assert openssl(*genkey, "-out", key).returncode == 0
    csr = tmp_path / "csr.der"
    extra = ("-sm3",) if "SM2" in genkey else ()
    result = openssl(
        "req", "-new", "-key", key, *extra, "-subj", f"/emailAddress={ADDRESS}",
        "-addext", f"subjectAltName=email:{ADDRESS}", "-outform", "DER", "-out", csr,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    info = profile.check_csr(csr.read_bytes(), ADDRESS)
    assert info.usage == profile.DUAL
    if "SM2" in genkey:
        assert info.family == "sm2" and info.sm2_csr_id == b""  # OpenSSL's default ID
    issuing = ec_hierarchy.issuing(info.family)
    der = profile.issue(
        info,
        issuing,
        serial=profile.random_serial(),
        not_before=issuing.certificate.not_valid_before,
        crl_url="http://x/c.crl",
        aia_url="http://x/c.cer",
    )
    assert asn1_x509.Certificate.load(der).subject_alt_name_value.native == [ADDRESS]
    # Another address than the CSR's is refused.
    with pytest.raises(profile.RejectedIdentifier):
        profile.check_csr(csr.read_bytes(), "bob@example.org")


# ---- keyUsage ----------------------------------------------------------------------------------

_EXPECTED = {
    ("rsa", "signing"): {"digital_signature"},
    ("rsa", "encryption"): {"key_encipherment"},
    ("rsa", "dual"): {"digital_signature", "key_encipherment"},
    ("ec", "signing"): {"digital_signature"},
    ("ec", "encryption"): {"key_agreement"},
    ("ec", "dual"): {"digital_signature", "key_agreement"},
    ("sm2", "signing"): {"digital_signature"},
    ("sm2", "encryption"): {"key_encipherment", "data_encipherment"},
    ("sm2", "dual"): {"digital_signature", "key_encipherment", "data_encipherment"},
}
_REQUESTS = {
    "signing": {"digital_signature"},
    "encryption": {"key_encipherment"},
    "dual": {"digital_signature", "key_encipherment"},
    "default": None,
}


def _csr_for(key_type: str, request: set[str] | None, make_csr) -> bytes:
    if key_type == "sm2":
        key = sm2.generate_private_key()
        # key_usage=() writes no keyUsage at all (None would mean sm2_certs' default).
        return sm2_certs.build_csr(key, emails=[ADDRESS], key_usage=request or ())
    key = rsa.generate_private_key(65537, 2048) if key_type == "rsa" else None
    return make_csr(key, key_usage=request)


@pytest.mark.parametrize("key_type", ["rsa", "ec", "sm2"])
@pytest.mark.parametrize("request_name", ["signing", "encryption", "dual", "default"])
def test_key_usage(key_type, request_name, make_csr, ec_hierarchy) -> None:
    request = _REQUESTS[request_name]
    if key_type == "ec" and request_name in ("encryption", "dual"):
        request = {"key_agreement"} | ({"digital_signature"} if request_name == "dual" else set())
    info = profile.check_csr(_csr_for(key_type, request, make_csr), ADDRESS)
    kind = "dual" if request_name == "default" else request_name
    assert info.usage == kind
    issuing = ec_hierarchy.issuing(info.family)
    der = profile.issue(
        info,
        issuing,
        serial=profile.random_serial(),
        not_before=issuing.certificate.not_valid_before,
        crl_url="http://x/c.crl",
        aia_url="http://x/c.cer",
    )
    cert = asn1_x509.Certificate.load(der)
    assert cert.key_usage_value.native == _EXPECTED[(key_type, kind)]
    assert "key_usage" in cert.critical_extensions


def test_non_repudiation_kept_when_asked(make_csr) -> None:
    info = profile.check_csr(
        make_csr(key_usage={"digital_signature", "content_commitment"}), ADDRESS
    )
    assert info.usage == profile.SIGNING and info.non_repudiation
    assert info.key_usage() == {"digital_signature", "non_repudiation"}


# ---- validity, serials, extensions -------------------------------------------------------------


def _issue(h, info, **kw) -> bytes:
    kw.setdefault("serial", profile.random_serial())
    kw.setdefault("not_before", h.intl_issuing.certificate.not_valid_before)
    kw.setdefault("crl_url", h.crl_url("intl-issuing"))
    kw.setdefault("aia_url", h.aia_url("intl-issuing"))
    return profile.issue(info, h.issuing(info.family), **kw)


def test_validity(make_csr, ec_hierarchy) -> None:
    info = profile.check_csr(make_csr(), ADDRESS)
    start = ec_hierarchy.intl_issuing.certificate.not_valid_before
    default = asn1_x509.Certificate.load(_issue(ec_hierarchy, info, not_before=start))
    assert default.not_valid_before == start
    assert default.not_valid_after - start == datetime.timedelta(days=365, seconds=-1)
    longest = asn1_x509.Certificate.load(_issue(ec_hierarchy, info, days=825))
    assert longest.not_valid_after - longest.not_valid_before == datetime.timedelta(
        days=825, seconds=-1
    )
    for days in (826, 0, -1, 3650):
        with pytest.raises(ProfileError):
            _issue(ec_hierarchy, info, days=days)
    with pytest.raises(ProfileError):  # naive datetimes are refused, not guessed
        _issue(ec_hierarchy, info, not_before=datetime.datetime(2026, 1, 1))
    late = ec_hierarchy.intl_issuing.certificate.not_valid_after - datetime.timedelta(days=10)
    with pytest.raises(ProfileError):  # would outlive the issuing CA
        _issue(ec_hierarchy, info, not_before=late)


def test_serials(make_csr, ec_hierarchy) -> None:
    info = profile.check_csr(make_csr(), ADDRESS)
    serial = profile.random_serial()
    assert 64 <= serial.bit_length() <= 159
    assert (
        asn1_x509.Certificate.load(_issue(ec_hierarchy, info, serial=serial)).serial_number
        == serial
    )
    for bad in (0, -5, 1, 2**40, 2**159):
        with pytest.raises(ProfileError):
            _issue(ec_hierarchy, info, serial=bad)
    assert len({profile.random_serial() for _ in range(100)}) == 100


@pytest.mark.parametrize("family", ["intl", "sm2"])
def test_openssl_shows_the_extensions(family, make_csr, ec_hierarchy, openssl, write_pem) -> None:
    csr = (
        sm2_certs.build_csr(sm2.generate_private_key(), emails=[ADDRESS])
        if family == "sm2"
        else make_csr()
    )
    info = profile.check_csr(csr, ADDRESS)
    issuing = ec_hierarchy.issuing(family)
    der = profile.issue(
        info,
        issuing,
        serial=profile.random_serial(),
        not_before=issuing.certificate.not_valid_before,
        crl_url=ec_hierarchy.crl_url(f"{family}-issuing"),
        aia_url=ec_hierarchy.aia_url(f"{family}-issuing"),
    )
    text = openssl("x509", "-in", write_pem("leaf.pem", der), "-noout", "-text").stdout
    for needle in (
        "X509v3 Key Usage: critical",
        "X509v3 Basic Constraints: critical",
        "CA:FALSE",
        f"email:{ADDRESS}",
        "E-mail Protection",
        "Policy: 2.23.140.1.5.1.3",
        f"CA Issuers - URI:http://pki.example.test/ca/{family}-issuing.cer",
        f"URI:http://pki.example.test/crl/{family}-issuing.crl",
        "X509v3 Subject Key Identifier",
        "X509v3 Authority Key Identifier",
        "S/MIME Capabilities",
        f"Subject: CN = {ADDRESS}, emailAddress = {ADDRESS}",
    ):
        assert needle in text, needle
    cert = asn1_x509.Certificate.load(der)
    assert cert.authority_key_identifier == issuing.certificate.key_identifier
    caps = [
        e
        for e in cert["tbs_certificate"]["extensions"]
        if e["extn_id"].dotted == "1.2.840.113549.1.9.15"
    ]
    assert len(caps) == 1 and not caps[0]["critical"].native
    assert cert.issuer == issuing.certificate.subject


def test_long_address_has_no_common_name(make_csr, ec_hierarchy) -> None:
    address = "a" * 60 + "@example.org"  # 72 characters: over ub-common-name (64)
    csr = make_csr(subject=[], san=[x509.RFC822Name(address)])
    cert = asn1_x509.Certificate.load(_issue(ec_hierarchy, profile.check_csr(csr, address)))
    assert cert.subject.native == {"email_address": address}
    assert cert.subject_alt_name_value.native == [address]
