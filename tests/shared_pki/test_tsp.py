"""RFC 3161 made and verified by shared_pki.tsp: round trips per digest, every way a token can be
wrong (reported with its own code), every bad request answered with a proper rejection, and
signature timestamps that cannot be moved to another signature."""

from __future__ import annotations

import datetime
import importlib.util
import random
from functools import cache

import pytest
from asn1crypto import cms, core, tsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from harness import pki

from shared_pki import tsp as ts
from shared_pki.cms import digests, signed
from shared_pki.cms.verify import verify
from shared_pki.errors import MalformedInput, SigningError, UnsupportedAlgorithm
from shared_pki.keys import Certificate, Credential

NOW = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
DAY = datetime.timedelta(days=1)
POLICY = "1.3.6.1.4.1.99999.1.1"
DATA = b"Content-Type: text/plain\r\n\r\nTimestamp me.\r\n"
CONTENT = b"Content-Type: text/plain\r\n\r\nSigned, then timestamped.\r\n"
# The digests the registry knows at test time (SM3 once shared_pki.cms.sm is imported).
DIGESTS = [name for name in ("sha256", "sha384", "sha512", "sm3") if name in digests._BY_NAME]


# ---- the test PKI ----------------------------------------------------------------------------


@cache
def root() -> pki.Authority:
    """A root valid since long ago (pki.root starts two days back), so that genTimes in the past
    can be judged against it."""
    key = pki.new_key("p256")
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tsp test root")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - 1000 * DAY)
        .not_valid_after(NOW + 3650 * DAY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return pki.Authority(key, cert, [])


@cache
def other_root() -> pki.Authority:
    return pki.root("some other root", "p256")


@cache
def ica() -> pki.Authority:
    return root().intermediate("tsp test ica", "p256")


def make_tsa(
    issuer: pki.Authority,
    *,
    key_type: str = "p256",
    ekus: tuple = (ExtendedKeyUsageOID.TIME_STAMPING,),
    critical: bool = True,
    not_before: datetime.datetime | None = None,
    not_after: datetime.datetime | None = None,
    name: str = "autosmime test TSA",
) -> pki.Party:
    """A TSA certificate: by default a critical extendedKeyUsage with id-kp-timeStamping only."""
    key = pki.new_key(key_type)
    builder = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "autosmime tests"),
                    x509.NameAttribute(NameOID.COMMON_NAME, name),
                ]
            )
        )
        .issuer_name(issuer.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or NOW - 100 * DAY)
        .not_valid_after(not_after or NOW + 365 * DAY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=True,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if ekus:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(ekus)), critical=critical)
    cert = builder.sign(issuer.key, hashes.SHA256())
    return pki.Party(key, cert, [issuer.cert, *issuer.chain])


@cache
def tsa(key_type: str = "p256") -> pki.Party:
    return make_tsa(root(), key_type=key_type)


def credential(party: pki.Party) -> Credential:
    return Credential(party.key, party.asn1, tuple(party.chain_asn1))


def anchors() -> list[Certificate]:
    return [root().asn1]


def respond(request: bytes, party: pki.Party | None = None, **options) -> bytes:
    settings = {
        "tsa": credential(party or tsa()),
        "policy_oid": POLICY,
        "serial_number": 1234567,
        "gen_time": NOW,
        **options,
    }
    return ts.make_response(request, **settings)


def token_for(data: bytes = DATA, party: pki.Party | None = None, **options) -> bytes:
    request, _ = ts.make_request(data)
    return ts.parse_response(respond(request, party, **options)).der


def forced_token(party: pki.Party, data: bytes = DATA, **options) -> bytes:
    """A token by a TSA make_response would refuse (to test that verification refuses it)."""
    request, _ = ts.make_request(data)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ts, "_check_tsa_setup", lambda *args: None)
        return ts.parse_response(respond(request, party, **options)).der


def rejected(response: bytes) -> ts.TimestampRejected:
    with pytest.raises(ts.TimestampRejected) as caught:
        ts.parse_response(response)
    return caught.value


# ---- round trips -----------------------------------------------------------------------------


