"""infrastructure.mailbox against the real mail stack (Dovecot IMAP/IMAPS + aiosmtpd submission)."""

from __future__ import annotations

import contextlib
import dataclasses
import socket
import ssl
import stat
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path

import pytest
from harness.mail import MailStack, free_port
from harness.tls import self_signed

from native_host.infrastructure.mail_settings import MailSettings, Security, Server, resolve
from native_host.infrastructure.mailbox import (
    Credentials,
    Mailbox,
    MailError,
    MailErrorCode,
    Outbox,
    SendError,
    crlf,
)
from shared_pki.net import mail as net_mail

pytestmark = pytest.mark.mail

ALICE, BOB = "alice@example.test", "bob@example.test"


def settings_for(stack: MailStack, user: str) -> MailSettings:
    return resolve(
        user,
        imap_url=f"imaps://{user.replace('@', '%40')}@127.0.0.1:{stack.imaps_port}",
        smtp_url=f"smtp://{user.replace('@', '%40')}@127.0.0.1:{stack.smtp_port}",
    )


@pytest.fixture
def alice(mail_stack: MailStack) -> Iterator[Mailbox]:
    with Mailbox(
        settings_for(mail_stack, ALICE),
        Credentials(password=mail_stack.users[ALICE]),
        ca_file=mail_stack.ca_cert_path,
        timeout=10,
    ) as box:
        yield box


