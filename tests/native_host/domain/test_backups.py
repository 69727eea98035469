"""Choosing the backup to restore in the real Dovecot mailbox: by its authenticated (MAC-covered)
creation time, never by a header anyone can write. Messages planted in the backup folder with
IMAP APPEND (a future `created=`, another code, a damaged attachment) are skipped and named;
restore and the next backup go on with the newest backup that opens."""

from __future__ import annotations

import datetime
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from harness.mail import MailStack

from native_host.domain import backups
from native_host.domain.keystore import Keystore, key_id_of
from native_host.infrastructure.mail_settings import resolve
from native_host.infrastructure.mailbox import Credentials, Mailbox
from shared_pki import backup

pytestmark = pytest.mark.mail

ALICE = "alice@example.test"
ITERATIONS = 2048  # the format's work factor is not what these tests are about
NOW = datetime.datetime.now(datetime.UTC).replace(microsecond=0)


@pytest.fixture
def mailbox(mail_stack: MailStack) -> Iterator[Mailbox]:
    user = ALICE.replace("@", "%40")
    settings = resolve(
        ALICE,
        imap_url=f"imaps://{user}@127.0.0.1:{mail_stack.imaps_port}",
        smtp_url=f"smtp://{user}@127.0.0.1:{mail_stack.smtp_port}",
    )
    with Mailbox(
        settings,
        Credentials(password=mail_stack.users[ALICE]),
        ca_file=mail_stack.ca_cert_path,
        timeout=10,
    ) as box:
        yield box


@pytest.fixture
def folder(mail_stack: MailStack) -> Iterator[str]:
    """A backup folder of this test's own in alice's mailbox, deleted afterwards."""
    name = f"autosmime-backup-{secrets.token_hex(4)}"
    yield name
    client = mail_stack.imap_client(ALICE)
    try:
        if client.folder_exists(name):
            client.delete_folder(name)
    finally:
        client.logout()


def keys(count: int) -> list[backup.BackupKey]:
    made = [ec.generate_private_key(ec.SECP256R1()) for _ in range(count)]
    return [backup.BackupKey(key, None, status="superseded", key_id=key_id_of(key)) for key in made]


def write(mailbox: Mailbox, folder: str, held: list[backup.BackupKey], code: str, when) -> bytes:
    stored = backups.write_backup(
        mailbox, ALICE, held, code, now=when, folder=folder, iterations=ITERATIONS
    )
    return stored.raw


def plant(mail_stack: MailStack, folder: str, raw: bytes) -> None:
    """APPEND a message into the backup folder, as anyone with the mailbox's access can."""
    client = mail_stack.imap_client(ALICE)
    try:
        if not client.folder_exists(folder):
            client.create_folder(folder)
        client.append(folder, raw, flags=[b"\\Seen"])
    finally:
        client.logout()


def with_header(raw: bytes, created: str, count: int, message_id: str) -> bytes:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = [
        line
        for line in head.split(b"\r\n")
        if line and not line.lower().startswith((b"autosmime-backup:", b"message-id:"))
    ]
    lines += [
        f"Autosmime-Backup: v1; created={created}; keys={count}".encode(),
        f"Message-ID: <{message_id}>".encode(),
    ]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def test_planted_and_damaged_backups_are_skipped_named_and_never_block_restore(
    mailbox: Mailbox, mail_stack: MailStack, folder: str, tmp_path: Path
) -> None:
    code = backup.new_recovery_code()
    write(mailbox, folder, keys(1), code, NOW - datetime.timedelta(days=30))
    newest_keys = keys(3)
    genuine = write(mailbox, folder, newest_keys, code, NOW)
    # 1. the genuine newest backup re-dated into the future (its MAC-covered time disagrees)
    plant(mail_stack, folder, with_header(genuine, "2099-01-01T00:00:00Z", 3, "redated@x"))
    # 2. a backup someone made under a code of their own, claiming to be newer still
    theirs = backup.build_backup(
        ALICE, keys(1), backup.new_recovery_code(), NOW, iterations=ITERATIONS
    )
    plant(mail_stack, folder, with_header(theirs, "2099-06-01T00:00:00Z", 1, "theirs@x"))
    # 3. a damaged copy: the attachment cut short
    cut = genuine[: genuine.rindex(b"\r\n--") - 300] + genuine[genuine.rindex(b"\r\n--") :]
    plant(mail_stack, folder, with_header(cut, "2098-01-01T00:00:00Z", 3, "damaged@x"))

    listed = backups.list_backups(mailbox, ALICE, folder=folder)
    assert [b.message_id for b in listed[:3]] == ["<theirs@x>", "<redated@x>", "<damaged@x>"]

    store = Keystore(tmp_path / "keys", b"k" * 32)
    result = backups.restore(ALICE, code, mailbox, store, folder=folder)
    assert result.backup.created == NOW and result.backup.keys == 3
    assert sorted(result.restored) == sorted(k.key_id for k in newest_keys)
    skipped = {item.backup.message_id: item.reason for item in result.skipped}
    assert list(skipped) == ["<theirs@x>", "<redated@x>", "<damaged@x>"]
    assert skipped["<theirs@x>"] == "it does not open with this recovery code"
    assert "does not match its contents" in skipped["<redated@x>"]
    assert skipped["<damaged@x>"].startswith("The backup was altered or is damaged: ")
    described = result.skipped[0].describe()
    assert described.startswith("<theirs@x> (claiming 2099-06-01 00:00 UTC): ")

    # the next backup carries the keys of the newest one that opens, past the planted ones
    opened = backups.open_newest(listed, code)
    assert opened.stored.created == NOW and len(opened.keys) == 3
    assert len(opened.skipped) == 3


def test_a_wrong_code_is_still_a_wrong_code_and_changes_nothing(
    mailbox: Mailbox, mail_stack: MailStack, folder: str, tmp_path: Path
) -> None:
    code = backup.new_recovery_code()
    write(mailbox, folder, keys(2), code, NOW)
    plant(
        mail_stack,
        folder,
        with_header(b"From: alice@example.test\r\n", "2099-01-01T00:00:00Z", 1, "junk@x"),
    )
    store = Keystore(tmp_path / "keys", b"k" * 32)
    with pytest.raises(backup.WrongRecoveryCode, match="opens none of the 2 backups"):
        backups.restore(ALICE, backup.new_recovery_code(), mailbox, store, folder=folder)
    assert store.records(ALICE) == []


def test_only_unreadable_messages_are_named_and_nothing_is_restored(
    mailbox: Mailbox, mail_stack: MailStack, folder: str, tmp_path: Path
) -> None:
    plant(
        mail_stack,
        folder,
        with_header(b"From: alice@example.test\r\n", "2099-01-01T00:00:00Z", 1, "junk@x"),
    )
    store = Keystore(tmp_path / "keys", b"k" * 32)
    with pytest.raises(backups.BackupUnreadable, match="<junk@x>"):
        backups.restore(ALICE, backup.new_recovery_code(), mailbox, store, folder=folder)
    assert store.records(ALICE) == []