@pytest.mark.parametrize("key_type", ["p256", "rsa2048"])
@pytest.mark.parametrize("digest", DIGESTS)
def test_round_trip(digest: str, key_type: str) -> None:
    request, nonce = ts.make_request(DATA, digest=digest, policy=POLICY)
    parsed = ts.parse_request(request)
    assert parsed.digest == digest
    assert parsed.imprint == digests.by_name(digest).compute(DATA)
    assert (parsed.nonce, parsed.cert_req, parsed.policy) == (nonce, True, POLICY)
    assert nonce is not None and nonce > 0

    when = NOW.replace(microsecond=250000)
    response = respond(request, tsa(key_type), gen_time=when, accuracy_ms=1500, serial_number=9)
    token = ts.parse_response(response)
    assert token.status == "granted"
    assert (token.gen_time, token.serial_number, token.policy) == (when, 9, POLICY)
    assert token.accuracy == datetime.timedelta(seconds=1, milliseconds=500)
    assert token.nonce == nonce and token.ordering is False and token.digest == digest

    result = ts.verify_token(
        token.der, data_or_imprint=DATA, trust_anchors=anchors(), nonce=nonce, digest=digest
    )
    assert result.valid, result.summary
    assert result.codes == ()
    assert result.trusted_time == when
    assert (result.serial_number, result.policy, result.nonce) == (9, POLICY, nonce)
    assert result.certificate.dump() == tsa(key_type).der
    assert result.signature_ok and result.message_digest_ok and result.signing_certificate_ok
    assert result.eku_ok and result.imprint_ok and result.nonce_ok
    assert result.chain is not None and result.chain.at == when
    # ...and by an Imprint computed elsewhere.
    imprint = ts.Imprint(digests.by_name(digest).compute(DATA), digest)
    assert ts.verify_token(token.der, data_or_imprint=imprint, trust_anchors=anchors()).valid


def test_sm3_imprints_when_the_sm_module_is_present() -> None:
    """With shared_pki.cms.sm, SM3 imprints round-trip; without it, SM3 is refused as badAlg."""
    sm3_oid = "1.2.156.10197.1.401"
    hand_made = tsp.TimeStampReq(
        {
            "version": "v1",
            "message_imprint": {
                "hash_algorithm": {"algorithm": sm3_oid},
                "hashed_message": b"\x11" * 32,
            },
        }
    ).dump()
    if importlib.util.find_spec("shared_pki.cms.sm") is not None:
        import shared_pki.cms.sm  # noqa: F401

        assert digests.by_name("sm3").oid == sm3_oid
        request, nonce = ts.make_request(DATA, digest="sm3")
        token = ts.parse_response(respond(request))
        assert token.digest == "sm3"
        result = ts.verify_token(
            token.der, data_or_imprint=DATA, trust_anchors=anchors(), nonce=nonce
        )
        assert result.valid, result.summary
        assert ts.parse_response(respond(hand_made)).imprint == b"\x11" * 32
    else:
        with pytest.raises(UnsupportedAlgorithm):
            ts.make_request(DATA, digest="sm3")
        assert rejected(respond(hand_made)).fail_info == ("bad_alg",)


def test_request_options() -> None:
    request, nonce = ts.make_request(DATA, nonce=False, cert_req=False)
    assert nonce is None
    parsed = ts.parse_request(request)
    assert (parsed.nonce, parsed.cert_req, parsed.policy) == (None, False, None)
    assert ts.make_request(DATA, nonce=42)[1] == 42
    with pytest.raises(ValueError):
        ts.make_request(DATA, nonce=-1)
    imprint = ts.Imprint(b"\x01" * 48, "sha-384")
    assert ts.parse_request(ts.make_request(imprint)[0]).digest == "sha384"
    with pytest.raises(UnsupportedAlgorithm):
        ts.make_request(imprint, digest="sha256")
    with pytest.raises(MalformedInput):
        ts.Imprint(b"\x01" * 31, "sha256")
    # Two requests draw two nonces.
    assert ts.make_request(DATA)[1] != ts.make_request(DATA)[1]