def message(sender: str, rcpt: str, subject: str, **headers: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = sender, rcpt, subject
    msg["Message-ID"] = make_msgid(domain="example.test")
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    msg.set_content("Hello.\n")
    return msg


def count_in(stack: MailStack, user: str, message_id: str, folder: str = "INBOX") -> int:
    client = stack.imap_client(user)
    try:
        if not client.folder_exists(folder):
            return 0
        client.select_folder(folder, readonly=True)
        return len(client.search(["HEADER", "Message-ID", message_id]))
    finally:
        client.logout()


# ---- login and its failures ---------------------------------------------------------------


def test_login_over_imaps_and_smtp_starttls(alice: Mailbox) -> None:
    alice.login()


def test_login_over_imap_starttls(mail_stack: MailStack) -> None:
    settings = dataclasses.replace(
        settings_for(mail_stack, ALICE),
        imap=Server("imap", "127.0.0.1", mail_stack.imap_port, Security.STARTTLS, ALICE),
    )
    box = Mailbox(
        settings, Credentials(password=mail_stack.users[ALICE]), ca_file=mail_stack.ca_cert_path
    )
    client = box.imap_connect()
    try:
        # STARTTLS really happened: the connection is wrapped.
        assert isinstance(client._imap.sock, ssl.SSLSocket)
    finally:
        client.logout()


def test_wrong_imap_password_is_an_auth_error(mail_stack: MailStack) -> None:
    box = Mailbox(
        settings_for(mail_stack, ALICE),
        Credentials(password="wrong"),
        ca_file=mail_stack.ca_cert_path,
    )
    with pytest.raises(MailError) as failure:
        box.login()
    assert failure.value.code is MailErrorCode.AUTH
    assert failure.value.part == "imap"
    assert "refused the login" in str(failure.value)
    assert "app password" in str(failure.value)


def test_wrong_smtp_password_is_an_auth_error(mail_stack: MailStack) -> None:
    box = Mailbox(
        settings_for(mail_stack, ALICE),
        Credentials(password="wrong"),
        ca_file=mail_stack.ca_cert_path,
    )
    with pytest.raises(MailError) as failure:
        box.smtp_connect()
    assert failure.value.code is MailErrorCode.AUTH
    assert failure.value.part == "smtp"
    assert "535" in str(failure.value)


def test_untrusted_certificate_is_a_tls_error(mail_stack: MailStack) -> None:
    box = Mailbox(settings_for(mail_stack, ALICE), Credentials(password="x"))  # no CA file
    with pytest.raises(MailError) as failure:
        box.imap_connect()
    assert failure.value.code is MailErrorCode.TLS
    assert "not trusted" in str(failure.value)
    with pytest.raises(MailError) as failure:
        box.smtp_connect()  # STARTTLS, then the same certificate
    assert failure.value.code is MailErrorCode.TLS


class LineServer:
    """A loopback server that greets and answers lines from a script: fake IMAP/SMTP peers."""

    def __init__(
        self,
        greeting: bytes,
        answer: Callable[[bytes], bytes | None],
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.greeting, self.answer, self.tls = greeting, answer, tls
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = self.sock.accept()
                threading.Thread(target=self._talk, args=(conn,), daemon=True).start()

    def _talk(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError, ssl.SSLError):
            if self.tls is not None:
                conn = self.tls.wrap_socket(conn, server_side=True)
            with conn:
                conn.sendall(self.greeting)
                reader = conn.makefile("rb")
                for line in reader:
                    reply = self.answer(line)
                    if reply is None:
                        return
                    conn.sendall(reply)

    def close(self) -> None:
        self.sock.close()


def imap_without_starttls(line: bytes) -> bytes | None:
    tag, _, command = line.decode().strip().partition(" ")
    if command.upper().startswith("CAPABILITY"):
        return f"* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n{tag} OK done\r\n".encode()
    if command.upper().startswith("LOGOUT"):
        return f"* BYE\r\n{tag} OK bye\r\n".encode()
    return f"{tag} NO not here\r\n".encode()


def smtp_without_starttls(line: bytes) -> bytes | None:
    verb = line.decode().strip().upper()
    if verb.startswith("EHLO"):
        return b"250-fake\r\n250 AUTH PLAIN\r\n"
    if verb.startswith("QUIT"):
        return None
    return b"502 no\r\n"


def test_missing_starttls_is_refused_unless_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    imap = LineServer(b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] fake\r\n", imap_without_starttls)
    smtp = LineServer(b"220 fake ESMTP\r\n", smtp_without_starttls)
    try:
        settings = MailSettings(
            address=ALICE,
            imap=Server("imap", "127.0.0.1", imap.port, Security.STARTTLS, ALICE),
            smtp=Server("smtp", "127.0.0.1", smtp.port, Security.STARTTLS, ALICE),
            source="test",
        )
        # Pretend the host is remote: the loopback exemption must not apply.
        monkeypatch.setattr(net_mail, "is_loopback", lambda host: False)
        box = Mailbox(settings, Credentials(password="secret-never-sent"), timeout=5)
        for connect in (box.imap_connect, box.smtp_connect):
            with pytest.raises(MailError) as failure:
                connect()
            assert failure.value.code is MailErrorCode.TLS
            assert "does not offer STARTTLS" in str(failure.value)
    finally:
        imap.close()
        smtp.close()


def test_certificate_for_another_name_is_a_tls_error(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path / "tls", ["mail.other.example"])
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    imap = LineServer(b"* OK fake\r\n", imap_without_starttls, tls=server_ctx)
    try:
        settings = MailSettings(
            address=ALICE,
            imap=Server("imap", "localhost", imap.port, Security.SSL, ALICE),
            smtp=Server("smtp", "localhost", 1, Security.SSL, ALICE),
            source="test",
        )
        box = Mailbox(settings, Credentials(password="x"), ca_file=cert, timeout=5)
        with pytest.raises(MailError) as failure:
            box.imap_connect()
        assert failure.value.code is MailErrorCode.TLS
        assert "another name" in str(failure.value)
    finally:
        imap.close()


def test_unknown_host_and_closed_port(mail_stack: MailStack) -> None:
    base = settings_for(mail_stack, ALICE)
    creds = Credentials(password="x")
    dns = dataclasses.replace(
        base, imap=Server("imap", "nonexistent.invalid", 993, Security.SSL, ALICE)
    )
    with pytest.raises(MailError) as failure:
        Mailbox(dns, creds, timeout=5).imap_connect()
    assert failure.value.code is MailErrorCode.DNS
    assert "does not resolve" in str(failure.value)
    closed = dataclasses.replace(
        base, smtp=Server("smtp", "127.0.0.1", free_port(), Security.STARTTLS, ALICE)
    )
    with pytest.raises(MailError) as failure:
        Mailbox(closed, creds, timeout=5).smtp_connect()
    assert failure.value.code is MailErrorCode.CONNECT
    assert "refused the connection" in str(failure.value)


def test_implicit_tls_against_a_plain_port_says_check_the_port(mail_stack: MailStack) -> None:
    settings = dataclasses.replace(
        settings_for(mail_stack, ALICE),
        imap=Server("imap", "127.0.0.1", mail_stack.imap_port, Security.SSL, ALICE),
    )
    box = Mailbox(settings, Credentials(password="x"), ca_file=mail_stack.ca_cert_path, timeout=5)
    with pytest.raises(MailError) as failure:
        box.imap_connect()
    assert failure.value.code is MailErrorCode.TLS
    assert "Check the port" in str(failure.value)


# ---- sending ----------------------------------------------------------------------------------


def test_send_from_alice_arrives_in_bobs_inbox(mail_stack: MailStack, alice: Mailbox) -> None:
    msg = message(ALICE, BOB, "send test")
    result = alice.send(msg.as_bytes(), ALICE, [BOB])
    assert result.accepted == (BOB,) and not result.refused
    # The stack delivers before it answers 250: no waiting needed.
    assert count_in(mail_stack, BOB, msg["Message-ID"]) == 1


def test_send_refusals_are_typed_per_recipient(mail_stack: MailStack, alice: Mailbox) -> None:
    msg = message(ALICE, BOB, "partly refused")
    result = alice.send(msg.as_bytes(), ALICE, [BOB, "nobody@example.test"])
    assert result.accepted == (BOB,)
    refusal = result.refused["nobody@example.test"]
    assert (refusal.smtp_code, refusal.kind, refusal.permanent) == (550, "address", True)
    assert count_in(mail_stack, BOB, msg["Message-ID"]) == 1

    with pytest.raises(SendError) as failure:
        alice.send(message(ALICE, BOB, "all refused").as_bytes(), ALICE, ["ghost@example.test"])
    assert failure.value.code is MailErrorCode.REFUSED
    assert failure.value.refused["ghost@example.test"].kind == "address"
    assert not failure.value.transient


# ---- folders ----------------------------------------------------------------------------------


def test_append_to_a_new_folder_and_find_by_header(alice: Mailbox) -> None:
    folder = f"AutosmimeTest{uuid.uuid4().hex[:8]}"
    marker = uuid.uuid4().hex
    msg = message(ALICE, ALICE, "backup-like", X_Autosmime_Test=marker)
    raw = msg.as_bytes()  # LF line ends: stored as CRLF
    uid = alice.append(folder, raw, flags=[b"\\Seen"])
    assert uid is not None
    assert alice.find(folder, "X-Autosmime-Test", marker) == [uid]
    assert alice.find(folder, "X-Autosmime-Test", "absent") == []
    assert alice.find("NoSuchFolder" + marker, "X-Autosmime-Test", marker) == []
    assert alice.fetch_raw(folder, uid) == crlf(raw)
    # A second append reuses the folder.
    assert alice.append(folder, message(ALICE, ALICE, "again").as_bytes()) == uid + 1


def test_sent_folder_and_find_by_message_id(mail_stack: MailStack, alice: Mailbox) -> None:
    msg = message(ALICE, BOB, "filed in sent")
    folder, uid = alice.file_sent_copy(msg.as_bytes())  # type: ignore[misc]
    assert folder == alice.sent_folder()
    assert count_in(mail_stack, ALICE, msg["Message-ID"], folder) == 1
    found = alice.find_by_message_id(msg["Message-ID"])
    assert found is not None and (found.folder, found.uid) == (folder, uid)
    assert b"filed in sent" in found.raw
    assert alice.find_by_message_id(make_msgid(domain="example.test")) is None


def test_provider_filing_sent_itself_gets_no_second_copy(
    mail_stack: MailStack, alice: Mailbox
) -> None:
    alice.settings = dataclasses.replace(alice.settings, sent_by_server=True)
    assert alice.file_sent_copy(message(ALICE, BOB, "not filed").as_bytes()) is None


# ---- waiting for mail ---------------------------------------------------------------------------


def deliver_when(ready: threading.Event, stack: MailStack, msg: EmailMessage) -> threading.Thread:
    def run() -> None:
        if ready.wait(15):
            with stack.smtp_client(BOB) as smtp:
                smtp.send_message(msg)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("force_poll", [False, True], ids=["idle", "poll"])
def test_wait_for_catches_mail_delivered_after_the_wait_began(
    mail_stack: MailStack, alice: Mailbox, force_poll: bool
) -> None:
    subject = f"challenge {uuid.uuid4().hex}"
    ready, modes = threading.Event(), []
    # Decoys first: an older message and a new one with another subject must not match.
    with mail_stack.smtp_client(BOB) as smtp:
        smtp.send_message(message(BOB, ALICE, subject + " old"))
    thread = deliver_when(ready, mail_stack, message(BOB, ALICE, subject, Auto_Submitted="x"))

    def waiting(mode: str) -> None:
        modes.append(mode)
        ready.set()

    started = time.monotonic()
    raw = alice.wait_for(
        lambda headers: headers["Subject"] == subject,
        timeout=20,
        include_existing=False,
        force_poll=force_poll,
        # With IDLE, a long poll interval proves the push woke us, not a poll.
        poll_interval=0.2 if force_poll else 60,
        on_waiting=waiting,
    )
    thread.join(5)
    assert raw is not None and f"Subject: {subject}\r\n".encode() in raw
    assert modes == ["poll" if force_poll else "idle"]
    assert time.monotonic() - started < 10


def test_wait_for_finds_mail_already_there_and_times_out(
    mail_stack: MailStack, alice: Mailbox
) -> None:
    subject = f"early {uuid.uuid4().hex}"
    with mail_stack.smtp_client(BOB) as smtp:
        smtp.send_message(message(BOB, ALICE, subject))
    raw = alice.wait_for(lambda h: h["Subject"] == subject, timeout=5)
    assert raw is not None and subject.encode() in raw
    started = time.monotonic()
    assert alice.wait_for(lambda h: h["Subject"] == subject, 0.5, include_existing=False) is None
    assert time.monotonic() - started < 5


# ---- outbox -------------------------------------------------------------------------------------


def test_outbox_keeps_a_message_until_the_server_took_it_and_sends_it_once(
    mail_stack: MailStack, tmp_path: Path
) -> None:
    good = settings_for(mail_stack, ALICE)
    down = dataclasses.replace(
        good, smtp=Server("smtp", "127.0.0.1", free_port(), Security.STARTTLS, ALICE)
    )
    creds = Credentials(password=mail_stack.users[ALICE])
    outbox_dir = tmp_path / "outbox"
    msg = message(ALICE, BOB, "via the outbox")

    broken = Mailbox(down, creds, ca_file=mail_stack.ca_cert_path, outbox=outbox_dir, timeout=5)
    with pytest.raises(MailError) as failure:
        broken.submit(msg.as_bytes(), ALICE, [BOB])
    assert failure.value.code is MailErrorCode.CONNECT
    [entry] = Outbox(outbox_dir).entries()
    assert entry.message_id == msg["Message-ID"]
    assert stat.S_IMODE(entry.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(outbox_dir.stat().st_mode) == 0o700
    assert broken.flush_outbox()[0].status == "failed"  # still down: still kept
    assert len(Outbox(outbox_dir).entries()) == 1
    assert count_in(mail_stack, BOB, msg["Message-ID"]) == 0

    fixed = Mailbox(good, creds, ca_file=mail_stack.ca_cert_path, outbox=outbox_dir, timeout=5)
    assert [r.status for r in fixed.flush_outbox()] == ["sent"]
    assert Outbox(outbox_dir).entries() == []
    assert fixed.flush_outbox() == []
    assert count_in(mail_stack, BOB, msg["Message-ID"]) == 1


def test_outbox_never_sends_twice_what_it_recorded_as_sent(
    mail_stack: MailStack, tmp_path: Path
) -> None:
    creds = Credentials(password=mail_stack.users[ALICE])
    box = Mailbox(
        settings_for(mail_stack, ALICE),
        creds,
        ca_file=mail_stack.ca_cert_path,
        outbox=tmp_path / "outbox",
    )
    msg = message(ALICE, BOB, "crash after acceptance")
    # A crash between "recorded as sent" and "file deleted" leaves both behind.
    outbox = Outbox(tmp_path / "outbox")
    entry = outbox.put(msg.as_bytes(), ALICE, [BOB])
    outbox.mark_sent(entry.key)
    assert [r.status for r in box.flush_outbox()] == ["already-sent"]
    assert outbox.entries() == []
    assert count_in(mail_stack, BOB, msg["Message-ID"]) == 0
    # The same Message-ID to another envelope (a Bcc copy) is a different submission.
    assert Outbox.key_for(msg.as_bytes(), ALICE, [BOB]) != Outbox.key_for(
        msg.as_bytes(), ALICE, ["carol@example.test"]
    )


def test_submit_files_the_sent_copy_once(mail_stack: MailStack, tmp_path: Path) -> None:
    box = Mailbox(
        settings_for(mail_stack, ALICE),
        Credentials(password=mail_stack.users[ALICE]),
        ca_file=mail_stack.ca_cert_path,
        outbox=tmp_path / "outbox",
    )
    msg = message(ALICE, BOB, "sent copy")
    result = box.submit(msg.as_bytes(), ALICE, [BOB], file_sent=True)
    assert result.accepted == (BOB,) and result.sent_copy is not None
    assert count_in(mail_stack, BOB, msg["Message-ID"]) == 1
    assert count_in(mail_stack, ALICE, msg["Message-ID"], result.sent_copy[0]) == 1
    assert box.outbox is not None and box.outbox.entries() == box.outbox.to_file() == []
