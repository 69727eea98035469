"""Operations on this profile's keys: keys.export (PKCS#12 for other mail programs),
keys.import (an identity the person brings, native_host.domain.identities), enroll (automatic
enrollment, native_host.domain.enrollment), backup.create and backup.restore (the backup in the
person's own mailbox, native_host.domain.backups).

Secrets: the PKCS#12 password and recovery codes are taken and never logged; the PKCS#12 file
is returned because the person asked for it, and a recovery code only when enrollment made a
new one (shown once)."""

from __future__ import annotations

import base64
import contextlib
from typing import Any

from native_host.errors import (
    BadParams,
    HostError,
    NeedsRecoveryCode,
    NotConfigured,
    StorageFailed,
)
from native_host.ops import state
from native_host.ops.state import base64_param, bool_param, operation, progress_of, text_param

FLAVOURS = {"modern": "modern", "legacy": "legacy", "p12": "modern", "p12-legacy": "legacy"}


@operation
def export(params: dict[str, Any], ctx: Any) -> dict[str, Any]:
    """A PKCS#12 (base64) of every key this profile holds, or of one address (params.address)
    or of chosen keys (params.keyIds): flavour "modern" (AES) or "legacy" (3DES, RSA only, for
    older clients and gpgsm), under params.password."""
    flavour = FLAVOURS.get(str(params.get("flavour") or "modern"))
    if flavour is None:
        raise BadParams("flavour must be modern or legacy.")
    password = params.get("password")
    if not isinstance(password, str) or not password:
        raise BadParams("A password for the PKCS#12 file is needed.")
    progress = progress_of(ctx)
    keystore = state.current().keystore
    address = text_param(params, "address")
    key_ids = params.get("keyIds")
    if key_ids is not None:
        if not isinstance(key_ids, list) or not all(isinstance(k, str) for k in key_ids):
            raise BadParams("keyIds must be a list of key ids.")
        selection: Any = key_ids
    elif address:
        selection = address
    else:
        selection = [record.key_id for record in keystore.records()]
    if not selection:
        raise NotConfigured(
            "This profile holds no keys yet: run `autosmime enroll` or start the setup in the "
            "extension."
        )
    progress(0, 1, "Protecting the keys with your password")
    exported = keystore.export_pkcs12(selection, password, flavour)  # type: ignore[arg-type]
    progress(1, 1, "Done")
    return {
        "flavour": flavour,
        "pkcs12": base64.b64encode(exported.data).decode("ascii"),
        "keyIds": list(exported.key_ids),
        "leftOut": dict(exported.left_out),
    }


@operation
def enroll(params: dict[str, Any], ctx: Any) -> dict[str, Any]:
    """Enroll params.address (default: the only account) with its account's PKI service:
    keys, RFC 8823 challenge by mail, certificates, backup; resumes an interrupted run."""
    from native_host.domain import enrollment

    host = state.current()
    address, pki = host.pki(text_param(params, "address"))
    suites = params.get("suites") or list(enrollment.SUITES)
    if not isinstance(suites, list) or not set(suites) <= set(enrollment.SUITES) or not suites:
        raise BadParams("suites must be a list of intl and/or sm.")
    intl_key = text_param(params, "intlKey") or enrollment.DEFAULT_INTL_KEY
    if intl_key not in enrollment.INTL_KEYS:
        raise BadParams(f"intlKey must be one of {', '.join(enrollment.INTL_KEYS)}.")
    with contextlib.closing(host.mailbox(address)) as mailbox:
        result = enrollment.enroll(
            address,
            profile=host.profile,
            mailbox=mailbox,
            pki=pki.settings(),
            keystore=host.keystore,
            suites=tuple(suites),
            intl_key=intl_key,
            progress=progress_of(ctx),
            recovery_code=text_param(params, "recoveryCode"),
            keep_recovery_code=bool_param(params, "keepRecoveryCode"),
        )
    host.record_backup(address, result.backup_message_id, _every_key(host, address))
    return {
        "address": result.address,
        "kind": result.kind,
        "keyIds": result.key_ids,
        "certificates": {
            suite: base64.b64encode(der).decode("ascii")
            for suite, der in result.certificates.items()
        },
        "backupMessageId": result.backup_message_id,
        "recoveryCode": result.recovery_code,
        "resumed": result.resumed,
        "seconds": round(result.seconds, 3),
        "superseded": list(result.superseded),
        "unavailable": dict(result.unavailable),
    }


