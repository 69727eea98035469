"""SM2/SM3/SM4 in CMS and S/MIME, plugged into the registries of the CMS core at import
(shared_pki.cms imports this module, so it is active wherever CMS is used):

- SM3 digest (1.2.156.10197.1.401), micalg "sm3";
- SM2-with-SM3 signatures: written as 1.2.156.10197.1.501, read also as the SM2 signing key OID
  1.2.156.10197.1.301.1 (GmSSL's habit), for SignerInfos and certificate links alike;
- SM4-CBC content encryption (1.2.156.10197.1.104.2);
- SM2 key transport: KeyTransRecipientInfo with keyEncryptionAlgorithm 1.2.156.10197.1.301.3
  and encryptedKey the DER SM2 ciphertext (C1C3C2) of the content-encryption key;
- the GM/T 0010 content types 1.2.156.10197.6.1.4.2.{1,2,3} (GmSSL's convention) as the
  convention "gmt": read everywhere as data/signedData/envelopedData, written only when asked
  (`convention="gmt"`); the PKCS#7 types (OpenSSL's and Tongsuo's) are the default.

The SM2 signer ID is an explicit parameter: `sm2_id` when signing (None means DEFAULT_ID,
1234567812345678; b"" is what OpenSSL 3 uses), `sm2_ids` (IDs to try) when verifying, passed
from smime.* through cms.signed/verify and x509.validate down to the signature registry.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from asn1crypto import algos, cms, core
from asn1crypto import keys as asn1_keys
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import algorithms

from shared_pki import mime, oids, sm2, sm_oids
from shared_pki.cms import ciphers, digests, recipients, signatures
from shared_pki.cms.digests import DigestAlgorithm
from shared_pki.errors import (
    DecryptionFailed,
    EncryptionError,
    PkiError,
    SigningError,
    UnsupportedAlgorithm,
)
from shared_pki.keys import Certificate, PrivateKey

STANDARD_ID = sm2.DEFAULT_ID
EMPTY_ID = b""
BOTH_IDS = (STANDARD_ID, EMPTY_ID)
GMT = oids.ContentTypes(sm_oids.GM_DATA, sm_oids.GM_SIGNED_DATA, sm_oids.GM_ENVELOPED_DATA)


def parse_sm2_id(text: str) -> bytes:
    """An SM2 signer ID from words: "standard" (1234567812345678), "empty", or hex."""
    word = text.strip().lower()
    if word in ("standard", "default"):
        return STANDARD_ID
    if word in ("empty", "none", ""):
        return EMPTY_ID
    try:
        return bytes.fromhex(word)
    except ValueError:
        raise ValueError(f"SM2 ID {text!r} is not standard, empty or hex.") from None


def parse_sm2_ids(text: str) -> tuple[bytes, ...]:
    """IDs to try when verifying: "both" (standard, then empty), or one as parse_sm2_id."""
    if text.strip().lower() == "both":
        return BOTH_IDS
    return (parse_sm2_id(text),)


# ---- SM3 ----------------------------------------------------------------------------------

SM3 = DigestAlgorithm("sm3", sm_oids.SM3, "sm3", 32, hashes.SM3)


# ---- SM2-with-SM3 signatures --------------------------------------------------------------


def _sm2_public_key(info: asn1_keys.PublicKeyInfo) -> sm2.SM2PublicKey | None:
    try:
        return sm2.SM2PublicKey.from_spki(info)
    except PkiError:
        return None


def _identifier(digest: DigestAlgorithm) -> algos.SignedDigestAlgorithm:
    if digest.oid != sm_oids.SM3:
        raise SigningError(f"SM2 signs with SM3 only, not {digest.name}.")
    # No parameters, as OpenSSL writes SM2-with-SM3 in certificates.
    return algos.SignedDigestAlgorithm({"algorithm": sm_oids.SM2_WITH_SM3})


def _sign(key: PrivateKey, data: bytes, digest: DigestAlgorithm, *, sm2_id: bytes) -> bytes:
    if digest.oid != sm_oids.SM3:
        raise SigningError(f"SM2 signs with SM3 only, not {digest.name}.")
    return key.sign(data, signer_id=sm2_id)


def _verify(
    info: asn1_keys.PublicKeyInfo,
    signature: bytes,
    data: bytes,
    digest: DigestAlgorithm,
    parameters: Any,
    *,
    sm2_id: bytes,
) -> bool:
    if digest.oid != sm_oids.SM3:
        raise UnsupportedAlgorithm(f"SM2 signatures with {digest.name} instead of SM3.")
    if not (parameters is None or isinstance(parameters, core.Void | core.Null)):
        return False
    key = _sm2_public_key(info)
    return key is not None and key.verify(signature, data, signer_id=sm2_id)


SM2_SM3 = signatures.SignatureScheme(
    name="sm2_sm3",
    signature_oids=frozenset({sm_oids.SM2_WITH_SM3, sm_oids.SM2_SIGN}),
    accepts_public_key=lambda info: _sm2_public_key(info) is not None,
    owns_private_key=lambda key: isinstance(key, sm2.SM2PrivateKey),
    algorithm_identifier=_identifier,
    sign=_sign,
    verify=_verify,
    implied_digests=((sm_oids.SM2_WITH_SM3, "sm3"), (sm_oids.SM2_SIGN, "sm3")),
    uses_sm2_id=True,
    default_sm2_id=STANDARD_ID,
)


# ---- SM4-CBC ------------------------------------------------------------------------------

# Preference below AES: only ever chosen within the SM suite (choice.py filters by suite).
SM4_CBC = dataclasses.replace(
    ciphers.cbc_cipher("sm4_cbc", sm_oids.SM4_CBC, 16, 5, algorithms.SM4), suite="sm"
)


# ---- SM2 key transport --------------------------------------------------------------------


def _fits_certificate(certificate: Certificate) -> bool:
    try:
        return _sm2_public_key(certificate.public_key) is not None
    except (ValueError, TypeError, KeyError):
        return False


def _build(cek: bytes, certificate: Certificate, rid: recipients.RecipientId) -> cms.RecipientInfo:
    key = _sm2_public_key(certificate.public_key)
    if key is None:
        raise EncryptionError("SM2 key transport needs an SM2 certificate.")
    algorithm = cms.KeyEncryptionAlgorithm({"algorithm": sm_oids.SM2_ENCRYPT})
    return recipients._ktri(key.encrypt(cek), rid, algorithm)


def _recover(_info: cms.Sequence, encrypted: bytes, key: PrivateKey, _size: int) -> bytes:
    try:
        return key.decrypt(encrypted)
    except PkiError:
        # The one message of every decryption failure, for a bad C3 and for bytes that are no
        # SM2 ciphertext alike: no oracle.
        raise DecryptionFailed(ciphers.BAD_CONTENT) from None


SM2_KEY_TRANSPORT = recipients.KeyTransport(
    name="sm2_encrypt",
    oid=sm_oids.SM2_ENCRYPT,
    # Some writers name the key algorithm (SM2) rather than SM2 encryption.
    decrypt_oids=(sm_oids.SM2_ENCRYPT, sm_oids.SM2_CURVE),
    fits_certificate=_fits_certificate,
    fits_key=lambda key: isinstance(key, sm2.SM2PrivateKey),
    build=_build,
    recover=_recover,
    default=True,
    preference=5,
    suite="sm",
)


def _register() -> None:
    # asn1crypto's name for the key-encryption OID, as it has for RSA (reported by inspect()).
    key_encryption = cms.KeyEncryptionAlgorithmId
    key_encryption._map[sm_oids.SM2_ENCRYPT] = "sm2_encrypt"
    if key_encryption._reverse_map is not None:
        key_encryption._reverse_map["sm2_encrypt"] = sm_oids.SM2_ENCRYPT
    digests.register_digest(SM3)
    mime.register_micalg("sm3", "sm3")
    signatures.register_scheme(SM2_SM3)
    ciphers.register(SM4_CBC)
    recipients.register(SM2_KEY_TRANSPORT)
    oids.register_convention("gmt", GMT)
    mime.register_content_type_alias(sm_oids.GM_SIGNED_DATA, oids.OID_SIGNED_DATA)
    mime.register_content_type_alias(sm_oids.GM_ENVELOPED_DATA, oids.OID_ENVELOPED_DATA)


_register()
