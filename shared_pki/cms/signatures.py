"""Signature schemes in a registry, used for CMS SignerInfos and for X.509 certificate links.

A scheme says which signature algorithm OIDs it reads, which public keys (by predicate on the
certificate's SubjectPublicKeyInfo) and which private keys (by predicate on the key object) it
handles. Lookups dispatch on those, never on a closed list of types, so SM2-with-SM3 registers
from its own module (`register_scheme`) and works in signing, verifying and path validation.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from asn1crypto import algos, core
from asn1crypto import keys as asn1_keys
from cryptography.exceptions import InvalidSignature
from cryptography.exceptions import UnsupportedAlgorithm as CryptoUnsupported
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from shared_pki.cms import digests
from shared_pki.cms.digests import DigestAlgorithm
from shared_pki.errors import MalformedInput, SigningError, UnsupportedAlgorithm
from shared_pki.keys import PrivateKey

OID_RSA = "1.2.840.113549.1.1.1"
OID_RSASSA_PSS = "1.2.840.113549.1.1.10"
OID_EC_PUBLIC_KEY = "1.2.840.10045.2.1"
OID_ECDSA_SPECIFIED = "1.2.840.10045.4"
RSA_WITH = {"sha256": "1.2.840.113549.1.1.11", "sha384": "1.2.840.113549.1.1.12",
            "sha512": "1.2.840.113549.1.1.13"}  # fmt: skip
ECDSA_WITH = {"sha256": "1.2.840.10045.4.3.2", "sha384": "1.2.840.10045.4.3.3",
              "sha512": "1.2.840.10045.4.3.4"}  # fmt: skip
ECDSA_CURVES = {"secp256r1", "secp384r1", "secp521r1"}

# sign(private key, data, digest) -> signature; schemes with uses_sm2_id also take sm2_id=bytes
Signer = Callable[..., bytes]
# verify(public key info, signature, signed data, digest, AlgorithmIdentifier parameters) -> ok;
# schemes with uses_sm2_id also take sm2_id=bytes
Verifier = Callable[..., bool]


@dataclass(frozen=True)
class SignatureScheme:
    """How one family of signatures is made and checked.

    `implied_digests` maps signature OIDs that fix their digest (sha256WithRSAEncryption) to
    that digest's name; certificates need it, SignerInfos carry their digest separately.
    `default_for_key` marks the scheme chosen for a key when the caller names none.
    """

    name: str
    signature_oids: frozenset[str]
    accepts_public_key: Callable[[asn1_keys.PublicKeyInfo], bool]
    owns_private_key: Callable[[PrivateKey], bool]
    algorithm_identifier: Callable[[DigestAlgorithm], algos.SignedDigestAlgorithm]
    sign: Signer
    verify: Verifier
    implied_digests: tuple[tuple[str, str], ...] = ()
    default_for_key: bool = True
    uses_sm2_id: bool = False
    default_sm2_id: bytes = b""

    def implied_digest(self, oid: str, parameters: Any) -> DigestAlgorithm | None:
        """The digest a certificate's signature algorithm fixes, if it fixes one."""
        if oid == OID_RSASSA_PSS:
            return _pss_digests(parameters)[0]
        for signature_oid, digest_name in self.implied_digests:
            if signature_oid == oid:
                return digests.by_name(digest_name)
        return None


_SCHEMES: list[SignatureScheme] = []


def register_scheme(scheme: SignatureScheme) -> None:
    """Add a scheme; later registrations are asked first, so a module can specialise one."""
    _SCHEMES.insert(0, scheme)


def for_verification(signature_oid: str, public_key: asn1_keys.PublicKeyInfo) -> SignatureScheme:
    """The scheme that checks a signature of this OID made by this public key."""
    for scheme in _SCHEMES:
        if signature_oid in scheme.signature_oids and scheme.accepts_public_key(public_key):
            return scheme
    raise UnsupportedAlgorithm(
        f"Unsupported signature algorithm {signature_oid} with a "
        f"{public_key['algorithm']['algorithm'].dotted} key."
    )


def for_signing(key: PrivateKey, scheme_name: str | None = None) -> SignatureScheme:
    """The scheme that signs with this private key: the named one, else the key's default."""
    for scheme in _SCHEMES:
        if scheme_name is not None and scheme.name != scheme_name:
            continue
        if (scheme_name is not None or scheme.default_for_key) and scheme.owns_private_key(key):
            return scheme
    wanted = f"scheme {scheme_name!r} " if scheme_name else ""
    raise SigningError(f"No signature {wanted}for a {type(key).__name__}.")


