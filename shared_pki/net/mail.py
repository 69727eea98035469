"""Mail connections with one TLS policy, for the native host (the person's mailbox) and the
PKI service (the CA's mailbox): `connect_smtp` and `connect_imap` open a connection and protect
it (implicit TLS, or STARTTLS, which a server must offer unless it is on loopback, where plain
text may stay), and log in to nothing; each side logs in its own way and says what failed in
its own words. Certificates are always verified, against the context the caller gives.

For the service, the CA mailbox as URLs (`open_smtp`, `open_imap` log in too):

    smtp://USER:PASSWORD@HOST:PORT      submission (587), STARTTLS
    smtps://USER:PASSWORD@HOST:PORT     implicit TLS (465)
    imap://USER:PASSWORD@HOST:PORT/MBX  STARTTLS (143); MBX is the folder watched (INBOX)
    imaps://USER:PASSWORD@HOST:PORT/MBX implicit TLS (993)

User and password are percent-decoded (`alice%40example.org`, `p%3Ass`). TLS policy: implicit
TLS for the `s` schemes; for the plain schemes STARTTLS, and a server that does not offer it is
refused unless the host is loopback (127.0.0.0/8, ::1, `localhost`), where STARTTLS is still
used when offered. Certificates are always verified, against `ca_file` when one is given (a
private CA), else the system store. The password never appears in a message, a log or a repr:
errors name the URL as `scheme://user@host:port`.
"""

from __future__ import annotations

import contextlib
import ipaddress
import smtplib
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import unquote, urlsplit

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError, LoginError

SMTP_SCHEMES = {"smtp": (587, False), "smtps": (465, True)}
IMAP_SCHEMES = {"imap": (143, False), "imaps": (993, True)}
DEFAULT_MAILBOX = "INBOX"
DEFAULT_TIMEOUT = 30.0


class MailUrlError(ValueError):
    """A mail URL that cannot be used; the message says why and never holds the password."""


class MailConnectionError(OSError):
    """A mail server could not be reached, refused TLS or refused the login."""


class StartTlsMissing(MailConnectionError):
    """A server off loopback that does not offer STARTTLS: logging in would send the password
    in plain text, so the connection is refused."""

    def __init__(self, host: str, port: int) -> None:
        super().__init__(f"{host}:{port} does not offer STARTTLS")
        self.host = host
        self.port = port


def is_loopback(host: str) -> bool:
    """True for `localhost` and loopback IP literals (brackets allowed); no name is resolved."""
    host = host.strip("[]").lower().rstrip(".")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


#: How a connection is protected: TLS from the first byte; STARTTLS (required unless the
#: server is on loopback); none at all (loopback only).
Tls = Literal["implicit", "starttls", "none"]


def _plain_allowed(host: str, port: int) -> None:
    if not is_loopback(host):
        raise StartTlsMissing(host, port)


def connect_smtp(
    host: str,
    port: int,
    *,
    tls: Tls,
    context: ssl.SSLContext,
    timeout: float = DEFAULT_TIMEOUT,
    local_hostname: str | None = None,
) -> smtplib.SMTP:
    """An SMTP connection protected as `tls` says, EHLO done, not logged in (the caller logs
    in, and closes it on failure). StartTlsMissing when the policy refuses the server; OSError
    and smtplib's errors otherwise."""
    if tls == "none":
        _plain_allowed(host, port)
    if tls == "implicit":
        client: smtplib.SMTP = smtplib.SMTP_SSL(
            host, port, local_hostname=local_hostname, timeout=timeout, context=context
        )
    else:
        client = smtplib.SMTP(host, port, local_hostname=local_hostname, timeout=timeout)
    try:
        client.ehlo()
        if tls == "starttls":
            if client.has_extn("starttls"):
                client.starttls(context=context)
                client.ehlo()
            else:
                _plain_allowed(host, port)
    except BaseException:
        _close_smtp(client)
        raise
    return client


def connect_imap(
    host: str,
    port: int,
    *,
    tls: Tls,
    context: ssl.SSLContext,
    timeout: float = DEFAULT_TIMEOUT,
) -> IMAPClient:
    """An IMAP connection protected as `tls` says, not logged in (see connect_smtp)."""
    if tls == "none":
        _plain_allowed(host, port)
    client = IMAPClient(
        host,
        port=port,
        ssl=tls == "implicit",
        ssl_context=context if tls == "implicit" else None,
        timeout=timeout,
    )
    try:
        if tls == "starttls":
            if client.has_capability("STARTTLS"):
                client.starttls(ssl_context=context)
            else:
                _plain_allowed(host, port)
    except BaseException:
        _close_imap(client)
        raise
    return client


@dataclass(frozen=True)
class MailUrl:
    """One parsed mail URL. `implicit_tls`: TLS from the first byte (smtps/imaps);
    otherwise STARTTLS, mandatory unless `loopback`."""

    scheme: str
    host: str
    port: int
    user: str
    password: str = field(repr=False)
    mailbox: str = DEFAULT_MAILBOX
    ca_file: str | None = None

    @property
    def protocol(self) -> str:
        return "smtp" if self.scheme in SMTP_SCHEMES else "imap"

    @property
    def implicit_tls(self) -> bool:
        return self.scheme in ("smtps", "imaps")

    @property
    def loopback(self) -> bool:
        return is_loopback(self.host)

    @property
    def tls(self) -> Tls:
        return "implicit" if self.implicit_tls else "starttls"

    @property
    def redacted(self) -> str:
        """scheme://user@host:port[/mailbox], for messages and logs."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        where = f"{self.scheme}://{self.user}@{host}:{self.port}"
        return where + (f"/{self.mailbox}" if self.protocol == "imap" else "")

    def __str__(self) -> str:
        return self.redacted

    def ssl_context(self) -> ssl.SSLContext:
        """A verifying client context: ca_file as the only trust anchors, else the system's."""
        try:
            return ssl.create_default_context(cafile=self.ca_file or None)
        except (OSError, ssl.SSLError) as exc:
            raise MailUrlError(f"cannot load the mail CA file {self.ca_file!r}: {exc}") from None


