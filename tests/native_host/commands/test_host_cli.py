"""The same story as test_ops.py, for people and scripts: `autosmime --profile A ...` and
`--profile B ...` subprocesses (alice's and bob's devices, each with a keyring confined to the
test folder) against the real mail stack and the real PKI service. --json output parses;
failures exit non-zero with one line on stderr."""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from asn1crypto import pem as asn1_pem
from cryptography.hazmat.primitives.serialization import pkcs12
from harness.desktop import DesktopInstall
from harness.mail import MailStack
from harness.native import HostProcess, write_host_config
from harness.pki_world import PkiWorld

from native_host.domain.keystore import Keystore
from native_host.infrastructure.profile import open_profile
from shared_pki.service.cli import SERVER_MODULES

pytestmark = pytest.mark.mail

ALICE, BOB = "alice@example.test", "bob@example.test"
KEYRING = "keyrings.alt.file.PlaintextKeyring"
ROOT = Path(__file__).resolve().parents[3]
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


@dataclass
class Device:
    address: str
    folder: Path
    #: What runs `autosmime` (default: this checkout's sources with this interpreter).
    program: tuple[str, ...] = (sys.executable, "-m", "native_host.cli")
    cwd: Path = ROOT

    @property
    def profile(self) -> Path:
        return self.folder / "profile"

    @property
    def xdg(self) -> Path:
        return self.folder / "xdg-data"

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k != "AUTOSMIME_PROFILE"}
        env.update(PYTHON_KEYRING_BACKEND=KEYRING, XDG_DATA_HOME=str(self.xdg), **extra)
        return env

    def run(self, *args: str, stdin: str = "", **extra: str) -> Result:
        """`autosmime --profile DIR ARGS...` as a person or a script runs it."""
        done = subprocess.run(
            [*self.program, "--profile", str(self.profile), *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
            cwd=self.cwd,
            env=self.env(**extra),
        )
        return Result(done.returncode, done.stdout, done.stderr)

    def keystore(self) -> Keystore:
        from keyrings.alt.file import PlaintextKeyring

        backend = PlaintextKeyring()
        backend.file_path = str(self.xdg / "python_keyring" / "keyring_pass.cfg")
        return Keystore.for_profile(open_profile(self.profile), backend=backend)


def one_line_failure(result: Result, command: str, code: str) -> str:
    assert result.code != 0, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"autosmime {command}: {code}: "), lines[0]
    return lines[0]


def set_up_device(device: Device, world: PkiWorld, mail_stack: MailStack, roots: Path) -> Device:
    """Keys issued by the world's CA, and the account added with `autosmime account add`."""
    address = device.address
    world.add(device.keystore(), world.issue(address))
    user = address.replace("@", "%40")
    added = device.run(
        "--json", "account", "add", address,
        "--imap", f"imaps://{user}@127.0.0.1:{mail_stack.imaps_port}",
        "--smtp", f"smtp://{user}@127.0.0.1:{mail_stack.smtp_port}",
        "--ca-file", str(mail_stack.ca_cert_path),
        "--pki", world.url, "--pki-roots", str(roots),
        "--password-stdin",
        stdin=mail_stack.users[address] + "\n",
    )  # fmt: skip
    assert added.code == 0, added.stderr
    assert added.json()["address"] == address and added.json()["pki"]["url"] == world.url
    assert mail_stack.users[address] not in added.stdout + added.stderr
    return device


def roots_file(world: PkiWorld, folder: Path) -> Path:
    roots = folder / "roots.pem"
    roots.write_bytes(b"".join(asn1_pem.armor("CERTIFICATE", c.dump()) for c in world.roots))
    return roots


@pytest.fixture(scope="module")
def devices(
    world: PkiWorld, mail_stack: MailStack, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Device]:
    tmp = tmp_path_factory.mktemp("cli")
    roots = roots_file(world, tmp)
    devices = {address: Device(address, tmp / address.split("@")[0]) for address in (ALICE, BOB)}
    return {a: set_up_device(d, world, mail_stack, roots) for a, d in devices.items()}