def test_cert_req_false_leaves_certificates_out() -> None:
    request, nonce = ts.make_request(DATA, cert_req=False)
    token = ts.parse_response(respond(request)).der
    assert isinstance(cms.ContentInfo.load(token)["content"]["certificates"], core.Void)
    alone = ts.verify_token(token, data_or_imprint=DATA, trust_anchors=anchors(), nonce=nonce)
    assert "signer_certificate_missing" in alone.codes
    given = ts.verify_token(
        token, data_or_imprint=DATA, trust_anchors=anchors(), nonce=nonce,
        intermediates=[tsa().asn1],
    )  # fmt: skip
    assert given.valid, given.summary


def test_chain_through_an_intermediate() -> None:
    party = make_tsa(ica())
    with_chain = token_for(party=party)
    certs = cms.ContentInfo.load(with_chain)["content"]["certificates"]
    assert ica().der in [choice.chosen.dump() for choice in certs]
    assert ts.verify_token(with_chain, data_or_imprint=DATA, trust_anchors=anchors()).valid
    without = token_for(party=party, include_chain=False)
    certs = cms.ContentInfo.load(without)["content"]["certificates"]
    assert [choice.chosen.dump() for choice in certs] == [party.der]
    alone = ts.verify_token(without, data_or_imprint=DATA, trust_anchors=anchors())
    assert "untrusted" in alone.codes
    helped = ts.verify_token(
        without, data_or_imprint=DATA, trust_anchors=anchors(), intermediates=[ica().asn1]
    )
    assert helped.valid


def test_policy_and_tsa_name() -> None:
    request, _ = ts.make_request(DATA, policy="1.2.3.4.5")
    token = ts.parse_response(respond(request, accepted_policies=["1.2.3.4.5"], tsa_name=True))
    assert token.policy == "1.2.3.4.5"
    assert token.tsa_name.chosen == tsa().asn1.subject
    assert ts.verify_token(token.der, data_or_imprint=DATA, trust_anchors=anchors()).valid
    unasked = ts.parse_response(respond(ts.make_request(DATA)[0], accuracy_ms=None))
    assert (unasked.policy, unasked.accuracy, unasked.tsa_name) == (POLICY, None, None)


# ---- what verification catches ----------------------------------------------------------------


def test_nonce_mismatch_and_missing_nonce() -> None:
    request, nonce = ts.make_request(DATA)
    token = ts.parse_response(respond(request)).der
    wrong = ts.verify_token(token, data_or_imprint=DATA, trust_anchors=anchors(), nonce=nonce + 1)
    assert wrong.codes == ("nonce_mismatch",) and wrong.nonce_ok is False
    assert wrong.trusted_time is None
    no_nonce = ts.parse_response(respond(ts.make_request(DATA, nonce=False)[0])).der
    missing = ts.verify_token(no_nonce, data_or_imprint=DATA, trust_anchors=anchors(), nonce=1)
    assert missing.codes == ("nonce_mismatch",)
    assert ts.verify_token(no_nonce, data_or_imprint=DATA, trust_anchors=anchors()).valid


def test_wrong_imprint() -> None:
    token = token_for()
    other = ts.verify_token(token, data_or_imprint=DATA + b"!", trust_anchors=anchors())
    assert other.codes == ("imprint_mismatch",) and other.imprint_ok is False
    imprint = ts.Imprint(digests.SHA384.compute(DATA), "sha384")
    algorithm = ts.verify_token(token, data_or_imprint=imprint, trust_anchors=anchors())
    assert algorithm.codes == ("imprint_mismatch",)
    required = ts.verify_token(
        token, data_or_imprint=DATA, trust_anchors=anchors(), digest="sha512"
    )
    assert required.codes == ("imprint_algorithm_mismatch",)


@pytest.mark.parametrize(
    ("ekus", "critical"),
    [
        ((ExtendedKeyUsageOID.TIME_STAMPING,), False),
        ((ExtendedKeyUsageOID.TIME_STAMPING, ExtendedKeyUsageOID.EMAIL_PROTECTION), True),
        ((ExtendedKeyUsageOID.EMAIL_PROTECTION,), True),
        ((), True),
    ],
    ids=["not-critical", "with-email", "email-only", "none"],
)
def test_tsa_certificate_without_critical_sole_eku_is_rejected(ekus, critical) -> None:
    party = make_tsa(root(), ekus=ekus, critical=critical)
    with pytest.raises(SigningError):
        respond(ts.make_request(DATA)[0], party)
    result = ts.verify_token(forced_token(party), data_or_imprint=DATA, trust_anchors=anchors())
    assert result.codes == ("extended_key_usage",)
    assert result.eku_ok is False and result.signature_ok


