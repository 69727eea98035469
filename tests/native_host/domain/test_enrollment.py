"""Automatic enrollment end to end with real parts: the real mail stack (Dovecot + SMTP), the
real PKI service in a uvicorn subprocess as `autosmime pki serve` runs it, with its CA mailbox
on the stack (carol@example.test: the challenge mail is S/MIME-signed and sent by SMTP, replies
are read by the IMAP IDLE watcher), and the host's own pieces (profile, keyring confined to the
test folder, keystore, mailbox). Nothing is short-circuited: the certificates are issued only
after the reply mail proved alice's mailbox."""

from __future__ import annotations

import contextlib
import email
import email.policy
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from harness.mail import MailStack, free_port
from harness.pki_service import (
    TEST_STACK_KNOBS,
    challenge_replies,
    forget_backups,
    http_get,
    quoted,
)

from native_host.domain import backups
from native_host.domain import enrollment as enr
from native_host.domain.keystore import Keystore
from native_host.infrastructure.acme_client import PkiSettings
from native_host.infrastructure.mail_settings import MailSettings, resolve
from native_host.infrastructure.mailbox import Credentials, Mailbox
from native_host.infrastructure.profile import Profile, open_profile
from shared_pki import backup, smime
from shared_pki.keys import Credential, parse_certificate
from shared_pki.x509.validate import certificate_addresses

pytestmark = pytest.mark.mail

ALICE = "alice@example.test"
CA = "carol@example.test"
DEADLINE = 30.0
KEYRING = "keyrings.alt.file.PlaintextKeyring"
ROOT = Path(__file__).resolve().parents[3]


# ---------------------------------------------------------------------------------------------
# The PKI service as an operator runs it


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
        return http_get(f"{self.url}{path}")


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
    login = f"{quoted(CA)}:{quoted(mail_stack.users[CA])}@{mail_stack.host}"
    overrides = {
        "listen_port": port,
        "mail_from": CA,
        "smtp_url": f"smtp://{login}:{mail_stack.smtp_port}",
        "imap_url": f"imaps://{login}:{mail_stack.imaps_port}",
        "mail_ca_file": str(mail_stack.ca_cert_path),
        **TEST_STACK_KNOBS,  # the loopback stack: limits per address lifted, no DKIM
    }
    # What `autosmime pki serve --mail-from ... --smtp ... --imap ... --mail-ca-file ...` runs:
    # uvicorn with the service's factory, the options passed in the environment.
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--factory",
         "shared_pki.service.app:app_from_environment", "--host", "127.0.0.1",
         "--port", str(port), "--log-level", "warning"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "AUTOSMIME_PKI_DATA": str(data),
             "AUTOSMIME_PKI_OVERRIDES": json.dumps(overrides)},
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
        imap_url=f"imaps://{quoted(user)}@127.0.0.1:{imaps_port or stack.imaps_port}",
        smtp_url=f"smtp://{quoted(user)}@127.0.0.1:{stack.smtp_port}",
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
    forget_backups(mail_stack, ALICE)


# ---------------------------------------------------------------------------------------------
# Looking at the mailboxes


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
    assert {r.key_type for r in records} == {"rsa3072", "sm2"}  # RSA: every client reads it

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
    assert challenge_replies(mail_stack, result.challenge_message_id) == 1
    assert not enr.journal_path(host.profile, ALICE).exists()
    assert enr.unfinished(host.profile, ALICE) is None
    assert not result.resumed


# ---------------------------------------------------------------------------------------------
# Restore


