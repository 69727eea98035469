"""Finding correspondents' certificates: `certs.lookup` (issue 6, point 5). One cohesive
thing: the certificate book, its cache and the directory fetch it validates.

A CertificateBook answers, per address, with the certificates that may be encrypted to now and
where they came from:

- "harvested": the certificate of a verified signer (message.open hands the verification result
  to `harvest`); kept until it expires;
- "directory": GET {certificate directory}/{address} (our service's {base}/certs, or any
  directory answering the same JSON or a PEM chain); a certificate whose issuer is not at hand
  gets it from its AIA caIssuers URL (fetched once a day, a path candidate, never an anchor);
  answers are cached for the max-age the directory gives (ours: 60 s, never past the newest
  certificate's expiry; at most an hour, and without one: found an hour, not found five
  minutes) and served as "cache" while fresh. Then the answer is revalidated with its ETag
  (If-None-Match; 304 keeps it, without a body), so a correspondent's renewed or revoked
  certificate is noticed within that max-age, not an hour later. A directory that cannot be
  reached falls back to what is cached, however old, and says so.

Every certificate, whatever its source and every time it is handed out, is validated with
shared_pki.x509.validate: a path to one of the CONFIGURED trust anchors (the roots PEM given at
account setup; the directory is never trusted on first use, its /ca/intermediates.pem only
supplies untrusted path candidates), usage "encrypt", the address, the validity period now.
What fails is left out and its reason reported in `problems`. With a CrlStore (the host always
gives one), a certificate whose path validates is also checked against the CRLs of its
distribution points (domain.crls): a revoked one is left out (problem `revoked`), and one whose
CRL cannot be had is usable but says "revocation not checked" and why.

Pure logic and I/O are apart: `fetch` is the only network access (urllib by default, any
callable of the same shape in tests), the cache is one JSON file (PEM inside) in the profile's
cache folder, written atomically, 0600, under a lock.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import hashlib
import json
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from asn1crypto import pem as asn1_pem

from native_host.domain.crls import CrlStore, PathCrls
from native_host.errors import HostError
from native_host.infrastructure.profile import file_lock, private_folder, write_private
from shared_pki.cms import suite as _suite
from shared_pki.cms.sm import BOTH_IDS
from shared_pki.cms.verify import VerificationResult
from shared_pki.errors import PkiError
from shared_pki.keys import Certificate, load_certificates, parse_certificate
from shared_pki.x509 import validate as path_validation
from shared_pki.x509.validate import Problem

CACHE_FILE = "certificates.json"
CACHE_FORMAT = 1
DIRECTORY_TTL = 3600.0  # a directory answer with certificates
NOT_FOUND_TTL = 300.0  # "no certificate": short, a correspondent may enroll any minute
INTERMEDIATES_TTL = 86400.0
DEFAULT_TIMEOUT = 10.0
MAX_RESPONSE = 1024 * 1024

__all__ = [
    "CertificateBook",
    "CertsError",
    "FetchError",
    "HttpResponse",
    "LookupResult",
    "UsableCertificate",
    "http_fetch",
    "normalize",
]


class CertsError(HostError):
    """A certificate lookup that cannot be done; `code` is stable, the message is for people."""

    code = "certs_error"


class FetchError(CertsError):
    """The server could not be reached or did not answer (DNS, connection, TLS, timeout)."""

    code = "fetch_failed"


# ---- HTTP ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HttpResponse:
    status: int
    content_type: str
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)  # names lower-cased

    def max_age(self) -> float | None:
        """Cache-Control max-age in seconds, or None when the answer gives none."""
        for directive in self.headers.get("cache-control", "").split(","):
            name, _, value = directive.strip().partition("=")
            if name.lower() == "max-age" and value.strip().isdigit():
                return float(value.strip())
        return None


Fetch = Callable[..., HttpResponse]


def http_fetch(
    url: str,
    *,
    method: str = "GET",
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    ca_file: str | None = None,
) -> HttpResponse:
    """One HTTP(S) exchange with the standard library; any status comes back as a response,
    only a failure to get one raises FetchError. TLS is verified (ca_file, else the system
    store); only http and https URLs are fetched."""
    scheme = urllib.parse.urlsplit(url).scheme
    if scheme not in ("http", "https"):
        raise FetchError(f"{url} is not an http(s) URL.")
    request = urllib.request.Request(url, data=body, method=method, headers=dict(headers or {}))
    context = ssl.create_default_context(cafile=ca_file) if scheme == "https" else None
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as answer:
            data = answer.read(MAX_RESPONSE + 1)
            status, received = answer.status, answer.headers
    except urllib.error.HTTPError as error:  # any status but 2xx, 304 included
        data = error.read(MAX_RESPONSE + 1) if error.fp else b""
        status, received = error.code, error.headers
    except (urllib.error.URLError, OSError, ValueError) as error:
        reason = getattr(error, "reason", error)
        where = urllib.parse.urlsplit(url).netloc
        raise FetchError(f"{where} could not be reached: {reason}.") from None
    if len(data) > MAX_RESPONSE:
        raise FetchError(f"The answer from {url} is larger than {MAX_RESPONSE} octets.")
    headers = {name.lower(): value for name, value in (received or {}).items()}
    ctype = headers.get("content-type", "")
    return HttpResponse(status, ctype.split(";")[0].strip().lower(), data, headers)


# ---- results ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class UsableCertificate:
    """A certificate validated for encrypting to `address` now."""

    certificate: Certificate
    address: str
    suite: str  # "intl" | "sm"
    algorithm: str  # "rsa" | "ec" | "sm2"
    origin: str  # "harvested" | "directory"
    not_after: datetime.datetime
    fingerprint: str  # SHA-256 of the DER, hex
    path: tuple[Certificate, ...] = ()  # end entity first, anchor last
    # "good" (checked against the issuers' CRLs) or "not_checked" (revocation_summary: why);
    # a revoked certificate is never usable.
    revocation: str = "not_checked"
    revocation_summary: str = "Revocation not checked (no CRLs were consulted)."

    def to_json(self) -> dict[str, object]:
        return {
            "suite": self.suite,
            "algorithm": self.algorithm,
            "origin": self.origin,
            "notAfter": self.not_after.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "fingerprint": self.fingerprint,
            "subject": self.certificate.subject.human_friendly,
            "pem": _pem(self.certificate.dump()),
            "revocation": {"status": self.revocation, "summary": self.revocation_summary},
        }


@dataclass(frozen=True)
class LookupResult:
    """What is known for one address. source: "cache" (a fresh cached directory answer),
    "directory" (asked now), "harvested" (only harvested certificates), or None (nothing)."""

    address: str
    certificates: tuple[UsableCertificate, ...]
    source: str | None
    problems: tuple[Problem, ...] = ()

    @property
    def found(self) -> bool:
        return bool(self.certificates)

    def certificate(self, suite: str) -> UsableCertificate | None:
        """The certificate of the suite valid the longest (directory before harvested when
        equal), or None."""
        mine = [c for c in self.certificates if c.suite == suite]
        if not mine:
            return None
        return max(mine, key=lambda c: (c.not_after, c.origin == "directory"))

    @property
    def suites(self) -> tuple[str, ...]:
        return tuple(sorted({c.suite for c in self.certificates}))

    def to_json(self) -> dict[str, object]:
        return {
            "address": self.address,
            "source": self.source,
            "certificates": [c.to_json() for c in self.certificates],
            "problems": [{"code": p.code, "message": p.message} for p in self.problems],
        }


def normalize(address: str) -> str:
    """The lookup form of an address: the domain lowercased (and IDNA A-labels), the local
    part exactly as given (only the receiving domain may say two spellings are one mailbox)."""
    if not isinstance(address, str):
        raise CertsError("An address must be text.")
    address = address.strip()
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain or any(c.isspace() for c in address):
        raise CertsError(f"{address!r} is not a mail address.")
    domain = domain.rstrip(".").lower()
    with contextlib.suppress(UnicodeError):
        domain = domain.encode("idna").decode("ascii")
    return f"{local}@{domain}"


def _pem(der: bytes) -> str:
    return asn1_pem.armor("CERTIFICATE", der).decode("ascii")


def _der_of_pem(text: str) -> bytes:
    return load_certificates(text.encode("ascii"))[0].dump()


def _revocation_status(
    result: path_validation.PathResult, unavailable: Sequence[str]
) -> tuple[str, str]:
    """("good" | "not_checked", in words) for a path validated with CRLs."""
    if result.revocation_checked:
        return "good", " ".join(check.message for check in result.revocation or ())
    if unavailable:
        return "not_checked", "Revocation not checked: " + " ".join(unavailable)
    return "not_checked", result.revocation_summary


def _algorithm(cert: Certificate) -> str:
    if _suite.is_sm2_certificate(cert):
        return "sm2"
    return "rsa" if cert.public_key.algorithm == "rsa" else "ec"


# ---- the book --------------------------------------------------------------------------------


@dataclass(frozen=True)
class DirectoryAnswer:
    """One answer of the directory: its certificates (PEM), its validator and how long it may
    be used; `not_modified`: the cached answer still holds (304), pems is then empty."""

    pems: list[str]
    etag: str | None
    max_age: float | None
    not_modified: bool = False


@dataclass
class _Cache:
    """The cache file's content: per address the last directory answer and the harvested
    certificates; the directory's intermediates."""

    addresses: dict[str, dict] = field(default_factory=dict)
    intermediates: dict = field(default_factory=dict)


