"""EnvelopedData / AuthEnvelopedData: every recipient kind x cipher, mixed recipients, key choice
among many keys, and the typed error for each way a message can be wrong."""

from __future__ import annotations

import datetime

import pytest
from asn1crypto import cms
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.x509.oid import NameOID
from harness import pki
from hypothesis import given, settings
from hypothesis import strategies as st

from shared_pki.cms import ciphers, enveloped
from shared_pki.errors import (
    DecryptionFailed,
    EncryptionError,
    MalformedInput,
    NoMatchingKey,
    PkiError,
    UnsupportedAlgorithm,
)

CIPHERS = ("aes128_cbc", "aes256_cbc", "aes128_gcm", "aes256_gcm")
# (key type, key transport, key-encryption algorithm name the message must carry)
TRANSPORTS = (
    ("rsa2048", "rsa_pkcs1v15", "rsaes_pkcs1v15"),
    ("rsa2048", "rsa_oaep", "rsaes_oaep"),
    ("p256", "ecdh_sha256kdf", "dh_single_pass_std_dh_sha256kdf"),
    ("p256", "ecdh_sha384kdf", "dh_single_pass_std_dh_sha384kdf"),
    ("p384", "ecdh_sha256kdf", "dh_single_pass_std_dh_sha256kdf"),
    ("p384", "ecdh_sha384kdf", "dh_single_pass_std_dh_sha384kdf"),
)
CONTENT = b"Content-Type: text/plain\r\n\r\nHello \xc3\xa9 world\r\n"


@pytest.fixture(scope="module")
def root() -> pki.Authority:
    return pki.root()


@pytest.fixture(scope="module")
def parties(root: pki.Authority) -> dict[str, pki.Party]:
    return {
        "rsa2048": root.smime("rsa@example.test", "rsa2048"),
        "rsa_b": root.smime("rsa-b@example.test", "rsa2048"),
        "p256": root.smime("p256@example.test", "p256"),
        "p384": root.smime("p384@example.test", "p384"),
    }


@pytest.fixture(scope="module")
def stranger(root: pki.Authority) -> pki.Party:
    return root.smime("stranger@example.test", "p256")


def keyring(*parties: pki.Party) -> list[tuple]:
    return [(party.asn1, party.key) for party in parties]


def flip(der: bytes, part: bytes, offset: int = -1) -> bytes:
    """der with one bit of part (which must occur exactly once) flipped."""
    assert der.count(part) == 1
    changed = bytearray(part)
    changed[offset] ^= 0x01
    return der.replace(part, bytes(changed))


def body(der: bytes) -> cms.Sequence:
    return cms.ContentInfo.load(der)["content"]


