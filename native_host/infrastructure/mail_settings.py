"""Where a mailbox's IMAP and SMTP servers are: explicit URLs, the bundled provider table, or the
domain's autoconfig file, in that order. One cohesive thing: the three sources and their
checks answer one question.

Explicit settings are URLs as in the PKI service's mail options, without the password::

    imaps://USER@HOST:PORT   IMAP, implicit TLS (993)
    imap://USER@HOST:PORT    IMAP, STARTTLS (143)
    smtps://USER@HOST:PORT   SMTP submission, implicit TLS (465)
    smtp://USER@HOST:PORT    SMTP submission, STARTTLS (587)

USER may be percent-encoded (`alice%40example.org`) and defaults to the address. STARTTLS is
required, except towards loopback, where a server that does not offer it is used in plain text.

Autoconfig follows Thunderbird's conventions: `https://autoconfig.<domain>/mail/config-v1.1.xml`
and `https://<domain>/.well-known/autoconfig/mail/config-v1.1.xml`, HTTPS only (redirects to
HTTPS only), a short timeout, a size cap, and an XML parser that refuses DTDs and so entities.
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
import xml.parsers.expat
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum
from functools import cache
from importlib import resources
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from native_host.errors import HostError
from shared_pki.net.mail import is_loopback

AUTOCONFIG_TIMEOUT = 5.0
AUTOCONFIG_MAX_BYTES = 256 * 1024
AUTOCONFIG_URLS = (
    "https://autoconfig.{domain}/mail/config-v1.1.xml?emailaddress={address}",
    "https://{domain}/.well-known/autoconfig/mail/config-v1.1.xml",
)


class Security(StrEnum):
    """How a connection is protected."""

    SSL = "ssl"  # implicit TLS from the first byte (993, 465)
    STARTTLS = "starttls"  # plain connect, then STARTTLS (required unless loopback)
    PLAIN = "plain"  # no TLS at all: accepted only towards loopback


class SettingsError(HostError, ValueError):
    """Settings that cannot be used or found; the message says why in plain words."""

    protocol_code = "bad_params"


@dataclass(frozen=True)
class Server:
    """One IMAP or SMTP server; no secret in here, so it may be stored and logged."""

    protocol: str  # "imap" | "smtp"
    host: str
    port: int
    security: Security
    username: str

    def __post_init__(self) -> None:
        if self.protocol not in ("imap", "smtp"):
            raise SettingsError(f"unknown mail protocol {self.protocol!r}")
        if not self.host:
            raise SettingsError(f"the {self.protocol.upper()} server has no host name")
        if not 0 < self.port < 65536:
            raise SettingsError(f"{self.port} is not a valid {self.protocol.upper()} port")
        if self.security is Security.PLAIN and not is_loopback(self.host):
            raise SettingsError(
                f"{self.host}: mail without TLS is allowed only to this computer (loopback)"
            )

    @property
    def loopback(self) -> bool:
        return is_loopback(self.host)

    @property
    def url(self) -> str:
        """scheme://user@host:port, the form explicit settings use (never holds a password)."""
        scheme = self.protocol + ("s" if self.security is Security.SSL else "")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{quote(self.username, safe='')}@{host}:{self.port}"

    def __str__(self) -> str:
        return self.url

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "security": self.security.value}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Server:
        return cls(
            protocol=str(data["protocol"]),
            host=str(data["host"]),
            port=int(data["port"]),
            security=Security(data["security"]),
            username=str(data["username"]),
        )