def test_chain_judged_at_gen_time() -> None:
    expired = make_tsa(root(), not_before=NOW - 30 * DAY, not_after=NOW - 10 * DAY)
    then = NOW - 20 * DAY
    token = token_for(party=expired, gen_time=then)
    result = ts.verify_token(token, data_or_imprint=DATA, trust_anchors=anchors())
    assert result.valid, result.summary
    assert result.chain.at == then and result.trusted_time == then
    # The same certificate after its expiry, and before its start, does not vouch.
    late = ts.verify_token(
        token_for(party=expired, gen_time=NOW - 5 * DAY),
        data_or_imprint=DATA,
        trust_anchors=anchors(),
    )
    assert late.codes == ("expired",)
    early = ts.verify_token(
        token_for(party=expired, gen_time=NOW - 40 * DAY),
        data_or_imprint=DATA,
        trust_anchors=anchors(),
    )
    assert early.codes == ("not_yet_valid",)


def test_untrusted_tsa() -> None:
    result = ts.verify_token(token_for(), data_or_imprint=DATA, trust_anchors=[other_root().asn1])
    assert result.codes == ("untrusted",) and result.trusted_time is None


def _edit_token(token: bytes, edit) -> bytes:
    info = cms.ContentInfo.load(token)
    edit(info["content"])
    return cms.ContentInfo({"content_type": "signed_data", "content": info["content"]}).dump()


def test_tampered_token() -> None:
    token = token_for()
    signature = cms.ContentInfo.load(token)["content"]["signer_infos"][0]["signature"].native
    flipped = bytearray(signature)
    flipped[10] ^= 0x01
    bad_signature = token.replace(signature, bytes(flipped))
    assert bad_signature != token
    result = ts.verify_token(bad_signature, data_or_imprint=DATA, trust_anchors=anchors())
    assert result.codes == ("bad_signature",) and not result.signature_ok

    # A different genTime in the TSTInfo: the messageDigest no longer matches.
    stamp = NOW.strftime("%Y%m%d%H%M%S").encode()
    moved = (NOW - 400 * DAY).strftime("%Y%m%d%H%M%S").encode()
    assert token.count(stamp + b"Z") == 1
    backdated = token.replace(stamp + b"Z", moved + b"Z")
    result = ts.verify_token(backdated, data_or_imprint=DATA, trust_anchors=anchors())
    assert "message_digest_mismatch" in result.codes
    assert result.gen_time == NOW - 400 * DAY and result.trusted_time is None


def _hand_token(party: pki.Party, ess: bytes | None, tst_der: bytes) -> bytes:
    """A token with signed attributes chosen here: ess is the DER signingCertificateV2 value to
    carry (None: no ESS attribute at all)."""
    attributes = [
        {"type": "content_type", "values": [ts.OID_TST_INFO]},
        {"type": "message_digest", "values": [digests.SHA256.compute(tst_der)]},
    ]
    if ess is not None:
        attributes.append(
            {"type": "signing_certificate_v2", "values": [tsp.SigningCertificateV2.load(ess)]}
        )
    signed_attrs = cms.CMSAttributes(attributes)
    signature = party.key.sign(signed_attrs.dump(), ec.ECDSA(hashes.SHA256()))
    cert = party.asn1
    signer_info = cms.SignerInfo(
        {
            "version": "v1",
            "sid": {
                "issuer_and_serial_number": {
                    "issuer": cert.issuer,
                    "serial_number": cert.serial_number,
                }
            },
            "digest_algorithm": {"algorithm": "sha256"},
            "signed_attrs": signed_attrs,
            "signature_algorithm": {"algorithm": "sha256_ecdsa"},
            "signature": signature,
        }
    )
    signed_data = cms.SignedData(
        {
            "version": "v3",
            "digest_algorithms": [{"algorithm": "sha256"}],
            "encap_content_info": {
                "content_type": "tst_info",
                "content": tsp.TSTInfo.load(tst_der),
            },
            "certificates": [cert],
            "signer_infos": [signer_info],
        }
    )
    return cms.ContentInfo({"content_type": "signed_data", "content": signed_data}).dump()