@pytest.mark.parametrize("cipher", CIPHERS)
@pytest.mark.parametrize("size", [0, 1, 15, 16, 127, 128, 65_536, 3_000_000])
def test_hand_written_der_is_what_asn1crypto_writes(parties, cipher, size):
    """encrypt writes the DER around the ciphertext itself (one join, no copies per level):
    it must be the DER asn1crypto gives for the same values, at every length form."""
    content = bytes(range(256)) * (size // 256) + bytes(size % 256)
    everyone = [parties["rsa2048"].asn1, parties["p256"].asn1]
    der = enveloped.encrypt(content, everyone, cipher=cipher)
    assert cms.ContentInfo.load(der, strict=True).dump(force=True) == der
    opened, info = enveloped.decrypt_with_info(der, keyring(parties["p256"]))
    assert opened == content
    assert info == enveloped.inspect(der)
    assert info.cipher == cipher and len(info.recipients) == 2


@pytest.mark.parametrize("cipher", CIPHERS)
@pytest.mark.parametrize(("key_type", "transport", "algorithm"), TRANSPORTS)
@pytest.mark.parametrize("use_ski", [False, True], ids=["issuer_serial", "ski"])
def test_round_trip(parties, cipher, key_type, transport, algorithm, use_ski):
    party = parties[key_type]
    der = enveloped.encrypt(
        CONTENT, [party.asn1], cipher=cipher, key_transport=transport, use_ski=use_ski
    )
    info = enveloped.inspect(der)
    aead = cipher.endswith("gcm")
    assert info.content_type == ("authenticated_enveloped_data" if aead else "enveloped_data")
    assert info.cipher == cipher
    assert info.inner_content_type == "data"
    [recipient] = info.recipients
    assert recipient.key_encryption == algorithm
    assert recipient.kind == ("ktri" if key_type.startswith("rsa") else "kari")
    if use_ski:
        assert recipient.rid.ski == party.asn1.key_identifier
    else:
        assert recipient.rid.serial == party.asn1.serial_number
        assert recipient.rid.ski is None
    assert enveloped.decrypt(der, keyring(party)) == CONTENT


@pytest.mark.parametrize("cipher", CIPHERS)
def test_mixed_recipients_each_decrypts_with_own_key(parties, cipher):
    order = ["rsa2048", "rsa_b", "p256", "p384"]
    der = enveloped.encrypt(
        CONTENT,
        [parties[name].asn1 for name in order],
        cipher=cipher,
        key_transport=["rsa_pkcs1v15", "rsa_oaep", "ecdh_sha256kdf", "ecdh_sha384kdf"],
    )
    kinds = [r.key_encryption for r in enveloped.inspect(der).recipients]
    assert sorted(kinds) == sorted(
        [
            "rsaes_pkcs1v15",
            "rsaes_oaep",
            "dh_single_pass_std_dh_sha256kdf",
            "dh_single_pass_std_dh_sha384kdf",
        ]
    )
    for name in order:
        assert enveloped.decrypt(der, keyring(parties[name])) == CONTENT


def test_versions_follow_rfc5652(parties):
    """EnvelopedData v0 only when every RecipientInfo is a v0 ktri; v2 otherwise."""
    rsa, p256 = parties["rsa2048"], parties["p256"]
    assert body(enveloped.encrypt(CONTENT, [rsa.asn1]))["version"].native == "v0"
    ski = body(enveloped.encrypt(CONTENT, [rsa.asn1], use_ski=True))
    assert ski["version"].native == "v2"
    assert ski["recipient_infos"][0].chosen["version"].native == "v2"
    kari = body(enveloped.encrypt(CONTENT, [p256.asn1]))
    assert kari["version"].native == "v2"
    assert kari["recipient_infos"][0].chosen["version"].native == "v3"
    auth = body(enveloped.encrypt(CONTENT, [p256.asn1], cipher="aes128_gcm"))
    assert auth["version"].native == "v0"
    assert len(auth["mac"].native) == 16


def test_defaults_are_aes256_cbc_pkcs1_and_ecdh_sha256(parties):
    der = enveloped.encrypt(CONTENT, [parties["rsa2048"].asn1, parties["p384"].asn1])
    info = enveloped.inspect(der)
    assert info.cipher == "aes256_cbc"
    assert [r.key_encryption for r in info.recipients] == [
        "rsaes_pkcs1v15",
        "dh_single_pass_std_dh_sha256kdf",
    ]


def test_one_transport_name_applies_where_it_fits(parties):
    der = enveloped.encrypt(
        CONTENT, [parties["rsa2048"].asn1, parties["p256"].asn1], key_transport="rsa_oaep"
    )
    kinds = [r.key_encryption for r in enveloped.inspect(der).recipients]
    assert kinds == ["rsaes_oaep", "dh_single_pass_std_dh_sha256kdf"]


@pytest.mark.parametrize("size", [0, 1, 15, 16, 17, 1_000_003])
@pytest.mark.parametrize("cipher", ["aes256_cbc", "aes128_gcm"])
def test_content_sizes(parties, size, cipher):
    content = bytes(range(256)) * (size // 256) + bytes(size % 256)
    der = enveloped.encrypt(content, [parties["p256"].asn1], cipher=cipher)
    assert enveloped.decrypt(der, keyring(parties["p256"])) == content


def expired_party(root: pki.Authority, address: str) -> pki.Party:
    """An RSA S/MIME certificate that expired a year ago (pki.smime cannot set the validity
    today: its builder sets not_valid_before twice)."""
    key = pki.new_key("rsa2048")
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, address)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(root.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=800))
        .not_valid_after(now - datetime.timedelta(days=400))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .sign(root.key, hashes.SHA256())
    )
    return pki.Party(key, cert, [root.cert])


def test_chooses_among_many_keys_including_expired(root, parties, stranger):
    expired = expired_party(root, "rsa@example.test")
    current = parties["rsa2048"]
    ring = keyring(stranger, parties["p384"], expired, current)
    old_message = enveloped.encrypt(b"old", [expired.asn1])
    new_message = enveloped.encrypt(b"new", [current.asn1], use_ski=True)
    assert enveloped.decrypt(old_message, ring) == b"old"
    assert enveloped.decrypt(new_message, ring) == b"new"
    # Same issuer, different serial: the expired key must not be mistaken for the current one.
    with pytest.raises(NoMatchingKey):
        enveloped.decrypt(old_message, keyring(current))


def test_key_for_a_different_certificate_is_tried_and_next_match_wins(parties):
    """Two RecipientInfos match our keys; the first key is wrong (a broken keyring entry): the
    second still decrypts the message."""
    rsa, p256 = parties["rsa2048"], parties["p256"]
    der = enveloped.encrypt(CONTENT, [rsa.asn1, p256.asn1])
    ring = [(rsa.asn1, parties["rsa_b"].key), (p256.asn1, p256.key)]
    assert enveloped.decrypt(der, ring) == CONTENT


