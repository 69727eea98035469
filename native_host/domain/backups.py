"""Key backups in the user's own mailbox: written, read back, found and restored.

A backup is shared_pki.backup's self-addressed message (a text part saying what it is, and a
PKCS#12 of every key ever held under the recovery code), stored with IMAP APPEND in the folder
FOLDER ("autosmime-backup"), flagged \\Seen so it does not look like new mail.

- `write_backup` builds and appends one; `check_backup` reads it back from the server (by its
  Message-ID) and proves it: it opens with the code and holds exactly the keys, statuses and
  key ids that were put in. Enrollment marks new keys current only after that.
- `list_backups` finds the messages in the folder that say they are backups of this address,
  newest-looking first (by the creation time in the Autosmime-Backup header, then by UID).
  The header is not trusted for anything but the order in which they are tried.
- `open_newest` chooses the backup by its authenticated metadata: it tries them with the
  code in that order, and the first that opens is the newest backup the code authenticates
  (shared_pki.backup.read_backup refuses a backup whose header disagrees with the creation time
  and key count its MAC covers, so no backup can look newer than it is). Anything that does not
  open (a message someone planted with a future `created=`, a damaged one, one under another
  code) is skipped and named, never an obstacle: `restore` and `backup` go on with the newest
  one that opens and say which newer-looking ones did not.
- `flag_older` flags the backups older than a proven one with \\Seen and the keyword
  OLD_KEYWORD; nothing is ever deleted.
- `restore` reads the newest backup with the code and adds every key to the keystore with its
  certificates and status. Everything is read and checked before the first write, so a wrong
  code, a tampered or malformed backup changes nothing.

The recovery code lives in the OS keyring only where the person allows it
(`store_recovery_code`, entry `recovery-code:<address>` under the profile's keyring service).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import email
import email.policy
import email.utils
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from native_host.domain.keystore import (
    Keystore,
    KeystoreError,
    key_id_of,
    key_type_of,
    normalize_address,
)
from native_host.errors import HostError
from native_host.infrastructure.mailbox import Mailbox, MailError, classify
from native_host.infrastructure.profile import Profile
from shared_pki import backup
from shared_pki.errors import PkiError
from shared_pki.keys import Certificate

FOLDER = "autosmime-backup"
#: Keyword on backups that a newer, proven backup replaced (they are kept, never deleted).
OLD_KEYWORD = "$AutosmimeReplaced"
CODE_ENTRY = "recovery-code:{address}"


class BackupError(HostError):
    """A backup operation that cannot be done; `code` is stable, str() is for people."""

    code = "backup_error"


class NoBackup(BackupError):
    code = "no_backup"


class BackupCheckFailed(BackupError):
    """The backup read back from the server is not the one written."""

    code = "backup_check_failed"


class BackupUnreadable(BackupError):
    """Messages that look like backups are there, but none of them can be read."""

    code = "backup_unreadable"


class RestoreRefused(BackupError):
    """The backup opened but cannot be restored into this keystore (nothing was changed)."""

    code = "restore_refused"


@dataclass(frozen=True)
class StoredBackup:
    """One backup message in the mailbox."""

    folder: str
    uid: int | None
    message_id: str
    created: datetime.datetime | None
    keys: int | None
    raw: bytes = dataclasses.field(default=b"", repr=False)


@dataclass(frozen=True)
class SkippedBackup:
    """A message that looked like a backup but did not open with the code, and why."""

    backup: StoredBackup
    reason: str

    def describe(self) -> str:
        claimed = self.backup.created
        when = f"claiming {claimed:%Y-%m-%d %H:%M} UTC" if claimed else "with no creation time"
        return f"{self.backup.message_id or '(no Message-ID)'} ({when}): {self.reason}"


@dataclass(frozen=True)
class OpenedBackup:
    """The newest backup the code opens, its keys, and the newer-looking messages skipped on
    the way (newest first). `stored.created` and `stored.keys` are authenticated: read_backup
    checked them against the metadata under the MAC."""

    stored: StoredBackup
    keys: list[backup.BackupKey]
    skipped: tuple[SkippedBackup, ...] = ()


@dataclass(frozen=True)
class RestoreResult:
    address: str
    backup: StoredBackup
    restored: tuple[str, ...]  # key ids added
    already_held: tuple[str, ...]  # key ids the keystore had
    statuses: dict[str, str]  # key id -> status after the restore
    skipped: tuple[SkippedBackup, ...] = ()  # newer-looking backups that did not open


# ---- the recovery code in the keyring ---------------------------------------------------------


def _entry(address: str) -> str:
    return CODE_ENTRY.format(address=normalize_address(address))


def stored_recovery_code(profile: Profile, address: str, *, backend: Any = None) -> str | None:
    store = backend if backend is not None else profile.keyring()
    return store.get_password(profile.keyring_service, _entry(address))


def store_recovery_code(profile: Profile, address: str, code: str, *, backend: Any = None) -> None:
    store = backend if backend is not None else profile.keyring()
    store.set_password(profile.keyring_service, _entry(address), backup.parse_recovery_code(code))


def forget_recovery_code(profile: Profile, address: str, *, backend: Any = None) -> None:
    from keyring.errors import PasswordDeleteError

    store = backend if backend is not None else profile.keyring()
    with contextlib.suppress(PasswordDeleteError):
        store.delete_password(profile.keyring_service, _entry(address))


# ---- finding backups --------------------------------------------------------------------------


def _headers(raw: bytes) -> email.message.Message:
    end = raw.find(b"\r\n\r\n")
    if end < 0:
        end = raw.find(b"\n\n")
    head = raw[: end + 4] if end >= 0 else raw
    return email.message_from_bytes(head, policy=email.policy.compat32)


def _message_id(message: email.message.Message) -> str:
    return str(message.get("Message-ID", "")).strip()


def _from_address(message: email.message.Message) -> str:
    found = email.utils.getaddresses([str(message.get("From", ""))])
    return found[0][1].casefold() if found and found[0][1] else ""


def list_backups(mailbox: Mailbox, address: str, *, folder: str = FOLDER) -> list[StoredBackup]:
    """This address's backups in folder (with their bytes), newest first."""
    wanted = normalize_address(address)
    found = []
    for uid in mailbox.find(folder, backup.HEADER, backup.VERSION):
        raw = mailbox.fetch_raw(folder, uid)
        if raw is None:
            continue
        headers = _headers(raw)
        info = backup.backup_info(headers)
        if info is None or _from_address(headers) != wanted:
            continue
        found.append(StoredBackup(folder, uid, _message_id(headers), info.created, info.keys, raw))
    oldest = datetime.datetime.min.replace(tzinfo=datetime.UTC)
    found.sort(key=lambda b: (b.created or oldest, b.uid or 0), reverse=True)
    return found


