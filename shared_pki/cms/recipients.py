"""Recipient-info kinds (RFC 5652 section 6.2) as a registry of key transports: RSA PKCS#1 v1.5
and RSAES-OAEP (KeyTransRecipientInfo), ECDH P-256/P-384/P-521 with the RFC 5753 stdDH schemes
(KeyAgreeRecipientInfo). SM2 key transport registers itself from its own module the same way.

To encrypt, a transport is chosen by name and must fit the recipient certificate's public key;
to decrypt, by the key-encryption algorithm OID in the message and the private key's type.

Decryption failures say one thing (ciphers.BAD_CONTENT), whatever failed: an RSA padding check,
an OAEP check, an AES key unwrap, an SM2 C3. RSA PKCS#1 v1.5 never fails at all here: it uses
implicit rejection (see `_pkcs1_recover`), so the content decryption fails instead, with the
same words as for an altered message.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass

from asn1crypto import algos, cms, core, keys
from cryptography.hazmat.primitives import hashes, hmac, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand
from cryptography.hazmat.primitives.kdf.x963kdf import X963KDF
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap

from shared_pki import oids
from shared_pki.cms.ciphers import BAD_CONTENT
from shared_pki.errors import (
    DecryptionFailed,
    EncryptionError,
    MalformedInput,
    UnsupportedAlgorithm,
)
from shared_pki.keys import Certificate, PrivateKey
from shared_pki.x509.names import same_name

# (cek, recipient certificate, how to name the recipient) -> RecipientInfo
Build = Callable[[bytes, Certificate, "RecipientId"], cms.RecipientInfo]
# (KeyTransRecipientInfo or KeyAgreeRecipientInfo, encrypted key, private key, the content
# cipher's key size) -> cek
Recover = Callable[[cms.Sequence, bytes, PrivateKey, int], bytes]


@dataclass(frozen=True)
class RecipientId:
    """How a recipient is named in a message: issuer and serial, or subject key identifier."""

    issuer: str | None = None
    serial: int | None = None
    ski: bytes | None = None
    issuer_der: bytes | None = None

    def __str__(self) -> str:
        if self.ski is not None:
            return f"subject key id {self.ski.hex(':')}"
        return f"issuer {self.issuer!r} serial {self.serial:#x}"

    def matches(self, certificate: Certificate) -> bool:
        """True if certificate is the one this identifier names."""
        if self.ski is not None:
            return certificate.key_identifier == self.ski
        if certificate.serial_number != self.serial:
            return False
        return certificate.issuer.dump() == self.issuer_der or _same_name(certificate, self)

    @staticmethod
    def of(certificate: Certificate, use_ski: bool = False) -> RecipientId:
        """The identifier to write for certificate (EncryptionError if SKI is asked but absent)."""
        if use_ski:
            ski = certificate.key_identifier
            if ski is None:
                raise EncryptionError(
                    f"The certificate of {_subject(certificate)} has no subject key identifier."
                )
            return RecipientId(ski=ski)
        issuer = certificate.issuer
        return RecipientId(issuer.human_friendly, certificate.serial_number, None, issuer.dump())

    @staticmethod
    def from_issuer_and_serial(value: cms.IssuerAndSerialNumber) -> RecipientId:
        issuer = value["issuer"]
        return RecipientId(
            issuer.human_friendly, value["serial_number"].native, None, issuer.dump()
        )

    def issuer_and_serial(self) -> cms.IssuerAndSerialNumber:
        return cms.IssuerAndSerialNumber(
            {"issuer": cms.Name.load(self.issuer_der), "serial_number": self.serial}
        )


def _same_name(certificate: Certificate, rid: RecipientId) -> bool:
    """Name comparison with RFC 5280 normalisation, for issuers re-encoded by other software."""
    try:
        return same_name(certificate.issuer, cms.Name.load(rid.issuer_der or b""))
    except ValueError:
        return False


def _subject(certificate: Certificate) -> str:
    try:
        return certificate.subject.human_friendly
    except ValueError:
        return "this recipient"


@dataclass(frozen=True)
class KeyTransport:
    """One way to get the content-encryption key to a recipient.

    `oid` is the key-encryption algorithm written in the message (and advertised in
    SMIMECapabilities); `decrypt_oids` are every OID it can read. `fits_certificate` and
    `fits_key` say which public and private keys it works with; `default` marks the transport
    every client reads for the key types it fits; `preference` orders the choice (higher is
    stronger); `key_usage` is the keyUsage bit a recipient certificate must allow, if it has
    the extension; `suite` ("intl" or "sm", see suite.py) is the family it belongs to."""

    name: str
    oid: str
    decrypt_oids: tuple[str, ...]
    fits_certificate: Callable[[Certificate], bool]
    fits_key: Callable[[PrivateKey], bool]
    build: Build
    recover: Recover
    default: bool = False
    preference: int = 0
    accepts_capability: Callable[[bytes | None], bool] = lambda _parameters: True
    key_usage: str = "key_encipherment"
    suite: str = "intl"


_BY_NAME: dict[str, KeyTransport] = {}


def register(transport: KeyTransport) -> None:
    """Make a key transport available to encrypt (by name) and decrypt (by OID and key type)."""
    _BY_NAME[transport.name] = transport


def by_name(name: str) -> KeyTransport:
    try:
        return _BY_NAME[name]
    except KeyError:
        known = ", ".join(sorted(_BY_NAME))
        raise UnsupportedAlgorithm(f"Unknown key transport {name!r} (known: {known}).") from None


def registered() -> tuple[KeyTransport, ...]:
    """Every registered transport, strongest first."""
    return tuple(sorted(_BY_NAME.values(), key=lambda t: -t.preference))


def for_decryption(oid: str, key: PrivateKey) -> KeyTransport:
    """The transport that reads key-encryption algorithm oid with this private key."""
    candidates = [t for t in _BY_NAME.values() if oid in t.decrypt_oids]
    if not candidates:
        raise UnsupportedAlgorithm(f"Key encryption algorithm {oid} is not supported.")
    for transport in candidates:
        if transport.fits_key(key):
            return transport
    raise UnsupportedAlgorithm(
        f"Key encryption algorithm {oid} cannot be used with a {type(key).__name__}."
    )


def default_for(certificate: Certificate, suite: str | None = None) -> KeyTransport:
    """What every client reads for this certificate's key type (PKCS#1 v1.5, ECDH, SM2), of
    the given suite if one is named."""
    for transport in registered()[::-1]:
        if suite is not None and transport.suite != suite:
            continue
        if transport.default and transport.fits_certificate(certificate):
            return transport
    raise EncryptionError(
        f"No way to encrypt to the {_key_algorithm(certificate)} key of {_subject(certificate)}."
    )


def _key_algorithm(certificate: Certificate) -> str:
    try:
        return str(certificate.public_key.algorithm)
    except ValueError:
        return "unreadable"


def public_key(certificate: Certificate) -> object:
    """The certificate's public key as a cryptography object."""
    try:
        return serialization.load_der_public_key(certificate.public_key.dump())
    except (ValueError, TypeError) as error:
        raise EncryptionError(f"The certificate's public key is unusable: {error}") from None


