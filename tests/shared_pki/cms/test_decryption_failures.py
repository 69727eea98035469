"""One failure for every decryption error (shared_pki.cms.recipients, ciphers, enveloped and
smime.open_message): a PKCS#1 v1.5 padding that does not check, a content key of the wrong
length, a ciphertext out of range, the wrong private key, an OAEP, key-unwrap or SM2 C3 check,
a CBC padding or GCM tag of the content, and content that is not MIME once decrypted all give
DecryptionFailed with the same words. RSA PKCS#1 v1.5 uses implicit rejection, so its padding
never fails on its own: the content does, as it would for an altered message.

Interop (openssl cms and gpgsm reading ours and us reading theirs) stays in
test_enveloped_interop.py and the gpgsm tests, which run unchanged."""

from __future__ import annotations

import os
import secrets

import pytest
from asn1crypto import cms
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from harness import pki
from harness.sm_pki import SmPki

from shared_pki import mime, smime
from shared_pki.cms import enveloped, recipients
from shared_pki.cms.ciphers import BAD_CONTENT
from shared_pki.errors import DecryptionFailed

CONTENT = b"Content-Type: text/plain\r\n\r\nWhat only the recipient may read.\r\n"


@pytest.fixture(scope="module")
def parties() -> dict[str, pki.Party]:
    root = pki.root()
    return {
        "rsa": root.smime("rsa@example.test", "rsa2048"),
        "other_rsa": root.smime("other@example.test", "rsa2048"),
        "p256": root.smime("p256@example.test", "p256"),
        "other_p256": root.smime("other-ec@example.test", "p256"),
    }


@pytest.fixture(scope="module")
def sm_party():
    return SmPki().person("sm@example.test")


def _with_encrypted_key(der: bytes, encrypted_key: bytes) -> bytes:
    info = cms.ContentInfo.load(der)
    recipient = info["content"]["recipient_infos"][0].chosen
    if "encrypted_key" in recipient:
        recipient["encrypted_key"] = encrypted_key
    else:
        recipient["recipient_encrypted_keys"][0]["encrypted_key"] = encrypted_key
    return info.dump(force=True)


def _encrypted_key(der: bytes) -> bytes:
    recipient = cms.ContentInfo.load(der)["content"]["recipient_infos"][0].chosen
    if "encrypted_key" in recipient:
        return recipient["encrypted_key"].native
    return recipient["recipient_encrypted_keys"][0]["encrypted_key"].native


def _raw_rsa(public: rsa.RSAPublicKey, block: bytes) -> bytes:
    """block^e mod n: an RSA ciphertext whose decryption is exactly `block`, padding or not."""
    numbers = public.public_numbers()
    size = (numbers.n.bit_length() + 7) // 8
    value = pow(int.from_bytes(block, "big"), numbers.e, numbers.n)
    return value.to_bytes(size, "big")


def _flip_content(der: bytes) -> bytes:
    """der with its content altered so that it cannot open: the last byte of a GCM tag changed;
    for CBC, the padding byte of the last block made 0 (never valid) by changing the block before
    it. Changing a byte of the last block itself garbles that block at random, and about 1 time
    in 40 the result still had valid padding and parsed as MIME: the case then opened."""
    info = cms.ContentInfo.load(der)
    body = info["content"]
    if "mac" in body:
        tag = bytearray(body["mac"].native)
        tag[-1] ^= 1
        body["mac"] = bytes(tag)
    else:
        eci = body["encrypted_content_info"]
        content = bytearray(eci["encrypted_content"].native)
        assert len(content) >= 32, "the content needs a block before its last one"
        content[-17] ^= 16 - len(CONTENT) % 16  # the padding byte's value, CONTENT as encrypted
        eci["encrypted_content"] = bytes(content)
    return info.dump(force=True)