def newest_backup(mailbox: Mailbox, address: str, *, folder: str = FOLDER) -> StoredBackup:
    """The newest-LOOKING backup (by its unauthenticated header); open_newest decides."""
    backups = list_backups(mailbox, address, folder=folder)
    if not backups:
        raise NoBackup(
            f"There is no autosmime key backup for {address} in the folder {folder!r} of this "
            "mailbox."
        )
    return backups[0]


#: How many newest-looking backups are tried with the code before giving up (each try is a
#: PKCS#12 key derivation, about a second here; planted messages are refused at their MAC).
MAX_TRIES = 20


def open_newest(stored: Sequence[StoredBackup], code: str) -> OpenedBackup:
    """The newest backup among `stored` (list_backups' order) that opens with code, with the
    ones skipped on the way (module docstring). NoBackup when there is none; when none opens,
    WrongRecoveryCode if the code opened none of them (whatever else was there), else
    BackupUnreadable naming each."""
    if not stored:
        raise NoBackup("There is no autosmime key backup in the mailbox.")
    skipped: list[SkippedBackup] = []
    wrong_code = False
    for item in stored[:MAX_TRIES]:
        try:
            keys = backup.read_backup(item.raw, code)
        except backup.WrongRecoveryCode:
            wrong_code = True
            skipped.append(SkippedBackup(item, "it does not open with this recovery code"))
            continue
        except PkiError as error:
            skipped.append(SkippedBackup(item, error.message))
            continue
        return OpenedBackup(item, keys, tuple(skipped))
    untried = len(stored) - MAX_TRIES
    more = f" ({untried} older ones were not tried)" if untried > 0 else ""
    if wrong_code:
        raise backup.WrongRecoveryCode(
            f"This recovery code opens none of the {len(skipped)} backups in the mailbox{more}. "
            "Please check it and try again."
        )
    named = "; ".join(s.describe() for s in skipped)
    raise BackupUnreadable(f"No backup in the mailbox could be read{more}: {named}.")


