"""Key backup in the user's own mailbox: the recovery code and the backup message (pure).

In the spirit of the Autocrypt Setup Message: a self-addressed message that a person can read
and that a fresh device can restore from with a code that is never mailed.

Recovery code: 36 decimal digits from `secrets` (uniform over 0..10^36-1, about 119.6 bits),
shown as nine groups of four, `1234-5678-...`. There is no check digit: one would take a digit
of entropy and bring the code under the 119 bits the product promises while keeping 9x4
digits. Typos are still caught cheaply where they can be: `parse_recovery_code` wants exactly
36 digits and, when the person typed separators, nine groups of four (so a dropped digit in one
group and an extra one in another is told apart from a right code, by group number); anything
else is caught by the PKCS#12 MAC, as a wrong code. The PKCS#12 password is the canonical form
with dashes, exactly as shown to the person, so the attached file also opens in any PKCS#12
tool that can read its key kinds.

The message (`build_backup`), RFC 5322 with CRLF line ends, ready for IMAP APPEND:

    From: ADDRESS / To: ADDRESS / Subject: autosmime key backup / Date / Message-ID
    Autosmime-Backup: v1; created=2025-01-02T03:04:05Z; keys=3
    multipart/mixed
      text/plain; charset=utf-8       what this is and how to restore (not trusted on reading)
      application/x-autosmime-backup; name/filename=autosmime-backup.p12   (base64)
          PKCS#12, flavour "modern" of shared_pki.pkcs12 (PBES2 = PBKDF2-HMAC-SHA256 with
          600,000 iterations + AES-256-CBC, HMAC-SHA-256 MAC), password = the recovery code,
          every key ever held with its certificates and chain; each key bag carries the
          attribute METADATA_OID (UTF8String JSON, covered by the MAC):
          {"v": 1, "address", "suite", "status", "key_id", "created",
           "backup_created", "backup_keys"}

`read_backup` refuses, with typed errors and nothing returned: a message that is not a backup
or has no, or more than one, backup part (MalformedBackup); a wrong code (WrongRecoveryCode);
a PKCS#12 that was altered, or whose authenticated creation time and key count disagree with
the header (BackupTampered, so an old backup cannot pose as a newer one). The text part and the
other headers are not read. A backup planted by someone else fails the MAC under the user's
code and is refused as a wrong code: the code is what authenticates a backup.
"""

from __future__ import annotations

import datetime
import email
import email.policy
import email.utils
import json
import re
import secrets
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from email.message import EmailMessage, Message

from asn1crypto import core

from shared_pki import pkcs12
from shared_pki.errors import KeyLoadError, MalformedInput, PkiError
from shared_pki.keys import Certificate, PrivateKey

HEADER = "Autosmime-Backup"
VERSION = "v1"
SUBJECT = "autosmime key backup"
CONTENT_TYPE = "application/x-autosmime-backup"
FILENAME = "autosmime-backup.p12"
# An OID from a UUID (ITU-T X.667, arc 2.25): needs no registration and clashes with nobody.
METADATA_OID = "2.25.133704315969220354839165403039776664668"
STATUSES = ("pending", "current", "superseded", "expired", "revoked")
SUITES = ("intl", "sm")
CODE_GROUPS, GROUP_DIGITS = 9, 4
CODE_DIGITS = CODE_GROUPS * GROUP_DIGITS
_SEPARATORS = re.compile(r"[\s\-\u2010-\u2015\u2212_.]+")


class RecoveryCodeError(MalformedInput):
    """Text that is not a recovery code (wrong number of digits or groups, other characters)."""

    code = "invalid_recovery_code"


class MalformedBackup(MalformedInput):
    """Not a backup message, or one without exactly one backup part."""

    code = "malformed_backup"


class WrongRecoveryCode(KeyLoadError):
    code = "wrong_recovery_code"


class BackupTampered(KeyLoadError):
    """The backup was altered after it was made (or is damaged)."""

    code = "backup_tampered"


# ---- the recovery code ----------------------------------------------------------------------


def _format(digits: str) -> str:
    return "-".join(digits[i : i + GROUP_DIGITS] for i in range(0, CODE_DIGITS, GROUP_DIGITS))


def new_recovery_code() -> str:
    """A fresh code, `1234-5678-...` (nine groups of four digits, uniform from `secrets`)."""
    return _format(f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}")


