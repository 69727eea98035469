"""Automatic enrollment end to end with real parts: the real mail stack (Dovecot + SMTP), the
real PKI service as `autosmime pki serve` in a subprocess with its CA mailbox on the stack
(carol@example.test: the challenge mail is S/MIME-signed and sent by SMTP, replies are read by
the IMAP IDLE watcher), and the host's own pieces (profile, keyring confined to the test folder,
keystore, mailbox). Nothing is short-circuited: the certificates are issued only after the
reply mail proved alice's mailbox."""

from __future__ import annotations

import email
import email.policy
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from harness.mail import MailStack, free_port

from native_host import backups
from native_host import enrollment as enr
from native_host.acme_client import PkiSettings
from native_host.keystore import Keystore
from native_host.mail_settings import MailSettings, resolve
from native_host.mailbox import Credentials, Mailbox
from native_host.profile import Profile, open_profile
from shared_pki import backup
from shared_pki.keys import parse_certificate
from shared_pki.x509.validate import certificate_addresses

pytestmark = pytest.mark.mail

ALICE = "alice@example.test"
CA = "carol@example.test"
DEADLINE = 30.0
KEYRING = "keyrings.alt.file.PlaintextKeyring"
ROOT = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------------------------------------
# The PKI service as an operator runs it


def _quoted(text: str) -> str:
    return text.replace("%", "%25").replace("@", "%40").replace(":", "%3A").replace("/", "%2F")


@dataclass
class PkiService:
    url: str
    process: subprocess.Popen[str]
    data: Path
    roots_pem: bytes

    @property
    def directory_url(self) -> str:
        return f"{self.url}/acme/directory"

    def settings(self) -> PkiSettings:
        return PkiSettings(self.directory_url, self.roots_pem)

    def get(self, path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(f"{self.url}{path}", timeout=10) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()


def wait_until(check: Callable[[], bool], what: str, deadline: float = DEADLINE) -> None:
    end = time.monotonic() + deadline
    while not check():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)  # polling a condition, bounded by the deadline


