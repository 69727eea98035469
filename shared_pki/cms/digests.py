"""Digest algorithms by OID, in a registry other modules extend (the SM module registers SM3)
without editing this one: CMS names digests by OID, and so does every lookup here."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes

from shared_pki.errors import UnsupportedAlgorithm


@dataclass(frozen=True)
class DigestAlgorithm:
    """One digest: CMS OID, asn1crypto-style name, RFC 8551 micalg, and how to compute it.

    `hash_algorithm` builds the `cryptography` object that signature schemes pass to RSA/ECDSA;
    a digest `cryptography` cannot do may leave it None and provide `compute` only.
    """

    name: str
    oid: str
    micalg: str
    size: int
    hash_algorithm: Callable[[], hashes.HashAlgorithm] | None = None
    compute_fn: Callable[[bytes], bytes] | None = None

    def compute(self, data: bytes) -> bytes:
        """The digest of data."""
        if self.compute_fn is not None:
            return self.compute_fn(data)
        context = hashes.Hash(self.crypto_hash())
        context.update(data)
        return context.finalize()

    def crypto_hash(self) -> hashes.HashAlgorithm:
        """The `cryptography` hash object, for schemes that hash inside sign/verify."""
        if self.hash_algorithm is None:
            raise UnsupportedAlgorithm(f"Digest {self.name} cannot be used with this key type.")
        return self.hash_algorithm()


_BY_OID: dict[str, DigestAlgorithm] = {}
_BY_NAME: dict[str, DigestAlgorithm] = {}


def _key(name: str) -> str:
    return name.lower().replace("-", "").replace("_", "")


def register_digest(algorithm: DigestAlgorithm) -> None:
    """Make a digest known by OID, by name and by micalg (a later registration wins)."""
    _BY_OID[algorithm.oid] = algorithm
    _BY_NAME[_key(algorithm.name)] = algorithm
    _BY_NAME[_key(algorithm.micalg)] = algorithm


def by_oid(oid: str) -> DigestAlgorithm:
    """The digest a CMS structure names; UnsupportedAlgorithm if none is registered."""
    try:
        return _BY_OID[oid]
    except KeyError:
        raise UnsupportedAlgorithm(f"Unsupported digest algorithm {oid}.") from None


def by_name(name: str) -> DigestAlgorithm:
    """The digest a caller names: 'sha256', 'SHA-256', 'sha-256' (micalg) or a dotted OID."""
    found = _BY_OID.get(name) or _BY_NAME.get(_key(name))
    if found is None:
        raise UnsupportedAlgorithm(f"Unsupported digest algorithm {name!r}.")
    return found


def lookup(name_or_oid: str | DigestAlgorithm) -> DigestAlgorithm:
    """Either form, for APIs that accept a DigestAlgorithm or its name."""
    if isinstance(name_or_oid, DigestAlgorithm):
        return name_or_oid
    return by_name(name_or_oid)


SHA256 = DigestAlgorithm("sha256", "2.16.840.1.101.3.4.2.1", "sha-256", 32, hashes.SHA256)
SHA384 = DigestAlgorithm("sha384", "2.16.840.1.101.3.4.2.2", "sha-384", 48, hashes.SHA384)
SHA512 = DigestAlgorithm("sha512", "2.16.840.1.101.3.4.2.3", "sha-512", 64, hashes.SHA512)

for _algorithm in (SHA256, SHA384, SHA512):
    register_digest(_algorithm)