def parse_recovery_code(text: str) -> str:
    """The canonical form of a code a person typed: spaces, dashes and line breaks anywhere,
    full-width digits allowed; RecoveryCodeError (saying what is wrong) otherwise."""
    if not isinstance(text, str):
        raise RecoveryCodeError("A recovery code is text.")
    normal = unicodedata.normalize("NFKC", text).strip()
    groups = [group for group in _SEPARATORS.split(normal) if group]
    joined = "".join(groups)
    if not joined or not joined.isascii() or not joined.isdigit():
        raise RecoveryCodeError(
            "A recovery code has only digits (nine groups of four, like 1234-5678-...)."
        )
    if len(joined) != CODE_DIGITS:
        raise RecoveryCodeError(
            f"The code has {len(joined)} digits; a recovery code has {CODE_DIGITS} "
            f"(nine groups of four)."
        )
    if len(groups) > 1:  # typed with separators: they must fall where ours do
        lengths = [len(group) for group in groups]
        if lengths != [GROUP_DIGITS] * CODE_GROUPS:
            wrong = next((i for i, n in enumerate(lengths) if n != GROUP_DIGITS), len(lengths) - 1)
            raise RecoveryCodeError(
                f"Group {wrong + 1} of the code has {lengths[wrong]} digits; every group has "
                f"{GROUP_DIGITS}. Please check the code."
            )
    return _format(joined)


# ---- what a backup holds --------------------------------------------------------------------


@dataclass(frozen=True)
class BackupKey:
    """A key with its certificates and what the keystore knows about it."""

    key: PrivateKey
    certificate: Certificate | None
    chain: tuple[Certificate, ...] = ()
    status: str = "current"
    suite: str = "intl"
    address: str = ""  # empty: the backup's address
    key_id: str = ""
    created: str = ""  # ISO 8601, when the key was made
    other_certificates: tuple[Certificate, ...] = ()


@dataclass(frozen=True)
class BackupInfo:
    """What the Autosmime-Backup header says (unauthenticated; read_backup checks it)."""

    version: str
    created: datetime.datetime | None
    keys: int | None


def _utc(moment: datetime.datetime) -> datetime.datetime:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return moment.astimezone(datetime.UTC).replace(microsecond=0)


def _iso(moment: datetime.datetime) -> str:
    return _utc(moment).strftime("%Y-%m-%dT%H:%M:%SZ")


_TEXT = """\
This message is a backup of your autosmime keys for {address}.

It was made by autosmime on {created} and holds {count} private key(s): every key
this address has ever held, the current ones and the old ones you still need to read
old encrypted mail, with their certificates.

The keys are in the attachment {filename}, encrypted under your recovery code: the
36 digits (nine groups of four) that autosmime showed you once when it made this
backup. The code is not in this message and was never sent by mail. Without it the
attachment is useless to anyone, you included.

To restore your keys on a new device:
  1. Install autosmime and log in to this mailbox with it.
  2. Run:  autosmime restore {address}
  3. Type your recovery code when asked.

Never share your recovery code, and never type it anywhere else: autosmime will
never ask for it by mail. Please do not delete this message; autosmime replaces it
with a newer backup when your keys change.
"""


def build_backup(
    address: str,
    keys: Sequence[BackupKey],
    code: str,
    now: datetime.datetime,
    *,
    iterations: int = pkcs12.MODERN_ITERATIONS,
) -> bytes:
    """The backup message for address holding every key given, under the recovery code."""
    password = parse_recovery_code(code)
    if not keys:
        raise KeyLoadError("A backup needs at least one key.")
    created = _iso(now)
    entries = []
    for held in keys:
        if held.status not in STATUSES:
            raise KeyLoadError(f"Unknown key status {held.status!r}.")
        if held.suite not in SUITES:
            raise KeyLoadError(f"Unknown suite {held.suite!r}.")
        metadata = {
            "v": 1,
            "address": held.address or address,
            "suite": held.suite,
            "status": held.status,
            "key_id": held.key_id,
            "created": held.created,
            "backup_created": created,
            "backup_keys": len(keys),
        }
        value = core.UTF8String(json.dumps(metadata, sort_keys=True)).dump()
        entries.append(
            pkcs12.Pkcs12Entry(
                key=held.key,
                certificate=held.certificate,
                chain=tuple(held.chain),
                friendly_name=f"{held.address or address} ({held.suite}, {held.status})",
                other_certificates=tuple(held.other_certificates),
                attributes={METADATA_OID: value},
            )
        )
    p12 = pkcs12.build_pfx(entries, password, flavour="modern", iterations=iterations)

    message = EmailMessage(policy=email.policy.SMTP)
    message["From"] = address
    message["To"] = address
    message["Subject"] = SUBJECT
    message["Date"] = email.utils.format_datetime(_utc(now))
    domain = address.rpartition("@")[2] or None
    message["Message-ID"] = email.utils.make_msgid("autosmime-backup", domain=domain)
    message[HEADER] = f"{VERSION}; created={created}; keys={len(keys)}"
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(
        _TEXT.format(address=address, created=created, count=len(keys), filename=FILENAME)
    )
    maintype, subtype = CONTENT_TYPE.split("/")
    message.add_attachment(p12, maintype=maintype, subtype=subtype, filename=FILENAME)
    return message.as_bytes()