@operation
def renew(params: dict[str, Any], ctx: Any) -> dict[str, Any]:
    """Renew params.address's keys when a current certificate ends within params.windowDays
    (default 30): new key pairs through the same automatic enrollment, old keys kept
    (superseded, still decrypting). The extension calls it daily; `autosmime renew` is the
    same for cron or a systemd timer."""
    from native_host.domain import enrollment

    host = state.current()
    address, pki = host.pki(text_param(params, "address"))
    window = params.get("windowDays", 30)
    if not isinstance(window, int | float) or isinstance(window, bool) or not 0 < window <= 365:
        raise BadParams("windowDays must be a number of days from 1 to 365.")
    with contextlib.closing(host.mailbox(address)) as mailbox:
        result = enrollment.renew_if_due(
            address,
            profile=host.profile,
            mailbox=mailbox,
            pki=pki.settings(),
            keystore=host.keystore,
            window_days=float(window),
            progress=progress_of(ctx),
            recovery_code=text_param(params, "recoveryCode"),
            keep_recovery_code=bool_param(params, "keepRecoveryCode"),
        )
    if result is None:
        return {"address": address, "renewed": False}
    host.record_backup(address, result.backup_message_id, _every_key(host, address))
    return {
        "address": address,
        "renewed": True,
        "keyIds": result.key_ids,
        "superseded": list(result.superseded),
        "seconds": round(result.seconds, 3),
    }


@operation
def import_identity(params: dict[str, Any], ctx: Any) -> dict[str, Any]:
    """Bring your own certificate: the identity for params.address (default: the only
    account) in params.pkcs12 (base64 of a PKCS#12 file) under params.password becomes a key
    like an enrolled one (native_host.domain.identities): backed up in the mailbox under the
    recovery code (params.recoveryCode, else the kept one, else a new one, shown once), then
    current for its suite. Published in the organisation's certificate directory only when
    params.publish is true (which needs a confirmation of the address by mail); a publication
    that fails leaves the import done and says why."""
    from native_host.domain import enrollment, identities

    progress = progress_of(ctx)
    host = state.current()
    address = host.account(text_param(params, "address")).address
    data = base64_param(params, "pkcs12")
    password = params.get("password")
    if not isinstance(password, str):
        raise BadParams("password must be text (empty for a file without one).")
    publish = bool_param(params, "publish")
    pki = host.pki_of(address)
    total = 3 if publish else 2
    progress(0, total, "Checking the file")
    identity = identities.read_identity(
        data, password, address, roots=pki.roots() if pki is not None else []
    )
    published, problem = False, None
    with contextlib.closing(host.mailbox(address)) as mailbox:
        progress(1, total, "Backing up your keys in your mailbox")
        result = identities.import_identity(
            identity,
            keystore=host.keystore,
            mailbox=mailbox,
            profile=host.profile,
            recovery_code=text_param(params, "recoveryCode"),
            keep_recovery_code=bool_param(params, "keepRecoveryCode"),
        )
        host.record_backup(address, result.backup_message_id, _every_key(host, address))
        if publish:
            progress(2, total, "Publishing it in your organisation's certificate directory")
            try:
                if pki is None:
                    raise NotConfigured(
                        f"No PKI is set up for {address}, so there is no directory to publish in."
                    )
                enrollment.Enrollment(
                    profile=host.profile,
                    mailbox=mailbox,
                    pki=pki.settings(),
                    keystore=host.keystore,
                ).publish(address, identity.certificate.dump())
                published = True
            except HostError as error:
                problem = error.protocol_message()
    progress(total, total, "Done")
    cert = identity.certificate
    return {
        "address": address,
        "keyId": result.key_id,
        "suite": identity.suite,
        "keyType": host.keystore.record(result.key_id).key_type,
        "subject": cert.subject.human_friendly,
        "issuer": cert.issuer.human_friendly,
        "notAfter": cert.not_valid_after.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "trusted": identity.trusted,
        "trustProblem": identity.trust_problem,
        "replaced": result.replaced,
        "backupMessageId": result.backup_message_id,
        "recoveryCode": result.recovery_code,
        "published": published,
        "publishProblem": problem,
    }


