"""SignedData made and verified by shared_pki: every key type and digest, both forms, both
signer identifiers, and each way a signature can go wrong, reported precisely."""

from __future__ import annotations

import datetime
from functools import cache

import pytest
from asn1crypto import algos, cms, core, tsp
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from harness import pki
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared_pki.cms import capabilities, digests, signatures, signed
from shared_pki.cms.verify import verify
from shared_pki.errors import MalformedInput, SigningError, UnsupportedAlgorithm
from shared_pki.keys import Certificate, Credential

CONTENT = b"Content-Type: text/plain\r\n\r\nHello, S/MIME.\r\n"
ADDRESS = "alice@example.org"


@cache
def _root() -> pki.Authority:
    return pki.root()


@cache
def _ica() -> pki.Authority:
    return _root().intermediate("autosmime test ica", "p384")


@cache
def party(key_type: str, address: str = ADDRESS) -> pki.Party:
    return _ica().smime(address, key_type)


def credential(p: pki.Party) -> Credential:
    return Credential(p.key, p.asn1, tuple(p.chain_asn1))


def anchors() -> list[Certificate]:
    return [_root().asn1]


def check(der: bytes, content: bytes | None = CONTENT, **kwargs):
    options = {"trust_anchors": anchors(), "from_address": ADDRESS, **kwargs}
    return verify(der, content=content, **options)


def signer_info(der: bytes, index: int = 0) -> cms.SignerInfo:
    return cms.ContentInfo.load(der)["content"]["signer_infos"][index]


def rebuild(der: bytes, edit) -> bytes:
    """der with edit(signed_data) applied (for tampering)."""
    info = cms.ContentInfo.load(der)
    signed_data = info["content"]
    edit(signed_data)
    return cms.ContentInfo({"content_type": "signed_data", "content": signed_data}).dump()


MATRIX = [
    ("rsa2048", False, "sha256", "1.2.840.113549.1.1.11"),
    ("rsa2048", False, "sha384", "1.2.840.113549.1.1.12"),
    ("rsa2048", False, "sha512", "1.2.840.113549.1.1.13"),
    ("rsa2048", True, "sha256", "1.2.840.113549.1.1.10"),
    ("rsa2048", True, "sha384", "1.2.840.113549.1.1.10"),
    ("rsa2048", True, "sha512", "1.2.840.113549.1.1.10"),
    ("p256", False, "sha256", "1.2.840.10045.4.3.2"),
    ("p256", False, "sha384", "1.2.840.10045.4.3.3"),
    ("p256", False, "sha512", "1.2.840.10045.4.3.4"),
    ("p384", False, "sha256", "1.2.840.10045.4.3.2"),
    ("p384", False, "sha384", "1.2.840.10045.4.3.3"),
    ("p384", False, "sha512", "1.2.840.10045.4.3.4"),
]


@pytest.mark.parametrize("detached", [True, False], ids=["detached", "encapsulated"])
@pytest.mark.parametrize(("key_type", "pss", "digest", "signature_oid"), MATRIX)
def test_every_key_type_and_digest_round_trips(key_type, pss, digest, signature_oid, detached):
    der = signed.sign(
        CONTENT, credential(party(key_type)), digest=digest, pss=pss, detached=detached
    )
    info = signer_info(der)
    assert info["signature_algorithm"]["algorithm"].dotted == signature_oid
    assert info["digest_algorithm"]["algorithm"].dotted == digests.by_name(digest).oid
    if pss:
        params = info["signature_algorithm"]["parameters"]
        assert params["salt_length"].native == digests.by_name(digest).size
        assert params["mask_gen_algorithm"]["parameters"]["algorithm"].native == digest

    result = check(der, CONTENT if detached else None)

    assert result.valid, result.summary
    assert result.detached is detached
    assert result.content == CONTENT
    [one] = result.signers
    assert one.digest_algorithm == digest
    assert one.signature_algorithm == signature_oid
    assert one.signature_ok and one.message_digest_ok and one.content_type_ok
    assert one.signing_certificate_ok is True
    assert one.address_ok is True
    assert one.summary.startswith("Valid signature by alice@example.org")