def test_account_list_and_certs_list(devices: dict[str, Device]) -> None:
    alice = devices[ALICE]
    listed = alice.run("--json", "account", "list")
    assert listed.code == 0 and [a["address"] for a in listed.json()["accounts"]] == [ALICE]
    human = alice.run("account", "list")
    assert human.code == 0 and ALICE in human.stdout and "imaps://" in human.stdout
    keys = alice.run("certs", "list", "--json")  # --json after the subcommand works too
    [key] = keys.json()["keys"]
    assert key["status"] == "current" and key["suite"] == "intl" and key["notAfter"]


def test_certs_lookup(devices: dict[str, Device]) -> None:
    found = devices[ALICE].run("--json", "certs", "lookup", BOB)
    assert found.code == 0, found.stderr
    [result] = found.json()["results"]
    assert result["certificates"] and result["certificates"][0]["origin"] == "directory"
    missing = devices[ALICE].run("certs", "lookup", "nobody@example.test")
    line = one_line_failure(missing, "certs lookup", "not_found")
    assert "nobody@example.test" in line


def test_alice_sends_bob_opens_with_everything_verified(
    devices: dict[str, Device], tmp_path: Path
) -> None:
    alice, bob = devices[ALICE], devices[BOB]
    body, html = tmp_path / "body.txt", tmp_path / "body.html"
    body.write_text("Hello Bob,\nthe figures.\n", encoding="utf-8")
    html.write_text("<p>Hello <b>Bob</b><script>x()</script></p>", encoding="utf-8")
    csv, png = tmp_path / "figures.csv", tmp_path / "logo.png"
    csv.write_bytes(b"q,value\r\n1,10\r\n")
    png.write_bytes(PNG)
    sent = alice.run(
        "--json", "--progress", "send", "--from", ALICE, "--to", BOB,
        "--subject", "Figures from the command line", "--body-file", str(body),
        "--html-file", str(html), "--attach", str(csv), "--attach", str(png),
    )  # fmt: skip
    assert sent.code == 0, sent.stderr
    outcome = sent.json()
    assert outcome["status"] == "sent" and outcome["signed"] and outcome["encrypted"]
    assert outcome["timestamped"]
    assert "Signing and encrypting" in sent.stderr and "Done" in sent.stderr  # for people

    opened = bob.run("--json", "open", "--message-id", outcome["messageId"], "--folder", "INBOX")
    assert opened.code == 0, opened.stderr
    view = opened.json()
    assert view["security"]["verified"] and view["security"]["decrypted"]
    [signature] = view["security"]["signatures"]
    assert signature["signer"] == ALICE and signature["timestamp"]["trustedTime"]
    assert "the figures." in view["text"] and "<script" not in view["html"]
    names = {a["name"]: base64.b64decode(a["data"]) for a in view["attachments"]}
    assert names == {"figures.csv": csv.read_bytes(), "logo.png": PNG}

    # for people: the content and the security summary; AUTOSMIME_PROFILE selects the profile
    human = subprocess.run(
        [sys.executable, "-m", "native_host.cli", "open", "--message-id", outcome["messageId"]],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
        env=bob.env(AUTOSMIME_PROFILE=str(bob.profile)),
    )  # fmt: skip
    assert human.returncode == 0, human.stderr
    assert "Subject: Figures from the command line" in human.stdout
    assert "the figures." in human.stdout and "[attachment] logo.png image/png" in human.stdout
    assert "Security: Encrypted (" in human.stdout


def test_export_writes_a_private_pkcs12(devices: dict[str, Device], tmp_path: Path) -> None:
    target = tmp_path / "alice.p12"
    done = devices[ALICE].run(
        "--json", "export", "--format", "p12", "--out", str(target),
        "--password-env", "P12_PASSWORD", P12_PASSWORD="s3cret-export",
    )  # fmt: skip
    assert done.code == 0, done.stderr
    assert "pkcs12" not in done.json() and done.json()["file"] == str(target)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    key, cert, _ = pkcs12.load_key_and_certificates(target.read_bytes(), b"s3cret-export")
    assert key is not None and cert is not None
    from_stdin = devices[ALICE].run(
        "export", "--out", str(tmp_path / "b.p12"), stdin="other-password\n"
    )
    assert from_stdin.code == 0 and "Wrote 1 key(s)" in from_stdin.stdout
    legacy = devices[ALICE].run(
        "export", "--format", "p12-legacy", "--out", str(tmp_path / "c.p12"), stdin="pw\n"
    )
    one_line_failure(legacy, "export", "op_failed")  # an EC key has no legacy form
    assert not (tmp_path / "c.p12").exists()