@dataclass(frozen=True)
class MailSettings:
    """Both servers of one address, and what we know about the provider."""

    address: str
    imap: Server
    smtp: Server
    source: str  # "explicit", "provider:<id>", "autoconfig:<url>", or a mix per server
    provider: str | None = None
    auth: tuple[str, ...] = ("password",)  # accepted credential kinds, preferred first
    sent_by_server: bool = False  # the provider files submitted mail in Sent itself
    imap_id: bool = False  # send an IMAP ID after login (NetEase)
    notes: str = ""
    smtp_alternatives: tuple[Server, ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "imap": self.imap.to_json(),
            "smtp": self.smtp.to_json(),
            "source": self.source,
            "provider": self.provider,
            "auth": list(self.auth),
            "sent_by_server": self.sent_by_server,
            "imap_id": self.imap_id,
            "notes": self.notes,
            "smtp_alternatives": [s.to_json() for s in self.smtp_alternatives],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> MailSettings:
        return cls(
            address=str(data["address"]),
            imap=Server.from_json(data["imap"]),
            smtp=Server.from_json(data["smtp"]),
            source=str(data.get("source", "")),
            provider=data.get("provider"),
            auth=tuple(data.get("auth") or ("password",)),
            sent_by_server=bool(data.get("sent_by_server", False)),
            imap_id=bool(data.get("imap_id", False)),
            notes=str(data.get("notes", "")),
            smtp_alternatives=tuple(
                Server.from_json(s) for s in data.get("smtp_alternatives") or ()
            ),
        )


# ---------------------------------------------------------------------------------------------
# Addresses


def split_address(address: str) -> tuple[str, str]:
    """(local part, domain) with the domain lower-cased and as an IDNA A-label."""
    local, at, domain = address.strip().rpartition("@")
    if not at or not local or not domain or any(c.isspace() for c in address.strip()):
        raise SettingsError(f"{address!r} is not a mail address (name@domain)")
    domain = domain.lower().rstrip(".")
    try:
        domain = domain.encode("idna").decode("ascii")
    except UnicodeError:
        raise SettingsError(f"{address!r}: the domain {domain!r} is not valid") from None
    return local, domain


def normalize_address(address: str) -> str:
    local, domain = split_address(address)
    return f"{local}@{domain}"


def _expand_username(template: str, address: str) -> str:
    local, domain = split_address(address)
    return (
        template.replace("%EMAILADDRESS%", address)
        .replace("%EMAILLOCALPART%", local)
        .replace("%EMAILDOMAIN%", domain)
    )


# ---------------------------------------------------------------------------------------------
# Explicit URLs

_SCHEMES = {
    "imap": ("imap", 143, Security.STARTTLS),
    "imaps": ("imap", 993, Security.SSL),
    "smtp": ("smtp", 587, Security.STARTTLS),
    "smtps": ("smtp", 465, Security.SSL),
}


def parse_server_url(url: str, *, protocol: str, address: str) -> Server:
    """An `imap[s]://` or `smtp[s]://` URL as a Server; the user defaults to `address`.

    A password in the URL is refused: credentials go to the keyring, never into settings.
    """
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        raise SettingsError(f"the {protocol.upper()} URL has an invalid host or port") from None
    scheme = parts.scheme.lower()
    if scheme not in _SCHEMES or _SCHEMES[scheme][0] != protocol:
        allowed = " or ".join(f"{s}://" for s, v in _SCHEMES.items() if v[0] == protocol)
        raise SettingsError(f"the {protocol.upper()} URL must start with {allowed}")
    if parts.password is not None:
        raise SettingsError(
            f"the {scheme}:// URL holds a password: give the password separately "
            "(it is kept in the keyring, never in the settings)"
        )
    if parts.path.strip("/") or parts.query or parts.fragment:
        raise SettingsError(f"the {scheme}:// URL may not have a path, query or fragment")
    host = parts.hostname or ""
    if not host:
        raise SettingsError(f"the {scheme}:// URL names no host")
    _, default_port, security = _SCHEMES[scheme]
    user = unquote(parts.username) if parts.username else address
    return Server(protocol, host, port or default_port, security, user)


# ---------------------------------------------------------------------------------------------
# The bundled provider table


@dataclass(frozen=True)
class Provider:
    id: str
    name: str
    domains: tuple[str, ...]
    imap: dict[str, Any]
    smtp: dict[str, Any]
    auth: tuple[str, ...]
    sent_by_server: bool
    imap_id: bool = False
    mx: tuple[str, ...] = ()
    smtp_alternatives: tuple[dict[str, Any], ...] = ()
    notes: str = ""

    def settings_for(self, address: str) -> MailSettings:
        def server(protocol: str, entry: dict[str, Any]) -> Server:
            return Server(
                protocol,
                entry["host"],
                int(entry["port"]),
                Security(entry["security"]),
                _expand_username(entry.get("username", "%EMAILADDRESS%"), address),
            )

        return MailSettings(
            address=address,
            imap=server("imap", self.imap),
            smtp=server("smtp", self.smtp),
            source=f"provider:{self.id}",
            provider=self.id,
            auth=self.auth,
            sent_by_server=self.sent_by_server,
            imap_id=self.imap_id,
            notes=self.notes,
            smtp_alternatives=tuple(server("smtp", e) for e in self.smtp_alternatives),
        )


@cache
def providers() -> tuple[Provider, ...]:
    """The bundled table (native_host/providers.json)."""
    raw = json.loads(resources.files("native_host").joinpath("providers.json").read_text("utf-8"))
    return tuple(
        Provider(
            id=p["id"],
            name=p["name"],
            domains=tuple(d.lower() for d in p["domains"]),
            imap=p["imap"],
            smtp=p["smtp"],
            auth=tuple(p["auth"]),
            sent_by_server=bool(p["sent_by_server"]),
            imap_id=bool(p.get("imap_id", False)),
            mx=tuple(m.lower() for m in p.get("mx", ())),
            smtp_alternatives=tuple(p.get("smtp_alternatives", ())),
            notes=p.get("notes", ""),
        )
        for p in raw["providers"]
    )


def provider_for_domain(domain: str) -> Provider | None:
    domain = domain.lower().rstrip(".")
    for provider in providers():
        if domain in provider.domains:
            return provider
    return None


def provider_for_mx(mx_hosts: Iterable[str]) -> Provider | None:
    """A hosted domain (Google Workspace, Microsoft 365, Fastmail) recognised by its MX hosts."""
    hosts = [h.lower().rstrip(".") for h in mx_hosts]
    for provider in providers():
        for suffix in provider.mx:
            if any(h == suffix or h.endswith("." + suffix) for h in hosts):
                return provider
    return None


def lookup_provider(address: str) -> MailSettings | None:
    """Settings from the bundled table for the address's domain, or None."""
    _, domain = split_address(address)
    provider = provider_for_domain(domain)
    return provider.settings_for(normalize_address(address)) if provider else None


# ---------------------------------------------------------------------------------------------
# Autoconfig

#: fetch(url, timeout) -> body bytes, or None when there is nothing there (404, refused, ...).
Fetcher = Callable[[str, float], bytes | None]


class _HttpsOnlyRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[no-untyped-def]
        if urlsplit(newurl).scheme.lower() != "https":
            return None  # never downgrade to plain HTTP
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def https_fetcher(ssl_context: ssl.SSLContext | None = None) -> Fetcher:
    """A fetcher for https:// URLs (verified), capped in size; None for any failure."""
    context = ssl_context or ssl.create_default_context()
    opener = urllib.request.build_opener(
        urllib.request.HTTPSHandler(context=context), _HttpsOnlyRedirects()
    )

    def fetch(url: str, timeout: float) -> bytes | None:
        parts = urlsplit(url)
        if parts.scheme.lower() != "https" and not is_loopback(parts.hostname or ""):
            return None  # plain HTTP only to this computer (tests)
        request = urllib.request.Request(url, headers={"User-Agent": "autosmime-autoconfig/1"})
        try:
            with opener.open(request, timeout=timeout) as response:
                body: bytes = response.read(AUTOCONFIG_MAX_BYTES + 1)
        except (OSError, urllib.error.URLError, ValueError):
            return None
        return body if len(body) <= AUTOCONFIG_MAX_BYTES else None

    return fetch


def parse_xml_safely(data: bytes) -> ET.Element:
    """An ElementTree from expat with DTDs refused (and so every entity): no billion laughs,
    no external entities. Namespaces are not processed (autoconfig files use none)."""
    builder = ET.TreeBuilder()
    parser = xml.parsers.expat.ParserCreate()

    def refuse(*_args: object) -> None:
        raise SettingsError("the autoconfig file has a DTD; refused")

    parser.StartDoctypeDeclHandler = refuse
    parser.EntityDeclHandler = refuse
    parser.ExternalEntityRefHandler = refuse
    parser.StartElementHandler = builder.start
    parser.EndElementHandler = builder.end
    parser.CharacterDataHandler = builder.data
    try:
        parser.Parse(data, True)
        return builder.close()
    except xml.parsers.expat.ExpatError as exc:
        raise SettingsError(f"the autoconfig file is not well-formed XML: {exc}") from None


_SOCKET_TYPES = {"ssl": Security.SSL, "starttls": Security.STARTTLS, "plain": Security.PLAIN}


def parse_autoconfig(data: bytes, address: str, *, source: str = "autoconfig") -> MailSettings:
    """The first usable IMAP and SMTP servers of a Thunderbird config-v1.1.xml file.

    Servers with TLS are preferred; plain text is accepted only towards loopback.
    """
    root = parse_xml_safely(data)
    if root.tag != "clientConfig":
        raise SettingsError("the autoconfig file is not a Thunderbird clientConfig")
    provider = root.find("emailProvider")
    if provider is None:
        raise SettingsError("the autoconfig file names no emailProvider")
    _, domain = split_address(address)
    domains = [d.text.strip().lower() for d in provider.findall("domain") if d.text]
    if domains and domain not in domains:
        raise SettingsError(f"the autoconfig file is for {', '.join(domains)}, not {domain}")

    def pick(tag: str, kind: str) -> tuple[Server, tuple[str, ...]]:
        candidates: list[tuple[int, Server, tuple[str, ...]]] = []
        for element in provider.findall(tag):
            if element.get("type") != kind:
                continue
            host = (element.findtext("hostname") or "").strip()
            socket_type = (element.findtext("socketType") or "").strip().lower()
            security = _SOCKET_TYPES.get(socket_type)
            try:
                port = int((element.findtext("port") or "").strip())
            except ValueError:
                continue
            if security is None or not host:
                continue
            username = _expand_username(
                (element.findtext("username") or "%EMAILADDRESS%").strip(), address
            )
            methods = tuple(
                (a.text or "").strip() for a in element.findall("authentication") if a.text
            )
            try:
                server = Server(kind, host, port, security, username)
            except SettingsError:
                continue  # plain text to a remote host: never
            rank = {Security.SSL: 0, Security.STARTTLS: 1, Security.PLAIN: 2}[security]
            candidates.append((rank, server, methods))
        if not candidates:
            raise SettingsError(f"the autoconfig file has no usable {kind.upper()} server")
        candidates.sort(key=lambda c: c[0])
        return candidates[0][1], candidates[0][2]

    imap, imap_auth = pick("incomingServer", "imap")
    smtp, _ = pick("outgoingServer", "smtp")
    auth = ("xoauth2", "password") if "OAuth2" in imap_auth else ("password",)
    return MailSettings(
        address=address,
        imap=imap,
        smtp=smtp,
        source=source,
        provider=provider.get("id"),
        auth=auth,
        notes=(provider.findtext("displayName") or "").strip(),
    )


def autoconfig(
    address: str,
    *,
    urls: Sequence[str] = AUTOCONFIG_URLS,
    fetch: Fetcher | None = None,
    timeout: float = AUTOCONFIG_TIMEOUT,
) -> MailSettings | None:
    """Settings from the domain's autoconfig file, or None if none is reachable and valid.

    `urls` are templates with {domain} and {address} (percent-encoded); tests point them at a
    loopback server, and pass a `fetch` that trusts its certificate.
    """
    address = normalize_address(address)
    _, domain = split_address(address)
    fetch = fetch or https_fetcher()
    for template in urls:
        url = template.format(domain=domain, address=quote(address, safe="@"))
        body = fetch(url, timeout)
        if not body:
            continue
        try:
            return parse_autoconfig(body, address, source=f"autoconfig:{url.split('?')[0]}")
        except SettingsError:
            continue
    return None


# ---------------------------------------------------------------------------------------------
# Everything together


def resolve(
    address: str,
    *,
    imap_url: str | None = None,
    smtp_url: str | None = None,
    autoconfig_urls: Sequence[str] = AUTOCONFIG_URLS,
    fetch: Fetcher | None = None,
    timeout: float = AUTOCONFIG_TIMEOUT,
) -> MailSettings:
    """Explicit URLs first, then the provider table, then autoconfig; per server.

    With both URLs given nothing is looked up. With one, the other comes from the table or
    autoconfig. SettingsError says what is missing when nothing is found.
    """
    address = normalize_address(address)
    imap = parse_server_url(imap_url, protocol="imap", address=address) if imap_url else None
    smtp = parse_server_url(smtp_url, protocol="smtp", address=address) if smtp_url else None
    if imap is not None and smtp is not None:
        explicit = MailSettings(address=address, imap=imap, smtp=smtp, source="explicit")
        known = lookup_provider(address)
        if known is not None and known.smtp.host == smtp.host:
            # The provider's own servers given by hand: what it does with Sent still holds.
            return replace(
                explicit,
                provider=known.provider,
                auth=known.auth,
                sent_by_server=known.sent_by_server,
                imap_id=known.imap_id,
                notes=known.notes,
            )
        return explicit
    found = lookup_provider(address) or autoconfig(
        address, urls=autoconfig_urls, fetch=fetch, timeout=timeout
    )
    if found is None:
        if imap is None and smtp is None:
            raise SettingsError(
                f"no settings known for {address}: give the servers as "
                "--imap imaps://USER@HOST:PORT and --smtp smtp://USER@HOST:PORT "
                "(your provider's help pages list them)"
            )
        missing = "IMAP" if imap is None else "SMTP"
        raise SettingsError(f"no {missing} server known for {address}: give it as a URL too")
    if imap is None and smtp is None:
        return found
    return replace(
        found,
        imap=imap or found.imap,
        smtp=smtp or found.smtp,
        smtp_alternatives=() if smtp else found.smtp_alternatives,
        source=(
            f"imap:{'explicit' if imap else found.source},"
            f"smtp:{'explicit' if smtp else found.source}"
        ),
    )


__all__ = [
    "AUTOCONFIG_URLS",
    "Fetcher",
    "MailSettings",
    "Provider",
    "Security",
    "Server",
    "SettingsError",
    "autoconfig",
    "https_fetcher",
    "is_loopback",
    "lookup_provider",
    "normalize_address",
    "parse_autoconfig",
    "parse_server_url",
    "parse_xml_safely",
    "provider_for_domain",
    "provider_for_mx",
    "providers",
    "resolve",
    "split_address",
]
