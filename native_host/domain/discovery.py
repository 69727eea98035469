"""Finding an organisation's PKI from a mail address: the well-known document its mail domain
publishes, `https://DOMAIN/.well-known/autosmime.json` (a managed browser policy, read by the
extension, comes first; asking the person comes last).

The document (JSON, UTF-8, at most 64 KiB), version 1:

    {
      "version": 1,
      "pki": "https://pki.example.org",                  our service's base URL, or instead:
      "acmeDirectory": "https://ca.example.org/acme/directory",
      "certificateDirectory": "https://ca.example.org/certs",
      "tsa": "https://tsa.example.org/",
      "roots": {"url": "https://pki.example.org/ca/roots.pem",
                "sha256": ["<hex SHA-256 of each root certificate's DER>", ...]},
      "tsaRoots": {"url": "...", "sha256": ["..."]},      optional: a TSA under other roots
      "acmeContact": true,                               optional (default true)
      "unauthenticatedChallengeFrom": ["acme@example.org"]   optional
    }

Only "roots" is required with "pki" or "acmeDirectory". The roots are pinned: the PEM at
roots.url (default {pki}/ca/roots.pem) is fetched and exactly the certificates whose SHA-256
fingerprints the document lists are kept; a listed fingerprint not found there is an error.
The document itself must come over HTTPS with a certificate valid for the mail domain (the
system's trust store): that, and the pins in it, are what make the roots trustworthy. Nothing
is trusted on first use otherwise.
"""

from __future__ import annotations

import hashlib
import json
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from asn1crypto import pem as asn1_pem

from native_host.domain.certs import Fetch, FetchError, http_fetch
from native_host.errors import HostError
from shared_pki.errors import PkiError
from shared_pki.keys import Certificate, load_certificates

WELL_KNOWN_PATH = "/.well-known/autosmime.json"
FORMAT_VERSION = 1
MAX_DOCUMENT = 64 * 1024


class DiscoveryError(HostError):
    """The organisation's document exists but cannot be used; the message says why (a person
    passes it on to the administrator)."""

    code = "discovery_error"


@dataclass(frozen=True)
class Discovered:
    """What discover() found: `settings` are account.configure's PKI params."""

    found: bool
    source: str | None  # "well-known" | None
    url: str
    settings: dict[str, Any] = field(default_factory=dict)
    roots: tuple[dict[str, str], ...] = ()  # {subject, sha256}
    advice: str | None = None
    detail: str | None = None  # why nothing was found, for an administrator

    def to_json(self) -> dict[str, Any]:
        return {
            "found": self.found,
            "source": self.source,
            "url": self.url,
            "settings": self.settings,
            "roots": list(self.roots),
            "advice": self.advice,
            "detail": self.detail,
        }


def well_known_url(address: str) -> str:
    domain = address.strip().rpartition("@")[2].rstrip(".").lower()
    if not domain or any(c in domain for c in "/?#@:[] \t"):
        raise DiscoveryError(f"{address!r} is not a mail address.")
    try:
        domain = domain.encode("idna").decode("ascii")
    except UnicodeError:
        raise DiscoveryError(f"The domain of {address!r} is not a valid name.") from None
    return f"https://{domain}{WELL_KNOWN_PATH}"


def advice_for(address: str) -> str:
    """What to ask the administrator for, in plain words."""
    domain = address.rpartition("@")[2] or "your mail domain"
    return (
        f"No certificate service was found for {domain}. Ask your administrator for: the "
        "address of your organisation's certificate service (or of its ACME certificate "
        "authority), its root certificates, and, if it has them, its certificate directory "
        "and time-stamp authority. Administrators can publish these at "
        f"https://{domain}{WELL_KNOWN_PATH} (or set them by browser policy), so that setup "
        "finds them by itself."
    )