class CertificateBook:
    """Certificates of correspondents, validated against `trust_anchors`.

    cache_folder: the profile's cache/ folder. base_url: our PKI service's base URL
    (https://pki.example/), whose layout gives the certificate directory ({base}/certs) and
    the intermediates ({base}/ca/intermediates.pem); certs_url and intermediates_url give them
    instead (another directory); neither: no directory, harvested certificates only. fetch:
    the HTTP callable (http_fetch's signature). crl_store: where the CRLs of a certificate's
    path come from (None: revocation is not checked, and each certificate says so). now: a
    clock for tests (epoch seconds)."""

    def __init__(
        self,
        cache_folder: Path,
        trust_anchors: Sequence[Certificate],
        base_url: str | None,
        *,
        certs_url: str | None = None,
        intermediates_url: str | None = None,
        fetch: Fetch = http_fetch,
        intermediates: Iterable[Certificate] = (),
        directory_ttl: float = DIRECTORY_TTL,
        not_found_ttl: float = NOT_FOUND_TTL,
        now: Callable[[], float] = time.time,
        crl_store: CrlStore | None = None,
    ) -> None:
        if not trust_anchors:
            raise CertsError(
                "No trust anchors are configured for certificates: give the PKI's roots PEM "
                "at account setup (the directory is never trusted on first use)."
            )
        self.folder = private_folder(Path(cache_folder))
        self.path = self.folder / CACHE_FILE
        self.trust_anchors = list(trust_anchors)
        base = base_url.rstrip("/") if base_url else None
        certs = certs_url or (f"{base}/certs" if base else None)
        #: Lookups go to {directory_url}{address}.
        self.directory_url = certs.rstrip("/") + "/" if certs else None
        self.intermediates_url = intermediates_url or (
            f"{base}/ca/intermediates.pem" if base else None
        )
        self.fetch = fetch
        self.configured_intermediates = list(intermediates)
        self.directory_ttl = directory_ttl
        self.not_found_ttl = not_found_ttl
        self.now = now
        self.crl_store = crl_store

    # ---- cache file ---------------------------------------------------------------------------

    def _lock(self) -> contextlib.AbstractContextManager[None]:
        return file_lock(self.folder / ".certificates.lock")

    def _load(self) -> _Cache:
        try:
            document = json.loads(self.path.read_bytes())
        except FileNotFoundError:
            return _Cache()
        except ValueError:
            return _Cache()  # a cache, not a record: a broken one is rebuilt
        if not isinstance(document, dict) or document.get("format") != CACHE_FORMAT:
            return _Cache()
        return _Cache(document.get("addresses") or {}, document.get("intermediates") or {})

    def _save(self, cache: _Cache) -> None:
        document = {
            "format": CACHE_FORMAT,
            "addresses": cache.addresses,
            "intermediates": cache.intermediates,
        }
        write_private(self.path, json.dumps(document, indent=1, sort_keys=True).encode() + b"\n")

    # ---- lookup -------------------------------------------------------------------------------

    def lookup(self, addresses: Iterable[str]) -> dict[str, LookupResult]:
        """Per address (as given), the usable certificates, where they came from, and what was
        wrong with the ones left out. Never raises for one address's trouble."""
        results: dict[str, LookupResult] = {}
        with self._lock():
            cache = self._load()
            changed = self._prune(cache)
            for given in addresses:
                if given in results:
                    continue
                try:
                    address = normalize(given)
                except CertsError as error:
                    results[given] = LookupResult(
                        given, (), None, (Problem("bad_address", error.message),)
                    )
                    continue
                result, dirty = self._lookup_one(address, cache)
                changed |= dirty
                results[given] = result
            if changed:
                self._save(cache)
        return results

    def _prune(self, cache: _Cache) -> bool:
        """Forget harvested certificates past their expiry."""
        now = self.now()
        changed = False
        for entry in cache.addresses.values():
            kept = [h for h in entry.get("harvested", []) if h.get("notAfter", 0) > now]
            if len(kept) != len(entry.get("harvested", [])):
                entry["harvested"] = kept
                changed = True
        return changed

    def _lookup_one(self, address: str, cache: _Cache) -> tuple[LookupResult, bool]:
        entry = cache.addresses.setdefault(address, {})
        problems: list[Problem] = []
        now = self.now()
        directory = entry.get("directory")
        fresh = directory is not None and directory.get("expires", 0) > now
        dirty = False
        asked = False
        if self.directory_url and not fresh:
            try:
                answer = self._ask_directory(address, (directory or {}).get("etag"))
                asked = True
            except CertsError as error:
                answer = None
                old = " (using the certificates it gave before)" if directory else ""
                problems.append(
                    Problem(
                        "directory_unreachable",
                        f"The certificate directory could not be asked: {error.message}{old}",
                    )
                )
            if answer is not None:
                pems = (directory or {}).get("pems", []) if answer.not_modified else answer.pems
                default = self.directory_ttl if pems else self.not_found_ttl
                ttl = default if answer.max_age is None else min(answer.max_age, self.directory_ttl)
                directory = {"fetched": now, "expires": now + ttl, "pems": pems}
                if answer.etag:
                    directory["etag"] = answer.etag
                entry["directory"] = directory
                dirty = True
        pool, refreshed = self._intermediates(cache, refresh=asked)
        dirty |= refreshed
        candidates: list[tuple[str, bytes, list[bytes]]] = []
        for pem_text in (directory or {}).get("pems", []):
            with contextlib.suppress(PkiError, ValueError):
                candidates.append(("directory", _der_of_pem(pem_text), []))
        for item in entry.get("harvested", []):
            with contextlib.suppress(PkiError, ValueError, KeyError):
                chain = [base64.b64decode(d) for d in item.get("chain", [])]
                candidates.append(("harvested", base64.b64decode(item["der"]), chain))
        usable: dict[str, UsableCertificate] = {}
        for origin, der, chain in candidates:
            fingerprint = hashlib.sha256(der).hexdigest()
            if fingerprint in usable:
                continue
            given = [*pool, *map(parse_certificate, chain)]
            checked = self.check(der, address, origin, given)
            if isinstance(checked, list) and any(p.code == "untrusted" for p in checked):
                issuers, fetched = self._aia_issuers(cache, der)
                dirty |= fetched
                if issuers:
                    checked = self.check(der, address, origin, [*given, *issuers])
            if isinstance(checked, UsableCertificate):
                usable[fingerprint] = checked
            else:
                problems.extend(checked)
        if not usable and not problems and (directory is not None or not self.directory_url):
            problems.append(Problem("not_found", f"No certificate is known for {address}."))
        found = tuple(sorted(usable.values(), key=lambda c: (c.suite, -c.not_after.timestamp())))
        if not found:
            source = None
        elif any(c.origin == "directory" for c in found):
            source = "directory" if asked else "cache"
        else:
            source = "harvested"
        if not entry:
            del cache.addresses[address]
        return LookupResult(address, found, source, tuple(problems)), dirty

    def check(
        self,
        certificate: bytes | Certificate,
        address: str,
        origin: str,
        intermediates: Sequence[Certificate] = (),
    ) -> UsableCertificate | list[Problem]:
        """The certificate as usable for encrypting to address now, or why not (a revoked one
        never is: its problem is `revoked`)."""
        try:
            cert = certificate if isinstance(certificate, Certificate) else None
            cert = cert or parse_certificate(bytes(certificate))  # type: ignore[arg-type]
        except PkiError as error:
            return [Problem("malformed_certificate", error.message)]

        # Only a path to a configured anchor has its CRLs fetched (domain.crls): validation
        # asks for them once it has built one.
        source = PathCrls(self.crl_store) if self.crl_store is not None else None
        result = path_validation.validate(
            cert,
            trust_anchors=self.trust_anchors,
            intermediates=[*intermediates, *self.configured_intermediates],
            address=address,
            usage="encrypt",
            sm2_ids=BOTH_IDS,  # our CA signs SM2 CA certificates with the empty ID
            crls=source,
        )
        revocation = (
            _revocation_status(result, tuple(source.unavailable))
            if source is not None
            else ("not_checked", result.revocation_summary)
        )
        if not result.valid:
            reasons = "; ".join(p.message.rstrip(".") for p in result.problems)
            who = f"A {origin} certificate for {address}"
            return [
                Problem(p.code, f"{who} is not usable: {reasons}.") for p in result.problems[:1]
            ]
        return UsableCertificate(
            certificate=cert,
            address=address,
            suite=_suite.suite_of(cert).name,
            algorithm=_algorithm(cert),
            origin=origin,
            not_after=cert.not_valid_after,
            fingerprint=hashlib.sha256(cert.dump()).hexdigest(),
            path=result.path,
            revocation=revocation[0],
            revocation_summary=revocation[1],
        )

    # ---- the directory ------------------------------------------------------------------------

    def _ask_directory(self, address: str, etag: str | None = None) -> DirectoryAnswer:
        """What the directory publishes for address now (no certificates: 404), or, when `etag`
        still names its answer, that it is unchanged (304); CertsError when it could not be
        asked or answered nonsense."""
        assert self.directory_url is not None
        url = self.directory_url + urllib.parse.quote(address, safe="@")
        headers = {"Accept": "application/json"}
        if etag:
            headers["If-None-Match"] = etag
        answer = self.fetch(url, headers=headers)
        max_age = answer.max_age()
        if answer.status == 304 and etag:
            return DirectoryAnswer([], answer.headers.get("etag", etag), max_age, True)
        if answer.status == 404:
            return DirectoryAnswer([], None, max_age)
        if answer.status != 200:
            raise CertsError(f"the directory answered HTTP {answer.status}")
        try:
            if answer.content_type == "application/pem-certificate-chain":
                pems = [_pem(c.dump()) for c in load_certificates(answer.body)]
            else:
                document = json.loads(answer.body)
                texts = [str(item["pem"]) for item in document["certificates"]]
                pems = [_pem(c.dump()) for text in texts for c in load_certificates(text.encode())]
        except (ValueError, KeyError, TypeError, PkiError) as error:
            raise CertsError(f"the directory's answer does not parse ({error})") from None
        return DirectoryAnswer(pems, answer.headers.get("etag"), max_age)

    def _intermediates(self, cache: _Cache, *, refresh: bool) -> tuple[list[Certificate], bool]:
        """The directory's intermediates (path candidates only, never anchors), fetched once a
        day alongside a directory answer."""
        stored = cache.intermediates
        refreshed = False
        stale = stored.get("expires", 0) <= self.now()
        if self.intermediates_url and refresh and stale:
            url = self.intermediates_url
            with contextlib.suppress(CertsError, PkiError):
                answer = self.fetch(url)
                if answer.status == 200:
                    pems = [_pem(c.dump()) for c in load_certificates(answer.body)]
                    stored.update({"pems": pems, "expires": self.now() + INTERMEDIATES_TTL})
                    refreshed = True
        found = []
        for text in stored.get("pems", []):
            with contextlib.suppress(PkiError, ValueError):
                found.extend(load_certificates(text.encode("ascii")))
        return found, refreshed

    def _aia_issuers(self, cache: _Cache, der: bytes) -> tuple[list[Certificate], bool]:
        """The issuer certificates a certificate's AIA caIssuers URLs (http or https) point to,
        fetched once a day per URL: path candidates only, never anchors. How a directory that
        is not ours (no intermediates file) still yields checkable certificates."""
        try:
            access = parse_certificate(der).authority_information_access_value
        except (PkiError, ValueError):
            return [], False
        urls = [
            str(item["access_location"].native)
            for item in (access or [])
            if item["access_method"].native == "ca_issuers"
            and str(item["access_location"].native).startswith(("http://", "https://"))
        ]
        stored = cache.intermediates.setdefault("aia", {})
        found: list[Certificate] = []
        changed = False
        for url in urls[:2]:
            entry = stored.get(url)
            if entry is None or entry.get("expires", 0) <= self.now():
                entry = {"pems": [], "expires": self.now() + INTERMEDIATES_TTL}
                with contextlib.suppress(CertsError, PkiError, ValueError):
                    answer = self.fetch(url)
                    if answer.status == 200:
                        body = answer.body
                        certs = (
                            load_certificates(body)
                            if b"-----BEGIN" in body
                            else [parse_certificate(body)]
                        )
                        entry["pems"] = [_pem(c.dump()) for c in certs]
                stored[url] = entry
                changed = True
            for text in entry.get("pems", []):
                with contextlib.suppress(PkiError, ValueError):
                    found.extend(load_certificates(text.encode("ascii")))
        return found, changed

    # ---- harvesting ---------------------------------------------------------------------------

    def harvest(self, verification: VerificationResult) -> list[str]:
        """Keep the certificates of the valid signers of a verified message, for every address
        they name, if they are usable for encryption; returns the addresses harvested for."""
        harvested: list[str] = []
        with self._lock():
            cache = self._load()
            changed = self._prune(cache)
            for signer in verification.signers:
                cert = signer.certificate
                if not signer.valid or cert is None:
                    continue
                chain = signer.chain.path[1:-1] if signer.chain is not None else ()
                for named in path_validation.certificate_addresses(cert):
                    try:
                        address = normalize(named)
                    except CertsError:
                        continue
                    if not isinstance(self.check(cert, address, "harvested", chain), list):
                        changed |= self._remember(cache, address, cert, chain)
                        harvested.append(address)
            if changed:
                self._save(cache)
        return harvested

    def _remember(
        self, cache: _Cache, address: str, cert: Certificate, chain: Sequence[Certificate]
    ) -> bool:
        entry = cache.addresses.setdefault(address, {})
        items = entry.setdefault("harvested", [])
        der = base64.b64encode(cert.dump()).decode("ascii")
        if any(item.get("der") == der for item in items):
            return False
        items.append(
            {
                "der": der,
                "chain": [base64.b64encode(c.dump()).decode("ascii") for c in chain],
                "notAfter": cert.not_valid_after.timestamp(),
                "harvested": self.now(),
            }
        )
        return True

    def forget(self, address: str) -> None:
        """Drop everything cached for address (the next lookup asks the directory)."""
        with self._lock():
            cache = self._load()
            if cache.addresses.pop(normalize(address), None) is not None:
                self._save(cache)
