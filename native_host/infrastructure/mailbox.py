"""The user's own mailbox: IMAP (imapclient) and SMTP submission (smtplib) behind one class.

- `login()` proves the settings with a real IMAP and SMTP login; failures are `MailError`s with a
  typed `code` (dns, connect, tls, auth, ...) and a message that says what failed and what to do.
- TLS is always verified (against `ca_file` when given, else the system store) and required:
  implicit TLS, or STARTTLS, which a server must offer unless it is on loopback.
- `send()` submits with AUTH and returns only after the server accepted the message; refusals are
  typed per recipient. `submit()` goes through an on-disk outbox: the message is stored first and
  removed only after the server accepted it and its key is recorded as sent; `flush_outbox()`
  retries, skipping what is recorded as sent (nothing lost, nothing sent twice).
- `append()` creates the folder if needed; `sent_folder()` finds Sent by SPECIAL-USE \\Sent.
- `wait_for()` watches a folder with IMAP IDLE (polling when the server lacks IDLE) and returns
  the raw bytes of the first message whose headers match.

The message format is the caller's: this module moves bytes (line ends made CRLF on the wire).
One cohesive thing: one class over one account's two servers. Its errors are in mail_errors.py,
the on-disk outbox in outbox.py (both importable from here too).
"""

from __future__ import annotations

import contextlib
import datetime
import email.parser
import email.policy
import os
import re
import smtplib
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from email.message import EmailMessage
from typing import Any

from imapclient import IMAPClient
from imapclient import imapclient as _imapclient_module
from imapclient.exceptions import IMAPClientAbortError, IMAPClientError

from native_host.errors import StorageFailed
from native_host.infrastructure.mail_errors import (  # the mailbox's errors, importable here too
    MailError,
    MailErrorCode,
    RecipientRefused,
    SendError,
    _recipient_refusal,
    _smtp_text,
    _starttls_missing,
    classify,
)
from native_host.infrastructure.mail_settings import MailSettings, Security
from native_host.infrastructure.oauth import SignInRequired
from native_host.infrastructure.outbox import FlushResult, Outbox, OutboxEntry, _message_id
from shared_pki.net.mail import StartTlsMissing, Tls, connect_imap, connect_smtp

DEFAULT_TIMEOUT = 30.0
#: What we say in EHLO: an address literal rather than this computer's name.
EHLO_NAME = "[127.0.0.1]"
#: Re-issue IDLE at least this often (RFC 2177: servers may drop an IDLE after 30 minutes).
IDLE_RENEW = 9 * 60.0
SENT = _imapclient_module.SENT
ALL = _imapclient_module.ALL
HEADER_PARSER = email.parser.BytesHeaderParser(policy=email.policy.default)


#: The shared connection layer's name for each way a server of the settings is protected.
TLS: dict[Security, Tls] = {
    Security.SSL: "implicit",
    Security.STARTTLS: "starttls",
    Security.PLAIN: "none",
}

# ---------------------------------------------------------------------------------------------
# Credentials and results


@dataclass(frozen=True)
class Credentials:
    """A password (or app password / authorization code) or an XOAUTH2 access token. `renew`
    (signed-in accounts): given the access token a server refused, a fresh one; the mailbox
    asks it once before it reports a refused login."""

    password: str | None = field(default=None, repr=False)
    xoauth2_token: str | None = field(default=None, repr=False)
    renew: Callable[[str], str] | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.password and not self.xoauth2_token:
            raise ValueError("credentials need a password or an XOAUTH2 token")


@dataclass(frozen=True)
class SendResult:
    accepted: tuple[str, ...]
    refused: dict[str, RecipientRefused] = field(default_factory=dict)
    already_sent: bool = False  # the outbox had recorded this message as sent: not sent again
    sent_copy: tuple[str, int | None] | None = None  # (folder, uid) of the copy filed in Sent


@dataclass(frozen=True)
class FoundMessage:
    folder: str
    uid: int
    raw: bytes