def test_restore_on_a_fresh_profile_restores_every_key(
    make_host: Callable[..., Host], fresh_backups: None
) -> None:
    first = make_host("first")
    result = first.enrollment().enroll(ALICE)
    assert result.recovery_code is not None
    fresh = make_host("fresh")
    restored = backups.restore(ALICE, result.recovery_code, fresh.mailbox, fresh.keystore)
    assert set(restored.restored) == set(result.key_ids.values())
    assert restored.backup.message_id == result.backup_message_id
    original, copy = first.keystore, fresh.keystore
    for suite in ("intl", "sm"):
        held, again = original.current(ALICE, suite), copy.current(ALICE, suite)
        assert held is not None and again is not None
        assert again.key_id == held.key_id and again.certificate.dump() == held.certificate.dump()
        assert [c.dump() for c in again.chain] == [c.dump() for c in held.chain]
    # The restored keys open mail encrypted to the certificates.
    message = b"From: bob@example.test\r\nTo: alice@example.test\r\nSubject: hi\r\n\r\nSecret.\r\n"
    for suite in ("intl", "sm"):
        cert = parse_certificate(result.certificates[suite])
        sealed = smime.encrypt_message(message, [cert], sender=None)
        opened = smime.open_message(sealed, keys=copy.decryption_pairs(ALICE))
        assert opened.encrypted and b"Secret." in opened.message
    # A second restore adds nothing and changes nothing.
    again = backups.restore(ALICE, result.recovery_code, fresh.mailbox, fresh.keystore)
    assert again.restored == () and set(again.already_held) == set(result.key_ids.values())


