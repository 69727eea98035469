"""Mailbox failures in words a person can act on: `MailError` (a HostError: mail_failed) with
a typed `code` (dns, connect, tls, auth, refused, protocol), and `classify`, which turns what
imapclient, smtplib, ssl and socket raise into one, naming the server and the next step."""

from __future__ import annotations

import re
import smtplib
import socket
import ssl
from dataclasses import dataclass
from enum import StrEnum

from imapclient.exceptions import LoginError

from native_host.errors import HostError
from native_host.infrastructure.mail_settings import Server


class MailErrorCode(StrEnum):
    DNS = "dns"  # the server name does not resolve
    CONNECT = "connect"  # refused, timed out, unreachable, connection dropped
    TLS = "tls"  # certificate not trusted, wrong name, no STARTTLS, handshake failure
    AUTH = "auth"  # login refused
    REFUSED = "refused"  # the server refused the sender, a recipient or the message
    PROTOCOL = "protocol"  # anything else the server answered that we cannot use


class MailError(HostError):
    """A mailbox operation failed. `code` says which part, `part` which server (imap/smtp),
    `transient` whether trying again later may help; str() is a sentence a person can act on."""

    def __init__(
        self,
        code: MailErrorCode,
        part: str,
        message: str,
        advice: str = "",
        *,
        transient: bool = True,
    ) -> None:
        super().__init__(f"{message} {advice}".strip())
        self.code = code
        self.part = part
        self.message = message
        self.advice = advice
        self.transient = transient

    protocol_code = "mail_failed"

    def protocol_message(self) -> str:
        """Which server failed first (IMAP:, SMTP:), then the sentence and the advice."""
        text = " ".join((str(self) or type(self).__name__).split())
        part = str(self.part).upper()
        return text if not part or text.upper().startswith(part) else f"{part}: {text}"


@dataclass(frozen=True)
class RecipientRefused:
    """Why the SMTP server refused one recipient."""

    address: str
    smtp_code: int
    reply: str
    kind: str  # "address" (no such mailbox), "policy" (relay/spam), "temporary", "refused"

    @property
    def permanent(self) -> bool:
        return self.smtp_code >= 500


class SendError(MailError):
    """Submission failed; `refused` has the per-recipient reasons when the server gave them."""

    def __init__(
        self,
        code: MailErrorCode,
        message: str,
        advice: str = "",
        *,
        refused: dict[str, RecipientRefused] | None = None,
        transient: bool = True,
    ) -> None:
        super().__init__(code, "smtp", message, advice, transient=transient)
        self.refused = refused or {}


def _recipient_refusal(address: str, code: int, reply: bytes | str) -> RecipientRefused:
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply
    enhanced = re.match(r"\s*([245])\.(\d{1,3})\.\d{1,3}", text)
    if code < 500:
        kind = "temporary"
    elif enhanced and enhanced[2] == "1":
        kind = "address"
    elif enhanced and enhanced[2] == "7":
        kind = "policy"
    else:
        kind = "refused"
    return RecipientRefused(address, code, text.strip(), kind)


_CONNECT_ADVICE = (
    "Check the server name and port, and that this computer can reach it "
    "(a firewall or captive portal may be in the way)."
)
_TLS_PORT_ADVICE = (
    "Check the port and security: ports 993 and 465 use TLS from the start (imaps://, smtps://), "
    "143 and 587 use STARTTLS (imap://, smtp://)."
)