def _ess_v2(cert_der: bytes, serial: int, issuer) -> bytes:
    return tsp.SigningCertificateV2(
        {
            "certs": [
                {
                    "cert_hash": digests.SHA256.compute(cert_der),
                    "issuer_serial": {
                        "issuer": [asn1_x509.GeneralName({"directory_name": issuer})],
                        "serial_number": serial,
                    },
                }
            ]
        }
    ).dump()


def test_ess_signing_certificate_missing_or_naming_another_certificate() -> None:
    tst_der = ts.parse_token(token_for()).tst_info
    party = tsa()
    good = _hand_token(
        party, _ess_v2(party.der, party.asn1.serial_number, party.asn1.issuer), tst_der
    )
    assert ts.verify_token(good, data_or_imprint=DATA, trust_anchors=anchors()).valid
    missing = _hand_token(party, None, tst_der)
    result = ts.verify_token(missing, data_or_imprint=DATA, trust_anchors=anchors())
    assert result.codes == ("missing_attribute",) and result.signature_ok
    another = make_tsa(root(), name="another TSA")
    wrong = _hand_token(
        party, _ess_v2(another.der, another.asn1.serial_number, another.asn1.issuer), tst_der
    )
    result = ts.verify_token(wrong, data_or_imprint=DATA, trust_anchors=anchors())
    assert (
        result.codes == ("signing_certificate_mismatch",) and result.signing_certificate_ok is False
    )


def test_tsa_name_naming_someone_else() -> None:
    request, _ = ts.make_request(DATA)
    tst_der = ts.parse_response(respond(request, tsa_name=True)).tst_info
    tst = tsp.TSTInfo.load(tst_der)
    tst["tsa"] = {"directory_name": other_root().asn1.subject}
    party = tsa()
    ess = _ess_v2(party.der, party.asn1.serial_number, party.asn1.issuer)
    result = ts.verify_token(
        _hand_token(party, ess, tst.dump(force=True)), data_or_imprint=DATA, trust_anchors=anchors()
    )
    assert result.codes == ("tsa_name_mismatch",)


def test_not_a_token() -> None:
    plain = signed.sign(DATA, credential(root().smime("a@example.org")), detached=False)
    with pytest.raises(MalformedInput):
        ts.verify_token(plain, data_or_imprint=DATA, trust_anchors=anchors())
    with pytest.raises(MalformedInput):
        ts.parse_token(b"\x30\x03\x02\x01\x01")


# ---- bad requests get proper rejections --------------------------------------------------------


def _request(**fields) -> bytes:
    base = {
        "version": "v1",
        "message_imprint": {
            "hash_algorithm": {"algorithm": "sha256"},
            "hashed_message": digests.SHA256.compute(DATA),
        },
    }
    return tsp.TimeStampReq({**base, **fields}).dump()


def _imprint(algorithm: dict, hashed: bytes) -> dict:
    return {"message_imprint": {"hash_algorithm": algorithm, "hashed_message": hashed}}


def _tlv(tag: int, body: bytes) -> bytes:
    return bytes([tag]) + signed._der_length(len(body)) + body


def _with_parameters() -> bytes:
    """A SHA-256 request whose AlgorithmIdentifier has INTEGER parameters (asn1crypto would
    force NULL, so the DER is assembled here)."""
    algorithm = _tlv(
        0x30, core.ObjectIdentifier(digests.SHA256.oid).dump() + core.Integer(5).dump()
    )
    imprint = _tlv(0x30, algorithm + core.OctetString(b"\x00" * 32).dump())
    return _tlv(0x30, core.Integer(1).dump() + imprint)


def _bad_imprint(algorithm: str, length: int) -> bytes:
    return _request(**_imprint({"algorithm": algorithm}, b"\x00" * length))