def test_failures_exit_non_zero_with_one_line(devices: dict[str, Device], tmp_path: Path) -> None:
    alice = devices[ALICE]
    refused = alice.run("send", "--from", ALICE, "--to", "nobody@example.test", "--subject", "x")
    line = one_line_failure(refused, "send", "missing_certificates")
    assert "nobody@example.test" in line
    unreadable = alice.run("open", "--file", str(tmp_path / "missing.eml"))
    assert unreadable.code == 2
    one_line_failure(unreadable, "open", "bad_params")
    fresh = Device("carol@example.test", tmp_path / "fresh")
    nothing = fresh.run("certs", "lookup", BOB)
    line = one_line_failure(nothing, "certs lookup", "not_configured")
    assert "autosmime account add" in line
    tampered = tmp_path / "tampered.eml"
    tampered.write_bytes(b"From: a@example.test\r\nSubject: x\r\n\r\nplain\r\n")
    plain = alice.run("open", "--file", str(tampered))
    assert plain.code == 0 and "Security: Not encrypted. Not signed." in plain.stdout
    no_password = fresh.run(
        "account", "add", "carol@example.test", "--imap", "imaps://x@127.0.0.1:1"
    )
    assert no_password.code == 2
    assert no_password.stderr.count("\n") == 1 and "--password-stdin" in no_password.stderr


# ---- local faults: a full disk, a read-only profile ---------------------------------------------


def _inbox(stack: MailStack, user: str, message_id: str | None = None) -> int:
    """How many messages the user's INBOX holds (with that Message-ID, if given). Not by
    Subject: encrypted mail hides it (RFC 9788, outer Subject "[...]")."""
    client = stack.imap_client(user)
    try:
        client.select_folder("INBOX", readonly=True)
        return len(client.search(["HEADER", "Message-ID", message_id] if message_id else ["ALL"]))
    finally:
        client.logout()


def _unchanged(before: dict[str, bytes], after: dict[str, bytes]) -> None:
    """Nothing half-written, nothing lost: every file as it was, no temporary file left; a new
    file may only be an empty lock file (a full tmpfs still has inodes)."""
    assert {name: after.get(name) for name in before} == before
    new = {name: data for name, data in after.items() if name not in before}
    assert all(name.endswith(".lock") and data == b"" for name, data in new.items()), new


def test_a_full_disk_or_a_read_only_profile_is_an_error_in_words_and_loses_nothing(
    devices: dict[str, Device], world: PkiWorld, mail_stack: MailStack, tmp_path: Path
) -> None:
    """alice's profile on a small file system of its own (tmpfs): full, then read-only. send,
    backup and enroll each say so in one line naming the folder; nothing in the profile changes
    and nothing is sent; once there is room again, send works with the same keys."""
    from harness.filesystems import SmallDisk

    from shared_pki import backup

    forget_backups(mail_stack, ALICE)  # the backup below is alice's first under its code
    code = backup.new_recovery_code()
    device = Device(ALICE, tmp_path / "small")
    with SmallDisk(device.profile) as disk:
        set_up_device(device, world, mail_stack, roots_file(world, tmp_path))
        keys = device.run("--json", "certs", "list").json()["keys"]
        body = tmp_path / "body.txt"
        body.write_text("Sent from a full disk?\n", encoding="utf-8")
        commands = {
            "send": ["send", "--from", ALICE, "--to", BOB, "--body-file", str(body)],
            "backup": ["backup", "--recovery-code-stdin"],
            "enroll": ["enroll", "--recovery-code-stdin"],
        }
        in_inbox = _inbox(mail_stack, BOB)
        for fault, words in ((disk.full, "the disk is full"), (disk.read_only, "read-only")):
            with fault():
                before = disk.files()
                for name, args in commands.items():
                    subject = ["--subject", f"{words} {name}"] if name == "send" else []
                    done = device.run(*args, *subject, stdin=code + "\n")
                    line = one_line_failure(done, name, "storage_failed")
                    assert words in line and str(device.profile) in line, line
                    assert "Traceback" not in done.stderr
                    if name == "backup" and fault == disk.full:  # the mailbox took it: said so
                        assert "The backup itself is in your mailbox and proven" in line
                _unchanged(before, disk.files())
                assert _inbox(mail_stack, BOB) == in_inbox  # nothing was sent
        sent = device.run("--json", "send", "--from", ALICE, "--to", BOB, "--subject",
                          "room again", "--body-file", str(body))  # fmt: skip
        assert sent.code == 0, sent.stderr
        assert sent.json()["status"] == "sent"
        assert _inbox(mail_stack, BOB, sent.json()["messageId"]) == 1
        assert device.run("--json", "certs", "list").json()["keys"] == keys