def _pkcs1_failures(party: pki.Party, other: pki.Party, cipher: str) -> dict[str, tuple]:
    """Every way a PKCS#1 v1.5 message can fail for `party`: (message DER, keys)."""
    der = enveloped.encrypt(CONTENT, [party.asn1], cipher=cipher, key_transport="rsa_pkcs1v15")
    mine = [(party.asn1, party.key)]
    public = party.key.public_key()
    size = (public.key_size + 7) // 8
    key_size = 16 if cipher.startswith("aes128") else 32
    not_type_2 = b"\x00\x01" + b"\xff" * (size - 3 - key_size) + b"\x00" + os.urandom(key_size)
    no_separator = b"\x00\x02" + bytes(range(1, 256)) * (size // 255 + 1)
    short_key = public.encrypt(os.urandom(key_size // 2), padding.PKCS1v15())
    return {
        "padding: block type 1": (_with_encrypted_key(der, _raw_rsa(public, not_type_2)), mine),
        "padding: no zero separator": (
            _with_encrypted_key(der, _raw_rsa(public, no_separator[:size])),
            mine,
        ),
        "good padding, key of the wrong length": (_with_encrypted_key(der, short_key), mine),
        "ciphertext not below n": (_with_encrypted_key(der, b"\xff" * size), mine),
        "wrong private key": (der, [(party.asn1, other.key)]),
        "content altered": (_flip_content(der), mine),
    }


def _other_failures(parties, sm_party) -> dict[str, tuple]:
    rsa_party, p256 = parties["rsa"], parties["p256"]
    oaep = enveloped.encrypt(CONTENT, [rsa_party.asn1], key_transport="rsa_oaep")
    ecdh = enveloped.encrypt(CONTENT, [p256.asn1], cipher="aes256_gcm")
    sm = enveloped.encrypt(CONTENT, [sm_party.cert], cipher="sm4_cbc")
    sm_key = bytearray(_encrypted_key(sm))
    sm_key[-1] ^= 1
    not_mime = enveloped.encrypt(b"\x00\xff\x10 is no MIME entity", [rsa_party.asn1])
    return {
        "OAEP, wrong private key": (oaep, [(rsa_party.asn1, parties["other_rsa"].key)]),
        "ECDH, wrong private key (key unwrap)": (ecdh, [(p256.asn1, parties["other_p256"].key)]),
        "ECDH, GCM tag": (_flip_content(ecdh), [(p256.asn1, p256.key)]),
        "SM2, C3": (_with_encrypted_key(sm, bytes(sm_key)), [(sm_party.cert, sm_party.key)]),
        "content that is no MIME once decrypted": (not_mime, [(rsa_party.asn1, rsa_party.key)]),
    }


def _as_message(der: bytes) -> bytes:
    aead = enveloped.inspect(der).content_type == enveloped.AUTH_ENVELOPED
    entity = mime.wrap_pkcs7_mime(der, "authEnveloped-data" if aead else "enveloped-data")
    return mime.with_outer_headers(entity, {"From": "a@example.test", "To": "b@example.test"})


def _failure(der: bytes, keys: list) -> tuple[type, str]:
    """The type and words of what opening the message raised (or that it opened)."""
    try:
        smime.open_message(_as_message(der), keys=keys)
    except Exception as error:
        return type(error), str(error)
    return type(None), "it opened"


@pytest.mark.parametrize("cipher", ["aes256_cbc", "aes128_gcm"])
def test_every_decryption_failure_is_the_same_error_in_the_same_words(parties, sm_party, cipher):
    cases = {
        **_pkcs1_failures(parties["rsa"], parties["other_rsa"], cipher),
        **_other_failures(parties, sm_party),
    }
    seen = {name: _failure(der, keys) for name, (der, keys) in cases.items()}
    expected = (DecryptionFailed, BAD_CONTENT)
    assert {name: got for name, got in seen.items() if got != expected} == {}
    # The same messages open with the right key and intact content (the cases can pass).
    intact = enveloped.encrypt(CONTENT, [parties["rsa"].asn1], cipher=cipher)
    opened = smime.open_message(
        _as_message(intact), keys=[(parties["rsa"].asn1, parties["rsa"].key)]
    )
    assert b"What only the recipient may read." in opened.message


def test_enveloped_decrypt_gives_the_same_words_as_the_whole_message(parties):
    """The DER level (used by the host) says the same as open_message."""
    for der, keys in _pkcs1_failures(parties["rsa"], parties["other_rsa"], "aes256_gcm").values():
        with pytest.raises(DecryptionFailed) as caught:
            enveloped.decrypt(der, keys)
        assert caught.value.message == BAD_CONTENT


def test_the_rejection_key_is_fixed_per_key_and_ciphertext_and_has_the_asked_length(parties):
    key, other = parties["rsa"].key, parties["other_rsa"].key
    ciphertext, another = secrets.token_bytes(256), secrets.token_bytes(256)
    first = recipients.rejection_key(key, ciphertext, 32)
    assert first == recipients.rejection_key(key, ciphertext, 32)
    assert len(first) == 32 and len(recipients.rejection_key(key, ciphertext, 16)) == 16
    assert first != recipients.rejection_key(key, another, 32)
    assert first != recipients.rejection_key(other, ciphertext, 32)


class _RaisingKey:
    """An RSA key whose PKCS#1 v1.5 decryption raises on a bad padding, as `cryptography` does
    when built against an OpenSSL before 3.2 (Debian 12's python3-cryptography): the one
    behaviour the bundled wheel cannot show. Everything else is the real key's."""

    def __init__(self, key: rsa.RSAPrivateKey) -> None:
        self.key = key

    def decrypt(self, ciphertext: bytes, pad: padding.AsymmetricPadding) -> bytes:
        raise ValueError("Decryption failed")

    def private_numbers(self) -> rsa.RSAPrivateNumbers:
        return self.key.private_numbers()


def test_pkcs1_recovery_never_raises_whichever_way_the_library_rejects(parties):
    key = parties["rsa"].key
    public = key.public_key()
    good_cek = os.urandom(32)
    good = public.encrypt(good_cek, padding.PKCS1v15())
    assert recipients._pkcs1_recover(None, good, key, 32) == good_cek
    bad = _raw_rsa(public, b"\x00\x01" + os.urandom(254))
    # The wheel's OpenSSL: a synthetic message of its own length, replaced by ours.
    assert recipients._pkcs1_recover(None, bad, key, 32) == recipients.rejection_key(key, bad, 32)
    # An OpenSSL before 3.2: ValueError, replaced by ours too.
    raising = _RaisingKey(key)
    assert recipients._pkcs1_recover(None, bad, raising, 32) == recipients.rejection_key(
        key, bad, 32
    )
