"""The host's keystore: every private key a profile ever held, sealed at rest, with its
certificates and status, per account address and suite ("intl": RSA/ECDSA, "sm": SM2). One
cohesive thing: the index, the sealed keys and their statuses share one lock and one MAC.

Layout, in the profile's `keys/` folder (0700; every file 0600):

    index.json      {"format": 1, "keys": {key_id: record, ...}, "mac": hex}
    <key_id>.key    the private key sealed with shared_pki.ca.keystore (AES-256-GCM over
                    PKCS#8, key from scrypt) under the profile's master secret
    .lock           the lock file (flock) serialising writers across processes

key_id is the hex of the first 16 octets of SHA-256 over the key's SubjectPublicKeyInfo, so
adding the same key again (a resumed enrollment) finds it instead of making a second entry.
A record holds the address, suite, key type, creation time, status and its history, and the
certificates attached to the key (DER, base64, each with its chain), oldest first.

The index is authenticated with HMAC-SHA-256 under a key derived from the master secret, so a
changed status or a certificate slipped in is noticed (KeystoreCorrupt), and every sealed key
is checked against the public key hash its record holds when it is opened.

The seal uses scrypt at its lowest accepted cost (2^14, about 30 ms an open): the master secret
is 32 random octets, so stretching buys nothing; the format is the CA's so there is one sealed
key format in the product. Opened keys are cached in the Keystore object.

Writes: the sealed key first, then the index, each atomically (temporary file, fsync, rename,
folder fsync) and under the lock, re-reading the index inside it. A crash leaves the previous
state (at worst a sealed key the index does not name yet, which the next add_key of that key
takes over). Nothing is ever deleted: keys move to superseded, expired or revoked.

Statuses: pending (added, not yet usable: no certificate or not yet backed up), current (at
most one per address and suite; marking a key current supersedes the one before), superseded,
expired, revoked (final).
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import hashlib
import hmac
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from cryptography.hazmat.primitives.asymmetric import rsa

from native_host.errors import HostError
from native_host.infrastructure.profile import (
    Profile,
    file_lock,
    master_secret,
    private_folder,
    write_private,
)
from shared_pki import backup, pkcs12, sm2
from shared_pki.ca.keystore import MIN_LOG2_N, open_key, seal_key
from shared_pki.errors import KeyLoadError, PkiError
from shared_pki.keys import Certificate, PrivateKey, parse_certificate

INDEX = "index.json"
INDEX_FORMAT = 1
SUITES = ("intl", "sm")
STATUSES = ("pending", "current", "superseded", "expired", "revoked")
ORIGINS = ("enrolled", "imported")
_ALLOWED = {
    "pending": {"current", "superseded", "revoked"},
    "current": {"superseded", "expired", "revoked"},
    "superseded": {"current", "expired", "revoked"},
    "expired": {"revoked"},
    "revoked": set(),
}
LEGACY_REFUSAL = (
    "left out of the legacy (3DES) PKCS#12: older clients and gpgsm take only RSA keys there "
    "(an EC key in a .p12 crashes gpgsm 2.2); export it in the modern flavour"
)


class KeystoreError(HostError):
    """A keystore operation that cannot be done; `code` is stable, the message is for people."""

    code = "keystore_error"


class UnknownKey(KeystoreError):
    code = "unknown_key"
    protocol_code = "not_configured"


class KeystoreCorrupt(KeystoreError):
    """The index or a sealed key was changed outside autosmime, or sealed under another
    master secret."""

    code = "keystore_corrupt"


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def normalize_address(address: str) -> str:
    address = address.strip() if isinstance(address, str) else ""
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain:
        raise KeystoreError(f"{address!r} is not a mail address.")
    return address.casefold()


def key_id_of(key: PrivateKey) -> str:
    return hashlib.sha256(pkcs12.public_key_info(key)).digest()[:16].hex()


def key_type_of(key: PrivateKey) -> str:
    if isinstance(key, sm2.SM2PrivateKey):
        return "sm2"
    if isinstance(key, rsa.RSAPrivateKey):
        return f"rsa{key.key_size}"
    curve = getattr(getattr(key, "curve", None), "name", None)
    if curve:
        return f"ec-{curve}"
    raise KeystoreError(f"Keys of type {type(key).__name__} are not kept.")


@dataclass(frozen=True)
class CertificateRecord:
    der: bytes
    chain: tuple[bytes, ...]
    added: str

    @property
    def certificate(self) -> Certificate:
        return parse_certificate(self.der)

    @property
    def chain_certificates(self) -> tuple[Certificate, ...]:
        return tuple(parse_certificate(der) for der in self.chain)


@dataclass(frozen=True)
class KeyRecord:
    """What the index knows of one key (no secret in here)."""

    key_id: str
    address: str
    suite: str
    key_type: str
    created: str
    status: str
    history: tuple[tuple[str, str], ...]  # (status, when)
    certificates: tuple[CertificateRecord, ...] = ()
    #: "enrolled" (made here and certified by ACME, or restored) or "imported" (a PKCS#12 the
    #: person brought: another CA's certificate, a Thunderbird or Outlook identity).
    origin: str = "enrolled"

    @property
    def latest(self) -> CertificateRecord | None:
        return self.certificates[-1] if self.certificates else None


@dataclass(frozen=True)
class HeldKey:
    """A key opened from the keystore, with its record."""

    record: KeyRecord
    key: PrivateKey

    @property
    def key_id(self) -> str:
        return self.record.key_id

    @property
    def status(self) -> str:
        return self.record.status

    @property
    def certificate(self) -> Certificate | None:
        latest = self.record.latest
        return latest.certificate if latest else None

    @property
    def chain(self) -> tuple[Certificate, ...]:
        latest = self.record.latest
        return latest.chain_certificates if latest else ()


@dataclass(frozen=True)
class Pkcs12Export:
    data: bytes
    key_ids: tuple[str, ...]
    left_out: dict[str, str] = field(default_factory=dict)  # key_id -> why


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _record(key_id: str, raw: dict[str, Any]) -> KeyRecord:
    return KeyRecord(
        key_id=key_id,
        address=raw["address"],
        suite=raw["suite"],
        key_type=raw["key_type"],
        created=raw["created"],
        status=raw["status"],
        history=tuple((item["status"], item["at"]) for item in raw["history"]),
        certificates=tuple(
            CertificateRecord(
                base64.b64decode(item["der"]),
                tuple(base64.b64decode(der) for der in item["chain"]),
                item["added"],
            )
            for item in raw["certificates"]
        ),
        origin=raw.get("origin", "enrolled"),
    )


class Keystore:
    """The keystore in `folder`, keys sealed under `secret` (the profile's master secret)."""

    def __init__(self, folder: Path, secret: bytes, *, log2_n: int = MIN_LOG2_N) -> None:
        if not isinstance(secret, bytes) or len(secret) < 16:
            raise KeystoreError("The keystore secret must be at least 16 octets.")
        self.folder = private_folder(Path(folder))
        self._secret = secret
        self._mac_key = hmac.new(secret, b"autosmime keystore index v1", hashlib.sha256).digest()
        self._log2_n = log2_n
        self._opened: dict[str, PrivateKey] = {}

    @classmethod
    def for_profile(cls, profile: Profile, *, backend: Any = None) -> Keystore:
        """The profile's keystore, unlocked with its master secret from the keyring."""
        return cls(profile.keys_dir, master_secret(profile, backend=backend))

    # ---- the index ----------------------------------------------------------------------------

    def _lock(self) -> contextlib.AbstractContextManager[None]:
        return file_lock(self.folder / ".lock")

    def _mac(self, keys: dict[str, Any]) -> str:
        canonical = json.dumps(keys, sort_keys=True, separators=(",", ":")).encode()
        return hmac.new(self._mac_key, canonical, hashlib.sha256).hexdigest()

    def _load(self) -> dict[str, Any]:
        path = self.folder / INDEX
        if not path.exists():
            return {}
        try:
            document = json.loads(path.read_bytes())
            keys = document["keys"]
            if document.get("format") != INDEX_FORMAT or not isinstance(keys, dict):
                raise ValueError(f"format {document.get('format')!r}")
            mac = document["mac"]
        except (ValueError, KeyError, TypeError) as error:
            raise KeystoreCorrupt(f"{path} does not load: {error}") from None
        if not isinstance(mac, str) or not hmac.compare_digest(mac, self._mac(keys)):
            raise KeystoreCorrupt(
                f"{path} was changed outside autosmime, or belongs to another master secret."
            )
        return keys

    def _save(self, keys: dict[str, Any]) -> None:
        document = {"format": INDEX_FORMAT, "keys": keys, "mac": self._mac(keys)}
        write_private(self.folder / INDEX, json.dumps(document, indent=1).encode() + b"\n")

    # ---- reading ------------------------------------------------------------------------------

    def records(self, address: str | None = None, suite: str | None = None) -> list[KeyRecord]:
        """Every key's record, oldest first (optionally of one address and/or suite)."""
        wanted = normalize_address(address) if address is not None else None
        found = []
        for key_id, raw in self._load().items():
            if wanted is not None and raw["address"] != wanted:
                continue
            if suite is not None and raw["suite"] != suite:
                continue
            found.append(_record(key_id, raw))
        return found

    def record(self, key_id: str) -> KeyRecord:
        raw = self._load().get(key_id)
        if raw is None:
            raise UnknownKey(f"No key {key_id} in the keystore.")
        return _record(key_id, raw)

    def private_key(self, key_id: str) -> PrivateKey:
        if key_id in self._opened:
            return self._opened[key_id]
        record = self.record(key_id)
        path = self.folder / f"{key_id}.key"
        try:
            key = open_key(path.read_bytes(), self._secret)
        except FileNotFoundError:
            raise KeystoreCorrupt(f"The sealed key {path.name} is missing.") from None
        except KeyLoadError as error:
            raise KeystoreCorrupt(f"The sealed key {path.name} does not open: {error}") from None
        if key_id_of(key) != record.key_id:
            raise KeystoreCorrupt(f"The sealed key {path.name} is not the key its name says.")
        self._opened[key_id] = key
        return key

    def held(self, key_id: str) -> HeldKey:
        return HeldKey(self.record(key_id), self.private_key(key_id))

    def current(self, address: str, suite: str) -> HeldKey | None:
        """The key in use for address and suite (with its latest certificate), or None."""
        for record in self.records(address, suite):
            if record.status == "current":
                return HeldKey(record, self.private_key(record.key_id))
        return None

    def all_keys(self, address: str | None = None) -> list[HeldKey]:
        """Every key ever held (current and old: old mail needs old keys), oldest first."""
        return [HeldKey(r, self.private_key(r.key_id)) for r in self.records(address)]

    def decryption_pairs(self, address: str | None = None) -> list[tuple[Certificate, PrivateKey]]:
        """(certificate, key) for every certificate of every key, newest keys first."""
        pairs = []
        for held in reversed(self.all_keys(address)):
            for cert in reversed(held.record.certificates):
                pairs.append((cert.certificate, held.key))
        return pairs

    # ---- writing ------------------------------------------------------------------------------

    def add_key(
        self, address: str, suite: str, private_key: PrivateKey, *, origin: str = "enrolled"
    ) -> str:
        """Seal and record a new key (status pending); returns its key_id. Adding a key that
        is already there returns its id and changes nothing. origin: "enrolled" or
        "imported" (KeyRecord.origin)."""
        if origin not in ORIGINS:
            raise KeystoreError(f"Unknown origin {origin!r} (one of {', '.join(ORIGINS)}).")
        address = normalize_address(address)
        if suite not in SUITES:
            raise KeystoreError(f"Unknown suite {suite!r} (one of {', '.join(SUITES)}).")
        key_type = key_type_of(private_key)
        if (suite == "sm") != (key_type == "sm2"):
            raise KeystoreError(f"A {key_type} key does not belong to the {suite} suite.")
        key_id = key_id_of(private_key)
        with self._lock():
            keys = self._load()
            if key_id in keys:
                known = keys[key_id]
                if (known["address"], known["suite"]) != (address, suite):
                    raise KeystoreError(
                        f"This key is already kept for {known['address']} ({known['suite']})."
                    )
                return key_id
            path = self.folder / f"{key_id}.key"
            if path.exists():  # sealed by an add_key that crashed before its index write
                try:
                    same = key_id_of(open_key(path.read_bytes(), self._secret)) == key_id
                except (KeyLoadError, PkiError):
                    same = False
                if not same:
                    raise KeystoreCorrupt(f"{path.name} exists and is not this key.")
            else:
                write_private(path, seal_key(private_key, self._secret, log2_n=self._log2_n))
            now = _now()
            keys[key_id] = {
                "address": address,
                "suite": suite,
                "key_type": key_type,
                "created": now,
                "status": "pending",
                "history": [{"status": "pending", "at": now}],
                "certificates": [],
            }
            if origin != "enrolled":
                keys[key_id]["origin"] = origin
            self._save(keys)
        self._opened[key_id] = private_key
        return key_id

    def attach_certificate(
        self, key_id: str, cert_der: bytes, chain: Sequence[bytes | Certificate] = ()
    ) -> None:
        """Record a certificate (and its chain) for the key; the same certificate twice is kept
        once. The certificate must carry the key's public key."""
        try:
            cert = parse_certificate(bytes(cert_der))
            chain_der = [c.dump() if isinstance(c, Certificate) else bytes(c) for c in chain]
            for der in chain_der:
                parse_certificate(der)
        except KeyLoadError as error:
            raise KeystoreError(f"Not a certificate: {error.message}") from None
        key = self.private_key(key_id)
        if not pkcs12.certificate_matches(key, cert):
            raise KeystoreError("The certificate is not for this key.")
        with self._lock():
            keys = self._load()
            raw = keys[key_id]
            if any(base64.b64decode(item["der"]) == cert.dump() for item in raw["certificates"]):
                return
            raw["certificates"].append(
                {"der": _b64(cert.dump()), "chain": [_b64(d) for d in chain_der], "added": _now()}
            )
            self._save(keys)

    def mark(self, key_id: str, status: str) -> None:
        """Change a key's status. Making one current supersedes the current key of the same
        address and suite; a current key needs a certificate; revoked is final."""
        if status not in STATUSES:
            raise KeystoreError(f"Unknown status {status!r} (one of {', '.join(STATUSES)}).")
        with self._lock():
            keys = self._load()
            if key_id not in keys:
                raise UnknownKey(f"No key {key_id} in the keystore.")
            raw = keys[key_id]
            if raw["status"] == status:
                return
            if status not in _ALLOWED[raw["status"]]:
                raise KeystoreError(f"A {raw['status']} key cannot become {status}.")
            now = _now()
            if status == "current":
                if not raw["certificates"]:
                    raise KeystoreError("A key without a certificate cannot be current.")
                for other_id, other in keys.items():
                    same = (other["address"], other["suite"]) == (raw["address"], raw["suite"])
                    if other_id != key_id and same and other["status"] == "current":
                        other["status"] = "superseded"
                        other["history"].append({"status": "superseded", "at": now})
            raw["status"] = status
            raw["history"].append({"status": status, "at": now})
            self._save(keys)

    # ---- export -------------------------------------------------------------------------------

    def _select(self, selection: str | Iterable[str]) -> list[HeldKey]:
        if isinstance(selection, str):
            chosen = self.all_keys(selection)
            if not chosen:
                raise UnknownKey(f"No keys for {selection}.")
            return chosen
        return [self.held(key_id) for key_id in selection]

    def export_pkcs12(
        self,
        selection: str | Iterable[str],
        password: str,
        flavour: Literal["modern", "legacy"] = "modern",
        *,
        iterations: int | None = None,
    ) -> Pkcs12Export:
        """A PKCS#12 of the keys named (key ids) or of every key of an address. "modern" holds
        every key kind; "legacy" (3DES, for older clients and gpgsm) leaves out all but RSA
        keys with a certificate and says so in `left_out`; nothing left is an error. In a
        legacy file current keys come first, then the newest: gpgsm 2.2 imports only the first
        key of a PKCS#12 file (it reads "secret keys read: 1" and ignores the rest)."""
        chosen = self._select(selection)
        if flavour == "legacy":  # gpgsm 2.2 imports only the first key of a file: current first
            ranked = sorted(
                enumerate(chosen), key=lambda item: (item[1].status != "current", -item[0])
            )
            chosen = [held for _, held in ranked]
        left_out: dict[str, str] = {}
        entries, ids = [], []
        for held in chosen:
            if flavour == "legacy" and not isinstance(held.key, rsa.RSAPrivateKey):
                left_out[held.key_id] = f"{held.record.key_type} key {LEGACY_REFUSAL}"
                continue
            if flavour == "legacy" and held.certificate is None:
                left_out[held.key_id] = "no certificate yet (older clients need one)"
                continue
            certs = [c.certificate for c in held.record.certificates]
            entries.append(
                pkcs12.Pkcs12Entry(
                    key=held.key,
                    certificate=certs[-1] if certs else None,
                    chain=held.chain,
                    friendly_name=f"{held.record.address} ({held.record.suite}, "
                    f"{held.record.status})",
                    other_certificates=tuple(reversed(certs[:-1])),
                )
            )
            ids.append(held.key_id)
        if not entries:
            reasons = "; ".join(f"{key_id}: {why}" for key_id, why in left_out.items())
            raise KeystoreError(f"Nothing to export ({reasons or 'no keys'}).")
        try:
            data = pkcs12.build_pfx(entries, password, flavour=flavour, iterations=iterations)
        except PkiError as error:
            raise KeystoreError(f"The PKCS#12 file could not be made: {error.message}") from None
        return Pkcs12Export(data, tuple(ids), left_out)

    def backup_keys(self, address: str | None = None) -> list[backup.BackupKey]:
        """Every key (of address) as shared_pki.backup wants them."""
        found = []
        for held in self.all_keys(address):
            certs = [c.certificate for c in held.record.certificates]
            found.append(
                backup.BackupKey(
                    key=held.key,
                    certificate=certs[-1] if certs else None,
                    chain=held.chain,
                    status=held.status,
                    suite=held.record.suite,
                    address=held.record.address,
                    key_id=held.key_id,
                    created=held.record.created,
                    other_certificates=tuple(reversed(certs[:-1])),
                )
            )
        return found