def _every_key(host: state.HostState, address: str) -> list[str]:
    """The keys the backup an enrollment or renewal just proved holds: every key of address
    (the backup carries the old keys too), so certs.list names that backup for all of them, as
    on a device that restored it, not the replaced backup of an earlier enrollment."""
    return [record.key_id for record in host.keystore.records(address)]


def _code(host: state.HostState, address: str, params: dict[str, Any]) -> str:
    from native_host.domain import backups

    given = text_param(params, "recoveryCode")
    code = given or backups.stored_recovery_code(host.profile, address)
    if not code:
        raise NeedsRecoveryCode(
            f"The recovery code of {address} is needed (it is not kept on this device).",
        )
    return code


@operation
def backup(params: dict[str, Any], ctx: Any) -> dict[str, Any]:
    """Write a new backup of every key of params.address (default: the only account) to the
    mailbox under the recovery code (params.recoveryCode, else the one kept in the keyring),
    read it back and prove it. The code must open the newest existing backup, so one code
    keeps every key; keys only older backups hold are carried over."""
    from native_host.domain import backups
    from shared_pki import backup as backup_format

    progress = progress_of(ctx)
    host = state.current()
    address = host.account(text_param(params, "address")).address
    code = backup_format.parse_recovery_code(_code(host, address, params))
    keystore = host.keystore
    if not keystore.records(address):
        raise NotConfigured(f"{address} has no keys to back up yet: run `autosmime enroll`.")
    with contextlib.closing(host.mailbox(address)) as mailbox:
        progress(0, 3, "Reading the backups in your mailbox")
        existing = backups.list_backups(mailbox, address)
        # The newest backup this code opens (a planted or damaged message is skipped, named).
        opened = backups.open_newest(existing, code) if existing else None
        carried = opened.keys if opened is not None else []
        keys = backups.projected_keys(keystore, address, carried=carried)
        expected = {k.key_id: k.status for k in keys}
        progress(1, 3, "Writing the backup")
        stored = backups.write_backup(mailbox, address, keys, code)
        progress(2, 3, "Reading the backup back")
        backups.check_backup(mailbox, stored.message_id, code, expected)
        with contextlib.suppress(Exception):  # flagging older ones is a courtesy; they stay
            backups.flag_older(mailbox, existing)
    try:
        host.record_backup(address, stored.message_id, list(expected))
    except StorageFailed as failed:
        raise StorageFailed(
            failed.path,
            failed.error,
            f"The backup itself is in your mailbox and proven ({stored.message_id}); only this "
            "device's note of it could not be written.",
        ) from None
    progress(3, 3, "Done")
    return {
        "address": address,
        "messageId": stored.message_id,
        "keyIds": list(expected),
        "skipped": skipped_json(opened.skipped if opened is not None else ()),
    }


@operation
def restore(params: dict[str, Any], ctx: Any) -> dict[str, Any]:
    """Restore every key of the newest backup of params.address from the mailbox with
    params.recoveryCode; a wrong code or a tampered backup changes nothing."""
    from native_host.domain import backups

    progress = progress_of(ctx)
    host = state.current()
    address = host.account(text_param(params, "address")).address
    code = _code(host, address, params)
    progress(0, 1, "Restoring your keys from your mailbox")
    with contextlib.closing(host.mailbox(address)) as mailbox:
        result = backups.restore(
            address,
            code,
            mailbox,
            host.keystore,
            profile=host.profile,
            keep_code=bool_param(params, "keepRecoveryCode"),
        )
    held = [*result.restored, *result.already_held]  # the keys this backup holds
    host.record_backup(address, result.backup.message_id, held)
    progress(1, 1, "Done")
    return {
        "address": result.address,
        "messageId": result.backup.message_id,
        "created": _iso(result.backup.created),
        "keys": result.backup.keys,
        "restored": list(result.restored),
        "alreadyHeld": list(result.already_held),
        "statuses": result.statuses,
        "skipped": skipped_json(result.skipped),
    }


def _iso(moment: Any) -> str | None:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ") if moment is not None else None


def skipped_json(skipped: Any) -> list[dict[str, Any]]:
    """Backups that looked newer but did not open: what they claimed and why they were
    skipped (the person is told; the messages stay in the mailbox)."""
    return [
        {
            "messageId": item.backup.message_id,
            "claimedCreated": _iso(item.backup.created),
            "reason": item.reason,
        }
        for item in skipped
    ]