# --- RSA key transport (KeyTransRecipientInfo) -------------------------------------------------

OID_RSA = "1.2.840.113549.1.1.1"
OID_OAEP = "1.2.840.113549.1.1.7"

_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "sha1": hashes.SHA1,
    "sha224": hashes.SHA224,
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}


def _is_rsa_certificate(certificate: Certificate) -> bool:
    return _key_algorithm(certificate) == "rsa"


def _is_rsa_key(key: PrivateKey) -> bool:
    return isinstance(key, rsa.RSAPrivateKey)


def _ktri(
    cek_encrypted: bytes, rid: RecipientId, algorithm: cms.KeyEncryptionAlgorithm
) -> cms.RecipientInfo:
    if rid.ski is not None:
        rid_value = cms.RecipientIdentifier({"subject_key_identifier": rid.ski})
        version = "v2"
    else:
        rid_value = cms.RecipientIdentifier({"issuer_and_serial_number": rid.issuer_and_serial()})
        version = "v0"
    return cms.RecipientInfo(
        {
            "ktri": {
                "version": version,
                "rid": rid_value,
                "key_encryption_algorithm": algorithm,
                "encrypted_key": cek_encrypted,
            }
        }
    )


def _rsa_encrypt(certificate: Certificate, cek: bytes, pad: padding.AsymmetricPadding) -> bytes:
    key = public_key(certificate)
    if not isinstance(key, rsa.RSAPublicKey):
        raise EncryptionError("RSA key transport needs an RSA certificate.")
    return key.encrypt(cek, pad)


def _rsa_decrypt(key: PrivateKey, encrypted: bytes, pad: padding.AsymmetricPadding) -> bytes:
    try:
        return key.decrypt(encrypted, pad)
    except ValueError:
        raise DecryptionFailed(BAD_CONTENT) from None