@pytest.mark.parametrize("use_ski", [False, True])
@pytest.mark.parametrize("detached", [True, False])
@pytest.mark.parametrize("size", [0, 100, 70_000])
def test_hand_written_der_is_what_asn1crypto_writes(use_ski, detached, size):
    """sign writes SignedData and SignerInfo piece by piece (shared_pki.der): every byte must
    be the DER asn1crypto writes for the same values (sets sorted, one signer)."""
    content = b"x" * size
    der = signed.sign(content, credential(party("p256")), detached=detached, use_ski=use_ski)
    assert cms.ContentInfo.load(der, strict=True).dump(force=True) == der
    assert check(der, None if not detached else content).valid
    tsa_like = signed.sign(
        content, credential(party("p256")), include_certificates=False, capabilities=()
    )
    assert isinstance(cms.ContentInfo.load(tsa_like)["content"]["certificates"], core.Void)


def test_der_encoded_keeps_a_long_length_ending_in_0x80():
    """asn1crypto's dump() takes the header 04 82 02 80 for an indefinite length and
    re-encodes the value on every call; der.encoded gives the value as read, the same DER."""
    from shared_pki import der

    raw = b"\x04\x82\x02\x80" + bytes(640)
    value = core.OctetString.load(raw)
    assert der.encoded(value) == raw == value.dump()
    sequence = core.Sequence.load(b"\x30\x82\x02\x84" + raw)
    assert der.encoded(sequence) == sequence.dump()
    assert der.header(0x30, 0x280) == b"\x30\x82\x02\x80"
    assert der.header(0x04, 5) == b"\x04\x05" and der.header(0x04, 200) == b"\x04\x81\xc8"


def test_encapsulated_content_is_inside_and_detached_is_not():
    attached = cms.ContentInfo.load(signed.sign(CONTENT, credential(party("p256")), detached=False))
    detached = cms.ContentInfo.load(signed.sign(CONTENT, credential(party("p256"))))
    assert attached["content"]["encap_content_info"]["content"].native == CONTENT
    assert detached["content"]["encap_content_info"]["content"].native is None
    with pytest.raises(MalformedInput, match="needs its content"):
        verify(detached.dump(), trust_anchors=anchors())


def test_signed_attributes_are_the_profile_and_signed_as_a_der_set():
    p = party("rsa2048")
    when = datetime.datetime(2030, 5, 6, 7, 8, 9, tzinfo=datetime.UTC)
    der = signed.sign(CONTENT, credential(p), signing_time=when)
    info = signer_info(der)
    attrs = {a["type"].native: a["values"][0] for a in info["signed_attrs"]}
    assert set(attrs) == {
        "content_type", "signing_time", "message_digest", "smime_capabilities",
        "signing_certificate_v2",
    }  # fmt: skip
    assert attrs["content_type"].native == "data"
    assert attrs["message_digest"].native == digests.SHA256.compute(CONTENT)
    assert attrs["signing_time"].name == "utc_time"
    assert attrs["signing_time"].native == when
    assert capabilities.parse(attrs["smime_capabilities"].dump()) == capabilities.ADVERTISED
    ess = attrs["signing_certificate_v2"]["certs"][0]
    assert ess["cert_hash"].native == digests.SHA256.compute(p.der)
    assert ess["issuer_serial"]["serial_number"].native == p.cert.serial_number
    # hashAlgorithm SHA-256 is the DEFAULT, so DER leaves it out of the ESSCertIDv2.
    assert ess.dump()[2:4] == b"\x04\x20"
    # The signature covers the attributes as a DER SET OF: tag 0x31, members sorted.
    as_set = b"\x31" + info["signed_attrs"].dump()[1:]
    members = [a.dump() for a in info["signed_attrs"]]
    assert members == sorted(members)
    public = p.cert.public_key()
    from cryptography.hazmat.primitives.asymmetric import padding

    public.verify(info["signature"].native, as_set, padding.PKCS1v15(), hashes.SHA256())


def test_generalized_time_outside_utctime_range():
    when = datetime.datetime(2051, 1, 1, tzinfo=datetime.UTC)
    der = signed.sign(CONTENT, credential(party("p256")), signing_time=when)
    result = check(der)
    attrs = {a["type"].native: a["values"][0] for a in signer_info(der)["signed_attrs"]}
    assert attrs["signing_time"].name == "generalized_time"
    assert result.signers[0].signing_time == when


def test_capabilities_can_be_chosen_or_left_out():
    chosen = (capabilities.Capability(capabilities.OID_AES128_CBC),)
    der = signed.sign(CONTENT, credential(party("p256")), capabilities=chosen)
    assert check(der).signers[0].capabilities == chosen
    der = signed.sign(CONTENT, credential(party("p256")), capabilities=())
    assert check(der).signers[0].capabilities == ()
    assert "smime_capabilities" not in {a["type"].native for a in signer_info(der)["signed_attrs"]}