def discover(address: str, *, fetch: Fetch = http_fetch) -> Discovered:
    """The organisation's PKI settings for address from its well-known document; found False
    (with the advice) when the domain publishes none; DiscoveryError when it publishes one that
    is wrong (the administrator must hear of it)."""
    url = well_known_url(address)
    try:
        answer = fetch(url, headers={"Accept": "application/json"})
    except FetchError as error:
        return Discovered(False, None, url, advice=advice_for(address), detail=error.message)
    if answer.status in (404, 410) or answer.status >= 500:
        detail = f"{url} answered HTTP {answer.status}."
        return Discovered(False, None, url, advice=advice_for(address), detail=detail)
    if answer.status != 200:
        raise DiscoveryError(f"{url} answered HTTP {answer.status}.")
    if len(answer.body) > MAX_DOCUMENT:
        raise DiscoveryError(f"{url} is larger than {MAX_DOCUMENT} bytes.")
    try:
        document = json.loads(answer.body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as error:
        raise DiscoveryError(f"{url} is not JSON ({error}).") from None
    settings, roots = read_document(document, url, fetch=fetch)
    return Discovered(True, "well-known", url, settings, roots)


def read_document(
    document: Any, url: str, *, fetch: Fetch = http_fetch
) -> tuple[dict[str, Any], tuple[dict[str, str], ...]]:
    """(account.configure's PKI params, the pinned roots described) from a version 1
    document; DiscoveryError naming what is wrong."""
    if not isinstance(document, Mapping):
        raise DiscoveryError(f"{url} is not a JSON object.")
    if document.get("version") != FORMAT_VERSION:
        raise DiscoveryError(f"{url} has version {document.get('version')!r}, not 1.")
    pki = _url(document, "pki", url)
    acme = _url(document, "acmeDirectory", url)
    if not pki and not acme:
        raise DiscoveryError(f"{url} names neither 'pki' nor 'acmeDirectory'.")
    base = pki.rstrip("/") if pki else None
    roots = _pinned(document.get("roots"), "roots", url, base, fetch)
    settings: dict[str, Any] = {
        "pkiUrl": pki,
        "acmeDirectoryUrl": acme,
        "certsUrl": _url(document, "certificateDirectory", url),
        "tsaUrl": _url(document, "tsa", url),
        "pkiRoots": _pem(roots),
    }
    if document.get("tsaRoots") is not None:
        settings["tsaRoots"] = _pem(_pinned(document["tsaRoots"], "tsaRoots", url, None, fetch))
    contact = document.get("acmeContact", True)
    if not isinstance(contact, bool):
        raise DiscoveryError(f"{url}: acmeContact must be true or false.")
    settings["acmeContact"] = contact
    allowed = document.get("unauthenticatedChallengeFrom", [])
    if not isinstance(allowed, list) or not all(isinstance(a, str) and "@" in a for a in allowed):
        raise DiscoveryError(f"{url}: unauthenticatedChallengeFrom must list mail addresses.")
    settings["unauthenticatedChallengeFrom"] = allowed
    described = tuple(
        {"subject": cert.subject.human_friendly, "sha256": _fingerprint(cert)} for cert in roots
    )
    return {k: v for k, v in settings.items() if v is not None}, described


def _url(document: Mapping[str, Any], name: str, where: str) -> str | None:
    value = document.get(name)
    if value is None:
        return None
    parts = urllib.parse.urlsplit(value) if isinstance(value, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
        raise DiscoveryError(f"{where}: {name} is not an http(s) URL.")
    return str(value)


def _pinned(entry: Any, name: str, where: str, base: str | None, fetch: Fetch) -> list[Certificate]:
    if not isinstance(entry, Mapping):
        raise DiscoveryError(f"{where}: {name} must be an object with url and sha256.")
    pins = entry.get("sha256")
    if not isinstance(pins, list) or not pins or not all(isinstance(p, str) for p in pins):
        raise DiscoveryError(f"{where}: {name}.sha256 must list the roots' fingerprints.")
    wanted = {p.replace(":", "").strip().lower() for p in pins}
    if not all(len(p) == 64 and all(c in "0123456789abcdef" for c in p) for p in wanted):
        raise DiscoveryError(f"{where}: {name}.sha256 holds something that is no SHA-256.")
    source = _url(entry, "url", f"{where} {name}") or (f"{base}/ca/roots.pem" if base else None)
    if source is None:
        raise DiscoveryError(f"{where}: {name}.url is needed (no pki base URL to find them at).")
    try:
        answer = fetch(source)
    except FetchError as error:
        raise DiscoveryError(f"The roots at {source} could not be fetched: {error}") from None
    if answer.status != 200:
        raise DiscoveryError(f"The roots at {source} answered HTTP {answer.status}.")
    try:
        offered = load_certificates(answer.body)
    except (PkiError, ValueError) as error:
        message = getattr(error, "message", str(error))
        raise DiscoveryError(f"{source} holds no certificates: {message}") from None
    kept = [cert for cert in offered if _fingerprint(cert) in wanted]
    missing = wanted - {_fingerprint(cert) for cert in kept}
    if missing:
        raise DiscoveryError(
            f"The roots at {source} do not match the fingerprints {where} pins "
            f"({len(missing)} of {len(wanted)} not found): not trusted."
        )
    return kept


def _fingerprint(cert: Certificate) -> str:
    return hashlib.sha256(cert.dump()).hexdigest()


def _pem(certs: list[Certificate]) -> str:
    return "".join(asn1_pem.armor("CERTIFICATE", c.dump()).decode("ascii") for c in certs)


__all__ = [
    "WELL_KNOWN_PATH",
    "Discovered",
    "DiscoveryError",
    "advice_for",
    "discover",
    "read_document",
    "well_known_url",
]
