"""Path validation of S/MIME certificates: each rule can fail on its own, with its own code."""

from __future__ import annotations

import datetime
from functools import cache

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from harness import pki

from shared_pki.keys import Certificate
from shared_pki.x509 import validate as v

ADDRESS = "alice@example.org"
HOUR = datetime.timedelta(hours=1)


@cache
def root() -> pki.Authority:
    return pki.root("validate root", "rsa2048")


@cache
def ica() -> pki.Authority:
    return root().intermediate("validate ica", "p256")


def asn1(cert: x509.Certificate) -> Certificate:
    return Certificate.load(cert.public_bytes(serialization.Encoding.DER))


def issue(
    issuer: pki.Authority,
    *,
    address: str | None = ADDRESS,
    san: bool = True,
    ekus: list | None = None,
    ca: bool = False,
    not_before: datetime.datetime | None = None,
    not_after: datetime.datetime | None = None,
    extra: tuple[x509.ExtensionType, bool] | None = None,
) -> pki.Party:
    """A certificate with exactly the extensions a test asks for."""
    key = pki.new_key("p256")
    names = [x509.NameAttribute(NameOID.COMMON_NAME, "test subject")]
    if address:
        names.append(x509.NameAttribute(NameOID.EMAIL_ADDRESS, address))
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name(names))
        .issuer_name(issuer.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or pki.NOW - 20 * HOUR)
        .not_valid_after(not_after or pki.NOW + 20 * HOUR)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ekus is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage(ekus), critical=False)
    if san and address:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.RFC822Name(address)]), critical=False
        )
    if extra:
        builder = builder.add_extension(extra[0], critical=extra[1])
    cert = builder.sign(issuer.key, hashes.SHA256())
    return pki.Party(key, cert, [issuer.cert, *issuer.chain])


def run(party: pki.Party, **kwargs) -> v.PathResult:
    options = {"trust_anchors": [root().asn1], "intermediates": party.chain_asn1, **kwargs}
    return v.validate(party.asn1, **options)


def codes(result: v.PathResult) -> list[str]:
    return [problem.code for problem in result.problems]


def test_a_good_chain_is_valid_with_its_path():
    alice = ica().smime(ADDRESS, "rsa2048")
    result = run(alice, address=ADDRESS)
    assert result.valid, result.problems
    assert [c.dump() for c in result.path] == [alice.der, ica().asn1.dump(), root().asn1.dump()]
    assert result.trusted and result.time_ok and result.address_ok
    assert result.addresses == (ADDRESS,)


def test_unknown_root_is_untrusted():
    alice = ica().smime(ADDRESS, "p256")
    result = run(alice, trust_anchors=[pki.root("someone else").asn1])
    assert codes(result) == ["untrusted"]
    assert not result.trusted and result.path == ()
    assert "no issuer found" in result.reason


def test_missing_intermediate_is_untrusted():
    alice = ica().smime(ADDRESS, "p256")
    result = run(alice, intermediates=[])
    assert codes(result) == ["untrusted"]
    assert "validate ica" in result.reason


def test_a_forged_link_is_untrusted():
    impostor = pki.root("validate ica")  # same name as the real ica, another key
    alice = issue(ica())
    result = v.validate(alice.asn1, trust_anchors=[root().asn1], intermediates=[impostor.asn1])
    assert codes(result) == ["untrusted"]


def test_broken_certificate_signature_is_untrusted():
    alice = ica().smime(ADDRESS, "p256")
    der = bytearray(alice.der)
    der[-5] ^= 0x01  # inside the signature value
    forged = Certificate.load(bytes(der))
    result = v.validate(forged, trust_anchors=[root().asn1], intermediates=alice.chain_asn1)
    assert codes(result) == ["untrusted"]
    assert "does not verify" in result.reason


def test_end_entity_cannot_act_as_ca():
    not_a_ca = issue(ica())
    authority = pki.Authority(not_a_ca.key, not_a_ca.cert, not_a_ca.chain)
    victim = issue(authority, address="bob@example.org")
    result = run(victim)
    assert codes(result) == ["untrusted"]
    assert "not a CA" in result.reason


def test_path_length_constraint_is_enforced():
    sub = ica().intermediate("validate sub ica", "p256")  # ica has pathLen 0
    alice = sub.smime(ADDRESS, "p256")
    result = run(alice)
    assert codes(result) == ["untrusted"]
    assert "allows 0 intermediate" in result.reason