def test_chain_and_extra_certificates_are_included_once():
    p = party("p256")
    extra = pki.root("another root").asn1
    der = signed.sign(CONTENT, credential(p), extra_certs=[extra, p.asn1])
    certs = [c.chosen.dump() for c in cms.ContentInfo.load(der)["content"]["certificates"]]
    # A SET OF: DER sorts it, so compare as a collection, and count duplicates.
    assert sorted(certs) == sorted([p.der, *(c.dump() for c in p.chain_asn1), extra.dump()])


@pytest.mark.parametrize("key_type", ["rsa2048", "p256"])
def test_subject_key_identifier_sid_makes_version_3(key_type):
    p = party(key_type)
    der = signed.sign(CONTENT, credential(p), use_ski=True, detached=False)
    signed_data = cms.ContentInfo.load(der)["content"]
    info = signed_data["signer_infos"][0]
    assert signed_data["version"].native == "v3"
    assert info["version"].native == "v3"
    assert info["sid"].name == "subject_key_identifier"
    assert info["sid"].chosen.native == p.asn1.key_identifier
    assert check(der, None).valid


def test_issuer_and_serial_sid_is_the_default():
    p = party("rsa2048")
    der = signed.sign(CONTENT, credential(p))
    signed_data = cms.ContentInfo.load(der)["content"]
    sid = signed_data["signer_infos"][0]["sid"]
    assert signed_data["version"].native == "v1"
    assert sid.name == "issuer_and_serial_number"
    assert sid.chosen["serial_number"].native == p.cert.serial_number


def test_tampered_content_is_a_bad_message_digest_not_a_bad_signature():
    der = signed.sign(CONTENT, credential(party("p256")))
    result = check(der, CONTENT.replace(b"Hello", b"Jello"))
    [one] = result.signers
    assert not result.valid
    assert one.codes == ("message_digest_mismatch",)
    assert one.signature_ok is True and one.message_digest_ok is False
    assert "changed after signing" in result.summary


def test_canonical_crlf_is_the_callers_job():
    """Verification hashes the bytes given: LF instead of CRLF is a different content."""
    der = signed.sign(CONTENT, credential(party("p256")))
    assert check(der, CONTENT.replace(b"\r\n", b"\n")).signers[0].codes == (
        "message_digest_mismatch",
    )