def crlf(data: bytes) -> bytes:
    """Bare LF line ends as CRLF, as SMTP and IMAP want them (CRLF stays as it is)."""
    return re.sub(rb"(?<!\r)\n", b"\r\n", data)


# ---------------------------------------------------------------------------------------------
# The mailbox


class Mailbox:
    """One account's IMAP and SMTP servers. Use as a context manager or call close()."""

    def __init__(
        self,
        settings: MailSettings,
        credentials: Credentials,
        *,
        ca_file: str | os.PathLike[str] | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        outbox: str | os.PathLike[str] | None = None,
    ) -> None:
        self.settings = settings
        self.credentials = credentials
        self.ca_file = str(ca_file) if ca_file else None
        self.timeout = timeout
        self.outbox = Outbox(outbox) if outbox is not None else None
        self._imap: IMAPClient | None = None
        self._special: dict[bytes, str | None] = {}
        self._lock = threading.RLock()

    def __enter__(self) -> Mailbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            client, self._imap = self._imap, None
            self._special = {}
        if client is not None:
            with contextlib.suppress(Exception):
                client.logout()
            with contextlib.suppress(Exception):
                client.shutdown()

    def ssl_context(self) -> ssl.SSLContext:
        try:
            return ssl.create_default_context(cafile=self.ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise MailError(
                MailErrorCode.TLS,
                "imap",
                f"The CA file {self.ca_file} cannot be loaded ({exc}).",
                "Give a PEM file with the server's CA certificate.",
                transient=False,
            ) from None

    # ---- login ---------------------------------------------------------------------------

    def login(self) -> None:
        """Log in to IMAP and to SMTP once each; raise MailError saying what failed."""
        self.close()
        self.imap_connect().logout()
        smtp = self.smtp_connect()
        with contextlib.suppress(smtplib.SMTPException, OSError):
            smtp.quit()

    def _renewing(self, connect: Callable[[], Any]) -> Any:
        """connect(); when the server refuses an access token that can be renewed, once more
        with a renewed one (an access token can be revoked or expire before its time)."""
        try:
            return connect()
        except MailError as error:
            renew, token = self.credentials.renew, self.credentials.xoauth2_token
            if error.code is not MailErrorCode.AUTH or renew is None or not token:
                raise
            self.credentials = replace(self.credentials, xoauth2_token=renew(token))
            return connect()

    def imap_connect(self) -> IMAPClient:
        """A new logged-in IMAP connection, following the TLS policy. The caller closes it."""
        return self._renewing(self._imap_connect)

    def _imap_connect(self) -> IMAPClient:
        server = self.settings.imap
        context = self.ssl_context()
        client: IMAPClient | None = None
        try:
            client = connect_imap(
                server.host, server.port, tls=TLS[server.security], context=context,
                timeout=self.timeout,
            )  # fmt: skip
            if self.credentials.xoauth2_token:
                client.oauth2_login(server.username, self.credentials.xoauth2_token)
            else:
                assert self.credentials.password is not None
                client.login(server.username, self.credentials.password)
            if self.settings.imap_id and client.has_capability("ID"):
                client.id_({"name": "autosmime", "version": "1"})
            return client
        except StartTlsMissing:
            raise _starttls_missing(server) from None
        except Exception as exc:
            if client is not None:
                with contextlib.suppress(Exception):
                    client.shutdown()
            raise classify(exc, server, ca_file=self.ca_file) from exc

    def smtp_connect(self) -> smtplib.SMTP:
        """A new SMTP connection after TLS and AUTH. The caller quits it."""
        return self._renewing(self._smtp_connect)

    def _smtp_connect(self) -> smtplib.SMTP:
        server = self.settings.smtp
        context = self.ssl_context()
        client: smtplib.SMTP | None = None
        try:
            client = connect_smtp(
                server.host, server.port, tls=TLS[server.security], context=context,
                timeout=self.timeout, local_hostname=EHLO_NAME,
            )  # fmt: skip
            token = self.credentials.xoauth2_token
            if token:
                initial = f"user={server.username}\x01auth=Bearer {token}\x01\x01"
                # After a failed XOAUTH2 the server sends a 334 error challenge: answer empty.
                client.auth(
                    "XOAUTH2",
                    lambda challenge=None: initial if challenge is None else "",
                    initial_response_ok=True,
                )
            else:
                assert self.credentials.password is not None
                client.login(server.username, self.credentials.password)
            return client
        except StartTlsMissing:
            raise _starttls_missing(server) from None
        except Exception as exc:
            if client is not None:
                with contextlib.suppress(Exception):
                    client.close()
            raise classify(exc, server, ca_file=self.ca_file) from exc

    # ---- IMAP helpers -----------------------------------------------------------------------

    def _client(self) -> IMAPClient:
        if self._imap is None:
            self._imap = self.imap_connect()
            self._special = {}
        return self._imap

    def _imap_call(self, operation: Callable[[IMAPClient], Any]) -> Any:
        """Run operation on the shared connection; reconnect once if the connection broke."""
        with self._lock:
            for attempt in range(2):
                client = self._client()
                try:
                    return operation(client)
                except MailError:
                    raise
                except (OSError, EOFError, IMAPClientAbortError) as exc:
                    self.close()
                    if attempt:
                        raise classify(exc, self.settings.imap, ca_file=self.ca_file) from exc
                except IMAPClientError as exc:
                    raise classify(exc, self.settings.imap, ca_file=self.ca_file) from exc
        raise AssertionError("unreachable")

    def _special_folder(self, client: IMAPClient, flag: bytes) -> str | None:
        if flag not in self._special:
            self._special[flag] = client.find_special_folder(flag)
        return self._special[flag]

    def special_folder(self, flag: bytes) -> str | None:
        """The folder with SPECIAL-USE `flag` (mailbox.SENT, mailbox.ALL), or None."""
        return self._imap_call(lambda c: self._special_folder(c, flag))

    def sent_folder(self, *, create: bool = True) -> str:
        """Sent: by SPECIAL-USE \\Sent, else a folder with a usual name, else a new `Sent`."""

        def op(client: IMAPClient) -> str:
            found = self._special_folder(client, SENT)
            if found:
                return found
            if create:
                self._ensure_folder(client, "Sent")
                self._special[SENT] = "Sent"
            return "Sent"

        return self._imap_call(op)

    @staticmethod
    def _ensure_folder(client: IMAPClient, folder: str) -> None:
        if client.folder_exists(folder):
            return
        try:
            client.create_folder(folder)
        except IMAPClientError:
            if not client.folder_exists(folder):  # a concurrent CREATE is fine
                raise
        with contextlib.suppress(IMAPClientError):
            client.subscribe_folder(folder)

    def append(
        self,
        folder: str,
        message: bytes,
        flags: Sequence[bytes | str] = (),
        msg_time: datetime.datetime | None = None,
    ) -> int | None:
        """Store message in folder (created if missing); its UID when the server says it."""

        def op(client: IMAPClient) -> int | None:
            self._ensure_folder(client, folder)
            reply = client.append(folder, crlf(message), flags=tuple(flags), msg_time=msg_time)
            match = re.search(rb"\[APPENDUID \d+ (\d+)\]", reply or b"")
            return int(match[1]) if match else None

        return self._imap_call(op)

    def file_sent_copy(self, message: bytes) -> tuple[str, int | None] | None:
        """File message in Sent (\\Seen), unless the provider does so itself (then None)."""
        if self.settings.sent_by_server:
            return None
        folder = self.sent_folder()
        return folder, self.append(folder, message, flags=[b"\\Seen"])

    def find(self, folder: str, header: str, value: str) -> list[int]:
        """UIDs of messages in folder whose header contains value (SEARCH HEADER)."""

        def op(client: IMAPClient) -> list[int]:
            if not client.folder_exists(folder):
                return []
            client.select_folder(folder, readonly=True)
            return sorted(client.search(["HEADER", header, value]))

        return self._imap_call(op)

    def fetch_raw(self, folder: str, uid: int) -> bytes | None:
        """The whole message, unchanged and without setting \\Seen; None if it is gone."""

        def op(client: IMAPClient) -> bytes | None:
            client.select_folder(folder, readonly=True)
            data = client.fetch([uid], ["BODY.PEEK[]"]).get(uid)
            return data.get(b"BODY[]") if data else None

        return self._imap_call(op)

    def find_by_message_id(
        self, message_id: str, folders: Sequence[str] | None = None
    ) -> FoundMessage | None:
        """The first message with exactly this Message-ID in folders (INBOX, Sent, All)."""
        wanted = message_id.strip()
        if not wanted.startswith("<"):
            wanted = f"<{wanted}>"
        if folders is None:
            folders = ["INBOX"]
            for flag in (SENT, ALL):
                name = self.special_folder(flag)
                if name and name not in folders:
                    folders.append(name)
        for folder in folders:
            for uid in self.find(folder, "Message-ID", wanted):
                raw = self.fetch_raw(folder, uid)
                if raw is not None and _message_id(raw) == wanted:
                    return FoundMessage(folder, uid, raw)
        return None

    # ---- waiting for mail -------------------------------------------------------------------

    def wait_for(
        self,
        predicate: Callable[[EmailMessage], bool],
        timeout: float,
        folder: str = "INBOX",
        *,
        include_existing: bool = True,
        force_poll: bool = False,
        poll_interval: float = 5.0,
        on_waiting: Callable[[str], None] | None = None,
    ) -> bytes | None:
        """Raw bytes of the first message in folder whose headers satisfy predicate, or None
        after timeout seconds.

        Messages already there (received since yesterday) are checked first unless
        include_existing is False; then new mail is awaited with IDLE, or by polling every
        poll_interval seconds when the server lacks IDLE (or force_poll). on_waiting(mode) is
        called once the watch is in place, with mode "idle" or "poll". Uses its own connection.
        """
        deadline = time.monotonic() + timeout
        client = self.imap_connect()
        try:
            return self._wait(
                client,
                predicate,
                deadline,
                folder,
                include_existing,
                "poll" if force_poll or not client.has_capability("IDLE") else "idle",
                poll_interval,
                on_waiting,
            )
        except MailError:
            raise
        except Exception as exc:
            raise classify(exc, self.settings.imap, ca_file=self.ca_file) from exc
        finally:
            with contextlib.suppress(Exception):
                client.logout()
            with contextlib.suppress(Exception):
                client.shutdown()

    def _wait(
        self,
        client: IMAPClient,
        predicate: Callable[[EmailMessage], bool],
        deadline: float,
        folder: str,
        include_existing: bool,
        mode: str,
        poll_interval: float,
        on_waiting: Callable[[str], None] | None,
    ) -> bytes | None:
        selected = client.select_folder(folder, readonly=True)
        last_uid = int(selected.get(b"UIDNEXT", 1)) - 1
        if include_existing:
            since = datetime.date.today() - datetime.timedelta(days=1)
            found = self._first_match(client, client.search(["SINCE", since]), predicate)
            if found is not None:
                return found
        elif not selected.get(b"UIDNEXT"):  # servers without UIDNEXT: everything is old
            last_uid = max(client.search(["ALL"]) or [0])
        announced = False
        while True:
            new = [uid for uid in client.search(["UID", f"{last_uid + 1}:*"]) if uid > last_uid]
            if new:
                last_uid = max(new)
                found = self._first_match(client, new, predicate)
                if found is not None:
                    return found
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            if mode == "idle":
                client.idle()
                if not announced and on_waiting:
                    on_waiting(mode)
                announced = True
                try:
                    # Bounded by poll_interval too: Dovecot can miss announcing a message that
                    # lands just as IDLE starts, and each slice ends with a fresh search.
                    client.idle_check(timeout=min(remaining, IDLE_RENEW, poll_interval))
                finally:
                    client.idle_done()
            else:
                if not announced and on_waiting:
                    on_waiting(mode)
                announced = True
                time.sleep(min(remaining, poll_interval))
                client.noop()

    @staticmethod
    def _first_match(
        client: IMAPClient, uids: Iterable[int], predicate: Callable[[EmailMessage], bool]
    ) -> bytes | None:
        uids = sorted(uids)
        if not uids:
            return None
        headers = client.fetch(uids, ["BODY.PEEK[HEADER]"])
        for uid in uids:
            raw_headers = headers.get(uid, {}).get(b"BODY[HEADER]")
            if raw_headers is None:
                continue
            if predicate(HEADER_PARSER.parsebytes(raw_headers)):
                body = client.fetch([uid], ["BODY.PEEK[]"]).get(uid, {}).get(b"BODY[]")
                if body is not None:
                    return body
        return None

    # ---- sending ----------------------------------------------------------------------------

    def send(self, message: bytes, envelope_from: str, recipients: Sequence[str]) -> SendResult:
        """Submit through SMTP with AUTH; return after the server accepted the message.

        Raises SendError when nothing was accepted (every recipient refused: `refused` says why
        per recipient; or the sender or the message refused). When some recipients were
        accepted, the message is sent and the others are in the result's `refused`.
        """
        if not recipients:
            raise ValueError("no recipients")
        data = crlf(message)
        smtp = self.smtp_connect()
        server = self.settings.smtp
        try:
            options: list[str] = []
            if not all(a.isascii() for a in (envelope_from, *recipients)):
                if not smtp.has_extn("smtputf8"):
                    raise SendError(
                        MailErrorCode.REFUSED,
                        "The SMTP server cannot take non-ASCII addresses (no SMTPUTF8).",
                        "Use the ASCII form of the addresses.",
                        transient=False,
                    )
                options.append("SMTPUTF8")
            if not data.isascii() and smtp.has_extn("8bitmime"):
                options.append("BODY=8BITMIME")
            refused_raw = smtp.sendmail(envelope_from, list(recipients), data, options)
        except smtplib.SMTPRecipientsRefused as exc:
            refused = {a: _recipient_refusal(a, c, r) for a, (c, r) in exc.recipients.items()}
            raise SendError(
                MailErrorCode.REFUSED,
                "The SMTP server refused every recipient: "
                + "; ".join(f"{a}: {r.smtp_code} {r.reply}" for a, r in refused.items()),
                "Check the addresses.",
                refused=refused,
                transient=all(not r.permanent for r in refused.values()),
            ) from None
        except smtplib.SMTPSenderRefused as exc:
            raise SendError(
                MailErrorCode.REFUSED,
                f"The SMTP server refused the sender {envelope_from} "
                f"({exc.smtp_code} {_smtp_text(exc.smtp_error)}).",
                "The From address must be one this account may send as.",
                transient=exc.smtp_code < 500,
            ) from None
        except smtplib.SMTPDataError as exc:
            raise SendError(
                MailErrorCode.REFUSED,
                f"The SMTP server refused the message ({exc.smtp_code} "
                f"{_smtp_text(exc.smtp_error)}).",
                "It may be too large or look like spam to the server.",
                transient=exc.smtp_code < 500,
            ) from None
        except SendError:
            raise
        except (smtplib.SMTPException, OSError) as exc:
            error = classify(exc, server, ca_file=self.ca_file)
            raise SendError(error.code, error.message, error.advice) from exc
        finally:
            with contextlib.suppress(smtplib.SMTPException, OSError):
                smtp.quit()
        refused = {a: _recipient_refusal(a, c, r) for a, (c, r) in refused_raw.items()}
        accepted = tuple(r for r in recipients if r not in refused)
        return SendResult(accepted=accepted, refused=refused)

    def submit(
        self,
        message: bytes,
        envelope_from: str,
        recipients: Sequence[str],
        *,
        file_sent: bool = False,
    ) -> SendResult:
        """send() through the outbox: the message is on disk before submission and stays there
        if submission fails (the MailError is raised; flush_outbox() retries). With
        file_sent, a copy goes to Sent afterwards (unless the provider files it itself)."""
        if self.outbox is None:
            raise ValueError("this Mailbox has no outbox folder")
        entry = self.outbox.put(message, envelope_from, recipients, file_sent=file_sent)
        with self.outbox.locked():
            try:
                return self._deliver(entry)
            except SignInRequired:
                # Raised before the server saw anything (no token could be had): the message is
                # taken back, so sending it again once signed in sends it once.
                self.outbox.remove(entry)
                raise

    def _deliver(self, entry: OutboxEntry) -> SendResult:
        assert self.outbox is not None
        if entry.key in self.outbox.sent_keys():
            self.outbox.remove(entry)
            return SendResult(accepted=(), already_sent=True)
        message = entry.read_message()
        result = self.send(message, entry.envelope_from, entry.recipients)
        # The server took it. A profile that cannot be written from here on (a disk that just
        # filled up) must not make it look unsent: a retry would send it twice.
        pending = None
        file_now = False
        if entry.file_sent and not self.settings.sent_by_server:
            # The Sent copy is owed before the message counts as sent: a crash now loses
            # neither the copy nor the record.
            try:
                pending = self.outbox.put(
                    message, entry.envelope_from, entry.recipients, folder="to-file"
                )
            except StorageFailed:
                file_now = True  # no room to keep it for later: file the copy at once
        with contextlib.suppress(StorageFailed):  # removing the entry is what stops a resend
            self.outbox.mark_sent(entry.key)
        self.outbox.remove(entry)
        copy = None
        if pending is not None:
            with contextlib.suppress(MailError):  # else it stays in to-file/ for flush_outbox()
                copy = self._file_pending(pending, message)
        elif file_now:
            with contextlib.suppress(MailError):
                folder = self.sent_folder()
                copy = (folder, self.append(folder, message, flags=[b"\\Seen"]))
        return SendResult(result.accepted, result.refused, sent_copy=copy)

    def _file_pending(self, entry: OutboxEntry, message: bytes) -> tuple[str, int | None]:
        assert self.outbox is not None
        folder = self.sent_folder()
        existing = self.find_by_message_id(entry.message_id, [folder]) if entry.message_id else None
        if existing is not None:
            copy: tuple[str, int | None] = (folder, existing.uid)
        else:
            copy = (folder, self.append(folder, message, flags=[b"\\Seen"]))
        self.outbox.remove(entry)
        return copy

    def flush_outbox(self) -> list[FlushResult]:
        """Submit every waiting message, oldest first; file pending Sent copies.

        Stops at the first failure that is not about one message (DNS, connect, TLS, auth): the
        rest would fail the same way. Messages recorded as sent are removed, not sent again.
        """
        if self.outbox is None:
            raise ValueError("this Mailbox has no outbox folder")
        results: list[FlushResult] = []
        with self.outbox.locked():
            for entry in self.outbox.entries():
                try:
                    result = self._deliver(entry)
                except MailError as exc:
                    results.append(FlushResult(entry.id, entry.message_id, "failed", exc))
                    if exc.code is not MailErrorCode.REFUSED:
                        return results
                    continue
                status = "already-sent" if result.already_sent else "sent"
                results.append(FlushResult(entry.id, entry.message_id, status))
            for entry in self.outbox.to_file():
                try:
                    self._file_pending(entry, entry.read_message())
                except MailError as exc:
                    results.append(FlushResult(entry.id, entry.message_id, "failed", exc))
                    break
                results.append(FlushResult(entry.id, entry.message_id, "filed"))
        return results


__all__ = [
    "ALL",
    "SENT",
    "Credentials",
    "FlushResult",
    "FoundMessage",
    "MailError",
    "MailErrorCode",
    "Mailbox",
    "Outbox",
    "OutboxEntry",
    "RecipientRefused",
    "SendError",
    "SendResult",
    "classify",
    "crlf",
]