BAD_REQUESTS = {
    "empty": (b"", "bad_data_format", MalformedInput),
    "garbage": (b"GET /tsa HTTP/1.1\r\n\r\n", "bad_data_format", MalformedInput),
    "truncated": (_request()[:-5], "bad_data_format", MalformedInput),
    "trailing-bytes": (_request() + b"\x00", "bad_data_format", MalformedInput),
    "an-integer": (core.Integer(5).dump(), "bad_data_format", MalformedInput),
    "version-2": (_request(version="v2"), "bad_request", ts.RequestRejected),
    "version-0": (_request(version="v0"), "bad_request", ts.RequestRejected),
    "md5": (_bad_imprint("md5", 16), "bad_alg", UnsupportedAlgorithm),
    "sha1": (_bad_imprint("sha1", 20), "bad_alg", UnsupportedAlgorithm),
    "unknown-oid": (_bad_imprint("1.2.3.4", 32), "bad_alg", UnsupportedAlgorithm),
    "parameters": (_with_parameters(), "bad_alg", UnsupportedAlgorithm),
    "short-imprint": (_bad_imprint("sha256", 31), "bad_data_format", MalformedInput),
    "long-imprint": (_bad_imprint("sha384", 64), "bad_data_format", MalformedInput),
    "empty-imprint": (_bad_imprint("sha512", 0), "bad_data_format", MalformedInput),
}


@pytest.mark.parametrize("name", sorted(BAD_REQUESTS))
def test_bad_request_is_answered_with_a_rejection(name: str) -> None:
    request, fail_info, error = BAD_REQUESTS[name]
    with pytest.raises(error) as caught:
        ts.parse_request(request)
    assert type(caught.value) is error
    assert ts.fail_info_of(caught.value) == fail_info
    answer = rejected(respond(request))
    assert answer.status == "rejection"
    assert answer.fail_info == (fail_info,)
    assert answer.text
    # The answer is a TimeStampResp as the RFC writes it: a status, no token.
    status = tsp.PKIStatusInfo.load(core.Sequence.load(respond(request))[0].dump())
    assert status["status"].native == "rejection"
    assert status["fail_info"].native == {fail_info}


def test_unaccepted_policy_and_extensions() -> None:
    answer = rejected(respond(_request(req_policy="1.2.3.9")))
    assert (answer.status, answer.fail_info) == ("rejection", ("unaccepted_policy",))
    extension = {"extn_id": "1.2.3.4.5", "critical": False, "extn_value": b"\x05\x00"}
    answer = rejected(respond(_request(extensions=[extension])))
    assert answer.fail_info == ("unaccepted_extensions",)
    assert ts.parse_response(respond(_request(req_policy=POLICY))).policy == POLICY


def test_mutated_requests_never_crash_the_tsa() -> None:
    """Every cut and a few hundred seeded accidents: always a TimeStampResp, granted or not."""
    rng = random.Random(3161)
    good, _ = ts.make_request(DATA, policy=POLICY)
    cases = [good[:cut] for cut in range(len(good))]
    for _ in range(300):
        out = bytearray(good)
        for _ in range(rng.randint(1, 3)):
            out[rng.randrange(len(out))] = rng.randrange(256)
        cases.append(bytes(out))
    outcomes = {"granted": 0, "rejection": 0}
    for case in cases:
        response = respond(case)
        try:
            ts.parse_response(response)
            outcomes["granted"] += 1
        except ts.TimestampRejected as answer:
            assert answer.status == "rejection" and len(answer.fail_info) == 1
            outcomes["rejection"] += 1
    assert outcomes["rejection"] >= len(good)  # every cut is refused


def test_rejection_builder() -> None:
    answer = rejected(ts.rejection("rejection", "badAlg", "no MD5 here"))
    assert (answer.fail_info, answer.text) == (("bad_alg",), "no MD5 here")
    several = rejected(ts.rejection("waiting", ["time_not_available", "systemFailure"]))
    assert several.status == "waiting"
    assert several.fail_info == ("system_failure", "time_not_available")
    assert rejected(ts.rejection()).fail_info == ()
    with pytest.raises(ValueError):
        ts.rejection("granted")
    with pytest.raises(ValueError):
        ts.rejection("rejection", "bad_mood")


