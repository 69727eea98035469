"""SM2/SM3/SM4 in CMS and S/MIME, among ourselves: SignedData with SM2-with-SM3, EnvelopedData
with SM2 key transport and SM4-CBC, in the PKCS#7 and GM/T 0010 conventions, signer IDs, and
whole messages that mix SM and international keys on the reading side."""

from __future__ import annotations

import datetime

import pytest
from asn1crypto import cms
from harness import pki
from harness.sm_pki import SmPki

from shared_pki import mime, sm_oids
from shared_pki.cms import digests, enveloped, signed, verify
from shared_pki.cms.sm import BOTH_IDS, EMPTY_ID, parse_sm2_id, parse_sm2_ids
from shared_pki.errors import DecryptionFailed, EncryptionError, SigningError
from shared_pki.keys import load_private_key
from shared_pki.smime import encrypt_message, open_message, sign_message

CONTENT = b"Content-Type: text/plain\r\n\r\nSM2 signed and SM4 sealed.\r\n"
MESSAGE = (
    b"From: alice@example.org\r\nTo: bob@example.org\r\nSubject: SM\r\n"
    b"Content-Type: text/plain\r\n\r\nHello in SM.\r\n"
)


@pytest.fixture(scope="module")
def sm() -> SmPki:
    return SmPki()


@pytest.fixture(scope="module")
def alice(sm: SmPki):
    return sm.person("alice@example.org")


@pytest.fixture(scope="module")
def bob(sm: SmPki):
    return sm.person("bob@example.org")


def _outer_type(der: bytes) -> str:
    return cms.ContentInfo.load(der)["content_type"].dotted


# ---- SignedData ----------------------------------------------------------------------------


@pytest.mark.parametrize("convention", ["pkcs7", "gmt"])
@pytest.mark.parametrize("detached", [True, False])
def test_sm2_signature_round_trip_in_both_conventions(sm, alice, convention, detached) -> None:
    der = signed.sign(
        CONTENT, alice.credential, digest="sm3", detached=detached, convention=convention
    )
    expected = sm_oids.GM_SIGNED_DATA if convention == "gmt" else "1.2.840.113549.1.7.2"
    assert _outer_type(der) == expected
    signed_data = cms.ContentInfo.load(der)["content"]
    info = signed_data["signer_infos"][0]
    assert info["signature_algorithm"]["algorithm"].dotted == sm_oids.SM2_WITH_SM3
    assert info["digest_algorithm"]["algorithm"].dotted == sm_oids.SM3
    encap = signed_data["encap_content_info"]["content_type"].dotted
    assert encap == (sm_oids.GM_DATA if convention == "gmt" else "1.2.840.113549.1.7.1")
    result = verify.verify(der, content=CONTENT if detached else None, trust_anchors=[sm.root.cert])
    assert result.valid, result.summary
    assert result.signers[0].digest_algorithm == "sm3"
    tampered = (
        verify.verify(der, content=CONTENT + b"x", trust_anchors=[sm.root.cert])
        if (detached)
        else None
    )
    if tampered is not None:
        assert "message_digest_mismatch" in tampered.signers[0].codes


def test_signer_ids_are_checked_and_both_accepts_either(sm, alice) -> None:
    for sm2_id in (None, EMPTY_ID, b"alice@example.org"):
        der = signed.sign(CONTENT, alice.credential, digest="sm3", sm2_id=sm2_id)
        default = verify.verify(der, content=CONTENT, trust_anchors=[sm.root.cert])
        both = verify.verify(der, content=CONTENT, trust_anchors=[sm.root.cert], sm2_ids=BOTH_IDS)
        own = verify.verify(
            der,
            content=CONTENT,
            trust_anchors=[sm.root.cert],
            # the certificates are signed with the standard ID: the set covers both
            sm2_ids=(sm2_id if sm2_id is not None else EMPTY_ID, parse_sm2_id("standard")),
        )
        assert own.valid, own.summary
        assert default.valid == (sm2_id is None)
        assert both.valid == (sm2_id in (None, EMPTY_ID))
        if not default.valid:
            assert default.signers[0].codes == ("bad_signature",)


def test_chain_links_are_checked_with_the_ids_given() -> None:
    """An intermediate signed with the empty ID (as OpenSSL makes them) is trusted only when
    the empty ID is among those tried."""
    openssl_like = SmPki(intermediate=True, intermediate_id=EMPTY_ID)
    carol = openssl_like.person("carol@example.org")
    der = signed.sign(CONTENT, carol.credential, digest="sm3")
    anchors = [openssl_like.root.cert]
    standard_only = verify.verify(der, content=CONTENT, trust_anchors=anchors)
    assert standard_only.signers[0].signature_ok
    assert not standard_only.signers[0].trusted
    assert verify.verify(der, content=CONTENT, trust_anchors=anchors, sm2_ids=BOTH_IDS).valid


def test_signature_algorithm_301_1_is_read_as_sm2_with_sm3(sm, alice) -> None:
    der = signed.sign(CONTENT, alice.credential, digest="sm3")
    info = cms.ContentInfo.load(der)
    signer_info = info["content"]["signer_infos"][0]
    signer_info["signature_algorithm"] = {"algorithm": sm_oids.SM2_SIGN}
    rewritten = info.dump(force=True)
    result = verify.verify(rewritten, content=CONTENT, trust_anchors=[sm.root.cert])
    assert result.valid, result.summary
    assert result.signers[0].signature_algorithm == sm_oids.SM2_SIGN


def test_sm2_signs_with_sm3_only(alice) -> None:
    with pytest.raises(SigningError):
        signed.sign(CONTENT, alice.credential, digest="sha256")


