"""The mail harness works with the real Dovecot and SMTP server, and fails loudly when it must."""

from __future__ import annotations

import json
import os
import smtplib
import socket
import ssl
import subprocess
import sys
import threading
import time
import uuid
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path

import pytest
from imapclient import IMAPClient
from imapclient.exceptions import LoginError

from harness import mail
from harness.mail import HarnessError, MailStack, port_is_open, still_alive

pytestmark = pytest.mark.mail

ALICE, BOB, CAROL = (f"{name}@{mail.DOMAIN}" for name in ("alice", "bob", "carol"))


def message(sender: str, rcpt: str, subject: str = "harness test") -> EmailMessage:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = sender, rcpt, subject
    msg["Message-ID"] = make_msgid(domain=mail.DOMAIN)
    msg.set_content("Hello from the test harness.\n")
    return msg


def search_message_id(client: IMAPClient, message_id: str) -> list[int]:
    return list(client.search(["HEADER", "Message-ID", message_id]))


def test_users_are_exposed(mail_stack: MailStack) -> None:
    assert {ALICE, BOB, CAROL, f"eve@{mail.DOMAIN}"} == set(mail_stack.users)
    assert all(mail_stack.users.values())


def test_imap_login_plain(mail_stack: MailStack) -> None:
    client = mail_stack.imap_client(ALICE)
    try:
        assert client.select_folder("INBOX")[b"UIDVALIDITY"]
    finally:
        client.logout()


def test_imaps_login_verifies_certificate(mail_stack: MailStack) -> None:
    client = mail_stack.imap_client(BOB, tls=True)
    try:
        assert client.folder_exists("INBOX")
    finally:
        client.logout()
    # The certificate really is checked: the system trust store does not know it.
    with pytest.raises(ssl.SSLCertVerificationError):
        IMAPClient(mail_stack.host, port=mail_stack.imaps_port, ssl=True, timeout=5)


def test_wrong_password_fails_and_penalty_is_off(mail_stack: MailStack) -> None:
    for _ in range(2):
        client = IMAPClient(mail_stack.host, port=mail_stack.imap_port, ssl=False, timeout=10)
        with pytest.raises(LoginError, match="AUTHENTICATIONFAILED"):
            client.login(CAROL, "not-the-password")
        client.shutdown()
    # With Dovecot's per-IP auth penalty on, this login would wait about 4 s.
    started = time.monotonic()
    client = mail_stack.imap_client(CAROL)
    elapsed = time.monotonic() - started
    client.logout()
    assert elapsed < 2, f"login after a failure took {elapsed:.1f} s: auth penalty still active?"


def test_smtp_send_is_in_imap_when_send_returns(mail_stack: MailStack) -> None:
    msg = message(ALICE, BOB)
    with mail_stack.smtp_client(ALICE) as smtp:
        assert smtp.send_message(msg) == {}
    imap = mail_stack.imap_client(BOB)
    try:
        imap.select_folder("INBOX", readonly=True)
        assert len(search_message_id(imap, msg["Message-ID"])) == 1
    finally:
        imap.logout()


def test_smtp_auth_only_after_starttls(mail_stack: MailStack) -> None:
    with smtplib.SMTP(mail_stack.host, mail_stack.smtp_port, timeout=10) as smtp:
        smtp.ehlo()
        assert smtp.has_extn("starttls")
        with pytest.raises(smtplib.SMTPNotSupportedError):
            smtp.login(ALICE, mail_stack.users[ALICE])


def test_wrong_smtp_password_refused(mail_stack: MailStack) -> None:
    with mail_stack.smtp_client() as smtp:
        with pytest.raises(smtplib.SMTPAuthenticationError) as failure:
            smtp.login(ALICE, "not-the-password")
        assert failure.value.smtp_code == 535


def test_unauthenticated_relay_refused(mail_stack: MailStack) -> None:
    for smtp in (
        mail_stack.smtp_client(),  # STARTTLS, no AUTH
        smtplib.SMTP(mail_stack.host, mail_stack.smtp_port, timeout=10),  # plain text
    ):
        with smtp, pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
            smtp.send_message(message(ALICE, "victim@elsewhere.example"))
        assert refused.value.recipients["victim@elsewhere.example"][0] == 554
    assert not any("victim@elsewhere.example" in m.rcpt_tos for m in mail_stack.relayed)


def test_authenticated_mail_to_other_domains_is_recorded(mail_stack: MailStack) -> None:
    rcpt = f"friend-{uuid.uuid4().hex}@elsewhere.example"
    with mail_stack.smtp_client(ALICE) as smtp:
        smtp.send_message(message(ALICE, rcpt))
    assert [m.mail_from for m in mail_stack.relayed if rcpt in m.rcpt_tos] == [ALICE]


def test_unknown_local_user_refused(mail_stack: MailStack) -> None:
    with (
        mail_stack.smtp_client(ALICE) as smtp,
        pytest.raises(smtplib.SMTPRecipientsRefused) as refused,
    ):
        smtp.send_message(message(ALICE, f"nobody@{mail.DOMAIN}"))
    assert refused.value.recipients[f"nobody@{mail.DOMAIN}"][0] == 550


