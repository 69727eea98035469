"""Private keys sealed at rest, one format for `cryptography` keys and SM2 keys alike.

Format (version 1), all integers big-endian:

    magic   "ASKEY"          5 octets
    version 0x01             1
    kdf     0x01 = scrypt    1
    log2 N                   1   (scrypt cost; r = 8, p = 1)
    salt                     16
    check                    16  (passphrase check value, see below)
    nonce                    12
    ciphertext || GCM tag        AES-256-GCM of the unencrypted PKCS#8 DER

scrypt(passphrase, salt, N, r=8, p=1) gives 64 octets: the first 32 are the AES key, and the
first 16 octets of SHA-256("check" || the last 32) are stored as `check`. The whole header is the
GCM associated data, so no field can change unnoticed. A wrong passphrase fails the check
(WrongPassphrase); a right passphrase with a failing tag means the blob was altered
(SealedKeyCorrupt). The check value tells an attacker nothing the tag would not: either lets
an offline guess be tested, and scrypt prices every guess the same.

Why not PKCS#8 EncryptedPrivateKeyInfo (PBES2): cryptography can write it (with AES-256-CBC and
PBKDF2 or scrypt) but only for key types it knows, and it cannot load an SM2 PKCS#8 at all, so
SM2 keys would need a second, hand-written path; and CBC is not authenticated. One small
authenticated format serves both.

`serialize_hierarchy` turns a Hierarchy into named byte strings for files or database rows:
`hierarchy.json` (what was asked for, format version), and per role label `{label}.key` (the
sealed key) and `{label}.pem` (the certificate). `deserialize_hierarchy` reverses it and checks
every key against its certificate.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from shared_pki import sm2
from shared_pki.ca.common import KeyCert
from shared_pki.ca.hierarchy import LABELS, Hierarchy
from shared_pki.errors import KeyLoadError, MalformedInput, UnsupportedAlgorithm
from shared_pki.keys import PrivateKey, load_certificates, load_pkcs8
from shared_pki.x509 import sm2_certs

MAGIC = b"ASKEY"
VERSION = 1
KDF_SCRYPT = 1
DEFAULT_LOG2_N = 15  # 32 MiB, about 0.1 s per seal or open
MIN_LOG2_N = 14
MAX_LOG2_N = 20  # refuse blobs that would make us spend a GiB of memory
_HEADER = struct.Struct(">5sBBB16s16s12s")
HIERARCHY_FORMAT = 1


class WrongPassphrase(KeyLoadError):
    code = "wrong_passphrase"


class SealedKeyCorrupt(KeyLoadError):
    """The blob is truncated, of an unknown version, or was altered after sealing."""

    code = "sealed_key_corrupt"


def _derive(passphrase: bytes, salt: bytes, log2_n: int) -> tuple[bytes, bytes]:
    material = Scrypt(salt=salt, length=64, n=1 << log2_n, r=8, p=1).derive(passphrase)
    check = hashlib.sha256(b"check" + material[32:]).digest()[:16]
    return material[:32], check


def _pkcs8(key: PrivateKey) -> bytes:
    if isinstance(key, sm2.SM2PrivateKey):
        return key.to_der()
    try:  # any cryptography private key: RSA, EC, Ed25519, ...
        return key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    except (AttributeError, TypeError, ValueError) as error:
        raise UnsupportedAlgorithm(f"Cannot seal a {type(key).__name__}: {error}") from None


def _from_pkcs8(der: bytes) -> PrivateKey:
    """The key of a blob whose GCM tag held: seal_key wrote it from a key object cryptography
    had loaded or made (so checked), and nobody without the passphrase changed it since, so it
    is not checked again (load_pkcs8's validated)."""
    try:
        return load_pkcs8(der, validated=True)
    except MalformedInput as error:
        raise SealedKeyCorrupt(f"The sealed key is not PKCS#8: {error.message}") from None
    except KeyLoadError as error:
        raise SealedKeyCorrupt(f"The sealed key does not load: {error.message}") from None


def seal_key(key: PrivateKey, passphrase: bytes, *, log2_n: int = DEFAULT_LOG2_N) -> bytes:
    """The key as a sealed blob (see the module docstring)."""
    if not isinstance(passphrase, bytes) or not passphrase:
        raise KeyLoadError("The passphrase must be non-empty bytes.")
    if not MIN_LOG2_N <= log2_n <= MAX_LOG2_N:
        raise KeyLoadError(f"scrypt cost 2^{log2_n} outside 2^{MIN_LOG2_N}..2^{MAX_LOG2_N}.")
    salt, nonce = os.urandom(16), os.urandom(12)
    aes_key, check = _derive(passphrase, salt, log2_n)
    header = _HEADER.pack(MAGIC, VERSION, KDF_SCRYPT, log2_n, salt, check, nonce)
    return header + AESGCM(aes_key).encrypt(nonce, _pkcs8(key), header)


def open_key(blob: bytes, passphrase: bytes) -> PrivateKey:
    """The key inside a sealed blob: WrongPassphrase, SealedKeyCorrupt (both KeyLoadError)."""
    if not isinstance(blob, bytes | bytearray) or len(blob) < _HEADER.size + 16:
        raise SealedKeyCorrupt("Not a sealed key (too short).")
    blob = bytes(blob)
    magic, version, kdf, log2_n, salt, check, nonce = _HEADER.unpack_from(blob)
    if magic != MAGIC:
        raise SealedKeyCorrupt("Not a sealed key (bad magic).")
    if version != VERSION or kdf != KDF_SCRYPT:
        raise SealedKeyCorrupt(f"Sealed key format {version}/{kdf} is not one we read.")
    if not MIN_LOG2_N <= log2_n <= MAX_LOG2_N:
        raise SealedKeyCorrupt(f"Sealed key with scrypt cost 2^{log2_n} refused.")
    if not isinstance(passphrase, bytes):
        raise KeyLoadError("The passphrase must be bytes.")
    aes_key, expected = _derive(passphrase, salt, log2_n)
    if not hmac.compare_digest(check, expected):
        raise WrongPassphrase("Wrong passphrase for the sealed key.")
    header = blob[: _HEADER.size]
    try:
        der = AESGCM(aes_key).decrypt(nonce, blob[_HEADER.size :], header)
    except InvalidTag:
        raise SealedKeyCorrupt("The sealed key was altered (authentication failed).") from None
    return _from_pkcs8(der)


# ---- whole hierarchies ------------------------------------------------------------------------


def serialize_hierarchy(
    hierarchy: Hierarchy, passphrase: bytes, *, log2_n: int = DEFAULT_LOG2_N
) -> dict[str, bytes]:
    """Named byte strings: hierarchy.json, and {label}.key (sealed) + {label}.pem per role."""
    meta = {
        "format": HIERARCHY_FORMAT,
        "name": hierarchy.name,
        "intl_key_type": hierarchy.intl_key_type,
        "crl_base_url": hierarchy.crl_base_url,
        "aia_base_url": hierarchy.aia_base_url,
        "mail_address": hierarchy.mail_address,
        "labels": list(LABELS),
    }
    files = {"hierarchy.json": json.dumps(meta, indent=2, sort_keys=True).encode() + b"\n"}
    for label, item in hierarchy.items().items():
        files[f"{label}.key"] = seal_key(item.key, passphrase, log2_n=log2_n)
        files[f"{label}.pem"] = item.pem
    return files


def _matches(key: PrivateKey, item_cert: object) -> bool:
    if isinstance(key, sm2.SM2PrivateKey):
        try:
            return sm2_certs.certificate_public_key(item_cert) == key.public_key  # type: ignore[arg-type]
        except UnsupportedAlgorithm:
            return False
    ours = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return ours == item_cert["tbs_certificate"]["subject_public_key_info"].dump()  # type: ignore[index]


def deserialize_hierarchy(files: dict[str, bytes], passphrase: bytes) -> Hierarchy:
    """The Hierarchy serialize_hierarchy wrote; KeyLoadError (or a subclass) when anything is
    missing, unreadable, sealed under another passphrase, or a key does not fit its certificate."""
    try:
        meta = json.loads(files["hierarchy.json"])
        if meta.get("format") != HIERARCHY_FORMAT:
            raise KeyLoadError(f"Hierarchy format {meta.get('format')!r} is not one we read.")
        items: dict[str, KeyCert] = {}
        for label in LABELS:
            certs = load_certificates(files[f"{label}.pem"])
            if len(certs) != 1:
                raise KeyLoadError(f"{label}.pem must hold exactly one certificate.")
            key = open_key(files[f"{label}.key"], passphrase)
            if not _matches(key, certs[0]):
                raise KeyLoadError(f"{label}: the key does not belong to the certificate.")
            items[label] = KeyCert(key, certs[0])
        return Hierarchy(
            name=meta["name"],
            intl_key_type=meta["intl_key_type"],
            crl_base_url=meta["crl_base_url"],
            aia_base_url=meta["aia_base_url"],
            mail_address=meta["mail_address"],
            intl_root=items["intl-root"],
            intl_issuing=items["intl-issuing"],
            sm2_root=items["sm2-root"],
            sm2_issuing=items["sm2-issuing"],
            tsa=items["tsa"],
            mail_identity=items["mail"],
        )
    except KeyError as error:
        raise KeyLoadError(f"The stored hierarchy lacks {error}.") from None
    except (ValueError, TypeError, MalformedInput) as error:
        raise KeyLoadError(f"The stored hierarchy does not load: {error}") from None
