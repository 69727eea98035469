"""Keys and certificates from bytes: PEM, DER and PKCS#12, with typed errors.

Certificates are asn1crypto `x509.Certificate` objects everywhere in shared_pki: asn1crypto
parses any certificate (SM2 included), while `cryptography` is used for the key operations of
the algorithms it supports. Private keys are `cryptography` key objects (the SM2 module adds its
own key type).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from asn1crypto import pem
from asn1crypto import x509 as asn1_x509
from cryptography.exceptions import UnsupportedAlgorithm as UnsupportedAlgorithmError
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from shared_pki.errors import KeyLoadError

Certificate = asn1_x509.Certificate
PrivateKey = Any  # cryptography's RSA/EC private keys; the SM2 module adds its own type

_PEM_CERT = re.compile(rb"-----BEGIN (?:X509 |TRUSTED )?CERTIFICATE-----")


@dataclass(frozen=True)
class Credential:
    """A private key, its certificate, and the chain that leads to a trust anchor."""

    key: PrivateKey
    certificate: Certificate
    chain: tuple[Certificate, ...] = field(default_factory=tuple)


def parse_certificate(der: bytes) -> Certificate:
    """One DER certificate, fully parsed now so that bad bytes fail here and not later."""
    try:
        cert = Certificate.load(der, strict=True)
        cert.native  # noqa: B018  force a full parse
    except (ValueError, TypeError, KeyError) as error:
        raise KeyLoadError(f"Not a valid X.509 certificate: {error}") from None
    return cert


def load_certificates(data: bytes) -> list[Certificate]:
    """Every certificate in data: a PEM bundle or a single DER certificate."""
    if _PEM_CERT.search(data):
        certs = []
        try:
            for kind, _headers, der in pem.unarmor(data, multiple=True):
                if kind in ("CERTIFICATE", "X509 CERTIFICATE", "TRUSTED CERTIFICATE"):
                    certs.append(parse_certificate(der))
        except ValueError as error:
            raise KeyLoadError(f"Broken PEM data: {error}") from None
        return certs
    return [parse_certificate(data)]


def load_private_key(data: bytes, password: bytes | None = None) -> PrivateKey:
    """A private key in PEM or DER (PKCS#8 or the traditional formats). SM2 keys, which
    `cryptography` refuses (unsupported curve), load as shared_pki.sm2.SM2PrivateKey
    (unencrypted only)."""
    try:
        return _load_crypto_private_key(data, password)
    except KeyLoadError as refused:
        sm2_key = _load_sm2_private_key(data, password)
        if sm2_key is None:
            raise refused from None
        return sm2_key


def _load_sm2_private_key(data: bytes, password: bytes | None) -> PrivateKey | None:
    """The SM2 key in data, or None if data is not one."""
    from shared_pki import sm2
    from shared_pki.errors import PkiError

    if password is not None or b"ENCRYPTED" in data[:64]:
        return None
    try:
        return sm2.load_private_key(data)
    except PkiError:
        return None


def _load_crypto_private_key(data: bytes, password: bytes | None) -> PrivateKey:
    loaders = (
        (serialization.load_pem_private_key, b"-----BEGIN" in data),
        (serialization.load_der_private_key, b"-----BEGIN" not in data),
    )
    for loader, applies in loaders:
        if applies:
            try:
                # OpenSSL's RSA check (primality tests of p and q, 40 to 60 ms) is replaced by
                # the consistency check below, which is what a damaged or altered key file
                # would fail (rsa_consistent).
                key = loader(data, password=password, unsafe_skip_rsa_key_validation=True)
            except TypeError as error:
                raise KeyLoadError(f"The key needs a password, or not this one: {error}") from None
            except (ValueError, UnsupportedAlgorithmError) as error:
                raise KeyLoadError(f"Not a private key we can read: {error}") from None
            if isinstance(key, rsa.RSAPrivateKey) and not rsa_consistent(key):
                raise KeyLoadError("Not a valid RSA private key: its numbers do not agree.")
            return key
    raise KeyLoadError("Not a private key we can read.")


def rsa_consistent(key: rsa.RSAPrivateKey) -> bool:
    """Whether an RSA key's numbers agree: n = pq, the CRT exponents and coefficient belong to
    p and q, and e d = 1 modulo lcm(p-1, q-1). A key whose CRT values were damaged or altered
    would compute wrong signatures that reveal p (the Bellcore fault attack), which is why keys
    are checked at all; this is that check without re-testing p and q for primality, which
    only the key's own maker could have got wrong. Microseconds, against 40 to 60 ms."""
    numbers = key.private_numbers()
    n, e = numbers.public_numbers.n, numbers.public_numbers.e
    p, q, d = numbers.p, numbers.q, numbers.d
    if p < 3 or q < 3 or p == q or p * q != n:
        return False
    if numbers.dmp1 != d % (p - 1) or numbers.dmq1 != d % (q - 1):
        return False
    if numbers.iqmp * q % p != 1:
        return False
    return e * d % math.lcm(p - 1, q - 1) == 1


def load_pkcs8(der: bytes, *, validated: bool = False) -> PrivateKey:
    """A PKCS#8 private key of any kind shared_pki uses: SM2 (which cryptography cannot load,
    so it is recognised by its curve) or one that cryptography loads. Bytes that are not
    PKCS#8 are MalformedInput; a PKCS#8 key that does not load is a KeyLoadError.

    validated: the bytes are a key that was checked when it was written and authenticated
    since (a sealed key, ca.keystore), so cryptography's RSA key check, 40 to 60 ms a key and
    most of a command-line decrypt, is not done again. Never for keys from outside."""
    from asn1crypto import keys as asn1_keys

    from shared_pki import sm2, sm_oids
    from shared_pki.errors import MalformedInput, PkiError

    try:
        info = asn1_keys.PrivateKeyInfo.load(der, strict=True)
        algorithm = info["private_key_algorithm"]
        is_sm2 = (
            algorithm["algorithm"].dotted == "1.2.840.10045.2.1"
            and algorithm["parameters"].name == "named"
            and algorithm["parameters"].chosen.dotted == sm_oids.SM2_CURVE
        )
    except (ValueError, TypeError, KeyError) as error:
        raise MalformedInput(f"Not a PKCS#8 private key: {error}") from None
    try:
        if is_sm2:
            return sm2.SM2PrivateKey.load(der)
        return serialization.load_der_private_key(
            der, password=None, unsafe_skip_rsa_key_validation=validated
        )
    except (PkiError, ValueError, TypeError, UnsupportedAlgorithmError) as error:
        raise KeyLoadError(f"The private key does not load: {error}") from None