@pytest.fixture(scope="module")
def pki(mail_stack: MailStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PkiService]:
    """`autosmime pki serve` with real RFC 8823 mail validation through carol's mailbox."""
    data = tmp_path_factory.mktemp("pki")
    port = free_port()
    login = f"{_quoted(CA)}:{_quoted(mail_stack.users[CA])}@{mail_stack.host}"
    process = subprocess.Popen(
        [sys.executable, "-m", "native_host.cli", "pki", "serve", "--data", str(data),
         "--listen", f"127.0.0.1:{port}", "--mail-from", CA,
         "--smtp", f"smtp://{login}:{mail_stack.smtp_port}",
         "--imap", f"imaps://{login}:{mail_stack.imaps_port}",
         "--mail-ca-file", str(mail_stack.ca_cert_path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    service = PkiService(f"http://127.0.0.1:{port}", process, data, b"")

    def up() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"pki serve exited: {process.communicate()[1]}")
        try:
            return service.get("/health")[0] == 200
        except OSError:
            return False

    try:
        wait_until(up, "pki serve to answer")
        status, roots = service.get("/ca/roots.pem")
        assert status == 200 and roots.count(b"BEGIN CERTIFICATE") == 2
        service.roots_pem = roots  # configured out of band, as `account add --pki-roots` does
        yield service
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            _out, err = process.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            _out, err = process.communicate()
        assert "Traceback" not in err, err


# ---------------------------------------------------------------------------------------------
# The host side


@pytest.fixture
def keyring_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """keyrings.alt's plaintext file keyring below the test's folder, chosen the standard way."""
    data = tmp_path / "xdg-data"
    data.mkdir()
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", KEYRING)
    monkeypatch.setenv("XDG_DATA_HOME", str(data))
    return data


def settings_for(stack: MailStack, user: str, *, imaps_port: int | None = None) -> MailSettings:
    return resolve(
        user,
        imap_url=f"imaps://{_quoted(user)}@127.0.0.1:{imaps_port or stack.imaps_port}",
        smtp_url=f"smtp://{_quoted(user)}@127.0.0.1:{stack.smtp_port}",
    )


def mailbox_for(stack: MailStack, user: str = ALICE, **options: Any) -> Mailbox:
    return Mailbox(
        settings_for(stack, user, **options),
        Credentials(password=stack.users[user]),
        ca_file=stack.ca_cert_path,
        timeout=10,
    )


@dataclass
class Host:
    """One device: a profile with its keystore, alice's mailbox, the PKI settings."""

    profile: Profile
    mailbox: Mailbox
    pki: PkiSettings

    @property
    def keystore(self) -> Keystore:
        return Keystore.for_profile(self.profile)

    def enrollment(self, **options: Any) -> enr.Enrollment:
        options.setdefault("mail_timeout", DEADLINE)
        options.setdefault("validation_timeout", DEADLINE)
        return enr.Enrollment(profile=self.profile, mailbox=self.mailbox, pki=self.pki, **options)


@pytest.fixture
def make_host(
    keyring_env: Path, tmp_path: Path, mail_stack: MailStack, pki: PkiService
) -> Iterator[Callable[..., Host]]:
    made: list[Host] = []

    def make(name: str = "device", **mailbox_options: Any) -> Host:
        host = Host(
            open_profile(tmp_path / name),
            mailbox_for(mail_stack, **mailbox_options),
            pki.settings(),
        )
        made.append(host)
        return host

    yield make
    for host in made:
        host.mailbox.close()


@pytest.fixture
def fresh_backups(mail_stack: MailStack) -> None:
    """Alice's backup folder emptied: every test starts as her first enrollment (the session's
    mail stack is shared by every test module)."""
    client = mail_stack.imap_client(ALICE)
    try:
        if client.folder_exists(backups.FOLDER):
            client.delete_folder(backups.FOLDER)
    finally:
        client.logout()


# ---------------------------------------------------------------------------------------------
# Looking at the mailboxes


def count_replies(stack: MailStack, challenge_message_id: str) -> int:
    """Replies to one challenge mail in the CA mailbox (INBOX and where the watcher files)."""
    client = stack.imap_client(CA)
    try:
        total = 0
        for folder in ("INBOX", "acme-processed"):
            if client.folder_exists(folder):
                client.select_folder(folder, readonly=True)
                total += len(client.search(["HEADER", "In-Reply-To", challenge_message_id]))
        return total
    finally:
        client.logout()


def backup_messages(stack: MailStack) -> list[tuple[int, bytes, tuple[bytes, ...]]]:
    """(uid, raw, flags) of every message in alice's backup folder."""
    client = stack.imap_client(ALICE)
    try:
        if not client.folder_exists(backups.FOLDER):
            return []
        client.select_folder(backups.FOLDER, readonly=True)
        uids = client.search(["ALL"])
        fetched = client.fetch(uids, ["BODY.PEEK[]", "FLAGS"]) if uids else {}
        return [(uid, fetched[uid][b"BODY[]"], fetched[uid][b"FLAGS"]) for uid in sorted(uids)]
    finally:
        client.logout()


def openssl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["openssl", *args], capture_output=True, text=True, check=False)


def verify_with_openssl(
    tmp_path: Path, roots: bytes, leaf: bytes, chain: tuple[bytes, ...], *extra: str
) -> None:
    (tmp_path / "roots.pem").write_bytes(roots)
    (tmp_path / "leaf.pem").write_text(pem_any(leaf))
    (tmp_path / "untrusted.pem").write_text("".join(pem_any(der) for der in chain))
    result = openssl("verify", *extra, "-purpose", "smimesign", "-CAfile",
                     str(tmp_path / "roots.pem"), "-untrusted", str(tmp_path / "untrusted.pem"),
                     str(tmp_path / "leaf.pem"))  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def pem_any(der: bytes) -> str:
    """PEM of any certificate (SM2 ones too, which `cryptography` cannot load)."""
    import base64

    body = "\n".join(textwrap.wrap(base64.b64encode(der).decode(), 64))
    return f"-----BEGIN CERTIFICATE-----\n{body}\n-----END CERTIFICATE-----\n"


class Recorder:
    """A progress callback that records events and can crash the run at the n-th one."""

    def __init__(self, crash_at: int | None = None) -> None:
        self.events: list[tuple[int, int, str]] = []
        self.crash_at = crash_at

    def __call__(self, done: int, total: int, stage: str) -> None:
        self.events.append((done, total, stage))
        if self.crash_at is not None and len(self.events) - 1 == self.crash_at:
            raise Crash(f"simulated crash at event {self.crash_at} ({stage})")


class Crash(Exception):
    pass


# ---------------------------------------------------------------------------------------------
# The whole enrollment


def test_alice_enrolls_automatically_with_both_suites(
    make_host: Callable[..., Host],
    pki: PkiService,
    mail_stack: MailStack,
    fresh_backups: None,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    host = make_host()
    progress = Recorder()
    started = time.perf_counter()
    result = host.enrollment().enroll(ALICE, progress=progress)
    elapsed = time.perf_counter() - started
    with capsys.disabled():
        print(f"\nenrollment wall time, enroll() to current backed-up keys: {elapsed:.2f} s")

    # Progress: every stage in order, fractions never going back, ending at Done.
    stages = [stage for _done, _total, stage in progress.events]
    assert list(dict.fromkeys(stages)) == list(enr.STAGES)
    fractions = [done / total for done, total, _stage in progress.events]
    assert fractions == sorted(fractions) and fractions[0] == 0 and fractions[-1] == 1
    assert progress.events[-1] == (enr.TOTAL, enr.TOTAL, "Done")

    # Certificates: valid chains to the service's roots (openssl), for alice, published.
    assert set(result.certificates) == {"intl", "sm"}
    verify_with_openssl(tmp_path, pki.roots_pem, result.certificates["intl"], result.chains["intl"])
    verify_with_openssl(
        tmp_path, pki.roots_pem, result.certificates["sm"], result.chains["sm"],
        "-vfyopt", "distid:1234567812345678",
    )  # fmt: skip
    for der in result.certificates.values():
        assert certificate_addresses(parse_certificate(der)) == (ALICE,)
    status, body = pki.get(f"/certs/{ALICE}")
    assert status == 200
    published = {c["serial"] for c in json.loads(body)["certificates"]}
    for der in result.certificates.values():
        assert f"{parse_certificate(der).serial_number:x}" in published

    # Keys: current in the keystore, one pair, with these certificates.
    keystore = host.keystore
    records = keystore.records(ALICE)
    assert len(records) == 2 and {r.status for r in records} == {"current"}
    for suite in ("intl", "sm"):
        held = keystore.current(ALICE, suite)
        assert held is not None and held.key_id == result.key_ids[suite]
        assert held.certificate.dump() == result.certificates[suite]
    assert {r.key_type for r in records} == {"ec-secp256r1", "sm2"}

    # The recovery code: shown once, not kept (the person did not allow it), not mailed.
    code = result.recovery_code
    assert code is not None and backup.parse_recovery_code(code) == code
    assert backups.stored_recovery_code(host.profile, ALICE) is None

    # The backup: in alice's folder, readable with the code, holding the current keys.
    (message,) = backup_messages(mail_stack)
    _uid, raw, flags = message
    assert b"\\Seen" in flags
    assert str(email.message_from_bytes(raw)["Message-ID"]).strip() == result.backup_message_id
    assert code.encode() not in raw and code.replace("-", "").encode() not in raw
    restored = backup.read_backup(raw, code)
    assert {(k.key_id, k.suite, k.status) for k in restored} == {
        (result.key_ids["intl"], "intl", "current"),
        (result.key_ids["sm"], "sm", "current"),
    }

    # Exactly one reply went to the CA; the journal is done and archived.
    assert result.challenge_message_id and result.reply_message_id
    assert count_replies(mail_stack, result.challenge_message_id) == 1
    assert not enr.journal_path(host.profile, ALICE).exists()
    assert enr.unfinished(host.profile, ALICE) is None
    assert not result.resumed
