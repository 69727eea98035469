"""The PKI of one account, as the profile stores it (`pki-accounts.json`): where its ACME CA,
certificate directory and TSA are, and the roots it trusts. Checked when made, so a bad URL or a
roots file without certificates is refused when typed, not at the first send."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from native_host.errors import BadParams

if TYPE_CHECKING:  # the heavy modules load only with the ops that need them
    from native_host.infrastructure.acme_client import PkiSettings
    from shared_pki.keys import Certificate


@functools.lru_cache(maxsize=16)
def _parsed_certificates(pem: bytes) -> tuple[Certificate, ...]:
    """A PEM document's certificates, parsed once: every message.open asks for the roots."""
    from shared_pki.keys import load_certificates

    return tuple(load_certificates(pem))


@dataclass(frozen=True)
class AccountPki:
    """The PKI of one account: where its ACME CA, certificate directory and TSA are, and what
    it trusts. `url` is the base of our own service's layout ({url}/acme/directory,
    {url}/certs, {url}/tsa, {url}/ca/intermediates.pem); each of the three may be given
    instead or as well (any RFC 8823 CA, any directory, any RFC 3161 TSA). `roots_pem`: the
    roots certificates chain to (configured, never fetched and trusted on first use);
    `tsa_roots_pem`: the TSA's roots when they are not those (None: the same); `tls_ca_file`
    verifies the services' HTTPS (None: the system store); `acme_contact`: register with a
    `mailto:` contact; `unauthenticated_challenge_from`: the organisation's own CA addresses
    whose challenge mail is accepted without DKIM or S/MIME (and without RFC 8823's
    Auto-Submitted and Message-ID)."""

    url: str | None
    roots_pem: bytes
    tls_ca_file: str | None = None
    acme_directory: str | None = None
    certs: str | None = None
    tsa: str | None = None
    tsa_roots_pem: bytes | None = None
    acme_contact: bool = True
    unauthenticated_challenge_from: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name, value in (
            ("PKI service URL", self.url),
            ("ACME directory URL", self.acme_directory),
            ("certificate directory URL", self.certs),
            ("time-stamp authority URL", self.tsa),
        ):
            if value is None:
                continue
            parts = urlsplit(value)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise BadParams(f"The {name} {value!r} is not http(s).")
        if not self.url and not self.acme_directory:
            raise BadParams(
                "Give the PKI service's URL, or its ACME directory URL (and the certificate "
                "directory and time-stamp authority URLs, if it has them)."
            )
        if not self.roots():
            raise BadParams("The PKI roots hold no certificate (give the service's roots PEM).")
        if self.tsa_roots_pem is not None and not self.tsa_anchors():
            raise BadParams("The time-stamp authority's roots hold no certificate.")
        addresses = []
        for address in self.unauthenticated_challenge_from:
            local, at, domain = str(address).strip().rpartition("@")
            if not (local and at and domain) or any(c.isspace() for c in str(address).strip()):
                raise BadParams(f"{address!r} is not a mail address.")
            addresses.append(str(address).strip().lower())
        object.__setattr__(self, "unauthenticated_challenge_from", tuple(addresses))

    @property
    def base(self) -> str | None:
        return self.url.rstrip("/") if self.url else None

    @property
    def certs_url(self) -> str | None:
        """The certificate directory: lookups at {certs_url}/ADDRESS (None: none)."""
        if self.certs:
            return self.certs.rstrip("/")
        return f"{self.base}/certs" if self.base else None

    @property
    def tsa_url(self) -> str | None:
        """The RFC 3161 TSA (None: none, signatures go without timestamps)."""
        if self.tsa:
            return self.tsa
        return f"{self.base}/tsa" if self.base else None

    @property
    def acme_directory_url(self) -> str:
        if self.acme_directory:
            return self.acme_directory
        return f"{self.base}/acme/directory"

    @property
    def intermediates_url(self) -> str | None:
        """Intermediate CA certificates to build paths with (our service's layout only)."""
        return f"{self.base}/ca/intermediates.pem" if self.base else None

    def roots(self) -> list[Certificate]:
        return _certificates(self.roots_pem, "The PKI roots")

    def tsa_anchors(self) -> list[Certificate]:
        """What time-stamp tokens must chain to: the TSA's roots, else the PKI's."""
        if self.tsa_roots_pem is None:
            return self.roots()
        return _certificates(self.tsa_roots_pem, "The time-stamp authority's roots")

    def settings(self) -> PkiSettings:
        """The ACME client's view (enrollment)."""
        from native_host.infrastructure.acme_client import PkiSettings

        return PkiSettings(
            self.acme_directory_url,
            self.roots_pem,
            self.tls_ca_file,
            contact=self.acme_contact,
            unauthenticated_from=self.unauthenticated_challenge_from,
        )

    def fetch(self) -> Callable[..., Any]:
        from native_host.domain.certs import http_fetch

        if self.tls_ca_file is None:
            return http_fetch
        return functools.partial(http_fetch, ca_file=self.tls_ca_file)

    def to_json(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "rootsPem": self.roots_pem.decode("ascii"),
            "tlsCaFile": self.tls_ca_file,
            "acmeDirectoryUrl": self.acme_directory,
            "certsUrl": self.certs,
            "tsaUrl": self.tsa,
            "tsaRootsPem": self.tsa_roots_pem.decode("ascii") if self.tsa_roots_pem else None,
            "acmeContact": self.acme_contact,
            "unauthenticatedChallengeFrom": list(self.unauthenticated_challenge_from),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AccountPki:
        tsa_roots = data.get("tsaRootsPem")
        return cls(
            data.get("url") or None,
            str(data["rootsPem"]).encode("ascii"),
            data.get("tlsCaFile"),
            acme_directory=data.get("acmeDirectoryUrl") or None,
            certs=data.get("certsUrl") or None,
            tsa=data.get("tsaUrl") or None,
            tsa_roots_pem=str(tsa_roots).encode("ascii") if tsa_roots else None,
            acme_contact=bool(data.get("acmeContact", True)),
            unauthenticated_challenge_from=tuple(data.get("unauthenticatedChallengeFrom") or ()),
        )

    def summary(self) -> dict[str, Any]:
        """What account.list shows (no secret is in here anyway)."""
        return {
            "url": self.base,
            "acmeDirectory": self.acme_directory_url,
            "certs": self.certs_url,
            "tsa": self.tsa_url,
            "roots": [cert.subject.human_friendly for cert in self.roots()],
            "tsaRoots": [cert.subject.human_friendly for cert in self.tsa_anchors()],
            "acmeContact": self.acme_contact,
            "unauthenticatedChallengeFrom": list(self.unauthenticated_challenge_from),
        }


def _certificates(pem: bytes, what: str) -> list[Certificate]:
    from shared_pki.errors import PkiError

    try:
        return list(_parsed_certificates(bytes(pem)))
    except (PkiError, ValueError) as error:
        message = getattr(error, "message", str(error))
        raise BadParams(f"{what} are not certificates: {message}") from None
