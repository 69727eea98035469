"""Every error that crosses the native protocol carries its protocol code (native_host.errors):
each HostError class names a code protocol.json declares, and the libraries' typed errors are
put in protocol terms by class, not by name."""

from __future__ import annotations

import importlib
import pkgutil

import keyring.errors
import pytest

import native_host
from native_host.errors import (
    HostError,
    KeyringUnavailable,
    NeedsRecoveryCode,
    OpFailed,
    as_host_error,
)
from native_host.infrastructure.mailbox import MailError, MailErrorCode
from native_host.protocol import ERROR_CODES
from shared_pki import backup
from shared_pki.errors import MalformedInput


def every_subclass(cls: type) -> list[type]:
    found = []
    for sub in cls.__subclasses__():
        found += [sub, *every_subclass(sub)]
    return found


def test_every_host_error_class_names_a_declared_code() -> None:
    for module in pkgutil.walk_packages(native_host.__path__, "native_host."):
        if not module.name.endswith("__main__"):
            importlib.import_module(module.name)
    classes = [HostError, *every_subclass(HostError)]
    assert len(classes) > 30  # every domain and infrastructure root is one
    undeclared = {
        c.__qualname__: c.protocol_code for c in classes if c.protocol_code not in ERROR_CODES
    }
    assert not undeclared


@pytest.mark.parametrize(
    ("error", "kind", "code"),
    [
        (
            backup.WrongRecoveryCode("That code does not open the backup."),
            NeedsRecoveryCode,
            "recovery_code",
        ),
        (
            backup.RecoveryCodeError("A recovery code has 24 digits."),
            NeedsRecoveryCode,
            "recovery_code",
        ),
        (MalformedInput("Not a CMS message."), OpFailed, "op_failed"),
        (keyring.errors.KeyringLocked("locked"), KeyringUnavailable, "not_configured"),
    ],
)
def test_the_libraries_errors_are_put_in_protocol_terms(
    error: Exception, kind: type, code: str
) -> None:
    translated = as_host_error(error)
    assert isinstance(translated, kind) and translated.protocol_code == code
    assert str(error) in translated.protocol_message()


def test_a_bug_stays_a_bug() -> None:
    assert as_host_error(KeyError("x")) is None
    assert as_host_error(ValueError("x")) is None


def test_mail_errors_say_which_server() -> None:
    error = MailError(MailErrorCode.AUTH, "imap", "The login was refused.", "Check the password.")
    assert error.protocol_code == "mail_failed"
    assert error.protocol_message() == "IMAP: The login was refused. Check the password."


def test_a_file_system_that_refuses_a_write_is_storage_failed_in_words(tmp_path) -> None:
    """The net under every write the host does not wrap itself (they are wrapped where they
    happen: infrastructure.profile.storage)."""
    import errno

    from native_host.errors import StorageFailed

    full = as_host_error(OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "f")))
    assert isinstance(full, StorageFailed) and full.protocol_code == "storage_failed"
    assert full.protocol_message() == (
        f"autosmime could not write to its profile folder {tmp_path}: the disk is full. Nothing "
        "was half-written or lost. Free some space on that disk, then run it again."
    )
    read_only = as_host_error(OSError(errno.EROFS, "Read-only file system", str(tmp_path)))
    assert isinstance(read_only, StorageFailed) and "read-only" in read_only.message
    assert as_host_error(OSError(errno.ECONNREFUSED, "refused")) is None  # not a file: a bug
