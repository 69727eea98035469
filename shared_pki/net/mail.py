"""The CA's own mailbox as URLs: `smtp://`, `smtps://`, `imap://`, `imaps://` with user and
password, and the connections they open.

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
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

if TYPE_CHECKING:
    from imapclient import IMAPClient

SMTP_SCHEMES = {"smtp": (587, False), "smtps": (465, True)}
IMAP_SCHEMES = {"imap": (143, False), "imaps": (993, True)}
DEFAULT_MAILBOX = "INBOX"
DEFAULT_TIMEOUT = 30.0


class MailUrlError(ValueError):
    """A mail URL that cannot be used; the message says why and never holds the password."""


class MailConnectionError(OSError):
    """A mail server could not be reached, refused TLS or refused the login."""


def is_loopback(host: str) -> bool:
    """True for `localhost` and loopback IP literals; other names are not resolved."""
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


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
        if url.implicit_tls:
            client = smtplib.SMTP_SSL(url.host, url.port, timeout=timeout, context=context)
        else:
            client = smtplib.SMTP(url.host, url.port, timeout=timeout)
        client.ehlo()
        if not url.implicit_tls:
            if client.has_extn("starttls"):
                client.starttls(context=context)
                client.ehlo()
            elif not url.loopback:
                raise MailConnectionError(
                    f"{url}: the server does not offer STARTTLS; refusing to log in without TLS"
                )
        client.login(url.user, url.password)
        return client
    except MailConnectionError:
        _close_smtp(client)
        raise
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
    from imapclient import IMAPClient
    from imapclient.exceptions import IMAPClientError, LoginError

    if url.protocol != "imap":
        raise ValueError("open_imap needs an imap:// or imaps:// URL")
    context = url.ssl_context()
    client: IMAPClient | None = None
    try:
        client = IMAPClient(
            url.host,
            port=url.port,
            ssl=url.implicit_tls,
            ssl_context=context if url.implicit_tls else None,
            timeout=timeout,
        )
        if not url.implicit_tls:
            if client.has_capability("STARTTLS"):
                client.starttls(ssl_context=context)
            elif not url.loopback:
                raise MailConnectionError(
                    f"{url}: the server does not offer STARTTLS; refusing to log in without TLS"
                )
        client.login(url.user, url.password)
        return client
    except MailConnectionError:
        _close_imap(client)
        raise
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
    "is_loopback",
    "open_imap",
    "open_smtp",
    "parse_mail_url",
]