def test_a_wrong_code_changes_nothing_and_a_tampered_newer_copy_is_skipped(
    make_host: Callable[..., Host], mail_stack: MailStack, fresh_backups: None
) -> None:
    result = make_host("first").enrollment().enroll(ALICE)
    code = result.recovery_code
    assert code is not None
    fresh = make_host("fresh")
    keys_dir = fresh.profile.keys_dir
    before = sorted(p.name for p in keys_dir.iterdir())
    digits = code.replace("-", "")
    wrong = backup._format(f"{(int(digits) + 1) % 10**36:036d}")
    with pytest.raises(backup.WrongRecoveryCode):
        backups.restore(ALICE, wrong, fresh.mailbox, fresh.keystore)
    with pytest.raises(backup.RecoveryCodeError):
        backups.restore(ALICE, code[:-1], fresh.mailbox, fresh.keystore)
    assert sorted(p.name for p in keys_dir.iterdir()) == before
    assert fresh.keystore.records() == []

    # A tampered copy, newer-looking than the real backup, is what restore tries first: it is
    # skipped and named, and the real backup is restored (issue 11: it must never block).
    ((_uid, raw, _flags),) = backup_messages(mail_stack)
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    part = next(p for p in parsed.walk() if p.get_content_type() == backup.CONTENT_TYPE)
    data = bytearray(part.get_payload(decode=True))
    data[len(data) // 2] ^= 0x01
    part.set_content(bytes(data), "application", "x-autosmime-backup", filename=backup.FILENAME)
    del parsed["Message-ID"]
    parsed["Message-ID"] = "<tampered@example.test>"
    client = mail_stack.imap_client(ALICE)
    try:
        client.append(backups.FOLDER, parsed.as_bytes())
    finally:
        client.logout()
    restored = backups.restore(ALICE, code, fresh.mailbox, fresh.keystore)
    [skipped] = restored.skipped
    assert skipped.backup.message_id == "<tampered@example.test>"
    assert skipped.reason.startswith("The backup was altered or is damaged")
    assert restored.backup.message_id == result.backup_message_id
    assert sorted(restored.restored) == sorted(result.key_ids.values())
    with pytest.raises(backups.NoBackup):
        backups.restore("bob@example.test", code, fresh.mailbox, fresh.keystore)


# ---------------------------------------------------------------------------------------------
# Crashes and restarts


@pytest.mark.parametrize("crash_at", range(enr.TOTAL))
def test_a_crash_at_any_step_resumes_without_a_second_pair_or_reply(
    crash_at: int, make_host: Callable[..., Host], mail_stack: MailStack, fresh_backups: None
) -> None:
    host = make_host()
    progress = Recorder(crash_at)
    with pytest.raises(Crash):
        host.enrollment().enroll(ALICE, progress=progress)
    stage = progress.events[-1][2]
    journal = enr.unfinished(host.profile, ALICE)
    assert journal is not None and journal["step"] == enr.STEPS[crash_at][0]
    # Nothing is current before the backup is proven.
    assert all(r.status == "pending" for r in host.keystore.records(ALICE))

    again = Recorder()
    result = host.enrollment().enroll(ALICE, progress=again)  # a new object: nothing in memory
    assert result.resumed
    assert again.events[0] == (crash_at, enr.TOTAL, stage)
    assert again.events[-1] == (enr.TOTAL, enr.TOTAL, "Done")
    records = host.keystore.records(ALICE)
    assert len(records) == 2, f"a second key pair after a crash at {stage}"
    assert {r.status for r in records} == {"current"}
    assert set(result.key_ids.values()) == {r.key_id for r in records}
    assert result.challenge_message_id is not None
    assert challenge_replies(mail_stack, result.challenge_message_id) == 1
    # The code made by the first run is shown by the run that finished, and only then.
    assert result.recovery_code is not None
    assert len(backup_messages(mail_stack)) == 1


def test_a_crash_between_the_smtp_answer_and_the_journal_sends_no_second_reply(
    make_host: Callable[..., Host],
    mail_stack: MailStack,
    fresh_backups: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    host = make_host()
    real_set = enr.Journal.set

    def crash_after_sending(self: enr.Journal, **values: Any) -> None:
        if values.get("reply", {}).get("sent"):
            raise Crash("killed after the server took the reply, before the journal knew")
        real_set(self, **values)

    monkeypatch.setattr(enr.Journal, "set", crash_after_sending)
    with pytest.raises(Crash):
        host.enrollment().enroll(ALICE)
    monkeypatch.setattr(enr.Journal, "set", real_set)
    journal = enr.unfinished(host.profile, ALICE)
    assert journal is not None and journal["reply"]["sent"] is False
    challenge_id = journal["challenge_mail"]["message_id"]
    assert challenge_replies(mail_stack, challenge_id) == 1
    result = host.enrollment().enroll(ALICE)
    assert result.resumed and result.challenge_message_id == challenge_id
    assert challenge_replies(mail_stack, challenge_id) == 1


def test_a_key_sealed_just_before_a_crash_is_adopted_not_doubled(
    make_host: Callable[..., Host], fresh_backups: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    host = make_host()
    real_add = Keystore.add_key

    def crash_after_adding(self: Keystore, *args: Any, **kwargs: Any) -> str:
        real_add(self, *args, **kwargs)
        raise Crash("killed after sealing the key, before the journal")

    monkeypatch.setattr(Keystore, "add_key", crash_after_adding)
    with pytest.raises(Crash):
        host.enrollment().enroll(ALICE)
    monkeypatch.setattr(Keystore, "add_key", real_add)
    (orphan,) = host.keystore.records(ALICE)
    result = host.enrollment().enroll(ALICE)
    assert result.key_ids["intl"] == orphan.key_id
    assert len(host.keystore.records(ALICE)) == 2


CHILD = """
import os, signal, sys
from pathlib import Path
sys.path.insert(0, {tests!r})
from native_host.domain import enrollment as enr
from native_host.infrastructure.acme_client import PkiSettings
from native_host.infrastructure.profile import open_profile
from test_enrollment_child import mailbox

target = int(sys.argv[1])

def progress(done, total, stage):
    print(done, stage, flush=True)
    if done == target:
        os.kill(os.getpid(), signal.SIGKILL)  # a real crash: no finally, no atexit

pki = PkiSettings({directory!r}, Path({roots!r}).read_bytes())
enr.Enrollment(profile=open_profile({profile!r}), mailbox=mailbox(), pki=pki,
               mail_timeout=30).enroll({address!r}, progress=progress)
"""


@pytest.mark.parametrize("kill_at", [3, 5, 7])
def test_a_killed_host_process_resumes_in_another_process(
    kill_at: int,
    make_host: Callable[..., Host],
    mail_stack: MailStack,
    pki: PkiService,
    fresh_backups: None,
    tmp_path: Path,
) -> None:
    host = make_host()
    roots = tmp_path / "roots.pem"
    roots.write_bytes(pki.roots_pem)
    helper = tmp_path / "test_enrollment_child.py"
    helper.write_text(
        "from native_host.infrastructure.mail_settings import resolve\n"
        "from native_host.infrastructure.mailbox import Credentials, Mailbox\n"
        "def mailbox():\n"
        f"    settings = resolve({ALICE!r}, imap_url={settings_url(mail_stack, 'imap')!r},\n"
        f"                       smtp_url={settings_url(mail_stack, 'smtp')!r})\n"
        f"    return Mailbox(settings, Credentials(password={mail_stack.users[ALICE]!r}),\n"
        f"                   ca_file={str(mail_stack.ca_cert_path)!r}, timeout=10)\n"
    )
    script = CHILD.format(
        tests=str(tmp_path),
        directory=pki.directory_url,
        roots=str(roots),
        profile=str(host.profile.root),
        address=ALICE,
    )
    child = subprocess.run(
        [sys.executable, "-c", script, str(kill_at)],
        capture_output=True, text=True, cwd=ROOT, env=dict(os.environ), timeout=60,
    )  # fmt: skip
    assert child.returncode == -signal.SIGKILL, child.stderr
    assert child.stdout.splitlines()[-1].startswith(f"{kill_at} ")
    result = host.enrollment().enroll(ALICE)
    assert result.resumed and len(host.keystore.records(ALICE)) == 2
    assert result.challenge_message_id is not None
    assert challenge_replies(mail_stack, result.challenge_message_id) == 1


def settings_url(stack: MailStack, kind: str) -> str:
    if kind == "imap":
        return f"imaps://{quoted(ALICE)}@127.0.0.1:{stack.imaps_port}"
    return f"smtp://{quoted(ALICE)}@127.0.0.1:{stack.smtp_port}"


# ---------------------------------------------------------------------------------------------
# IMAP down during the backup


class TcpProxy:
    """A loopback TCP forwarder that can be switched off (listener and live connections
    closed: clients see refused connections) and on again on the same port."""

    def __init__(self, target_port: int) -> None:
        self.target = ("127.0.0.1", target_port)
        self.port = free_port()
        self._server: socket.socket | None = None
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()

    def start(self) -> None:
        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", self.port))
        server.listen(16)
        self._server = server
        threading.Thread(target=self._accept, args=(server,), daemon=True).start()

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_RDWR)

    def stop(self) -> None:
        if self._server is not None:
            with contextlib.suppress(OSError):  # wakes the thread blocked in accept()
                self._server.shutdown(socket.SHUT_RDWR)
            self._server.close()
            self._server = None
        with self._lock:
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            self._sockets = []


def test_imap_down_during_the_backup_leaves_the_keys_pending_and_unused(
    make_host: Callable[..., Host], mail_stack: MailStack, fresh_backups: None
) -> None:
    proxy = TcpProxy(mail_stack.imaps_port)
    proxy.start()
    try:
        host = make_host(imaps_port=proxy.port)

        def progress(done: int, total: int, stage: str) -> None:
            if stage == "Backing up your keys in your mailbox":
                proxy.stop()  # the IMAP server goes away just as the backup starts

        with pytest.raises(enr.BackupFailed) as failed:
            host.enrollment().enroll(ALICE, progress=progress)
        assert failed.value.transient and "mailbox" in str(failed.value)
        records = host.keystore.records(ALICE)
        assert len(records) == 2 and {r.status for r in records} == {"pending"}
        assert all(r.certificates for r in records)  # issued, but not used for anything
        assert host.keystore.current(ALICE, "intl") is None
        assert host.keystore.current(ALICE, "sm") is None
        assert backup_messages(mail_stack) == []
        proxy.start()
        result = host.enrollment().enroll(ALICE)
        assert result.resumed and result.recovery_code is not None
        assert {r.status for r in host.keystore.records(ALICE)} == {"current"}
        ((_uid, raw, _flags),) = backup_messages(mail_stack)
        assert len(backup.read_backup(raw, result.recovery_code)) == 2
    finally:
        proxy.stop()


# ---------------------------------------------------------------------------------------------
# Renewal and the recovery code


def test_renewal_keeps_the_old_keys_and_old_mail_still_decrypts(
    make_host: Callable[..., Host], mail_stack: MailStack, fresh_backups: None
) -> None:
    host = make_host()
    first = host.enrollment().enroll(ALICE, keep_recovery_code=True)
    code = first.recovery_code
    assert code is not None and backups.stored_recovery_code(host.profile, ALICE) == code
    message = (
        b"From: bob@example.test\r\nTo: alice@example.test\r\nSubject: old\r\n\r\nOld mail.\r\n"
    )
    old_mail = {
        suite: smime.encrypt_message(
            message, [parse_certificate(first.certificates[suite])], sender=None
        )
        for suite in ("intl", "sm")
    }
    assert host.enrollment().renew_if_due(ALICE, window_days=30) is None  # a year left
    progress = Recorder()
    renewed = host.enrollment().renew_if_due(ALICE, window_days=400, progress=progress)
    assert renewed is not None and renewed.kind == "renew"
    assert renewed.recovery_code is None  # the same code as before: nothing new to show
    assert set(renewed.superseded) == set(first.key_ids.values())
    keystore = host.keystore
    statuses = {r.key_id: r.status for r in keystore.records(ALICE)}
    assert len(statuses) == 4
    for suite in ("intl", "sm"):
        assert statuses[first.key_ids[suite]] == "superseded"
        assert statuses[renewed.key_ids[suite]] == "current"
        assert keystore.current(ALICE, suite).key_id == renewed.key_ids[suite]
        opened = smime.open_message(old_mail[suite], keys=keystore.decryption_pairs(ALICE))
        assert b"Old mail." in opened.message
    # The newest backup holds all four keys under the same code; the old one stays, flagged.
    messages = backup_messages(mail_stack)
    assert len(messages) == 2
    (_old_uid, _old, old_flags), (_new_uid, new_raw, _new_flags) = messages
    assert backups.OLD_KEYWORD.encode() in old_flags
    assert {k.key_id: k.status for k in backup.read_backup(new_raw, code)} == statuses


def test_renewal_without_the_code_asks_for_it_before_making_keys(
    make_host: Callable[..., Host], fresh_backups: None
) -> None:
    host = make_host()
    first = host.enrollment().enroll(ALICE)  # the code was not kept
    with pytest.raises(enr.RecoveryCodeNeeded):
        host.enrollment().renew_if_due(ALICE, window_days=400)
    assert len(host.keystore.records(ALICE)) == 2
    assert enr.unfinished(host.profile, ALICE) is None  # refused before anything was begun
    renewed = host.enrollment().renew_if_due(
        ALICE, window_days=400, recovery_code=first.recovery_code
    )
    assert renewed is not None and len(host.keystore.records(ALICE)) == 4
    assert backups.stored_recovery_code(host.profile, ALICE) is None


def test_an_existing_backup_needs_its_code_and_the_new_backup_carries_its_keys(
    make_host: Callable[..., Host], mail_stack: MailStack, fresh_backups: None
) -> None:
    first = make_host("first").enrollment().enroll(ALICE)
    other = make_host("other")
    with pytest.raises(enr.RecoveryCodeNeeded):
        other.enrollment().enroll(ALICE)
    assert other.keystore.records() == []
    with pytest.raises(backup.WrongRecoveryCode):
        other.enrollment().enroll(ALICE, recovery_code=backup.new_recovery_code())
    assert other.keystore.records() == []
    assert enr.unfinished(other.profile, ALICE) is None
    second = other.enrollment().enroll(
        ALICE, recovery_code=first.recovery_code, intl_key="ecdsa-p256"
    )
    assert second.recovery_code is None
    assert {r.key_type for r in other.keystore.records(ALICE)} == {"ec-secp256r1", "sm2"}
    newest = backup_messages(mail_stack)[-1][1]
    held = {k.key_id: k.status for k in backup.read_backup(newest, first.recovery_code)}
    assert held == {
        first.key_ids["intl"]: "superseded",
        first.key_ids["sm"]: "superseded",
        second.key_ids["intl"]: "current",
        second.key_ids["sm"]: "current",
    }


# ---------------------------------------------------------------------------------------------
# The challenge mail's signature


def test_only_a_challenge_mail_signed_by_the_ca_is_answered(
    make_host: Callable[..., Host], pki: PkiService
) -> None:
    from harness import pki as test_pki

    enrollment = make_host().enrollment()
    unsigned = (
        b"From: carol@example.test\r\nTo: alice@example.test\r\nSubject: ACME: abc\r\n"
        b"Auto-Submitted: auto-generated; type=acme\r\nMessage-ID: <x@example.test>\r\n\r\nHi.\r\n"
    )
    assert enrollment._signature_problem(unsigned, CA) == "it is not S/MIME-signed"
    # Signed for carol's address by a CA that is not the configured PKI: not the CA's mail.
    party = test_pki.root("not the PKI").smime(CA, "p256")
    credential = Credential(party.key, party.asn1, tuple(party.chain_asn1))
    forged = smime.sign_message(unsigned, credential)
    assert "not valid" in (enrollment._signature_problem(forged, CA) or "")
