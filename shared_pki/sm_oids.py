"""SM2/SM3/SM4 OIDs (GM/T 0006, GB/T 32918) registered with asn1crypto, once at import.

asn1crypto knows none of them: without these names a certificate or key on the SM2 curve parses
only as bare dotted OIDs, and `NamedCurve` cannot be built from a name. Kept apart from
`shared_pki.oids` so the SM work can move without touching the international one.
"""

from __future__ import annotations

from asn1crypto import algos, keys

SM2_CURVE = "1.2.156.10197.1.301"  # sm2p256v1, also "SM2" as a key algorithm
SM2_SIGN = "1.2.156.10197.1.301.1"
SM2_ENCRYPT = "1.2.156.10197.1.301.3"
SM3 = "1.2.156.10197.1.401"
SM2_WITH_SM3 = "1.2.156.10197.1.501"
SM4 = "1.2.156.10197.1.104"
SM4_CBC = "1.2.156.10197.1.104.2"

# GM/T 0010 content types (GmSSL's CMS convention); named here, used by the S/MIME layer.
GM_DATA = "1.2.156.10197.6.1.4.2.1"
GM_SIGNED_DATA = "1.2.156.10197.6.1.4.2.2"
GM_ENVELOPED_DATA = "1.2.156.10197.6.1.4.2.3"

CURVE_NAME = "sm2p256v1"


def _add(cls: type, oid: str, name: str) -> None:
    """Map oid <-> name on an asn1crypto ObjectIdentifier class (its reverse map is lazy)."""
    cls._map[oid] = name  # type: ignore[attr-defined]
    if cls._reverse_map is not None:  # type: ignore[attr-defined]
        cls._reverse_map[name] = oid  # type: ignore[attr-defined]


def _register() -> None:
    if SM2_CURVE not in keys.NamedCurve._map:
        keys.NamedCurve.register(CURVE_NAME, SM2_CURVE, 32)
    _add(algos.SignedDigestAlgorithmId, SM2_WITH_SM3, "sm2_sm3")
    _add(algos.DigestAlgorithmId, SM3, "sm3")
    _add(algos.EncryptionAlgorithmId, SM2_ENCRYPT, "sm2_encrypt")
    _add(algos.EncryptionAlgorithmId, SM4_CBC, "sm4_cbc")


_register()
