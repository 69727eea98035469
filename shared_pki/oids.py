"""Registrations asn1crypto lacks, made once at import: RFC 5753 ECDH schemes with their
ECC-CMS-SharedInfo, GCM parameters (RFC 5084), and ESS signingCertificateV2 (RFC 5035, via
asn1crypto.tsp). Every module that builds or parses CMS imports this first.

SM2/SM3/SM4 and GM/T 0010 OIDs are registered by their own module in the same way.
"""

from __future__ import annotations

from asn1crypto import algos, cms, core
from asn1crypto import tsp as _tsp  # noqa: F401  registers signing_certificate_v2 and TSTInfo

# RFC 5753 / SEC 1 key agreement schemes: dhSinglePass-stdDH-<hash>kdf-scheme.
ECDH_STD_SCHEMES = {
    "1.3.133.16.840.63.0.2": "dh_single_pass_std_dh_sha1kdf",
    "1.3.132.1.11.0": "dh_single_pass_std_dh_sha224kdf",
    "1.3.132.1.11.1": "dh_single_pass_std_dh_sha256kdf",
    "1.3.132.1.11.2": "dh_single_pass_std_dh_sha384kdf",
    "1.3.132.1.11.3": "dh_single_pass_std_dh_sha512kdf",
}


class EccCmsSharedInfo(core.Sequence):
    """RFC 5753 section 7.2: the KDF's SharedInfo for ECDH key agreement in CMS."""

    _fields = [
        ("key_info", algos.EncryptionAlgorithm),
        ("entity_u_info", core.OctetString, {"explicit": 0, "optional": True}),
        ("supp_pub_info", core.OctetString, {"explicit": 2}),
    ]


class GcmParameters(core.Sequence):
    """RFC 5084: nonce (12 octets recommended) and ICV length (12 by default; we write 16)."""

    _fields = [
        ("aes_nonce", core.OctetString),
        ("aes_icv_len", core.Integer, {"default": 12}),
    ]


def _register() -> None:
    for oid, name in ECDH_STD_SCHEMES.items():
        cms.KeyEncryptionAlgorithmId._map[oid] = name
        cms.KeyEncryptionAlgorithmId._reverse_map = None
        # The parameters of a key agreement algorithm name the key-wrap algorithm.
        cms.KeyEncryptionAlgorithm._oid_specs[name] = cms.KeyEncryptionAlgorithm
    for name in ("aes128_gcm", "aes192_gcm", "aes256_gcm"):
        algos.EncryptionAlgorithm._oid_specs[name] = GcmParameters
    # asn1crypto caches reverse maps lazily; rebuild them so names map back to OIDs.
    for cls in (cms.KeyEncryptionAlgorithmId,):
        cls._reverse_map = {name: oid for oid, name in cls._map.items()}


_register()