def classify(exc: BaseException, server: Server, *, ca_file: str | None = None) -> MailError:
    """A low-level failure as a MailError in plain words."""
    what = f"the {server.protocol.upper()} server {server.host}:{server.port}"
    part = server.protocol
    if isinstance(exc, MailError):
        return exc
    if isinstance(exc, ssl.SSLCertVerificationError):
        reason = exc.verify_message or str(exc)
        # 62: X509_V_ERR_HOSTNAME_MISMATCH, 64: X509_V_ERR_IP_ADDRESS_MISMATCH
        if exc.verify_code in (62, 64) or "mismatch" in reason.lower():
            return MailError(
                MailErrorCode.TLS,
                part,
                f"The certificate of {what} is for another name than {server.host}.",
                "Use the server name the provider documents; if it is right, someone may be "
                "intercepting the connection.",
            )
        anchor = f"the CA file {ca_file}" if ca_file else "this computer's trusted authorities"
        return MailError(
            MailErrorCode.TLS,
            part,
            f"The certificate of {what} is not trusted by {anchor} ({reason}).",
            "If the server uses a private or self-signed certificate, give its CA certificate "
            "as the CA file; otherwise something may be intercepting the connection.",
        )
    if isinstance(exc, ssl.SSLError):
        return MailError(
            MailErrorCode.TLS,
            part,
            f"The TLS handshake with {what} failed ({exc.reason or exc}).",
            _TLS_PORT_ADVICE,
        )
    if isinstance(exc, socket.gaierror):
        return MailError(
            MailErrorCode.DNS,
            part,
            f"The server name {server.host} does not resolve ({exc.strerror or exc}).",
            "Check the name for typos and that this computer is online.",
        )
    if isinstance(exc, ConnectionRefusedError):
        return MailError(
            MailErrorCode.CONNECT,
            part,
            f"{what[0].upper()}{what[1:]} refused the connection.",
            "Check the port, and that the server (or Bridge) is running. " + _CONNECT_ADVICE,
        )
    if isinstance(exc, TimeoutError | socket.timeout):
        return MailError(
            MailErrorCode.CONNECT,
            part,
            f"{what[0].upper()}{what[1:]} did not answer in time.",
            _CONNECT_ADVICE,
        )
    if isinstance(exc, LoginError):
        return MailError(
            MailErrorCode.AUTH,
            part,
            f"{what[0].upper()}{what[1:]} refused the login for {server.username} "
            f"({_imap_text(exc)}).",
            "Check the user name and password; many providers need an app password or an "
            "authorization code, and IMAP access switched on in the web settings.",
            transient=False,
        )
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        return MailError(
            MailErrorCode.AUTH,
            part,
            f"{what[0].upper()}{what[1:]} refused the login for {server.username} "
            f"({exc.smtp_code} {_smtp_text(exc.smtp_error)}).",
            "Check the user name and password; many providers need an app password or an "
            "authorization code for SMTP.",
            transient=False,
        )
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return MailError(
            MailErrorCode.AUTH,
            part,
            f"{what[0].upper()}{what[1:]} offers no login (AUTH) here.",
            "Use the submission port (587 with STARTTLS or 465 with TLS), not port 25.",
            transient=False,
        )
    if isinstance(exc, smtplib.SMTPServerDisconnected | ConnectionError | EOFError):
        return MailError(
            MailErrorCode.CONNECT,
            part,
            f"{what[0].upper()}{what[1:]} closed the connection ({exc}).",
            _TLS_PORT_ADVICE,
        )
    if isinstance(exc, OSError):
        return MailError(
            MailErrorCode.CONNECT,
            part,
            f"Cannot connect to {what} ({exc.strerror or exc}).",
            _CONNECT_ADVICE,
        )
    return MailError(
        MailErrorCode.PROTOCOL,
        part,
        f"{what[0].upper()}{what[1:]} answered something unexpected ({type(exc).__name__}: "
        f"{_imap_text(exc)}).",
        "Try again later; if it persists, check the server settings.",
    )


def _imap_text(exc: BaseException) -> str:
    text = str(exc.args[0] if exc.args else exc)
    if text.startswith(("b'", 'b"')):
        text = text[2:-1]
    return text.strip() or type(exc).__name__


def _smtp_text(reply: bytes | str) -> str:
    return (reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply).strip()


def _starttls_missing(server: Server) -> MailError:
    return MailError(
        MailErrorCode.TLS,
        server.protocol,
        f"The {server.protocol.upper()} server {server.host}:{server.port} does not offer "
        "STARTTLS, so the password would travel unencrypted; refused.",
        _TLS_PORT_ADVICE,
        transient=False,
    )
