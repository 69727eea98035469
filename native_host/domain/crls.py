"""Certificate revocation lists for the read path and the certificate book: fetched from the CRL
distribution points of certificates on a trusted path, kept in the profile's cache until their
nextUpdate, handed to shared_pki.x509.revocation (through cms.verify and x509.validate) with
the trusted time.

Only certificates of a path that already reaches a configured trust anchor are looked at: their
distribution point URLs were written by a CA we trust. A message's own (unchecked) certificates
never make the host fetch anything, so a sender cannot use CRL URLs to learn when and where a
message is opened.

A fetched CRL is kept only when it is signed by the issuer the path names
(x509.revocation.signed_by) and has a nextUpdate in the future (x509.revocation.keep_until); it
is then served from the cache until that time, without asking again. A URL that cannot be
fetched (down, an HTTP error, bytes that are no CRL of that issuer) is remembered as such for
FAILURE_TTL seconds, so that a dead server does not slow every message down; the reason is
reported, and revocation is "not checked" for that certificate, never "good".

`fetch` is the host's HTTP callable (certs.http_fetch's shape: url, timeout= -> an answer with
`status` and `body`); the cache is one file per URL under cache/crls/, written atomically, 0600.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import hashlib
import itertools
import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from native_host.errors import HostError, StorageFailed
from native_host.infrastructure.profile import file_lock, private_folder, write_private
from shared_pki.keys import Certificate
from shared_pki.x509 import revocation

FOLDER = "crls"
CACHE_FORMAT = 1
FAILURE_TTL = 300.0  # a URL that failed is not asked again for five minutes
TIMEOUT = 5.0  # a CRL server that does not answer must not hold a message up for long
MAX_CRL = 1024 * 1024

Fetch = Callable[..., Any]


@dataclass(frozen=True)
class CrlSet:
    """What is known for one path: the DER CRLs to check it with, and why a distribution
    point gave none (in words, one per URL that failed)."""

    crls: tuple[bytes, ...]
    unavailable: tuple[str, ...] = ()


class CrlStore:
    """CRLs by distribution point URL, fetched on demand and cached (module docstring)."""

    def __init__(
        self,
        cache_folder: Path,
        fetch: Fetch,
        *,
        now: Callable[[], float] = time.time,
        failure_ttl: float = FAILURE_TTL,
        timeout: float = TIMEOUT,
    ) -> None:
        self.folder = Path(cache_folder) / FOLDER
        self.fetch = fetch
        self.now = now
        self.failure_ttl = failure_ttl
        self.timeout = timeout

    def for_paths(self, paths: Iterable[Sequence[Certificate]]) -> CrlSet:
        """The CRLs of every certificate below the anchor of each path (end entity first,
        anchor last, as x509.validate gives them)."""
        crls: dict[bytes, None] = {}
        unavailable: dict[str, None] = {}
        for path in paths:
            for child, issuer in itertools.pairwise(path):
                for url in revocation.distribution_points(child):
                    der, problem = self._crl(url, issuer)
                    if der is not None:
                        crls.setdefault(der)
                    if problem is not None:
                        unavailable.setdefault(problem)
        return CrlSet(tuple(crls), tuple(unavailable))

    # ---- one URL ----------------------------------------------------------------------------

    def _file(self, url: str) -> Path:
        return self.folder / (hashlib.sha256(url.encode()).hexdigest()[:32] + ".json")

    def _crl(self, url: str, issuer: Certificate) -> tuple[bytes | None, str | None]:
        """(the CRL, None), or (None, why not) for one distribution point of issuer; without
        the cache when the profile cannot be written (a read-only folder, a full disk)."""
        with contextlib.ExitStack() as stack:
            try:
                private_folder(self.folder)
                stack.enter_context(file_lock(self.folder / ".lock"))
            except StorageFailed:
                der, problem = self._download(url, issuer)
                return (der, None) if der is not None else (None, problem)
            return self._cached_or_fetched(url, issuer)

    def _cached_or_fetched(self, url: str, issuer: Certificate) -> tuple[bytes | None, str | None]:
        cached = self._load(url)
        now = self.now()
        if cached is not None:
            if cached.get("der") and cached.get("keepUntil", 0) > now:
                return base64.b64decode(cached["der"]), None
            if cached.get("failed") and cached.get("retryAfter", 0) > now:
                return None, str(cached["failed"])
        der, problem = self._download(url, issuer)
        if der is None:
            self._save(url, {"failed": problem, "retryAfter": now + self.failure_ttl})
            return None, problem
        keep = revocation.keep_until(der, now=_utc(now))
        if keep is not None:
            self._save(url, {"der": base64.b64encode(der).decode(), "keepUntil": keep.timestamp()})
        return der, None

    def _download(self, url: str, issuer: Certificate) -> tuple[bytes | None, str]:
        if not url.lower().startswith(("http://", "https://")):
            return None, f"The CRL at {url} cannot be fetched: only http and https are supported."
        try:
            answer = self.fetch(url, timeout=self.timeout)
        except HostError as error:
            return None, f"The CRL at {url} could not be fetched: {error.message}"
        if answer.status != 200:
            return None, f"The CRL at {url} could not be fetched: HTTP {answer.status}."
        der = bytes(answer.body)
        if len(der) > MAX_CRL:
            return None, f"The CRL at {url} is larger than {MAX_CRL} octets."
        try:
            parsed = revocation.parse_crl(der)
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError):
            return None, f"What {url} served is not a CRL."
        if not revocation.signed_by(parsed, issuer):
            return None, f"The CRL at {url} is not signed by the certificate's issuer."
        return der, ""

    def _load(self, url: str) -> dict[str, Any] | None:
        try:
            document = json.loads(self._file(url).read_bytes())
        except (OSError, ValueError):
            return None  # a cache, not a record: a missing or broken entry is fetched again
        if not isinstance(document, dict) or document.get("format") != CACHE_FORMAT:
            return None
        return document if document.get("url") == url else None

    def _save(self, url: str, entry: dict[str, Any]) -> None:
        document = {"format": CACHE_FORMAT, "url": url, **entry}
        with contextlib.suppress(OSError, StorageFailed):  # not cached: asked again next time
            write_private(self._file(url), json.dumps(document).encode() + b"\n")


def _utc(epoch: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(epoch, datetime.UTC)


__all__ = ["CrlSet", "CrlStore", "PathCrls"]


class PathCrls:
    """The CRLs of each path x509.validate builds (its CrlSource), fetched through the store:
    one validation instead of one to find the paths and another to check them. `unavailable`
    gathers why a distribution point gave none, in order, once each."""

    def __init__(self, store: CrlStore) -> None:
        self.store = store
        self.unavailable: dict[str, None] = {}

    def __call__(self, path: tuple[Certificate, ...]) -> tuple[bytes, ...]:
        found = self.store.for_paths([path])
        self.unavailable.update(dict.fromkeys(found.unavailable))
        return found.crls