def parse_mail_url(url: str, *, protocol: str, ca_file: str | Path | None = None) -> MailUrl:
    """Parse an SMTP (`protocol="smtp"`) or IMAP (`"imap"`) URL; MailUrlError says what is
    wrong without repeating the password."""
    schemes = {"smtp": SMTP_SCHEMES, "imap": IMAP_SCHEMES}.get(protocol)
    if schemes is None:
        raise ValueError(f"protocol must be smtp or imap, not {protocol!r}")
    if not isinstance(url, str) or not url.strip():
        raise MailUrlError(f"no {protocol.upper()} URL configured")
    try:
        parts = urlsplit(url.strip())
        port_text = parts.port
    except ValueError as exc:
        # urlsplit's messages quote the netloc (with the password): never pass them on.
        what = "port" if "port" in str(exc).lower() else "address"
        raise MailUrlError(f"the {protocol.upper()} URL has an invalid {what}") from None
    scheme = parts.scheme.lower()
    if scheme not in schemes:
        allowed = " or ".join(f"{s}://" for s in schemes)
        shown = scheme + "://" if scheme else "no scheme"
        raise MailUrlError(f"the {protocol.upper()} URL must start with {allowed}, not {shown}")
    default_port, _implicit = schemes[scheme]
    host = parts.hostname or ""
    if not host:
        raise MailUrlError(f"the {scheme}:// URL names no host")
    if parts.username is None or not unquote(parts.username):
        raise MailUrlError(f"the {scheme}:// URL for {host} names no user (USER:PASSWORD@HOST)")
    if parts.password is None or not unquote(parts.password):
        raise MailUrlError(f"the {scheme}:// URL for {host} names no password")
    if parts.query or parts.fragment:
        raise MailUrlError(f"the {scheme}:// URL for {host} may not have a query or fragment")
    path = unquote(parts.path).strip("/")
    if protocol == "smtp" and path:
        raise MailUrlError(f"the {scheme}:// URL for {host} may not have a path")
    if ca_file:
        ca_path = Path(ca_file)
        if not ca_path.is_file():
            raise MailUrlError(f"the mail CA file {str(ca_path)!r} does not exist")
    return MailUrl(
        scheme=scheme,
        host=host,
        port=port_text or default_port,
        user=unquote(parts.username),
        password=unquote(parts.password),
        mailbox=path or DEFAULT_MAILBOX,
        ca_file=str(ca_file) if ca_file else None,
    )


# ---------------------------------------------------------------------------------------------
# Connections


def open_smtp(url: MailUrl, *, timeout: float = DEFAULT_TIMEOUT) -> smtplib.SMTP:
    """A logged-in SMTP connection following url's TLS policy. The caller quits it."""
    if url.protocol != "smtp":
        raise ValueError("open_smtp needs an smtp:// or smtps:// URL")
    context = url.ssl_context()
    client: smtplib.SMTP | None = None
    try:
        client = connect_smtp(url.host, url.port, tls=url.tls, context=context, timeout=timeout)
        client.login(url.user, url.password)
        return client
    except StartTlsMissing:
        _close_smtp(client)
        raise MailConnectionError(
            f"{url}: the server does not offer STARTTLS; refusing to log in without TLS"
        ) from None
    except smtplib.SMTPAuthenticationError as exc:
        _close_smtp(client)
        raise MailConnectionError(f"{url}: login refused ({exc.smtp_code})") from None
    except (OSError, smtplib.SMTPException, ssl.SSLError) as exc:
        _close_smtp(client)
        raise MailConnectionError(f"{url}: {_describe(exc)}") from None


def _close_smtp(client: smtplib.SMTP | None) -> None:
    if client is not None:
        with contextlib.suppress(OSError):
            client.close()


def open_imap(url: MailUrl, *, timeout: float = DEFAULT_TIMEOUT) -> IMAPClient:
    """A logged-in IMAPClient following url's TLS policy (mailbox not yet selected)."""
    if url.protocol != "imap":
        raise ValueError("open_imap needs an imap:// or imaps:// URL")
    context = url.ssl_context()
    client: IMAPClient | None = None
    try:
        client = connect_imap(url.host, url.port, tls=url.tls, context=context, timeout=timeout)
        client.login(url.user, url.password)
        return client
    except StartTlsMissing:
        _close_imap(client)
        raise MailConnectionError(
            f"{url}: the server does not offer STARTTLS; refusing to log in without TLS"
        ) from None
    except LoginError:
        _close_imap(client)
        raise MailConnectionError(f"{url}: login refused") from None
    except (OSError, IMAPClientError, ssl.SSLError) as exc:
        _close_imap(client)
        raise MailConnectionError(f"{url}: {_describe(exc)}") from None


def _close_imap(client: IMAPClient | None) -> None:
    if client is not None:
        # Best effort on an already failing connection.
        with contextlib.suppress(Exception):
            client.shutdown()


def _describe(exc: BaseException) -> str:
    """A one-line reason; library messages hold server replies, never our password."""
    text = str(exc).strip() or type(exc).__name__
    return f"{type(exc).__name__}: {text}"


__all__ = [
    "MailConnectionError",
    "MailUrl",
    "MailUrlError",
    "StartTlsMissing",
    "Tls",
    "connect_imap",
    "connect_smtp",
    "is_loopback",
    "open_imap",
    "open_smtp",
    "parse_mail_url",
]
