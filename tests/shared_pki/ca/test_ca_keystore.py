"""Keys sealed at rest (shared_pki.ca.keystore): round trips for every key type, one format;
wrong passphrase and each kind of tampering give their own typed error; whole hierarchies
serialize and come back, and refuse to come back wrong."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from shared_pki import sm2
from shared_pki.ca import keystore
from shared_pki.errors import KeyLoadError

FAST = 14  # the minimum scrypt cost, to keep the suite quick
PASS = b"correct horse battery staple"


def _pkcs8(key) -> bytes:
    if isinstance(key, sm2.SM2PrivateKey):
        return key.to_der()
    return key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


KEYS = {
    "rsa": lambda: rsa.generate_private_key(65537, 2048),
    "p256": lambda: ec.generate_private_key(ec.SECP256R1()),
    "p384": lambda: ec.generate_private_key(ec.SECP384R1()),
    "ed25519": ed25519.Ed25519PrivateKey.generate,
    "sm2": sm2.generate_private_key,
}


@pytest.mark.parametrize("kind", sorted(KEYS))
def test_round_trip(kind) -> None:
    key = KEYS[kind]()
    blob = keystore.seal_key(key, PASS, log2_n=FAST)
    assert blob.startswith(b"ASKEY\x01\x01\x0e")
    assert _pkcs8(key) not in blob
    opened = keystore.open_key(blob, PASS)
    assert type(opened) is type(key)
    assert _pkcs8(opened) == _pkcs8(key)
    assert keystore.seal_key(key, PASS, log2_n=FAST) != blob  # fresh salt and nonce


def test_wrong_passphrase() -> None:
    blob = keystore.seal_key(sm2.generate_private_key(), PASS, log2_n=FAST)
    with pytest.raises(keystore.WrongPassphrase) as caught:
        keystore.open_key(blob, b"wrong")
    assert isinstance(caught.value, KeyLoadError) and caught.value.code == "wrong_passphrase"


# Header layout: magic 0-4, version 5, kdf 6, log2N 7, salt 8-23, check 24-39, nonce 40-51.
@pytest.mark.parametrize(
    "offset,error",
    [
        (0, keystore.SealedKeyCorrupt),  # magic
        (5, keystore.SealedKeyCorrupt),  # version
        (6, keystore.SealedKeyCorrupt),  # kdf
        (7, keystore.WrongPassphrase),  # scrypt cost 2^14 -> 2^15: another derived key
        (10, keystore.WrongPassphrase),  # salt: the derived check no longer matches
        (30, keystore.WrongPassphrase),  # check value
        (45, keystore.SealedKeyCorrupt),  # nonce
        (60, keystore.SealedKeyCorrupt),  # ciphertext
        (-1, keystore.SealedKeyCorrupt),  # GCM tag
    ],
)
def test_tampering(offset, error) -> None:
    blob = bytearray(keystore.seal_key(ec.generate_private_key(ec.SECP256R1()), PASS, log2_n=FAST))
    blob[offset] ^= 0x01
    with pytest.raises(error) as caught:
        keystore.open_key(bytes(blob), PASS)
    assert type(caught.value) is error and isinstance(caught.value, KeyLoadError)


def test_truncated_and_foreign() -> None:
    blob = keystore.seal_key(sm2.generate_private_key(), PASS, log2_n=FAST)
    for bad in (blob[:-1], blob[:40], b"", b"-----BEGIN PRIVATE KEY-----", blob + b"\x00"):
        with pytest.raises(KeyLoadError):
            keystore.open_key(bad, PASS)


def test_parameters() -> None:
    key = sm2.generate_private_key()
    for bad in (b"", "text"):
        with pytest.raises(KeyLoadError):
            keystore.seal_key(key, bad, log2_n=FAST)  # type: ignore[arg-type]
    for cost in (10, 21):
        with pytest.raises(KeyLoadError):
            keystore.seal_key(key, PASS, log2_n=cost)
    assert keystore.open_key(keystore.seal_key(key, PASS), PASS) == key  # default cost


def test_hierarchy_round_trip(rsa_hierarchy) -> None:
    files = keystore.serialize_hierarchy(rsa_hierarchy, PASS, log2_n=FAST)
    assert all(isinstance(v, bytes) for v in files.values())
    assert set(files) == {"hierarchy.json"} | {
        f"{label}.{ext}" for label in rsa_hierarchy.items() for ext in ("key", "pem")
    }
    back = keystore.deserialize_hierarchy(dict(files), PASS)
    assert back.root_fingerprints() == rsa_hierarchy.root_fingerprints()
    assert (back.name, back.intl_key_type, back.mail_address, back.crl_base_url) == (
        rsa_hierarchy.name,
        rsa_hierarchy.intl_key_type,
        rsa_hierarchy.mail_address,
        rsa_hierarchy.crl_base_url,
    )
    for label, item in back.items().items():
        original = rsa_hierarchy.items()[label]
        assert item.der == original.der
        assert _pkcs8(item.key) == _pkcs8(original.key)
    # The reloaded keys work: the SM2 issuing key signs, the RSA root key signs.
    signature = back.sm2_issuing.key.sign(b"m")
    assert rsa_hierarchy.sm2_issuing.key.public_key.verify(signature, b"m")
    rsa_signature = back.intl_root.key.sign(b"m", padding.PKCS1v15(), hashes.SHA256())
    rsa_hierarchy.intl_root.key.public_key().verify(
        rsa_signature, b"m", padding.PKCS1v15(), hashes.SHA256()
    )


def test_hierarchy_refusals(ec_hierarchy) -> None:
    files = keystore.serialize_hierarchy(ec_hierarchy, PASS, log2_n=FAST)
    with pytest.raises(keystore.WrongPassphrase):
        keystore.deserialize_hierarchy(files, b"wrong")
    swapped = {**files, "tsa.key": files["mail.key"]}
    with pytest.raises(KeyLoadError, match="does not belong"):
        keystore.deserialize_hierarchy(swapped, PASS)
    cross = {**files, "sm2-root.key": files["intl-root.key"]}
    with pytest.raises(KeyLoadError, match="does not belong"):
        keystore.deserialize_hierarchy(cross, PASS)
    missing = {k: v for k, v in files.items() if k != "sm2-issuing.pem"}
    with pytest.raises(KeyLoadError, match="lacks"):
        keystore.deserialize_hierarchy(missing, PASS)
    with pytest.raises(KeyLoadError):
        keystore.deserialize_hierarchy({**files, "hierarchy.json": b"{"}, PASS)
    with pytest.raises(KeyLoadError, match="format"):
        keystore.deserialize_hierarchy({**files, "hierarchy.json": b'{"format": 9}'}, PASS)


def test_only_sealed_keys_skip_the_rsa_key_check() -> None:
    """An RSA key whose CRT values do not match is refused when it comes from outside
    (load_pkcs8 checks it); a sealed key opens without the check, since its GCM tag proves it
    is the key that was checked when sealed, and still decrypts."""
    from asn1crypto import keys as asn1_keys

    from shared_pki.keys import load_pkcs8

    key = rsa.generate_private_key(65537, 2048)
    info = asn1_keys.PrivateKeyInfo.load(_pkcs8(key))
    broken = info["private_key"].parsed
    broken["coefficient"] = broken["coefficient"].native + 1
    info["private_key"] = broken
    with pytest.raises(KeyLoadError):
        load_pkcs8(info.dump())

    opened = keystore.open_key(keystore.seal_key(key, PASS, log2_n=FAST), PASS)
    ciphertext = key.public_key().encrypt(b"kept", padding.PKCS1v15())
    assert opened.decrypt(ciphertext, padding.PKCS1v15()) == b"kept"


def test_a_key_file_whose_rsa_numbers_disagree_is_refused() -> None:
    """Key files (load_private_key) skip OpenSSL's primality tests but not the consistency
    check: each CRT value and d altered in turn is refused; the key itself loads."""
    from asn1crypto import keys as asn1_keys

    from shared_pki.keys import load_private_key, rsa_consistent

    key = rsa.generate_private_key(65537, 2048)
    assert rsa_consistent(load_private_key(_pkcs8(key)))
    for name in ("private_exponent", "exponent1", "exponent2", "coefficient", "prime1"):
        info = asn1_keys.PrivateKeyInfo.load(_pkcs8(key))
        numbers = info["private_key"].parsed
        numbers[name] = numbers[name].native + 2
        info["private_key"] = numbers
        with pytest.raises(KeyLoadError):
            load_private_key(info.dump())