def find_backup(mailbox: Mailbox, message_id: str, *, folder: str = FOLDER) -> StoredBackup | None:
    """The backup with this Message-ID in folder, or None."""
    found = mailbox.find_by_message_id(message_id, [folder])
    if found is None:
        return None
    headers = _headers(found.raw)
    info = backup.backup_info(headers)
    if info is None:
        return None
    return StoredBackup(folder, found.uid, _message_id(headers), info.created, info.keys, found.raw)


# ---- writing and proving ----------------------------------------------------------------------


def projected_keys(
    keystore: Keystore,
    address: str,
    *,
    becoming_current: Iterable[str] = (),
    carried: Sequence[backup.BackupKey] = (),
) -> list[backup.BackupKey]:
    """Every key of address as it will be once `becoming_current` are current: those current,
    the current keys of their suites superseded, the rest as they are; plus `carried` keys
    (from an older backup) that this keystore does not hold."""
    new = set(becoming_current)
    held = keystore.backup_keys(address)
    new_suites = {k.suite for k in held if k.key_id in new}
    keys = []
    for item in held:
        status = item.status
        if item.key_id in new:
            status = "current"
        elif item.suite in new_suites and status == "current":
            status = "superseded"
        keys.append(dataclasses.replace(item, status=status))
    ours = {k.key_id for k in keys}
    for item in carried:
        if key_id_of(item.key) not in ours:
            status = "superseded" if item.status in ("current", "pending") else item.status
            keys.append(dataclasses.replace(item, status=status, key_id=key_id_of(item.key)))
            ours.add(key_id_of(item.key))
    return keys


def write_backup(
    mailbox: Mailbox,
    address: str,
    keys: Sequence[backup.BackupKey],
    code: str,
    *,
    now: datetime.datetime | None = None,
    folder: str = FOLDER,
    iterations: int | None = None,
) -> StoredBackup:
    """Build the backup message and append it to folder (made if missing). MailError when the
    mailbox cannot take it (nothing is half-written: IMAP APPEND is atomic)."""
    when = now or datetime.datetime.now(datetime.UTC)
    options = {} if iterations is None else {"iterations": iterations}
    message = backup.build_backup(normalize_address(address), keys, code, when, **options)
    headers = _headers(message)
    info = backup.backup_info(headers)
    assert info is not None
    uid = mailbox.append(folder, message, flags=[b"\\Seen"])
    return StoredBackup(folder, uid, _message_id(headers), info.created, info.keys, message)


def check_backup(
    mailbox: Mailbox,
    message_id: str,
    code: str,
    expected: Mapping[str, str],
    *,
    folder: str = FOLDER,
) -> StoredBackup:
    """Read the backup back from the server and prove it: it opens with code and holds exactly
    the keys of `expected` (key id -> status), each key matching its id. BackupCheckFailed (or
    NoBackup when it is not there) otherwise."""
    stored = find_backup(mailbox, message_id, folder=folder)
    if stored is None:
        raise NoBackup(f"The backup {message_id} is not in the folder {folder!r}.")
    try:
        keys = backup.read_backup(stored.raw, code)
    except PkiError as error:
        raise BackupCheckFailed(
            f"The backup read back from the mailbox does not open: {error.message}"
        ) from None
    found = {}
    for item in keys:
        actual = key_id_of(item.key)
        if item.key_id and item.key_id != actual:
            raise BackupCheckFailed("A key in the backup read back is not the key its id says.")
        found[actual] = item.status
    if found != dict(expected):
        raise BackupCheckFailed(
            "The backup read back from the mailbox does not hold the keys that were written "
            f"({len(found)} read, {len(expected)} written)."
        )
    return stored


def flag_older(mailbox: Mailbox, older: Iterable[StoredBackup]) -> int:
    """Flag replaced backups (\\Seen and OLD_KEYWORD); they stay. How many were flagged."""
    by_folder: dict[str, list[int]] = {}
    for item in older:
        if item.uid is not None:
            by_folder.setdefault(item.folder, []).append(item.uid)
    if not by_folder:
        return 0
    client = mailbox.imap_connect()
    count = 0
    try:
        for folder, uids in by_folder.items():
            client.select_folder(folder)
            with contextlib.suppress(Exception):  # servers without keywords: \Seen still set
                client.add_flags(uids, [b"\\Seen", OLD_KEYWORD.encode()])
                count += len(uids)
    except MailError:
        raise
    except Exception as exc:
        raise classify(exc, mailbox.settings.imap, ca_file=mailbox.ca_file) from exc
    finally:
        with contextlib.suppress(Exception):
            client.logout()
    return count