# ---- reading --------------------------------------------------------------------------------


def _header(headers: Message | Mapping[str, str] | bytes) -> str | None:
    if isinstance(headers, bytes):
        headers = email.message_from_bytes(headers, policy=email.policy.compat32)
    if isinstance(headers, Message):
        values = headers.get_all(HEADER) or []
        return str(values[0]) if len(values) == 1 else None
    for name, value in headers.items():
        if name.lower() == HEADER.lower():
            return str(value)
    return None


def backup_info(headers: Message | Mapping[str, str] | bytes) -> BackupInfo | None:
    """The header's version, creation time and key count; None if not one of our backups."""
    value = _header(headers)
    if value is None:
        return None
    parts = [part.strip() for part in value.split(";")]
    if parts[0].lower() != VERSION:
        return None
    params = dict(part.partition("=")[::2] for part in parts[1:] if "=" in part)
    created = None
    try:
        created = datetime.datetime.strptime(params.get("created", ""), "%Y-%m-%dT%H:%M:%SZ")
        created = created.replace(tzinfo=datetime.UTC)
    except ValueError:
        created = None
    count = params.get("keys", "")
    return BackupInfo(VERSION, created, int(count) if count.isdigit() else None)


def is_backup(headers: Message | Mapping[str, str] | bytes) -> bool:
    """Whether a message's headers (a Message, a name->value mapping, or raw header bytes)
    mark it as an autosmime backup of a version we read."""
    try:
        return backup_info(headers) is not None
    except (ValueError, TypeError):
        return False


def read_backup(message_bytes: bytes, code: str) -> list[BackupKey]:
    """Every key in the backup (see the module docstring for what is refused)."""
    password = parse_recovery_code(code)
    try:
        message = email.message_from_bytes(message_bytes, policy=email.policy.default)
    except (TypeError, ValueError) as error:
        raise MalformedBackup(f"Not a mail message: {error}") from None
    info = backup_info(message)
    if info is None:
        raise MalformedBackup("Not an autosmime backup (no Autosmime-Backup: v1 header).")
    parts = [part for part in message.walk() if part.get_content_type() == CONTENT_TYPE]
    if len(parts) != 1:
        raise MalformedBackup(f"A backup has one {CONTENT_TYPE} part; this one has {len(parts)}.")
    data = parts[0].get_payload(decode=True)
    if not isinstance(data, bytes) or not data:
        raise MalformedBackup("The backup part is empty.")
    try:
        entries = pkcs12.parse_pfx(data, password)
    except pkcs12.WrongPassword:
        raise WrongRecoveryCode(
            "This recovery code does not open the backup. Please check it and try again."
        ) from None
    except PkiError as error:
        raise BackupTampered(f"The backup was altered or is damaged: {error.message}") from None
    return _keys(entries, info)


def _keys(entries: list[pkcs12.Pkcs12Entry], info: BackupInfo) -> list[BackupKey]:
    found = []
    for entry in entries:
        raw = entry.attributes.get(METADATA_OID)
        try:
            metadata = json.loads(core.UTF8String.load(raw).native) if raw else None
        except ValueError:
            metadata = None
        if not isinstance(metadata, dict) or metadata.get("v") != 1:
            raise BackupTampered("A key in the backup lacks its autosmime metadata.")
        if metadata.get("status") not in STATUSES or metadata.get("suite") not in SUITES:
            raise BackupTampered("A key in the backup has an unknown status or suite.")
        created = info.created and _iso(info.created)
        if metadata.get("backup_created") != created or metadata.get("backup_keys") != info.keys:
            raise BackupTampered(
                "The backup's header does not match its contents (time or key count)."
            )
        found.append(
            BackupKey(
                key=entry.key,
                certificate=entry.certificate,
                chain=entry.chain,
                status=metadata["status"],
                suite=metadata["suite"],
                address=str(metadata.get("address", "")),
                key_id=str(metadata.get("key_id", "")),
                created=str(metadata.get("created", "")),
                other_certificates=entry.other_certificates,
            )
        )
    if len(found) != info.keys:
        raise BackupTampered("The backup's header does not match its contents (key count).")
    return found