# ---- enroll, backup, restore against `autosmime pki serve` with RFC 8823 mail -------------------

CA = "carol@example.test"  # the CA's mailbox on the stack


def _login(user: str, password: str) -> str:
    quoted = [
        t.replace("%", "%25").replace("@", "%40").replace(":", "%3A") for t in (user, password)
    ]
    return f"{quoted[0]}:{quoted[1]}"


@pytest.fixture(scope="module")
def pki_serve(mail_stack: MailStack, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The PKI service as an operator runs it, validating addresses by mail through carol."""
    from harness.mail import free_port
    from harness.pki_service import write_test_stack_config

    data = tmp_path_factory.mktemp("pki-serve")
    write_test_stack_config(data)  # the loopback stack: limits per address lifted, no DKIM
    port = free_port()
    login = f"{_login(CA, mail_stack.users[CA])}@{mail_stack.host}"
    process = subprocess.Popen(
        [sys.executable, "-m", "native_host.cli", "pki", "serve", "--data", str(data),
         "--listen", f"127.0.0.1:{port}", "--mail-from", CA,
         "--smtp", f"smtp://{login}:{mail_stack.smtp_port}",
         "--imap", f"imaps://{login}:{mail_stack.imaps_port}",
         "--mail-ca-file", str(mail_stack.ca_cert_path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    roots = b""
    while not roots:
        assert process.poll() is None, process.communicate()[1]
        assert time.monotonic() < deadline, "pki serve did not answer"
        try:
            with urllib.request.urlopen(f"{url}/ca/roots.pem", timeout=5) as answer:
                roots = answer.read()
        except OSError:
            time.sleep(0.05)  # waiting for start-up, bounded by the deadline
    roots_file = data / "configured-roots.pem"
    roots_file.write_bytes(roots)
    try:
        yield url, roots_file
    finally:
        process.terminate()
        try:
            _out, err = process.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            _out, err = process.communicate()
        assert "Traceback" not in err, err


def test_enroll_backup_and_restore_on_a_new_device(
    pki_serve: tuple[str, Path], mail_stack: MailStack, tmp_path: Path
) -> None:
    forget_backups(mail_stack, ALICE)  # alice's first enrollment: no backups yet
    url, roots = pki_serve
    first = Device(ALICE, tmp_path / "first")
    add_device(first, mail_stack, "--pki", url, "--pki-roots", str(roots))

    enrolled = first.run("--json", "--progress", "enroll")
    assert enrolled.code == 0, enrolled.stderr
    result = enrolled.json()
    assert set(result["keyIds"]) == {"intl", "sm"} and result["recoveryCode"]
    assert "Waiting for the confirmation email" in enrolled.stderr
    keys = first.run("--json", "certs", "list").json()["keys"]
    assert {k["status"] for k in keys} == {"current"}
    assert {k["backup"]["state"] for k in keys} == {"proven"}

    code = result["recoveryCode"]
    no_code = first.run("backup")  # the code was not kept on this device
    one_line_failure(no_code, "backup", "recovery_code")
    # A message planted in the backup folder (IMAP APPEND) claiming to be a newer backup: the
    # enrollment's own, re-dated into the future. It neither blocks nor is used, and is named.
    plant_redated_backup(mail_stack, ALICE, "2099-01-01T00:00:00Z", "planted@example.test")
    backed = first.run("--json", "backup", "--recovery-code-stdin", stdin=code + "\n")
    assert backed.code == 0, backed.stderr
    assert sorted(backed.json()["keyIds"]) == sorted(result["keyIds"].values())
    [skipped] = backed.json()["skipped"]
    assert skipped["messageId"] == "<planted@example.test>"
    assert skipped["claimedCreated"] == "2099-01-01T00:00:00Z"
    assert "does not match its contents" in skipped["reason"]

    second = Device(ALICE, tmp_path / "second")  # a fresh device: mailbox login + code
    add_device(second, mail_stack)
    wrong = second.run("restore", ALICE, stdin="1111-2222-3333-4444-5555-6666-7777-8888-9999\n")
    one_line_failure(wrong, "restore", "recovery_code")
    assert second.run("--json", "certs", "list").json()["keys"] == []
    said = second.run("restore", ALICE, stdin=code + "\n")
    assert said.code == 0, said.stderr
    assert f"holding 2 key(s): {backed.json()['messageId']}." in said.stdout
    assert "from the backup made 20" in said.stdout
    [warning] = said.stderr.strip().splitlines()
    assert warning.startswith(
        "autosmime restore: warning: a newer-looking backup did not open and was skipped: "
        "<planted@example.test> (claiming 2099-01-01 00:00:00 UTC): "
    )
    restored = second.run("--json", "restore", ALICE, stdin=code + "\n")
    assert restored.code == 0, restored.stderr
    assert restored.json()["messageId"] == backed.json()["messageId"]
    assert restored.json()["keys"] == 2 and restored.json()["created"] is not None
    assert sorted(restored.json()["alreadyHeld"]) == sorted(result["keyIds"].values())
    keys = second.run("--json", "certs", "list").json()["keys"]
    assert {k["keyId"]: k["status"] for k in keys} == {
        key_id: "current" for key_id in result["keyIds"].values()
    }


def plant_redated_backup(stack: MailStack, user: str, created: str, message_id: str) -> None:
    """APPEND a copy of the user's newest backup whose Autosmime-Backup header claims
    `created` (its MAC-covered time still says when it was really made)."""
    from native_host.domain.backups import FOLDER

    client = stack.imap_client(user)
    try:
        client.select_folder(FOLDER)
        uid = max(client.search(["HEADER", "Autosmime-Backup", "v1"]))
        raw = client.fetch([uid], ["BODY.PEEK[]"])[uid][b"BODY[]"]
        head, _, body = raw.partition(b"\r\n\r\n")
        lines = [
            line
            for line in head.split(b"\r\n")
            if not line.lower().startswith((b"autosmime-backup:", b"message-id:"))
        ]
        count = raw.split(b"keys=", 1)[1].split(b"\r\n", 1)[0].decode()
        lines += [
            f"Autosmime-Backup: v1; created={created}; keys={count}".encode(),
            f"Message-ID: <{message_id}>".encode(),
        ]
        client.append(FOLDER, b"\r\n".join(lines) + b"\r\n\r\n" + body, flags=[b"\\Seen"])
    finally:
        client.logout()


def forget_backups(stack: MailStack, *users: str) -> None:
    """Remove the users' backup folders, so that the next enrollment is a first one."""
    from native_host.domain.backups import FOLDER

    for user in users:
        client = stack.imap_client(user)
        try:
            if client.folder_exists(FOLDER):
                client.delete_folder(FOLDER)
        finally:
            client.logout()


def add_device(device: Device, stack: MailStack, *pki: str) -> None:
    user = device.address.replace("@", "%40")
    added = device.run(
        "account", "add", device.address,
        "--imap", f"imaps://{user}@127.0.0.1:{stack.imaps_port}",
        "--smtp", f"smtp://{user}@127.0.0.1:{stack.smtp_port}",
        "--ca-file", str(stack.ca_cert_path), *pki, "--password-stdin",
        stdin=stack.users[device.address] + "\n",
    )  # fmt: skip
    assert added.code == 0, added.stderr


def test_the_whole_story_enroll_send_both_suites_renew_and_restore(
    pki_serve: tuple[str, Path], mail_stack: MailStack, tmp_path: Path
) -> None:
    """Issue 6 point 8 in one go, with nothing prepared by hand: alice and bob enroll
    automatically (real RFC 8823 mail), bob writes alice (HTML, two attachments), alice reads it
    verified; alice writes bob in the SM suite; alice renews; a fresh device restores her keys
    with the recovery code and still reads the mail sent to her previous key."""
    forget_backups(mail_stack, ALICE, BOB)  # first enrollments: no earlier backups
    url, roots = pki_serve
    pki = ("--pki", url, "--pki-roots", str(roots))
    alice, bob = Device(ALICE, tmp_path / "alice"), Device(BOB, tmp_path / "bob")
    codes = {}
    for device in (alice, bob):
        add_device(device, mail_stack, *pki)
        enrolled = device.run("--json", "enroll")
        assert enrolled.code == 0, enrolled.stderr
        codes[device.address] = enrolled.json()["recoveryCode"]
    first_keys = {k["keyId"] for k in alice.run("--json", "certs", "list").json()["keys"]}

    body, html = tmp_path / "body.txt", tmp_path / "body.html"
    body.write_text("Hello Alice,\nthe plan.\n", encoding="utf-8")
    html.write_text('<p>Hello <b>Alice</b><img src="https://tracker.example/x.png"></p>')
    notes, png = tmp_path / "notes.txt", tmp_path / "logo.png"
    notes.write_text("Notes\n")
    png.write_bytes(PNG)
    sent = bob.run(
        "--json", "send", "--from", BOB, "--to", ALICE, "--subject", "The plan",
        "--body-file", str(body), "--html-file", str(html),
        "--attach", str(notes), "--attach", str(png),
    )  # fmt: skip
    assert sent.code == 0, sent.stderr
    message_id = sent.json()["messageId"]
    assert sent.json()["timestamped"]
    view = alice.run("--json", "open", "--message-id", message_id, "--folder", "INBOX").json()
    assert view["security"]["verified"] and view["security"]["suite"] == "intl"
    [signature] = view["security"]["signatures"]
    assert signature["signer"] == BOB and signature["timestamp"]["trustedTime"]
    assert "tracker.example" not in view["html"] and view["remoteImagesBlocked"]
    assert {a["name"] for a in view["attachments"]} == {"notes.txt", "logo.png"}

    sm = alice.run(
        "--json", "send", "--from", ALICE, "--to", BOB, "--subject", "SM",
        "--body-file", str(body), "--suite", "sm",
    )  # fmt: skip
    assert sm.code == 0, sm.stderr
    assert sm.json()["suite"] == "sm"
    sm_view = bob.run("--json", "open", "--message-id", sm.json()["messageId"]).json()
    assert sm_view["security"]["suite"] == "sm" and sm_view["security"]["verified"]

    renewed = alice.run("--json", "enroll", "--recovery-code-stdin", stdin=codes[ALICE] + "\n")
    assert renewed.code == 0, renewed.stderr
    keys = {k["keyId"]: k["status"] for k in alice.run("--json", "certs", "list").json()["keys"]}
    assert first_keys < set(keys)  # nothing lost
    assert {keys[k] for k in first_keys} == {"superseded"}

    fresh = Device(ALICE, tmp_path / "fresh")
    add_device(fresh, mail_stack, *pki)
    restored = fresh.run("--json", "restore", ALICE, stdin=codes[ALICE] + "\n")
    assert restored.code == 0, restored.stderr
    assert set(restored.json()["restored"]) >= first_keys
    old_mail = fresh.run("--json", "open", "--message-id", message_id, "--folder", "INBOX")
    assert old_mail.code == 0, old_mail.stderr
    assert old_mail.json()["security"]["decrypted"] and "the plan." in old_mail.json()["text"]


def test_renew_does_nothing_until_the_window_then_renews(
    pki_serve: tuple[str, Path], mail_stack: MailStack, tmp_path: Path
) -> None:
    forget_backups(mail_stack, ALICE)
    url, roots = pki_serve
    alice = Device(ALICE, tmp_path / "alice")
    add_device(alice, mail_stack, "--pki", url, "--pki-roots", str(roots))
    enrolled = alice.run("--json", "enroll", "--keep-recovery-code")
    assert enrolled.code == 0, enrolled.stderr
    quiet = alice.run("--json", "renew", "--window-days", "30")
    assert quiet.code == 0 and quiet.json()["renewed"] is False, quiet.stderr
    # The service issues for 365 days: a 400-day window makes them due now.
    one_line_failure(alice.run("renew", "--window-days", "400"), "renew", "bad_params")
    due = alice.run("--json", "renew", "--window-days", "365")
    assert due.code == 0, due.stderr
    assert due.json()["renewed"] is True
    keys = alice.run("--json", "certs", "list").json()["keys"]
    assert sorted(k["status"] for k in keys) == ["current", "current", "superseded", "superseded"]
    # The renewal's proven backup holds every key, old ones too, and certs.list says so (as a
    # new device that restored it does), not the replaced backup of the first enrollment.
    assert {k["backup"]["state"] for k in keys} == {"proven"}
    held_in = {k["backup"]["messageId"] for k in keys}
    assert len(held_in) == 1 and held_in != {enrolled.json()["backupMessageId"]}, keys


# ---- a desktop install: `pip install .` without the server extra ------------------------------


def test_a_desktop_install_without_the_server_extra_sends_and_opens(
    world: PkiWorld, mail_stack: MailStack, tmp_path: Path
) -> None:
    """The installed `autosmime` of a fresh environment without [server]: the host answers,
    alice sends signed, timestamped and encrypted mail, bob opens it, and `pki serve` says
    which extra it needs."""
    desktop = DesktopInstall(tmp_path / "desktop")
    assert not [m for m in SERVER_MODULES if desktop.has_module(m)]
    assert desktop.has_module("native_host") and desktop.has_module("imapclient")

    served = subprocess.run(
        [str(desktop.autosmime), "pki", "serve", "--data", str(tmp_path / "pki")],
        capture_output=True, text=True, timeout=60, cwd=desktop.work,
    )  # fmt: skip
    assert served.returncode == 2, served
    assert "pip install 'autosmime[server]'" in served.stderr
    assert not (tmp_path / "pki").exists()

    config, _log = write_host_config(tmp_path / "host")
    host = HostProcess(config, program=[str(desktop.autosmime), "host"], cwd=desktop.work)
    try:
        hello = host.call("hello", {})
    finally:
        host.close()
    assert hello["ok"] and "compose.send" in hello["result"]["ops"], hello

    roots = roots_file(world, tmp_path)
    alice, bob = (
        set_up_device(
            Device(a, tmp_path / a.split("@")[0], (str(desktop.autosmime),), desktop.work),
            world, mail_stack, roots,
        )
        for a in (ALICE, BOB)
    )  # fmt: skip
    body = tmp_path / "body.txt"
    body.write_text("From a desktop install.\n", encoding="utf-8")
    sent = alice.run(
        "--json", "send", "--from", ALICE, "--to", BOB, "--subject", "Desktop",
        "--body-file", str(body),
    )  # fmt: skip
    assert sent.code == 0, sent.stderr
    outcome = sent.json()
    assert outcome["signed"] and outcome["encrypted"] and outcome["timestamped"], outcome
    opened = bob.run("--json", "open", "--message-id", outcome["messageId"], "--folder", "INBOX")
    assert opened.code == 0, opened.stderr
    view = opened.json()
    assert view["security"]["verified"] and view["security"]["decrypted"]
    assert "From a desktop install." in view["text"]


def test_import_brings_an_identity_from_another_program(
    world: PkiWorld, mail_stack: MailStack, tmp_path: Path
) -> None:
    """`autosmime import FILE`: a PKCS#12 from elsewhere becomes the key in use, backed up."""
    from native_host.domain import backups
    from shared_pki import pkcs12 as ours

    client = mail_stack.imap_client(ALICE)
    try:  # her first backup: the import makes the recovery code
        if client.folder_exists(backups.FOLDER):
            client.delete_folder(backups.FOLDER)
    finally:
        client.logout()
    alice = set_up_device(
        Device(ALICE, tmp_path / "importer"), world, mail_stack, roots_file(world, tmp_path)
    )
    person = world.issue(ALICE, "rsa", publish=False)
    p12 = tmp_path / "from-outlook.p12"
    entry = ours.Pkcs12Entry(person.key, person.certificate, person.chain)  # type: ignore[arg-type]
    p12.write_bytes(ours.build_pfx([entry], "outlook-pw", flavour="legacy"))
    done = alice.run("--json", "import", str(p12), "--password-env", "P12", P12="outlook-pw")
    assert done.code == 0, done.stderr
    result = done.json()
    assert result["trusted"] and result["recoveryCode"] and not result["published"]
    keys = {k["keyId"]: k for k in alice.run("--json", "certs", "list").json()["keys"]}
    assert keys[result["keyId"]]["origin"] == "imported"
    assert keys[result["keyId"]]["status"] == "current"
    assert keys[result["replaced"]]["status"] == "superseded"  # the key it took over from
    wrong = alice.run("import", str(p12), stdin="not-the-password\n")
    line = one_line_failure(wrong, "import", "bad_params")
    assert "password does not open" in line