# ---- restoring --------------------------------------------------------------------------------


_TO_STATUS: dict[str, tuple[str, ...]] = {
    # the keystore's allowed moves from pending to each status
    "pending": (),
    "current": ("current",),
    "superseded": ("superseded",),
    "expired": ("superseded", "expired"),
    "revoked": ("revoked",),
}


def restore(
    address: str,
    code: str,
    mailbox: Mailbox,
    keystore: Keystore,
    *,
    folder: str = FOLDER,
    profile: Profile | None = None,
    keep_code: bool = False,
) -> RestoreResult:
    """Restore every key of the newest backup of address that opens with code (open_newest:
    newer-looking messages that do not open are skipped, and named in the result) into
    keystore, with its certificates and status (a key the backup calls current becomes
    current unless this keystore already has a current key of that suite; then it is kept as
    superseded). Keys already held keep their status. `keep_code` (with profile) keeps the
    code in the keyring afterwards.

    Refused with nothing changed: no backup (NoBackup), a code that is not nine groups of four
    digits (shared_pki.backup.RecoveryCodeError), a code that opens no backup there
    (WrongRecoveryCode), no backup that can be read at all (BackupUnreadable), keys for another
    address or of a kind that does not fit their suite (RestoreRefused)."""
    address = normalize_address(address)
    canonical = backup.parse_recovery_code(code)
    candidates = list_backups(mailbox, address, folder=folder)
    if not candidates:
        newest_backup(mailbox, address, folder=folder)  # NoBackup, in its words
    opened = open_newest(candidates, canonical)  # every refusal happens here, before writes
    stored, keys = opened.stored, opened.keys
    plan = []
    for item in keys:
        owner = normalize_address(item.address) if item.address else address
        if owner != address:
            raise RestoreRefused(f"The backup holds a key of {owner}, not of {address}.")
        kind = key_type_of(item.key)
        if (item.suite == "sm") != (kind == "sm2"):
            raise RestoreRefused(f"The backup holds a {kind} key filed under {item.suite}.")
        certs = [*reversed(item.other_certificates)]
        if item.certificate is not None:
            certs.append(item.certificate)
        if item.status == "current" and not certs:
            raise RestoreRefused("The backup holds a current key without a certificate.")
        plan.append((item, key_id_of(item.key), certs))

    held = {record.key_id for record in keystore.records(address)}
    current_suites = {r.suite for r in keystore.records(address) if r.status == "current"}
    restored, already = [], []
    try:
        for item, key_id, certs in plan:
            if key_id in held:
                already.append(key_id)
                continue
            keystore.add_key(address, item.suite, item.key)
            for cert in certs:
                keystore.attach_certificate(key_id, _der(cert), [_der(c) for c in item.chain])
            restored.append(key_id)
        for item, key_id, _certs in plan:
            if key_id in already:
                continue
            target = item.status
            if target == "current" and item.suite in current_suites:
                target = "superseded"
            for status in _TO_STATUS[target]:
                keystore.mark(key_id, status)
            if target == "current":
                current_suites.add(item.suite)
    except KeystoreError as error:
        raise RestoreRefused(f"The keystore refused a key of the backup: {error}") from None
    if keep_code and profile is not None:
        store_recovery_code(profile, address, canonical)
    statuses = {r.key_id: r.status for r in keystore.records(address)}
    return RestoreResult(address, stored, tuple(restored), tuple(already), statuses, opened.skipped)


def _der(cert: Certificate | bytes) -> bytes:
    return cert if isinstance(cert, bytes) else cert.dump()


__all__ = [
    "FOLDER",
    "OLD_KEYWORD",
    "BackupCheckFailed",
    "BackupError",
    "BackupUnreadable",
    "NoBackup",
    "OpenedBackup",
    "RestoreRefused",
    "RestoreResult",
    "SkippedBackup",
    "StoredBackup",
    "check_backup",
    "find_backup",
    "flag_older",
    "forget_recovery_code",
    "list_backups",
    "newest_backup",
    "open_newest",
    "projected_keys",
    "restore",
    "store_recovery_code",
    "stored_recovery_code",
    "write_backup",
]
