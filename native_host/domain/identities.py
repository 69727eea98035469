"""Bring your own certificate: an S/MIME identity a person already holds (from a commercial CA,
a Thunderbird or Outlook backup), imported from PKCS#12 and kept like an enrolled one.

`read_identity` opens the file (PBES2, 3DES, RC2-40 and RC4 as Windows and old Outlook write,
BER with indefinite lengths as NSS writes: shared_pki.pkcs12) and picks the key whose
certificate names the address: valid now, for mail (emailProtection or no extended key usage),
allowing signing or decryption. Whether it chains to the organisation's configured roots is
said, not required: a certificate from a commercial CA is the point of bringing one.

`import_identity` keeps it as enrollment keeps new keys: sealed in the keystore as `pending`
(origin "imported") with its certificate and chain; a backup holding it (and every older key)
is appended to the mailbox, read back and proven under the recovery code; only then does it
become current for its suite (the key it replaces stays, superseded, and keeps decrypting).
The recovery code: given, else kept in the keyring, else (no backup of the address yet) a new
one, returned once. Importing the same file again changes nothing and proves the backup again.

Publishing it in the organisation's certificate directory is the caller's separate choice
(Enrollment.publish): it needs a confirmation of the address by mail.
"""

from __future__ import annotations

import contextlib
import datetime
from dataclasses import dataclass

from native_host.domain import backups
from native_host.domain.keystore import Keystore, key_type_of, normalize_address
from native_host.errors import BadParams, HostError
from native_host.infrastructure.mailbox import Mailbox
from native_host.infrastructure.profile import Profile
from shared_pki import backup, pkcs12, sm2
from shared_pki.cms.sm import BOTH_IDS
from shared_pki.errors import KeyLoadError, PkiError
from shared_pki.keys import Certificate, PrivateKey
from shared_pki.x509.validate import certificate_addresses, validate

EMAIL_PROTECTION = "1.3.6.1.5.5.7.3.4"
ANY_EKU = "2.5.29.37.0"
MAX_PKCS12_BYTES = 1024 * 1024


class IdentityError(HostError):
    """The file cannot be imported as an identity for the address; the message says why."""

    code = "identity_error"
    protocol_code = "bad_params"


class WrongPkcs12Password(IdentityError):
    code = "wrong_password"


class ImportNeedsRecoveryCode(HostError):
    """A backup of the address exists and no recovery code is at hand: the imported key must
    join that backup, under its code."""

    code = "recovery_code_needed"
    protocol_code = "recovery_code"


@dataclass(frozen=True)
class Identity:
    """A key and certificate read from a PKCS#12 file for one address."""

    address: str
    key: PrivateKey
    certificate: Certificate
    chain: tuple[Certificate, ...]
    suite: str  # "intl" | "sm"
    trusted: bool  # chains to the organisation's configured roots
    trust_problem: str | None


@dataclass(frozen=True)
class ImportResult:
    identity: Identity
    key_id: str
    replaced: str | None  # the key id that was current for the suite before
    backup_message_id: str
    recovery_code: str | None  # only when this import made the code: show it once


def read_identity(
    data: bytes,
    password: str,
    address: str,
    *,
    roots: list[Certificate],
    now: datetime.datetime | None = None,
) -> Identity:
    """The identity for address in a PKCS#12 file (see the module docstring); IdentityError
    in words for a wrong password, a damaged file, or no usable certificate for address."""
    address = normalize_address(address)
    if not data or len(data) > MAX_PKCS12_BYTES:
        raise IdentityError("The file is empty or too large to be a PKCS#12 identity.")
    try:
        entries = pkcs12.parse_pfx(bytes(data), password)
    except pkcs12.WrongPassword:
        raise WrongPkcs12Password("The password does not open this PKCS#12 file.") from None
    except (KeyLoadError, PkiError, ValueError) as error:
        message = getattr(error, "message", str(error))
        raise IdentityError(f"The file is not a PKCS#12 file we can read: {message}") from None
    when = now or datetime.datetime.now(datetime.UTC)
    problems: list[str] = []
    usable: list[Identity] = []
    for entry in entries:
        cert = entry.certificate
        if cert is None:
            continue
        names = [a.casefold() for a in certificate_addresses(cert)]
        if address not in names:
            problems.append(f"a certificate for {', '.join(names) or 'no address'}")
            continue
        why = _unusable(cert, when)
        if why:
            problems.append(why)
            continue
        result = validate(
            cert,
            trust_anchors=roots,
            intermediates=list(entry.chain),
            address=address,
            at=when,
            sm2_ids=BOTH_IDS,
        )
        usable.append(
            Identity(
                address=address,
                key=entry.key,
                certificate=cert,
                chain=tuple(entry.chain),
                suite="sm" if isinstance(entry.key, sm2.SM2PrivateKey) else "intl",
                trusted=result.valid,
                trust_problem=None if result.valid else result.reason,
            )
        )
    if not usable:
        found = "; ".join(problems) or "no key with a certificate"
        raise IdentityError(f"The file holds no usable identity for {address} ({found}).")
    return max(usable, key=lambda i: i.certificate.not_valid_after)


