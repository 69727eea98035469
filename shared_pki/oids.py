"""Registrations asn1crypto lacks, made once at import: RFC 5753 ECDH schemes with their
ECC-CMS-SharedInfo, GCM parameters (RFC 5084), and ESS signingCertificateV2 (RFC 5035, via
asn1crypto.tsp). Every module that builds or parses CMS imports this first.

SM2/SM3/SM4 and GM/T 0010 OIDs are registered by their own module in the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

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


# ---- CMS content-type conventions ----------------------------------------------------------
# PKCS#7/RFC 5652 content types are what every S/MIME client writes. Another convention (GM/T
# 0010, which GmSSL uses with SM algorithms) names the same structures with its own OIDs; it
# registers here, and readers map its OIDs back with `standard_content_type` so that CMS and MIME
# code compares against one set of constants whatever the convention of the message.

OID_DATA = "1.2.840.113549.1.7.1"
OID_SIGNED_DATA = "1.2.840.113549.1.7.2"
OID_ENVELOPED_DATA = "1.2.840.113549.1.7.3"


@dataclass(frozen=True)
class ContentTypes:
    """The content-type OIDs one convention writes for data, SignedData and EnvelopedData."""

    data: str
    signed_data: str
    enveloped_data: str


PKCS7 = ContentTypes(OID_DATA, OID_SIGNED_DATA, OID_ENVELOPED_DATA)
_CONVENTIONS: dict[str, ContentTypes] = {"pkcs7": PKCS7}
_ALIASES: dict[str, str] = {}


def register_convention(name: str, types: ContentTypes) -> None:
    """Make a convention writable (by name) and its OIDs readable as aliases of PKCS#7's."""
    _CONVENTIONS[name] = types
    for field_name in ("data", "signed_data", "enveloped_data"):
        alias, standard = getattr(types, field_name), getattr(PKCS7, field_name)
        if alias == standard:
            continue
        _ALIASES[alias] = standard
        asn1_name = f"{name}_{field_name}"
        cms.ContentType._map[alias] = asn1_name
        if cms.ContentType._reverse_map is not None:  # asn1crypto builds it once, lazily
            cms.ContentType._reverse_map[asn1_name] = alias
        cms.ContentInfo._oid_specs[asn1_name] = cms.ContentInfo._oid_specs[field_name]


def content_types(convention: str) -> ContentTypes:
    """The OIDs a convention writes ("pkcs7" by default everywhere)."""
    try:
        return _CONVENTIONS[convention]
    except KeyError:
        known = ", ".join(sorted(_CONVENTIONS))
        raise ValueError(f"Unknown CMS convention {convention!r} (known: {known}).") from None


def standard_content_type(oid: str) -> str:
    """The PKCS#7 content type an OID stands for (itself unless a convention aliases it)."""
    return _ALIASES.get(oid, oid)