def sign_with(
    scheme: SignatureScheme,
    key: PrivateKey,
    data: bytes,
    digest: DigestAlgorithm,
    sm2_id: bytes | None = None,
) -> bytes:
    """Sign with a scheme; sm2_id (None: the scheme's default) reaches schemes that use one."""
    if not scheme.uses_sm2_id:
        return scheme.sign(key, data, digest)
    chosen = scheme.default_sm2_id if sm2_id is None else sm2_id
    return scheme.sign(key, data, digest, sm2_id=chosen)


def verify_with(
    signature_oid: str,
    parameters: Any,
    public_key: asn1_keys.PublicKeyInfo,
    signature: bytes,
    data: bytes,
    digest: DigestAlgorithm | None,
    sm2_ids: Sequence[bytes] | None = None,
) -> bool:
    """Check one signature; `digest` None means "the one the OID implies" (certificates).
    For schemes with a signer ID, true if it verifies under any of sm2_ids (None: the
    scheme's default ID only)."""
    scheme = for_verification(signature_oid, public_key)
    if digest is None:
        digest = scheme.implied_digest(signature_oid, parameters)
        if digest is None:
            raise UnsupportedAlgorithm(f"Signature algorithm {signature_oid} names no digest.")
    if not scheme.uses_sm2_id:
        return scheme.verify(public_key, signature, data, digest, parameters)
    ids = (scheme.default_sm2_id,) if sm2_ids is None else tuple(sm2_ids)
    return any(
        scheme.verify(public_key, signature, data, digest, parameters, sm2_id=one) for one in ids
    )


# ---- helpers shared by the built-in schemes ---------------------------------------------


def _crypto_public_key(info: asn1_keys.PublicKeyInfo) -> Any:
    try:
        return serialization.load_der_public_key(info.dump())
    except (ValueError, CryptoUnsupported) as error:
        raise UnsupportedAlgorithm(f"Public key not usable: {error}") from None


def _key_oid(info: asn1_keys.PublicKeyInfo) -> str:
    return info["algorithm"]["algorithm"].dotted


def _is_ec_curve(info: asn1_keys.PublicKeyInfo) -> bool:
    if _key_oid(info) != OID_EC_PUBLIC_KEY:
        return False
    parameters = info["algorithm"]["parameters"]
    return parameters.name == "named" and parameters.chosen.native in ECDSA_CURVES


def _void(parameters: Any) -> bool:
    return parameters is None or isinstance(parameters, core.Void | core.Null)


# ---- RSA PKCS#1 v1.5 ----------------------------------------------------------------------


def _rsa_identifier(digest: DigestAlgorithm) -> algos.SignedDigestAlgorithm:
    oid = RSA_WITH.get(digest.name)
    if oid is None:
        raise SigningError(f"RSA PKCS#1 v1.5 with {digest.name} is not supported.")
    return algos.SignedDigestAlgorithm({"algorithm": oid, "parameters": core.Null()})


def _rsa_sign(key: PrivateKey, data: bytes, digest: DigestAlgorithm) -> bytes:
    return key.sign(data, padding.PKCS1v15(), digest.crypto_hash())


def _rsa_verify(
    info: asn1_keys.PublicKeyInfo, signature: bytes, data: bytes, digest: DigestAlgorithm, _p: Any
) -> bool:
    key = _crypto_public_key(info)
    try:
        key.verify(signature, data, padding.PKCS1v15(), digest.crypto_hash())
    except InvalidSignature:
        return False
    return True


RSA_PKCS1V15 = SignatureScheme(
    name="rsa_pkcs1v15",
    signature_oids=frozenset({OID_RSA, *RSA_WITH.values()}),
    accepts_public_key=lambda info: _key_oid(info) == OID_RSA,
    owns_private_key=lambda key: isinstance(key, rsa.RSAPrivateKey),
    algorithm_identifier=_rsa_identifier,
    sign=_rsa_sign,
    verify=_rsa_verify,
    implied_digests=tuple((oid, name) for name, oid in RSA_WITH.items()),
)


# ---- RSASSA-PSS (RFC 4055/4056) -------------------------------------------------------------


def _pss_params(digest: DigestAlgorithm) -> algos.RSASSAPSSParams:
    return algos.RSASSAPSSParams(
        {
            "hash_algorithm": {"algorithm": digest.oid},
            "mask_gen_algorithm": {"algorithm": "mgf1", "parameters": {"algorithm": digest.oid}},
            "salt_length": digest.size,
        }
    )