def test_tsa_setup_errors_raise() -> None:
    request, _ = ts.make_request(DATA)
    with pytest.raises(ValueError):
        respond(request, gen_time=NOW.replace(tzinfo=None))
    for serial in (0, -1, 2**160):
        with pytest.raises(ValueError):
            respond(request, serial_number=serial)
    with pytest.raises(ValueError):
        respond(request, accuracy_ms=0)
    stranger = Credential(pki.new_key("p256"), tsa().asn1, ())
    with pytest.raises(SigningError):
        respond(request, tsa=stranger)


# ---- responses that do not parse ---------------------------------------------------------------


def test_truncated_responses_are_malformed_input() -> None:
    response = respond(ts.make_request(DATA)[0])
    assert ts.parse_response(response)
    for cut in range(len(response)):
        with pytest.raises(MalformedInput):
            ts.parse_response(response[:cut])
    with pytest.raises(MalformedInput):
        ts.parse_response(response + b"\x00")
    with pytest.raises(MalformedInput):
        ts.parse_response("not bytes")  # type: ignore[arg-type]


def test_granted_without_token_or_with_a_broken_one() -> None:
    status = tsp.PKIStatusInfo({"status": "granted"}).dump()
    with pytest.raises(MalformedInput):
        ts.parse_response(b"\x30" + bytes([len(status)]) + status)
    response = respond(ts.make_request(DATA)[0])
    token = ts.parse_response(response).der
    # A token whose TSTInfo is not one (a SignedData of data instead).
    plain = signed.sign(DATA, credential(tsa()), detached=False)
    body = status + plain
    with pytest.raises(MalformedInput):
        ts.parse_response(b"\x30" + signed._der_length(len(body)) + body)
    assert token in response


# ---- signature timestamps (RFC 3161 appendix A) -------------------------------------------------


@cache
def signers() -> tuple[pki.Party, pki.Party]:
    return root().smime("alice@example.org", "p256"), root().smime("bob@example.org", "rsa2048")


def _two_signer_message() -> bytes:
    return signed.sign(CONTENT, [credential(p) for p in signers()], capabilities=())


def _stamp(message: bytes, index: int, **options) -> bytes:
    request, _ = ts.make_request(ts.timestamp_imprint(message, index, **options))
    return ts.parse_response(respond(request)).der


def test_timestamp_imprint_is_the_hash_of_the_signature_value() -> None:
    message = _two_signer_message()
    for index in (0, 1):
        value = signed.signature_value(message, index)
        imprint = ts.timestamp_imprint(message, index, digest="sha384")
        assert imprint == digests.SHA384.compute(value) and imprint.digest == "sha384"
    with pytest.raises(IndexError):
        ts.timestamp_imprint(message, 2)


def test_attach_and_verify_signature_timestamps() -> None:
    message = _two_signer_message()
    stamped = ts.attach_token(message, 1, _stamp(message, 1))
    stamped = ts.attach_token(stamped, 0, _stamp(stamped, 0))
    # The signatures still verify, and their signed parts did not move.
    assert verify(stamped, content=CONTENT, trust_anchors=anchors()).valid
    for index in (0, 1):
        assert signed.signature_value(stamped, index) == signed.signature_value(message, index)
    results = ts.signature_timestamps(stamped, anchors())
    assert [len(tokens) for tokens in results] == [1, 1]
    for index, (result,) in enumerate(results):
        assert result.valid, result.summary
        assert result.signer_index == index and result.trusted_time == NOW
    assert ts.trusted_times(results) == {0: NOW, 1: NOW}
    assert ts.signature_timestamps(message, anchors()) == [(), ()]


def test_transplanted_token_is_detected() -> None:
    message = _two_signer_message()
    for_alice = _stamp(message, 0)
    with pytest.raises(MalformedInput):
        ts.attach_token(message, 1, for_alice)
    # Put there by other means, it is reported on bob, and gives bob no trusted time.
    moved = signed.add_unsigned_attribute(message, 1, ts.OID_SIGNATURE_TIME_STAMP_TOKEN, for_alice)
    results = ts.signature_timestamps(moved, anchors())
    assert results[0] == ()
    assert results[1][0].codes == ("imprint_mismatch",)
    assert ts.trusted_times(results) == {}
    # A token from another message by the same signer does not fit either.
    again = signed.sign(CONTENT, credential(signers()[0]), capabilities=())
    foreign = signed.add_unsigned_attribute(again, 0, ts.OID_SIGNATURE_TIME_STAMP_TOKEN, for_alice)
    assert ts.signature_timestamps(foreign, anchors())[0][0].codes == ("imprint_mismatch",)