def test_wrong_key_is_no_matching_key_naming_the_recipients(parties, stranger):
    rsa, p256 = parties["rsa2048"], parties["p256"]
    der = enveloped.encrypt(CONTENT, [rsa.asn1, p256.asn1], use_ski=False)
    with pytest.raises(NoMatchingKey) as caught:
        enveloped.decrypt(der, keyring(stranger))
    assert f"{rsa.asn1.serial_number:#x}" in caught.value.message
    assert f"{p256.asn1.serial_number:#x}" in caught.value.message
    assert "autosmime test root" in caught.value.message
    ski_der = enveloped.encrypt(CONTENT, [rsa.asn1], use_ski=True)
    with pytest.raises(NoMatchingKey, match=rsa.asn1.key_identifier.hex(":")):
        enveloped.decrypt(ski_der, [])


@pytest.mark.parametrize("cipher", ["aes128_gcm", "aes256_gcm"])
@pytest.mark.parametrize("part", ["ciphertext", "mac", "nonce"])
def test_tampered_gcm_is_decryption_failed(parties, cipher, part):
    party = parties["p256"]
    der = enveloped.encrypt(CONTENT, [party.asn1], cipher=cipher)
    data = body(der)
    eci = data["auth_encrypted_content_info"]
    target = {
        "ciphertext": eci["encrypted_content"].native,
        "mac": data["mac"].native,
        "nonce": eci["content_encryption_algorithm"]["parameters"]["aes_nonce"].native,
    }[part]
    with pytest.raises(DecryptionFailed) as caught:
        enveloped.decrypt(flip(der, target), keyring(party))
    assert caught.value.message == ciphers.BAD_CONTENT  # the words of every decryption failure


