"""The one base of every failure the host reports: each error class carries its protocol code
(one of protocol.json's errorCodes) and a sentence a person can act on, so a failure keeps its
code however its class is named or moved.

`protocol_code` says what the caller may do about it (bad_params, not_configured, mail_failed,
missing_certificates, recovery_code, op_failed, ...); a class may also keep a finer `code` of
its own for tests and logs. `advice` is the next step, appended to the message.

The libraries below the host (shared_pki, keyring) know nothing of the native protocol: their
typed errors are put in its terms by `as_host_error`, once, where an operation's failure leaves
it. Anything else is a bug and becomes `internal` (logged without payloads)."""

from __future__ import annotations

import errno
import os
import sys
from pathlib import Path

from shared_pki.errors import PkiError


class HostError(Exception):
    """A failure in protocol terms (see the module docstring)."""

    protocol_code: str = "op_failed"
    advice: str = ""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def protocol_message(self) -> str:
        """The error reply's message: the sentence, then the advice, on one line."""
        text = self.message if isinstance(self.message, str) and self.message else str(self)
        return " ".join(((text or type(self).__name__).strip() + self.advice).split())


class BadParams(HostError):
    """The operation's parameters are wrong; the message names the field."""

    protocol_code = "bad_params"


class NotConfigured(HostError):
    """Something the operation needs is not set up yet; the message says what to run."""

    protocol_code = "not_configured"


class OpFailed(HostError):
    """The operation could not be done; the message says why."""


class NeedsRecoveryCode(HostError):
    """The recovery code is needed, or the one given does not open the backup."""

    protocol_code = "recovery_code"


class KeyringUnavailable(NotConfigured):
    """The OS keyring refused (keyring's own KeyringError, put in protocol terms)."""

    advice = " Check that the keyring is unlocked, or choose a backend with PYTHON_KEYRING_BACKEND."


class StorageFailed(HostError):
    """A file of the profile could not be written (a read-only folder, a full disk, no
    permission). Nothing was half-written: every write of the host is atomic
    (infrastructure.profile.write_private), and the message names the folder and what to do."""

    code = "storage_failed"
    protocol_code = "storage_failed"

    def __init__(self, path: Path, error: OSError, note: str = "") -> None:
        self.path = Path(path)
        self.error = error
        self.errno = error.errno
        super().__init__(" ".join(filter(None, (storage_sentence(self.path, error), note))))


_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}
#: OSErrors that mean "this file system will not take what we write" (as_host_error's net).
STORAGE_ERRNOS = frozenset({*_FULL, errno.EROFS, errno.EACCES, errno.EPERM})


def storage_sentence(path: Path, error: OSError) -> str:
    """Why a file could not be written, and what to do, in words."""
    folder = path if path.is_dir() else path.parent
    if error.errno in _FULL:
        why = "the disk is full"
        step = "Free some space on that disk, then run it again."
    elif error.errno == errno.EROFS:
        why = "the folder is on a read-only file system"
        step = "Make it writable, or choose another profile folder with --profile."
    elif error.errno in (errno.EACCES, errno.EPERM):
        why = "this user may not write there"
        step = "Give yourself write permission on it, or choose another folder with --profile."
    else:
        why = error.strerror or str(error)
        step = "Check the disk, then run it again."
    return (
        f"autosmime could not write to its profile folder {folder}: {why}. Nothing was "
        f"half-written or lost. {step}"
    )


def as_host_error(error: BaseException) -> HostError | None:
    """error in protocol terms: itself when it is a HostError, the libraries' typed errors
    translated, None for anything else (a bug). A library that was never imported cannot have
    raised, so none is imported here: the host starts without them."""
    if isinstance(error, HostError):
        return error
    backup = sys.modules.get("shared_pki.backup")
    if backup is not None and isinstance(
        error, backup.RecoveryCodeError | backup.WrongRecoveryCode
    ):
        return NeedsRecoveryCode(_text(error))
    if isinstance(error, PkiError):
        return OpFailed(_text(error))
    if (
        isinstance(error, OSError)
        and error.errno in STORAGE_ERRNOS
        and isinstance(error.filename, str | bytes)
    ):  # a write the host does not wrap itself: still words, naming the file
        return StorageFailed(Path(os.fsdecode(error.filename)), error)
    keyring_errors = sys.modules.get("keyring.errors")
    if keyring_errors is not None and isinstance(error, keyring_errors.KeyringError):
        return KeyringUnavailable(_text(error))
    return None


def _text(error: BaseException) -> str:
    message = getattr(error, "message", None)
    return message if isinstance(message, str) and message else str(error) or type(error).__name__