def test_trusted_time_rescues_an_expired_signer() -> None:
    signer = root().smime(
        "carol@example.org", "p256", not_before=NOW - 30 * DAY, not_after=NOW - 10 * DAY
    )
    then = NOW - 20 * DAY
    message = signed.sign(CONTENT, credential(signer), signing_time=then)
    request, _ = ts.make_request(ts.timestamp_imprint(message))
    stamped = ts.attach_token(message, 0, ts.parse_response(respond(request, gen_time=then)).der)
    assert "expired" in verify(stamped, content=CONTENT, trust_anchors=anchors()).signers[0].codes
    times = ts.trusted_times(ts.signature_timestamps(stamped, anchors()))
    assert times == {0: then}
    result = verify(stamped, content=CONTENT, trust_anchors=anchors(), trusted_time=times)
    assert result.valid, result.summary


def test_malformed_token_attribute_is_reported_not_raised() -> None:
    message = _two_signer_message()
    not_a_token = signed.sign(DATA, credential(tsa()), detached=False, capabilities=())
    bad = signed.add_unsigned_attribute(message, 0, ts.OID_SIGNATURE_TIME_STAMP_TOKEN, not_a_token)
    (result,), () = ts.signature_timestamps(bad, anchors())
    assert result.codes == ("malformed_token",) and result.trusted_time is None
    with pytest.raises(MalformedInput):
        ts.attach_token(message, 0, not_a_token)


def test_sha512_signature_timestamp_with_digest_requirement() -> None:
    message = _two_signer_message()
    stamped = ts.attach_token(message, 0, _stamp(message, 0, digest="sha512"))
    assert ts.signature_timestamps(stamped, anchors())[0][0].valid
    strict = ts.signature_timestamps(stamped, anchors(), digest="sha256")
    assert strict[0][0].codes == ("imprint_algorithm_mismatch",)


def test_response_der_is_canonical() -> None:
    response = respond(ts.make_request(DATA)[0], tsa_name=True)
    reparsed = tsp.TimeStampResp.load(response)
    assert reparsed.dump(force=True) == response


@pytest.mark.parametrize("accuracy_ms", [None, 1, 999, 1000, 1500])
@pytest.mark.parametrize("nonce", [None, 0, 2**70 + 5])
@pytest.mark.parametrize("named", [False, True])
def test_hand_written_tst_info_is_what_asn1crypto_writes(accuracy_ms, nonce, named):
    """make_response writes TSTInfo field by field: the bytes must be asn1crypto's DER."""
    from asn1crypto import tsp as asn1_tsp
    from asn1crypto import x509 as asn1_x509

    from shared_pki import tsp as ours
    from shared_pki.cms import digests

    certificate = _tsa_for_tst_info().asn1
    when = datetime.datetime(2026, 12, 6, 8, 30, 1, 250000, tzinfo=datetime.UTC)
    imprint = bytes(range(32))
    fields = {
        "version": "v1",
        "policy": POLICY,
        "message_imprint": {"hash_algorithm": {"algorithm": "sha256"}, "hashed_message": imprint},
        "serial_number": 2**100 + 7,
        "gen_time": when,
    }
    if accuracy_ms is not None:
        seconds, millis = divmod(accuracy_ms, 1000)
        fields["accuracy"] = {
            **({"seconds": seconds} if seconds else {}),
            **({"millis": millis} if millis else {}),
        }
    if nonce is not None:
        fields["nonce"] = nonce
    if named:
        fields["tsa"] = asn1_x509.GeneralName({"directory_name": certificate.subject})
    written = ours._tst_info(
        POLICY, digests.by_name("sha256"), imprint, 2**100 + 7, when, accuracy_ms, nonce,
        certificate if named else None,
    )  # fmt: skip
    assert written == asn1_tsp.TSTInfo(fields).dump()


def _tsa_for_tst_info():
    from harness import pki

    return pki.root("tst info root", "p256").smime("tsa@example.test", "p256")