def test_create_append_search(mail_stack: MailStack) -> None:
    folder = f"Harness-{uuid.uuid4().hex[:8]}"
    msg = message(CAROL, CAROL, subject="appended")
    imap = mail_stack.imap_client(CAROL)
    try:
        imap.create_folder(folder)
        imap.append(folder, msg.as_bytes(), flags=[b"\\Seen"])
        imap.select_folder(folder)
        assert len(search_message_id(imap, msg["Message-ID"])) == 1
        assert search_message_id(imap, "<absent@example.test>") == []
        imap.close_folder()
        imap.delete_folder(folder)
    finally:
        imap.logout()


def test_idle_sees_new_delivery(mail_stack: MailStack) -> None:
    imap = mail_stack.imap_client(BOB)
    try:
        exists_before = imap.select_folder("INBOX")[b"EXISTS"]
        imap.idle()
        with mail_stack.smtp_client(ALICE) as smtp:
            smtp.send_message(message(ALICE, BOB, subject="idle push"))
        deadline = time.monotonic() + 10
        pushed: list[tuple[int | bytes, ...]] = []
        while time.monotonic() < deadline:
            responses = imap.idle_check(timeout=deadline - time.monotonic())
            pushed += [r for r in responses if len(r) > 1 and r[1] == b"EXISTS"]
            if pushed:
                break
        imap.idle_done()
        assert pushed, "no EXISTS pushed during IDLE within 10 s"
        assert pushed[-1][0] == exists_before + 1
    finally:
        imap.logout()


def test_stop_closes_ports_and_leaves_no_process(mail_stack: MailStack) -> None:
    smtp_threads_before = sum(t.name == "harness-smtp" for t in threading.enumerate())
    stack = MailStack().start()
    ports = [stack.imap_port, stack.imaps_port, stack.lmtp_port, stack.smtp_port]
    assert all(port_is_open(stack.host, port) for port in ports)
    processes = stack.processes()
    assert len(processes) > 3  # master, log, config, auth, ...
    root = stack.root
    assert root is not None and root.exists()

    stack.stop()

    assert [p for p in ports if port_is_open(stack.host, p)] == []
    assert still_alive(processes) == []
    assert not root.exists()
    assert sum(t.name == "harness-smtp" for t in threading.enumerate()) == smtp_threads_before
    stack.stop()  # idempotent
    # Only its own Dovecot was stopped: the session's stack still serves.
    mail_stack.imap_client(ALICE).logout()


ORPHAN_SCRIPT = """
import json, time
from harness.mail import MailStack
stack = MailStack().start()
print(json.dumps({"root": str(stack.root), "processes": stack.processes()}), flush=True)
time.sleep(60)
"""


def test_orphans_of_a_killed_run_are_reaped(mail_stack: MailStack) -> None:
    tests_dir = Path(__file__).resolve().parents[1]
    child = subprocess.Popen(
        [sys.executable, "-c", ORPHAN_SCRIPT],
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(tests_dir)},
    )
    try:
        assert child.stdout is not None
        info = json.loads(child.stdout.readline())
    finally:
        child.kill()  # like a CI timeout: no stop(), no cleanup
        child.wait()
    processes = {int(pid): start for pid, start in info["processes"].items()}
    assert still_alive(processes), "the orphaned Dovecot should still be running"

    killed = mail.reap_orphans(mail.TEMP_PREFIX, mail._dovecot_folder)

    # Transient children (a login process, a backend) may have exited on their own.
    leader = next(iter(processes))  # process_tree lists the root first
    assert leader in killed, "the orphaned Dovecot master was not killed"
    deadline = time.monotonic() + 5
    while still_alive(processes) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert still_alive(processes) == []
    assert not Path(info["root"]).exists()
    # A stack whose test process is alive (ours) is not an orphan.
    assert mail_stack.processes() and mail_stack.root is not None and mail_stack.root.exists()
    mail_stack.imap_client(ALICE).logout()


def occupied_port() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock


def test_busy_smtp_port_fails_fast_instead_of_hanging() -> None:
    with occupied_port() as busy:
        port = busy.getsockname()[1]
        stack = MailStack(smtp_port=port)
        started = time.monotonic()
        with pytest.raises(HarnessError, match=f"SMTP port 127.0.0.1:{port}"):
            stack.start()
        assert time.monotonic() - started < 10
    assert stack.root is None and stack.processes() == {}


def test_busy_imap_port_error_shows_dovecot_log() -> None:
    with occupied_port() as busy:
        stack = MailStack(imap_port=busy.getsockname()[1])
        with pytest.raises(HarnessError, match="Address already in use"):
            stack.start()
    assert stack.root is None and stack.processes() == {}


def test_dovecot_version_check() -> None:
    assert mail.check_dovecot_version("2.3.19.1 (9b53102964)") == (2, 3)
    with pytest.raises(HarnessError, match=r"Dovecot 2\.4\.1 .*2\.4"):
        mail.check_dovecot_version("2.4.1 (abcdef)")


def test_missing_dovecot_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mail.shutil, "which", lambda *args, **kwargs: None)
    with pytest.raises(HarnessError, match="apt-get install -y dovecot-imapd dovecot-lmtpd"):
        MailStack().start()