def test_expired_and_not_yet_valid_at_the_time_asked():
    alice = issue(ica(), not_before=pki.NOW - 20 * HOUR, not_after=pki.NOW - HOUR)
    assert codes(run(alice)) == ["expired"]
    then = run(alice, at=pki.NOW - 10 * HOUR)
    assert then.valid and then.trusted
    early = run(alice, at=pki.NOW - 21 * HOUR)
    assert codes(early) == ["not_yet_valid"]
    naive = run(alice, at=(pki.NOW - 10 * HOUR).replace(tzinfo=None))
    assert naive.valid
    # The chain counts too: the ica is valid only from a day ago.
    assert "not_yet_valid" in codes(run(alice, at=pki.NOW - 30 * HOUR))


def test_expired_root_is_reported():
    alice = ica().smime(ADDRESS, "p256")
    result = run(alice, at=pki.NOW + datetime.timedelta(days=3700))
    assert codes(result).count("expired") == 3


def test_key_usage_must_allow_signing():
    assert codes(run(ica().smime(ADDRESS, "rsa2048", key_usage="encrypt"))) == ["key_usage"]
    assert run(ica().smime(ADDRESS, "rsa2048", key_usage="sign")).valid
    assert run(ica().smime(ADDRESS, "rsa2048", key_usage="encrypt"), usage="encrypt").valid


def test_extended_key_usage_email_protection_any_or_absent():
    server_only = issue(ica(), ekus=[ExtendedKeyUsageOID.SERVER_AUTH])
    assert codes(run(server_only)) == ["extended_key_usage"]
    assert run(issue(ica(), ekus=[ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE])).valid
    assert run(issue(ica(), ekus=None)).valid
    assert run(ica().smime(ADDRESS, "p256", email_protection=False)).valid
    both = issue(
        ica(), ekus=[ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.EMAIL_PROTECTION]
    )
    assert run(both).valid


def test_intermediate_restricted_to_other_purposes_breaks_the_path():
    key = pki.new_key("p256")
    restricted = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tls only ica")]))
        .issuer_name(root().cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(pki.NOW - 20 * HOUR)
        .not_valid_after(pki.NOW + 20 * HOUR)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(root().key, hashes.SHA256())
    )
    alice = issue(pki.Authority(key, restricted, [root().cert]))
    result = run(alice)
    assert codes(result) == ["untrusted"]
    assert "other purposes" in result.reason


def test_unknown_critical_extension_is_untrusted():
    odd = x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.99999.1"), b"\x05\x00")
    assert codes(run(issue(ica(), extra=(odd, True)))) == ["untrusted"]
    assert run(issue(ica(), extra=(odd, False))).valid


def test_address_in_san_domain_case_insensitive_local_part_exact():
    alice = ica().smime("Alice.Smith@Example.ORG", "p256")
    assert run(alice, address="Alice.Smith@example.org").address_ok
    assert run(alice, address="Alice Smith <Alice.Smith@EXAMPLE.org>").address_ok
    lower = run(alice, address="alice.smith@example.org")
    assert codes(lower) == ["address_case_mismatch"] and lower.address_ok is False
    other = run(alice, address="bob@example.org")
    assert codes(other) == ["address_mismatch"]
    assert "bob@example.org" in other.reason
    assert run(alice).address_ok is None


def test_idn_domains_compare_as_a_labels():
    alice = issue(ica(), address="alice@xn--bcher-kva.example")
    assert run(alice, address="alice@bücher.example").address_ok


def test_subject_email_used_only_without_san():
    no_san = ica().smime(ADDRESS, "p256", include_san=False)
    assert v.certificate_addresses(no_san.asn1) == (ADDRESS,)
    assert run(no_san, address=ADDRESS).valid
    nobody = issue(ica(), address=None)
    assert codes(run(nobody, address=ADDRESS)) == ["no_address"]


def test_end_entity_pinned_as_anchor_is_trusted():
    alice = ica().smime(ADDRESS, "p256")
    result = v.validate(alice.asn1, trust_anchors=[alice.asn1])
    assert result.valid and len(result.path) == 1


def test_rsa_pss_certificate_signatures_verify():
    """Links signed with RSASSA-PSS go through the same registry as CMS signatures."""
    key = pki.new_key("p256")
    from cryptography.hazmat.primitives.asymmetric import padding

    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pss child")]))
        .issuer_name(root().cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(pki.NOW - 20 * HOUR)
        .not_valid_after(pki.NOW + 20 * HOUR)
        .sign(
            root().key,
            hashes.SHA384(),
            rsa_padding=padding.PSS(padding.MGF1(hashes.SHA384()), padding.PSS.DIGEST_LENGTH),
        )
    )
    assert v.validate(asn1(cert), trust_anchors=[root().asn1]).valid