@pytest.mark.parametrize("key_type", ["rsa2048", "p384"])
def test_tampered_signature_is_a_bad_signature(key_type):
    der = signed.sign(CONTENT, credential(party(key_type)), detached=False)

    def flip(signed_data):
        info = signed_data["signer_infos"][0]
        value = bytearray(info["signature"].native)
        value[len(value) // 2] ^= 0x01
        info["signature"] = bytes(value)

    result = check(rebuild(der, flip), None)
    [one] = result.signers
    assert one.codes == ("bad_signature",)
    assert one.message_digest_ok is True and one.signature_ok is False
    assert not result.valid


def test_tampered_signed_attribute_is_a_bad_signature():
    der = signed.sign(CONTENT, credential(party("p256")), detached=False)
    info = signer_info(der)
    raw_time = info["signed_attrs"].contents
    needle = next(a for a in info["signed_attrs"] if a["type"].native == "signing_time").dump()
    changed = needle[:-3] + bytes([needle[-3] ^ 0x01]) + needle[-2:]
    assert raw_time.count(needle) == 1
    tampered = der.replace(needle, changed)
    result = check(tampered, None)
    assert result.signers[0].codes == ("bad_signature",)


def test_content_type_attribute_must_match():
    der = signed.sign(CONTENT, credential(party("p256")), content_type="1.2.840.113549.1.9.16.1.4")

    def relabel(signed_data):
        signed_data["encap_content_info"] = {"content_type": "data"}

    result = check(rebuild(der, relabel))
    assert result.signers[0].codes == ("content_type_mismatch",)
    assert result.signers[0].content_type_ok is False


def test_other_content_types_make_signed_data_version_3():
    der = signed.sign(CONTENT, credential(party("p256")), content_type="1.2.840.113549.1.9.16.1.4")
    signed_data = cms.ContentInfo.load(der)["content"]
    assert signed_data["version"].native == "v3"
    assert check(der).content_type == "1.2.840.113549.1.9.16.1.4"
    assert check(der).valid


def test_signing_certificate_v2_names_the_signer_certificate():
    """A certificate substituted with the same key is caught by ESS signingCertificateV2."""
    p = party("p256")
    twin_builder = (
        x509.CertificateBuilder()
        .subject_name(p.cert.subject)
        .issuer_name(p.cert.issuer)
        .public_key(p.key.public_key())
        .serial_number(p.cert.serial_number)
        .not_valid_before(p.cert.not_valid_before_utc)
        .not_valid_after(p.cert.not_valid_after_utc + datetime.timedelta(days=1))
    )
    for extension in p.cert.extensions:
        twin_builder = twin_builder.add_extension(extension.value, extension.critical)
    twin = twin_builder.sign(_ica().key, hashes.SHA384())
    twin_asn1 = Certificate.load(twin.public_bytes(serialization.Encoding.DER))
    der = signed.sign(CONTENT, credential(p), detached=False)

    def swap(signed_data):
        signed_data["certificates"] = [twin_asn1, *p.chain_asn1]

    result = check(rebuild(der, swap), None)
    [one] = result.signers
    assert one.signature_ok
    assert one.certificate.dump() == twin_asn1.dump()
    assert one.codes == ("signing_certificate_mismatch",)


def test_untrusted_chain_is_reported_with_its_reason():
    der = signed.sign(CONTENT, credential(party("p256")))
    result = check(der, trust_anchors=[pki.root("a stranger").asn1])
    [one] = result.signers
    assert one.codes == ("untrusted",)
    assert one.signature_ok and one.message_digest_ok and not one.trusted
    assert "no issuer found" in result.summary


def test_expired_certificate_reports_validity_at_signing_time():
    # Inside the intermediate's validity (it starts a day ago), over an hour ago.
    hours = datetime.timedelta(hours=1)
    old = expired_party(pki.NOW - 20 * hours, pki.NOW - hours)
    during = pki.NOW - 10 * hours
    der = signed.sign(CONTENT, credential(old), signing_time=during)

    result = check(der)
    [one] = result.signers
    assert one.codes == ("expired",) and one.expired
    assert one.valid_at_signing_time is True
    assert "valid at the claimed signing time" in one.summary
    assert not result.valid

    # A trusted time (an RFC 3161 genTime) inside the validity makes it valid.
    stamped = check(der, trusted_time=during + datetime.timedelta(minutes=1))
    assert stamped.valid, stamped.summary
    assert stamped.signers[0].expired and "timestamped" in stamped.summary
    # ...and a trusted time outside it does not.
    late = check(der, trusted_time=pki.NOW - 30 * hours)
    assert late.signers[0].codes == ("expired",)
    assert late.signers[0].valid_at_signing_time is False

    # Signed (claimed) after expiry: not valid then either.
    after = signed.sign(CONTENT, credential(old), signing_time=pki.NOW)
    assert check(after).signers[0].valid_at_signing_time is False


def expired_party(not_before: datetime.datetime, not_after: datetime.datetime) -> pki.Party:
    """harness.pki's smime(not_before=...) sets the validity twice and fails in cryptography,
    so this test issues its short-lived certificate itself, from a normal one's extensions."""
    template = party("p256")
    key = pki.new_key("p256")
    ica = _ica()
    builder = (
        x509.CertificateBuilder()
        .subject_name(template.cert.subject)
        .issuer_name(ica.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
    )
    for extension in template.cert.extensions:
        if extension.oid != x509.SubjectKeyIdentifier.oid:
            builder = builder.add_extension(extension.value, extension.critical)
    builder = builder.add_extension(
        x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False
    )
    return pki.Party(key, builder.sign(ica.key, hashes.SHA384()), [ica.cert, *ica.chain])


def test_checked_at_a_given_time():
    der = signed.sign(CONTENT, credential(party("p256")))
    result = check(der, at=pki.NOW + datetime.timedelta(days=400))
    assert result.signers[0].codes == ("expired",)


def test_wrong_key_usage_missing_eku_and_address_are_reported():
    encrypt_only = _ica().smime(ADDRESS, "p256", key_usage="encrypt")
    der = signed.sign(CONTENT, credential(encrypt_only))
    assert check(der).signers[0].codes == ("key_usage",)

    der = signed.sign(CONTENT, credential(party("p256")))
    result = check(der, from_address="mallory@example.org")
    assert result.signers[0].codes == ("address_mismatch",)
    assert result.signers[0].address_ok is False
    assert "mallory@example.org" in result.summary
    assert check(der, from_address="Alice <alice@EXAMPLE.ORG>").valid


def test_several_signers_each_reported_in_order():
    good, other = party("rsa2048"), party("p256", "bob@example.org")
    der = signed.sign(CONTENT, [credential(good), credential(other)], digest="sha384")
    result = check(der)
    assert [s.index for s in result.signers] == [0, 1]
    assert [s.certificate.dump() for s in result.signers] == [good.der, other.der]
    assert result.signers[0].valid
    assert result.signers[1].codes == ("address_mismatch",)
    assert not result.valid
    assert result.summary.startswith("1 of 2 signatures valid")


def test_add_unsigned_attribute_keeps_every_signature_valid():
    first, second = party("rsa2048"), party("p384")
    der = signed.sign(CONTENT, [credential(first), credential(second)], detached=False)
    before = [signed.signature_value(der, i) for i in range(2)]
    token = signed.sign(before[1], credential(first), detached=False)  # stands in for a TST

    stamped = signed.add_unsigned_attribute(der, 1, "signature_time_stamp_token", token)
    stamped = signed.add_unsigned_attribute(stamped, 1, "1.2.840.113549.1.9.16.2.14", token)
    stamped = signed.add_unsigned_attribute(stamped, 0, "1.2.3.4.5", core.Null().dump())

    assert [signed.signature_value(stamped, i) for i in range(2)] == before
    info = signer_info(stamped, 1)
    [attribute] = info["unsigned_attrs"]
    assert attribute["type"].dotted == "1.2.840.113549.1.9.16.2.14"
    assert [v.dump() for v in attribute["values"]] == [token, token]
    assert signer_info(stamped, 0)["unsigned_attrs"][0]["type"].dotted == "1.2.3.4.5"
    assert (
        signer_info(stamped, 0)["signed_attrs"].dump() == signer_info(der, 0)["signed_attrs"].dump()
    )
    result = check(stamped, None)
    assert result.valid, result.summary


def test_add_unsigned_attribute_rejects_bad_values_and_indexes():
    der = signed.sign(CONTENT, credential(party("p256")))
    with pytest.raises(MalformedInput):
        signed.add_unsigned_attribute(der, 0, "signature_time_stamp_token", b"\x30\x03\x02\x01")
    with pytest.raises(IndexError):
        signed.add_unsigned_attribute(der, 1, "1.2.3.4", core.Null().dump())
    with pytest.raises(MalformedInput):
        signed.signature_value(b"\x30\x00", 0)


def test_signature_value_is_the_signers_signature():
    der = signed.sign(CONTENT, credential(party("p256")))
    assert signed.signature_value(der, 0) == signer_info(der)["signature"].native


def test_key_that_is_not_the_certificates_is_refused():
    p, other = party("p256"), _ica().smime("x@example.org", "p256")
    with pytest.raises(SigningError, match="does not match"):
        signed.sign(CONTENT, Credential(other.key, p.asn1, ()))


def test_impossible_choices_are_typed_errors():
    with pytest.raises(UnsupportedAlgorithm):
        signed.sign(CONTENT, credential(party("p256")), digest="md5")
    with pytest.raises(SigningError):
        signed.sign(CONTENT, credential(party("p256")), pss=True)
    with pytest.raises(SigningError):
        signed.sign(CONTENT, [])
    naive = datetime.datetime(2030, 1, 1)
    with pytest.raises(SigningError):
        signed.sign(CONTENT, credential(party("p256")), signing_time=naive)


def test_unknown_digest_is_reported_per_signer():
    der = signed.sign(CONTENT, credential(party("p256")), detached=False)

    def sha224(signed_data):
        signed_data["signer_infos"][0]["digest_algorithm"] = {"algorithm": "sha224"}

    result = check(rebuild(der, sha224), None)
    assert "unsupported_algorithm" in result.signers[0].codes
    assert not result.valid


# ---- malformed input ------------------------------------------------------------------------


def _good() -> bytes:
    return signed.sign(CONTENT, credential(party("p256")), detached=False)


def test_truncated_input_is_malformed():
    der = _good()
    for cut in (0, 1, 10, len(der) // 2, len(der) - 1):
        with pytest.raises(MalformedInput):
            check(der[:cut], None)


def test_wrong_content_type_oid_is_malformed():
    data = cms.ContentInfo({"content_type": "data", "content": b"x"}).dump()
    with pytest.raises(MalformedInput, match="Not CMS SignedData"):
        check(data, None)


def test_wrong_versions_are_malformed():
    def signed_data_v2(signed_data):
        signed_data["version"] = 2

    def signer_v3_with_issuer_serial(signed_data):
        signed_data["signer_infos"][0]["version"] = "v3"

    for edit in (signed_data_v2, signer_v3_with_issuer_serial):
        with pytest.raises(MalformedInput, match="version"):
            check(rebuild(_good(), edit), None)


def test_missing_fields_are_malformed():
    info = cms.ContentInfo.load(_good())
    signed_data = info["content"]
    without_signers = signed_data.dump()
    body = cms.SignedData(
        {
            "version": "v1",
            "digest_algorithms": [{"algorithm": "sha256"}],
            "encap_content_info": {"content_type": "data", "content": CONTENT},
            "signer_infos": [],
        }
    )
    assert without_signers
    empty = cms.ContentInfo({"content_type": "signed_data", "content": body}).dump()
    with pytest.raises(MalformedInput, match="without any SignerInfo"):
        check(empty, None)
    # A SignerInfo without its signature: drop the last element of its SEQUENCE.
    raw_info = signed_data["signer_infos"][0].dump()
    signature = signed_data["signer_infos"][0]["signature"].dump()
    assert raw_info.endswith(signature)
    with pytest.raises(MalformedInput):
        check(info.dump().replace(signature, b""), None)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_input_gives_only_typed_errors(data):
    der = bytearray(_good_cached())
    for _ in range(data.draw(st.integers(1, 4))):
        position = data.draw(st.integers(0, len(der) - 1))
        der[position] = data.draw(st.integers(0, 255))
    try:
        result = check(bytes(der), None)
    except MalformedInput:
        return
    assert isinstance(result.valid, bool)


@cache
def _good_cached() -> bytes:
    return _good()


# ---- the registries take new algorithms without editing shared_pki ----------------------------


@pytest.fixture
def ed25519_scheme():
    """Ed25519 (RFC 8419) registered from outside, as the SM2 module will register SM2."""
    oid = "1.3.101.112"

    def identifier(digest: digests.DigestAlgorithm) -> algos.SignedDigestAlgorithm:
        return algos.SignedDigestAlgorithm({"algorithm": oid})

    def verify_ed(info, signature, data, digest, params) -> bool:
        key = serialization.load_der_public_key(info.dump())
        try:
            key.verify(signature, data)
        except Exception:
            return False
        return True

    scheme = signatures.SignatureScheme(
        name="ed25519",
        signature_oids=frozenset({oid}),
        accepts_public_key=lambda info: info["algorithm"]["algorithm"].dotted == oid,
        owns_private_key=lambda key: isinstance(key, ed25519.Ed25519PrivateKey),
        algorithm_identifier=identifier,
        sign=lambda key, data, digest: key.sign(data),
        verify=verify_ed,
    )
    signatures.register_scheme(scheme)
    yield scheme
    signatures._SCHEMES.remove(scheme)


def test_a_new_key_type_plugs_into_signing_verifying_and_validation(ed25519_scheme):
    key = ed25519.Ed25519PrivateKey.generate()
    ica = _ica()
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "ed")]))
        .issuer_name(ica.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(pki.NOW - datetime.timedelta(days=1))
        .not_valid_after(pki.NOW + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.RFC822Name(ADDRESS)]), False)
        .sign(ica.key, hashes.SHA384())
    )
    asn1 = Certificate.load(cert.public_bytes(serialization.Encoding.DER))
    der = signed.sign(
        CONTENT, Credential(key, asn1, (*tuple(ica.chain_asn1), ica.asn1)), digest="sha512"
    )
    assert signer_info(der)["signature_algorithm"]["algorithm"].dotted == "1.3.101.112"
    result = check(der)
    assert result.valid, result.summary


def test_a_new_digest_registers_by_oid_and_name():
    sha3 = digests.DigestAlgorithm(
        "sha3_256", "2.16.840.1.101.3.4.2.8", "sha3-256", 32, hashes.SHA3_256
    )
    digests.register_digest(sha3)
    try:
        assert digests.by_oid("2.16.840.1.101.3.4.2.8") is sha3
        assert digests.by_name("SHA3-256") is sha3
        assert sha3.compute(b"abc").hex().startswith("3a985da7")
    finally:
        for table in (digests._BY_OID, digests._BY_NAME):
            for k in [k for k, v in table.items() if v is sha3]:
                del table[k]


def test_tsp_module_registered_signing_certificate_v2():
    assert cms.CMSAttributeType("1.2.840.113549.1.9.16.2.47").native == "signing_certificate_v2"
    assert tsp.SigningCertificateV2