def test_sm3_is_registered_with_its_micalg() -> None:
    assert digests.by_name("sm3").oid == sm_oids.SM3
    assert mime.micalg_for("sm3") == "sm3"
    assert mime.digest_for_micalg("SM3") == "sm3"


def test_sm2_id_words() -> None:
    assert parse_sm2_id("standard") == b"1234567812345678"
    assert parse_sm2_id("empty") == b""
    assert parse_sm2_id("414c494345") == b"ALICE"
    assert parse_sm2_ids("both") == (b"1234567812345678", b"")
    with pytest.raises(ValueError):
        parse_sm2_id("not hex")


# ---- EnvelopedData -------------------------------------------------------------------------


@pytest.mark.parametrize("convention", ["pkcs7", "gmt"])
def test_sm2_sm4_envelope_round_trip_in_both_conventions(alice, bob, convention) -> None:
    der = enveloped.encrypt(
        CONTENT, [alice.cert, bob.cert], cipher="sm4_cbc", convention=convention
    )
    expected = sm_oids.GM_ENVELOPED_DATA if convention == "gmt" else "1.2.840.113549.1.7.3"
    assert _outer_type(der) == expected
    info = enveloped.inspect(der)
    assert info.cipher == "sm4_cbc"
    assert [r.kind for r in info.recipients] == ["ktri", "ktri"]
    assert {r.key_encryption for r in info.recipients} == {"sm2_encrypt"}
    body = cms.ContentInfo.load(der)["content"]
    algorithm = body["encrypted_content_info"]["content_encryption_algorithm"]
    assert algorithm["algorithm"].dotted == sm_oids.SM4_CBC
    ktri = body["recipient_infos"][0].chosen
    assert ktri["key_encryption_algorithm"]["algorithm"].dotted == sm_oids.SM2_ENCRYPT
    assert ktri["encrypted_key"].native[0] == 0x30  # DER SM2Ciphertext
    for party in (alice, bob):
        assert enveloped.decrypt(der, [(party.cert, party.key)]) == CONTENT


def test_tampered_sm2_key_transport_fails_cleanly(alice) -> None:
    der = enveloped.encrypt(CONTENT, [alice.cert], cipher="sm4_cbc")
    info = cms.ContentInfo.load(der)
    ktri = info["content"]["recipient_infos"][0].chosen
    encrypted = bytearray(ktri["encrypted_key"].native)
    encrypted[-1] ^= 1  # inside C2: C3 no longer matches
    ktri["encrypted_key"] = bytes(encrypted)
    with pytest.raises(DecryptionFailed):
        enveloped.decrypt(info.dump(force=True), [(alice.cert, alice.key)])


# ---- whole messages ------------------------------------------------------------------------


@pytest.mark.parametrize("convention", ["pkcs7", "gmt"])
def test_sm_message_signed_then_encrypted_opens_with_mixed_keys(sm, alice, bob, convention):
    signed_message = sign_message(MESSAGE, alice.credential, convention=convention)
    assert b"micalg=sm3" in signed_message
    encrypted = encrypt_message(
        signed_message, [bob.cert], sender=alice.cert, convention=convention
    )
    assert b"smime-type=enveloped-data" in encrypted
    international = pki.root().smime("bob@example.org", "rsa2048")
    ec_key = pki.root().smime("bob@example.org", "p256")
    keys = [
        (international.asn1, international.key),
        (ec_key.asn1, ec_key.key),
        (bob.cert, bob.key),
    ]
    opened = open_message(encrypted, keys=keys, trust_anchors=[sm.root.cert])
    assert opened.encrypted and opened.layers[0].cipher == "sm4_cbc"
    assert opened.signed_and_valid, opened.signatures[0].summary
    assert b"Hello in SM." in opened.message


def test_sm_messages_advertise_sm_capabilities(sm, alice) -> None:
    signed_message = sign_message(MESSAGE, alice.credential, detached=False)
    opened = open_message(signed_message, trust_anchors=[sm.root.cert])
    advertised = {c.oid for c in opened.signatures[0].signers[0].capabilities}
    assert advertised == {sm_oids.SM4_CBC, sm_oids.SM2_ENCRYPT}


def test_a_message_is_never_a_mixture(alice, bob) -> None:
    rsa = pki.root().smime("dave@example.org", "rsa2048")
    with pytest.raises(EncryptionError, match="all-international or all-SM"):
        encrypt_message(MESSAGE, [bob.cert, rsa.asn1], sender=alice.cert)
    with pytest.raises(EncryptionError):
        encrypt_message(MESSAGE, [bob.cert], sender=alice.cert, suite="intl")
    with pytest.raises(EncryptionError):
        encrypt_message(MESSAGE, [rsa.asn1], sender=None, suite="sm")
    with pytest.raises(EncryptionError):
        encrypt_message(MESSAGE, [bob.cert], sender=alice.cert, cipher="aes256_cbc")
    with pytest.raises(SigningError):
        sign_message(MESSAGE, alice.credential, suite="intl")
    # The international suite never picks SM4, even from someone who advertises it.
    intl = encrypt_message(MESSAGE, [rsa.asn1], sender=None)
    assert b"enveloped-data" in intl
    assert enveloped.inspect(mime.unwrap(intl).der).cipher == "aes256_cbc"


def test_expired_sm2_certificate_is_reported(sm) -> None:
    past = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=400)
    old = sm.person(
        "old@example.org", not_before=past, not_after=past + datetime.timedelta(days=30)
    )
    opened = open_message(sign_message(MESSAGE, old.credential), trust_anchors=[sm.root.cert])
    assert "expired" in opened.signatures[0].signers[0].codes


def test_sm2_keys_load_like_the_others(alice) -> None:
    key = load_private_key(alice.key_pem())
    assert key == alice.key
    der = alice.key.to_der()
    assert load_private_key(der) == alice.key