def _pss_digests(parameters: Any) -> tuple[DigestAlgorithm, DigestAlgorithm, int]:
    """(message hash, MGF1 hash, salt length) from RSASSA-PSS-params; absent = SHA-1 defaults."""
    if not isinstance(parameters, algos.RSASSAPSSParams):
        raise MalformedInput("RSASSA-PSS without its parameters.")
    mgf = parameters["mask_gen_algorithm"]
    if mgf["algorithm"].native != "mgf1":
        raise UnsupportedAlgorithm(f"RSASSA-PSS mask generation {mgf['algorithm'].dotted}.")
    if parameters["trailer_field"].native not in ("trailer_field_bc", 1):
        raise UnsupportedAlgorithm("RSASSA-PSS trailer field other than 0xBC.")
    message = digests.by_oid(parameters["hash_algorithm"]["algorithm"].dotted)
    mgf_hash = digests.by_oid(mgf["parameters"]["algorithm"].dotted)
    return message, mgf_hash, parameters["salt_length"].native


def _pss_identifier(digest: DigestAlgorithm) -> algos.SignedDigestAlgorithm:
    if digest.hash_algorithm is None:
        raise SigningError(f"RSASSA-PSS with {digest.name} is not supported.")
    return algos.SignedDigestAlgorithm(
        {"algorithm": OID_RSASSA_PSS, "parameters": _pss_params(digest)}
    )


def _pss_sign(key: PrivateKey, data: bytes, digest: DigestAlgorithm) -> bytes:
    hash_algorithm = digest.crypto_hash()
    pss = padding.PSS(mgf=padding.MGF1(hash_algorithm), salt_length=digest.size)
    return key.sign(data, pss, hash_algorithm)


def _pss_verify(
    info: asn1_keys.PublicKeyInfo, signature: bytes, data: bytes, digest: DigestAlgorithm, p: Any
) -> bool:
    """The parameters decide hash, MGF1 hash and salt (they are what the signer used)."""
    message, mgf_hash, salt = _pss_digests(p)
    key = _crypto_public_key(info)
    pss = padding.PSS(mgf=padding.MGF1(mgf_hash.crypto_hash()), salt_length=salt)
    try:
        key.verify(signature, data, pss, message.crypto_hash())
    except InvalidSignature:
        return False
    return True


RSA_PSS = SignatureScheme(
    name="rsassa_pss",
    signature_oids=frozenset({OID_RSASSA_PSS}),
    accepts_public_key=lambda info: _key_oid(info) in (OID_RSA, OID_RSASSA_PSS),
    owns_private_key=lambda key: isinstance(key, rsa.RSAPrivateKey),
    algorithm_identifier=_pss_identifier,
    sign=_pss_sign,
    verify=_pss_verify,
    default_for_key=False,
)


# ---- ECDSA (RFC 5753, RFC 5758) ----------------------------------------------------------------


def _ecdsa_identifier(digest: DigestAlgorithm) -> algos.SignedDigestAlgorithm:
    oid = ECDSA_WITH.get(digest.name)
    if oid is None:
        raise SigningError(f"ECDSA with {digest.name} is not supported.")
    return algos.SignedDigestAlgorithm({"algorithm": oid})


def _ecdsa_sign(key: PrivateKey, data: bytes, digest: DigestAlgorithm) -> bytes:
    return key.sign(data, ec.ECDSA(digest.crypto_hash()))


def _ecdsa_verify(
    info: asn1_keys.PublicKeyInfo, signature: bytes, data: bytes, digest: DigestAlgorithm, _p: Any
) -> bool:
    key = _crypto_public_key(info)
    try:
        key.verify(signature, data, ec.ECDSA(digest.crypto_hash()))
    except (InvalidSignature, ValueError):
        return False
    return True


ECDSA = SignatureScheme(
    name="ecdsa",
    # Some clients write the key's OID (id-ecPublicKey) or bare ecdsa as signatureAlgorithm.
    signature_oids=frozenset({*ECDSA_WITH.values(), OID_EC_PUBLIC_KEY, OID_ECDSA_SPECIFIED}),
    accepts_public_key=_is_ec_curve,
    owns_private_key=lambda key: (
        isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name in ECDSA_CURVES
    ),
    algorithm_identifier=_ecdsa_identifier,
    sign=_ecdsa_sign,
    verify=_ecdsa_verify,
    implied_digests=tuple((oid, name) for name, oid in ECDSA_WITH.items()),
)

for _scheme in (ECDSA, RSA_PSS, RSA_PKCS1V15):
    register_scheme(_scheme)