@pytest.mark.parametrize(
    ("key_type", "transport", "cipher"),
    [
        ("rsa2048", "rsa_oaep", "aes256_cbc"),
        ("rsa2048", "rsa_pkcs1v15", "aes256_gcm"),
        ("p256", "ecdh_sha256kdf", "aes256_cbc"),
        ("p384", "ecdh_sha384kdf", "aes128_gcm"),
    ],
)
def test_tampered_wrapped_key_is_decryption_failed(parties, key_type, transport, cipher):
    party = parties[key_type]
    der = enveloped.encrypt(CONTENT, [party.asn1], cipher=cipher, key_transport=transport)
    info = body(der)["recipient_infos"][0]
    if info.name == "ktri":
        wrapped = info.chosen["encrypted_key"].native
    else:
        wrapped = info.chosen["recipient_encrypted_keys"][0]["encrypted_key"].native
    with pytest.raises(DecryptionFailed):
        enveloped.decrypt(flip(der, wrapped, offset=len(wrapped) // 2), keyring(party))


def test_bad_cbc_padding_is_one_constant_error():
    aes = ciphers.by_name("aes128_cbc")
    key = bytes(range(16))
    sealed = aes.seal(key, b"x", b"")
    algorithm = sealed.algorithm
    iv = algorithm["parameters"].native
    encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    bad_padding = encryptor.update(b"A" * 15 + b"\x00") + encryptor.finalize()
    errors = []
    for ciphertext in (bad_padding, sealed.ciphertext[:-1], b""):
        with pytest.raises(DecryptionFailed) as caught:
            aes.open(key, algorithm, ciphertext, None, b"")
        errors.append(caught.value.message)
    assert len(set(errors)) == 1
    assert aes.open(key, algorithm, sealed.ciphertext, None, b"") == b"x"


def test_wrong_key_for_cbc_content_never_returns_the_plaintext(parties):
    """A CEK of the wrong size (what a broken RSA decryption yields) is DecryptionFailed."""
    aes = ciphers.by_name("aes256_cbc")
    sealed = aes.seal(bytes(32), b"secret", b"")
    with pytest.raises(DecryptionFailed):
        aes.open(bytes(16), sealed.algorithm, sealed.ciphertext, None, b"")


@pytest.mark.parametrize(
    "garbage",
    [b"", b"\x00", b"not cms at all", b"\x30\x80", b"\x30\x03\x06\x01\x00", bytes(100)],
)
def test_garbage_is_malformed(parties, garbage):
    with pytest.raises(MalformedInput):
        enveloped.decrypt(garbage, keyring(parties["p256"]))
    with pytest.raises(MalformedInput):
        enveloped.inspect(garbage)


@pytest.mark.parametrize("cipher", ["aes256_cbc", "aes256_gcm"])
def test_every_truncation_is_malformed(parties, cipher):
    der = enveloped.encrypt(
        b"short", [parties["p256"].asn1, parties["rsa2048"].asn1], cipher=cipher
    )
    for length in range(len(der)):
        with pytest.raises(MalformedInput):
            enveloped.decrypt(der[:length], keyring(parties["p256"]))
    with pytest.raises(MalformedInput):
        enveloped.decrypt(der + b"\x00", keyring(parties["p256"]))


def test_other_content_types_are_malformed(parties):
    data = cms.ContentInfo({"content_type": "data", "content": b"plain"}).dump()
    with pytest.raises(MalformedInput, match="data"):
        enveloped.decrypt(data, keyring(parties["p256"]))


def test_unknown_content_cipher_is_unsupported(parties):
    der = enveloped.encrypt(CONTENT, [parties["p256"].asn1], cipher="aes256_cbc")
    aes256_cbc = bytes.fromhex("060960864801650304012a")
    aes256_ofb = aes256_cbc[:-1] + b"\x2b"
    changed = der.replace(aes256_cbc, aes256_ofb)
    assert enveloped.inspect(changed).cipher == "2.16.840.1.101.3.4.1.43"
    with pytest.raises(UnsupportedAlgorithm):
        enveloped.decrypt(changed, keyring(parties["p256"]))


def test_unknown_key_encryption_is_unsupported(parties):
    der = enveloped.encrypt(CONTENT, [parties["rsa2048"].asn1])
    rsa_encryption = bytes.fromhex("06092a864886f70d010101")
    md2_rsa = bytes.fromhex("06092a864886f70d010102")
    changed = der.replace(rsa_encryption, md2_rsa)
    with pytest.raises(UnsupportedAlgorithm):
        enveloped.decrypt(changed, keyring(parties["rsa2048"]))


def test_gcm_inside_enveloped_data_is_unsupported(parties):
    der = enveloped.encrypt(CONTENT, [parties["p256"].asn1], cipher="aes256_gcm")
    data = body(der)
    enveloped_gcm = cms.ContentInfo(
        {
            "content_type": "enveloped_data",
            "content": cms.EnvelopedData(
                {
                    "version": "v2",
                    "recipient_infos": data["recipient_infos"],
                    "encrypted_content_info": data["auth_encrypted_content_info"],
                }
            ),
        }
    ).dump()
    with pytest.raises(UnsupportedAlgorithm, match="RFC 5083"):
        enveloped.decrypt(enveloped_gcm, keyring(parties["p256"]))


def test_encrypt_errors(root, parties):
    with pytest.raises(EncryptionError):
        enveloped.encrypt(CONTENT, [])
    with pytest.raises(UnsupportedAlgorithm):
        enveloped.encrypt(CONTENT, [parties["p256"].asn1], cipher="des_ede3_cbc")
    with pytest.raises(UnsupportedAlgorithm):
        enveloped.encrypt(CONTENT, [parties["p256"].asn1], key_transport="rsa_magic")
    with pytest.raises(EncryptionError, match="fits none"):
        enveloped.encrypt(CONTENT, [parties["p256"].asn1], key_transport="rsa_oaep")
    with pytest.raises(EncryptionError, match="does not fit"):
        enveloped.encrypt(CONTENT, [parties["p256"].asn1], key_transport=["rsa_oaep"])
    with pytest.raises(EncryptionError, match="one transport per recipient"):
        enveloped.encrypt(CONTENT, [parties["p256"].asn1], key_transport=["a", "b"])
    signing_only = root.smime("sign@example.test", "rsa2048", key_usage="sign")
    with pytest.raises(EncryptionError, match="key encipherment"):
        enveloped.encrypt(CONTENT, [signing_only.asn1])
    signing_only_ec = root.smime("sign-ec@example.test", "p256", key_usage="sign")
    with pytest.raises(EncryptionError, match="key agreement"):
        enveloped.encrypt(CONTENT, [signing_only_ec.asn1])


@pytest.fixture(scope="module")
def fuzz_seed(parties) -> bytes:
    return enveloped.encrypt(
        b"fuzz", [parties["p256"].asn1, parties["rsa2048"].asn1], cipher="aes128_gcm"
    )


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_mutated_messages_raise_only_typed_errors(parties, fuzz_seed, data):
    """Random byte changes anywhere: the result is content or a PkiError, never a crash."""
    mutated = bytearray(fuzz_seed)
    for _ in range(data.draw(st.integers(1, 4))):
        index = data.draw(st.integers(0, len(mutated) - 1))
        mutated[index] = data.draw(st.integers(0, 255))
    try:
        enveloped.inspect(bytes(mutated))
        enveloped.decrypt(bytes(mutated), keyring(parties["p256"], parties["rsa2048"]))
    except PkiError:
        pass