def _pkcs1_build(cek: bytes, certificate: Certificate, rid: RecipientId) -> cms.RecipientInfo:
    encrypted = _rsa_encrypt(certificate, cek, padding.PKCS1v15())
    return _ktri(encrypted, rid, cms.KeyEncryptionAlgorithm({"algorithm": "rsaes_pkcs1v15"}))


_REJECTION_LABEL = b"autosmime CMS PKCS#1 v1.5 implicit rejection"


def rejection_key(key: rsa.RSAPrivateKey, encrypted: bytes, size: int) -> bytes:
    """The content key that stands in for a PKCS#1 v1.5 decryption that failed: pseudo-random,
    and the same for the same private key and ciphertext, so asking again teaches nothing. As
    in draft-irtf-cfrg-rsa-guidance (and OpenSSL 3.2): a key-derivation key HMAC-SHA256 keyed
    with SHA-256 of the private exponent over the ciphertext, expanded to `size` bytes."""
    exponent = key.private_numbers().d
    digest = hashes.Hash(hashes.SHA256())
    digest.update(exponent.to_bytes((exponent.bit_length() + 7) // 8, "big"))
    mac = hmac.HMAC(digest.finalize(), hashes.SHA256())
    mac.update(encrypted)
    return HKDFExpand(hashes.SHA256(), size, _REJECTION_LABEL).derive(mac.finalize())


def _pkcs1_recover(_info: cms.Sequence, encrypted: bytes, key: PrivateKey, size: int) -> bytes:
    """The content key of a PKCS#1 v1.5 KeyTransRecipientInfo, with implicit rejection (RFC
    3218 section 2.3, RFC 8017 section 7.2.2's note on Bleichenbacher, draft-irtf-cfrg-rsa-
    guidance): whatever goes wrong (bad padding, a key of the wrong length, a ciphertext out
    of range), decryption carries on with `rejection_key`, the content then fails to decrypt,
    and the error is the one an altered message gets. No error says that the padding was bad.

    What `cryptography` does, measured with its wheel (50.0, bundling OpenSSL 4.0): OpenSSL's
    default provider applies its own implicit rejection, so a bad padding returns a synthetic
    message (deterministic in key and ciphertext, of pseudo-random length) instead of raising;
    only public checks raise ValueError (ciphertext length, value not below n). Built against
    an OpenSSL before 3.2 (Debian 12's python3-cryptography links 3.0) a bad padding raises
    ValueError instead. Neither gives a key of the content cipher's length every time, so
    both cases end here: the rejection key is computed always, and taken unless a key of the
    expected length came out."""
    substitute = rejection_key(key, encrypted, size)
    try:
        recovered = key.decrypt(encrypted, padding.PKCS1v15())
    except ValueError:
        recovered = b""
    return recovered if len(recovered) == size else substitute


def oaep_parameters(hash_name: str = "sha256") -> algos.RSAESOAEPParams:
    """RSAES-OAEP-params with hash and MGF1 hash hash_name; SHA-1 is the empty SEQUENCE,
    which asn1crypto can only load, not build (REFERENCE.md)."""
    if hash_name == "sha1":
        return algos.RSAESOAEPParams.load(b"\x30\x00")
    return algos.RSAESOAEPParams(
        {
            "hash_algorithm": {"algorithm": hash_name},
            "mask_gen_algorithm": {"algorithm": "mgf1", "parameters": {"algorithm": hash_name}},
        }
    )


def _oaep_build(cek: bytes, certificate: Certificate, rid: RecipientId) -> cms.RecipientInfo:
    pad = padding.OAEP(padding.MGF1(hashes.SHA256()), hashes.SHA256(), None)
    encrypted = _rsa_encrypt(certificate, cek, pad)
    algorithm = cms.KeyEncryptionAlgorithm(
        {"algorithm": "rsaes_oaep", "parameters": oaep_parameters("sha256")}
    )
    return _ktri(encrypted, rid, algorithm)


def _oaep_padding(parameters: core.Asn1Value) -> padding.OAEP:
    """OAEP padding from the message's parameters; absent parameters mean the SHA-1 defaults."""
    if isinstance(parameters, core.Void | core.Null):
        parameters = algos.RSAESOAEPParams.load(b"\x30\x00")
    if not isinstance(parameters, algos.RSAESOAEPParams):
        raise MalformedInput("RSAES-OAEP parameters do not parse.")
    hash_name = parameters["hash_algorithm"]["algorithm"].native
    mgf = parameters["mask_gen_algorithm"]
    if mgf["algorithm"].native != "mgf1":
        raise UnsupportedAlgorithm(f"OAEP mask generation {mgf['algorithm'].dotted} is not MGF1.")
    mgf_hash = mgf["parameters"]["algorithm"].native
    source = parameters["p_source_algorithm"]
    label = source["parameters"].native if source["algorithm"].native == "p_specified" else None
    if label is None:
        raise UnsupportedAlgorithm("OAEP with a label source other than pSpecified.")
    if hash_name not in _HASHES or mgf_hash not in _HASHES:
        raise UnsupportedAlgorithm(f"OAEP with hash {hash_name} and MGF1 hash {mgf_hash}.")
    return padding.OAEP(padding.MGF1(_HASHES[mgf_hash]()), _HASHES[hash_name](), label or None)


def _oaep_recover(info: cms.Sequence, encrypted: bytes, key: PrivateKey, _size: int) -> bytes:
    pad = _oaep_padding(info["key_encryption_algorithm"]["parameters"])
    return _rsa_decrypt(key, encrypted, pad)


def _oaep_capability(parameters: bytes | None) -> bool:
    """Only correspondents who advertise OAEP with SHA-256 (or without parameters) get it."""
    if parameters is None:
        return True
    try:
        advertised = algos.RSAESOAEPParams.load(parameters)
        return advertised["hash_algorithm"]["algorithm"].native == "sha256"
    except ValueError:
        return False


# --- ECDH key agreement (KeyAgreeRecipientInfo, RFC 5753) --------------------------------------

_CURVES: dict[str, ec.EllipticCurve] = {
    "secp256r1": ec.SECP256R1(),
    "secp384r1": ec.SECP384R1(),
    "secp521r1": ec.SECP521R1(),
}
_WRAP_BYTES = {"aes128_wrap": 16, "aes192_wrap": 24, "aes256_wrap": 32}
_SCHEME_HASH = {
    "dh_single_pass_std_dh_sha1kdf": "sha1",
    "dh_single_pass_std_dh_sha224kdf": "sha224",
    "dh_single_pass_std_dh_sha256kdf": "sha256",
    "dh_single_pass_std_dh_sha384kdf": "sha384",
    "dh_single_pass_std_dh_sha512kdf": "sha512",
}
_SCHEME_OID = {name: oid for oid, name in oids.ECDH_STD_SCHEMES.items()}
WRAP = "aes256_wrap"


def _ec_curve_name(certificate: Certificate) -> str | None:
    try:
        info = certificate.public_key
        if info.algorithm != "ec":
            return None
        kind, name = info.curve
    except (ValueError, TypeError, KeyError):
        return None
    return name if kind == "named" else None


def _is_nist_ec_certificate(certificate: Certificate) -> bool:
    return _ec_curve_name(certificate) in _CURVES


def _is_nist_ec_key(key: PrivateKey) -> bool:
    return isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name in _CURVES


def shared_info(wrap: algos.EncryptionAlgorithm, ukm: bytes | None, kek_bytes: int) -> bytes:
    """ECC-CMS-SharedInfo (RFC 5753 section 7.2), the X9.63 KDF's SharedInfo."""
    value = {"key_info": wrap, "supp_pub_info": struct.pack(">I", kek_bytes * 8)}
    if ukm is not None:
        value["entity_u_info"] = ukm
    return oids.EccCmsSharedInfo(value).dump()


def _kek(
    secret: bytes, hash_name: str, wrap: algos.EncryptionAlgorithm, ukm: bytes | None
) -> bytes:
    wrap_name = wrap["algorithm"].native
    if wrap_name not in _WRAP_BYTES:
        raise UnsupportedAlgorithm(f"Key wrap algorithm {wrap['algorithm'].dotted}.")
    size = _WRAP_BYTES[wrap_name]
    kdf = X963KDF(_HASHES[hash_name](), size, shared_info(wrap, ukm, size))
    return kdf.derive(secret)


def _ecdh_builder(scheme: str) -> Build:
    def build(cek: bytes, certificate: Certificate, rid: RecipientId) -> cms.RecipientInfo:
        peer = public_key(certificate)
        if not isinstance(peer, ec.EllipticCurvePublicKey):
            raise EncryptionError("ECDH key agreement needs an EC certificate.")
        ephemeral = ec.generate_private_key(peer.curve)
        secret = ephemeral.exchange(ec.ECDH(), peer)
        wrap = algos.EncryptionAlgorithm({"algorithm": WRAP})
        kek = _kek(secret, _SCHEME_HASH[scheme], wrap, None)
        point = ephemeral.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        if rid.ski is not None:
            key_rid = cms.KeyAgreementRecipientIdentifier(
                {"r_key_id": {"subject_key_identifier": rid.ski}}
            )
        else:
            key_rid = cms.KeyAgreementRecipientIdentifier(
                {"issuer_and_serial_number": rid.issuer_and_serial()}
            )
        originator = keys.PublicKeyInfo({"algorithm": {"algorithm": "ec"}, "public_key": point})
        return cms.RecipientInfo(
            {
                "kari": {
                    "version": "v3",
                    "originator": cms.OriginatorIdentifierOrKey({"originator_key": originator}),
                    "key_encryption_algorithm": {
                        "algorithm": scheme,
                        "parameters": cms.KeyEncryptionAlgorithm({"algorithm": WRAP}),
                    },
                    "recipient_encrypted_keys": [
                        {"rid": key_rid, "encrypted_key": aes_key_wrap(kek, cek)}
                    ],
                }
            }
        )

    return build


def _ecdh_recover(info: cms.Sequence, encrypted: bytes, key: PrivateKey, _size: int) -> bytes:
    """Recover the CEK of a KeyAgreeRecipientInfo with an ephemeral originator key."""
    originator = info["originator"]
    if originator.name != "originator_key":
        raise UnsupportedAlgorithm("ECDH with a static originator key (only ephemeral-static).")
    point = originator.chosen["public_key"].native
    try:
        peer = ec.EllipticCurvePublicKey.from_encoded_point(key.curve, point)
    except ValueError:
        raise MalformedInput(
            "The originator's ephemeral key is not a point on the curve."
        ) from None
    algorithm = info["key_encryption_algorithm"]
    hash_name = _SCHEME_HASH.get(algorithm["algorithm"].native)
    if hash_name is None:
        raise UnsupportedAlgorithm(f"Key agreement scheme {algorithm['algorithm'].dotted}.")
    wrap_value = algorithm["parameters"]
    if isinstance(wrap_value, core.Void):
        raise MalformedInput("The key agreement algorithm names no key wrap algorithm.")
    # Keep the wrap AlgorithmIdentifier exactly as sent: it is hashed into SharedInfo.
    wrap = algos.EncryptionAlgorithm.load(wrap_value.dump())
    ukm_value = info["ukm"]
    ukm = None if isinstance(ukm_value, core.Void) else ukm_value.native
    secret = key.exchange(ec.ECDH(), peer)
    kek = _kek(secret, hash_name, wrap, ukm)
    try:
        return aes_key_unwrap(kek, encrypted)
    except (InvalidUnwrap, ValueError):
        raise DecryptionFailed(BAD_CONTENT) from None


def _ecdh_capability(_parameters: bytes | None) -> bool:
    return True


register(
    KeyTransport(
        "rsa_pkcs1v15", OID_RSA, (OID_RSA,), _is_rsa_certificate, _is_rsa_key,
        _pkcs1_build, _pkcs1_recover, default=True, preference=10,
    )
)  # fmt: skip
register(
    KeyTransport(
        "rsa_oaep", OID_OAEP, (OID_OAEP,), _is_rsa_certificate, _is_rsa_key,
        _oaep_build, _oaep_recover, preference=20, accepts_capability=_oaep_capability,
    )
)  # fmt: skip
_ALL_ECDH_OIDS = tuple(oids.ECDH_STD_SCHEMES)
for _name, _preference, _default in (
    ("dh_single_pass_std_dh_sha256kdf", 11, True),
    ("dh_single_pass_std_dh_sha384kdf", 21, False),
    ("dh_single_pass_std_dh_sha512kdf", 22, False),
):
    register(
        KeyTransport(
            "ecdh_" + _SCHEME_HASH[_name] + "kdf",
            _SCHEME_OID[_name],
            # The first registered ECDH transport reads every scheme; the others only write.
            _ALL_ECDH_OIDS if _default else (),
            _is_nist_ec_certificate,
            _is_nist_ec_key,
            _ecdh_builder(_name),
            _ecdh_recover,
            default=_default,
            preference=_preference,
            accepts_capability=_ecdh_capability,
            key_usage="key_agreement",
        )
    )