def _unusable(cert: Certificate, when: datetime.datetime) -> str | None:
    if cert.not_valid_after <= when:
        return f"a certificate that expired {cert.not_valid_after:%Y-%m-%d}"
    if cert.not_valid_before > when:
        return f"a certificate valid only from {cert.not_valid_before:%Y-%m-%d}"
    usages = cert.extended_key_usage_value
    if usages is not None and not {u.dotted for u in usages} & {EMAIL_PROTECTION, ANY_EKU}:
        return "a certificate that is not for mail (no emailProtection)"
    key_usage = cert.key_usage_value
    allowed = set(key_usage.native) if key_usage is not None else None
    mail_uses = {"digital_signature", "key_encipherment", "key_agreement"}
    if allowed is not None and not allowed & mail_uses:
        return "a certificate whose key usage allows neither signing nor encryption"
    return None


def import_identity(
    identity: Identity,
    *,
    keystore: Keystore,
    mailbox: Mailbox,
    profile: Profile,
    recovery_code: str | None = None,
    keep_recovery_code: bool = False,
    keyring: object = None,
    backup_folder: str = backups.FOLDER,
) -> ImportResult:
    """Keep the identity (see the module docstring). Nothing becomes current before a backup
    holding it is proven; a failure leaves it pending and unused, and importing again
    finishes the job."""
    address = identity.address
    existing = backups.list_backups(mailbox, address, folder=backup_folder)
    code, made = _recovery_code(profile, address, recovery_code, existing, keyring)
    carried = backup.read_backup(existing[0].raw, code) if existing else []
    try:
        key_type_of(identity.key)
    except HostError as error:
        raise IdentityError(error.message) from None
    key_id = keystore.add_key(address, identity.suite, identity.key, origin="imported")
    if keystore.record(key_id).origin != "imported":
        raise IdentityError("This key is already one of your enrolled keys.")
    keystore.attach_certificate(key_id, identity.certificate.dump(), identity.chain)
    keys = backups.projected_keys(keystore, address, becoming_current=[key_id], carried=carried)
    expected = {k.key_id: k.status for k in keys}
    stored = backups.write_backup(mailbox, address, keys, code, folder=backup_folder)
    backups.check_backup(mailbox, stored.message_id, code, expected, folder=backup_folder)
    before = keystore.current(address, identity.suite)
    keystore.mark(key_id, "current")
    with contextlib.suppress(Exception):  # flagging older backups is a courtesy; they stay
        backups.flag_older(mailbox, existing)
    if made and keep_recovery_code:
        backups.store_recovery_code(profile, address, code, backend=keyring)
    return ImportResult(
        identity=identity,
        key_id=key_id,
        replaced=before.key_id if before is not None and before.key_id != key_id else None,
        backup_message_id=stored.message_id,
        recovery_code=code if made else None,
    )


def _recovery_code(
    profile: Profile,
    address: str,
    given: str | None,
    existing: list[backups.StoredBackup],
    keyring: object,
) -> tuple[str, bool]:
    """(code, made here). A given code must open the newest backup, so one code keeps every
    key; without one, the kept code; without backups, a new code."""
    if given:
        try:
            code = backup.parse_recovery_code(given)
        except PkiError as error:
            raise BadParams(error.message) from None
        if existing:
            backup.read_backup(existing[0].raw, code)  # WrongRecoveryCode in words
        return code, False
    kept = backups.stored_recovery_code(profile, address, backend=keyring)
    if kept:
        return kept, False
    if existing:
        raise ImportNeedsRecoveryCode(
            f"Your mailbox holds a backup of keys for {address}: give its recovery code, so "
            "that the imported key is backed up with the others under one code."
        )
    return backup.new_recovery_code(), True


__all__ = [
    "Identity",
    "IdentityError",
    "ImportNeedsRecoveryCode",
    "ImportResult",
    "WrongPkcs12Password",
    "import_identity",
    "read_identity",
]
