"""A profile: one folder of host state, its keyring service, and its master secret.

Which folder: `--profile DIR`, else the environment variable AUTOSMIME_PROFILE (so a host the
browser starts, which passes no arguments of ours, finds the state a test or a person chose),
else `paths.data_dir()`. Inside: `profile.json` (format, a random profile id), `keys/` (the
keystore), `cache/`, `outbox/`. Folders we make are 0700, files we write 0600.

Keyring: every secret of a profile lives in the OS keyring under the service name
`autosmime:<profile id>`, so two profiles on one machine (alice and bob in tests) never share a
secret, and moving the folder keeps its secrets. The profile's master secret (32 octets from
`secrets`, base64 in the keyring entry `master-secret`) is made once and never written to a
file; the keystore seals every private key under it.

Which keyring backend: the standard `keyring` choice, in its order: the environment variable
PYTHON_KEYRING_BACKEND, then keyringrc.cfg (see `keyring diagnose`), then the best one found.
Backends that keep nothing (keyring's `fail` and `null`) are refused, and so are keyrings.alt's
file backends unless chosen explicitly by the variable or the config file: a file keyring picked
silently would put the master secret in a file. Tests choose
`PYTHON_KEYRING_BACKEND=keyrings.alt.file.PlaintextKeyring`, which writes below
$XDG_DATA_HOME/python_keyring, i.e. inside the test's folder.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from native_host.errors import HostError, StorageFailed
from native_host.infrastructure import paths

ENV_PROFILE = "AUTOSMIME_PROFILE"
ENV_KEYRING = "PYTHON_KEYRING_BACKEND"
PROFILE_FILE = "profile.json"
PROFILE_FORMAT = 1
MASTER_SECRET_ENTRY = "master-secret"
MASTER_SECRET_BYTES = 32
SUBFOLDERS = ("keys", "cache", "outbox")


class ProfileError(HostError):
    """A profile that cannot be used; `code` is stable, the message is for people."""

    code = "profile_error"


class NoKeyring(ProfileError):
    """No keyring backend that can keep the master secret."""

    code = "no_keyring"
    protocol_code = "not_configured"


class KeyringFailed(ProfileError):
    """The keyring backend is there but refused to read or store (locked, no D-Bus, ...)."""

    code = "keyring_failed"
    protocol_code = "not_configured"


@contextlib.contextmanager
def storage(path: Path) -> Iterator[None]:
    """OSErrors of writing `path` (or a file in it) as StorageFailed, naming it."""
    try:
        yield
    except OSError as error:
        raise StorageFailed(Path(path), error) from None


_HOW_TO_CHOOSE = (
    "autosmime keeps its master secret only in an OS keyring (Secret Service such as GNOME "
    "Keyring or KWallet on Linux, the Keychain on macOS, the Credential Manager on Windows). "
    "Start or install one, or choose a backend with the standard keyring settings: the "
    "environment variable PYTHON_KEYRING_BACKEND (for example "
    "PYTHON_KEYRING_BACKEND=keyring.backends.SecretService.Keyring) or keyringrc.cfg "
    "(`python -m keyring diagnose` shows where it is read from). On a headless machine, "
    "keyrings.alt's file backends can be chosen the same way "
    "(PYTHON_KEYRING_BACKEND=keyrings.alt.file.PlaintextKeyring), which puts the secret in a "
    "file: choose that only where it is acceptable."
)


# ---- files ----------------------------------------------------------------------------------


def _fsync_dir(folder: Path) -> None:
    if sys.platform == "win32":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_private(path: Path, data: bytes) -> None:
    """Write path atomically, readable by the user only: a temporary file in the same folder
    (0600, written and fsynced), renamed over path, then the folder fsynced. A crash at any
    point leaves either the old content or the new one, never a mix."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    with storage(path):
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o600)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        _fsync_dir(path.parent)


def private_folder(folder: Path) -> Path:
    """folder (and missing parents) made if needed; folder itself set to 0700."""
    with storage(folder):
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        if sys.platform != "win32" and (folder.stat().st_mode & 0o777) != 0o700:
            folder.chmod(0o700)
    return folder


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock between processes on the lock file path (made 0600 if missing)."""
    with storage(path):
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
            import msvcrt

            os.lseek(fd, 0, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_LOCK, 1)
            try:
                yield
            finally:
                os.lseek(fd, 0, os.SEEK_SET)
                msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
        else:
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


# ---- the profile ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Profile:
    """One host state folder. Use `open_profile()` to get one that exists on disk."""

    root: Path
    profile_id: str

    @property
    def keys_dir(self) -> Path:
        return self.root / "keys"

    @property
    def cache_dir(self) -> Path:
        return self.root / "cache"

    @property
    def outbox_dir(self) -> Path:
        return self.root / "outbox"

    @property
    def keyring_service(self) -> str:
        """The keyring service name of every secret of this profile (and only this one)."""
        return f"autosmime:{self.profile_id}"

    def lock(self, name: str = "profile") -> contextlib.AbstractContextManager[None]:
        """An exclusive lock between processes using this profile."""
        return file_lock(self.root / f".{name}.lock")

    def keyring(self) -> Any:
        """The keyring backend for this profile's secrets (NoKeyring if none is usable)."""
        return keyring_backend()


def profile_root(option: str | os.PathLike[str] | None = None) -> Path:
    """The folder: --profile, else $AUTOSMIME_PROFILE, else paths.data_dir(); absolute."""
    chosen = option if option not in (None, "") else os.environ.get(ENV_PROFILE) or None
    root = Path(chosen).expanduser() if chosen is not None else paths.data_dir()
    return root.absolute()


def open_profile(option: str | os.PathLike[str] | None = None) -> Profile:
    """The profile (made on first use: folders 0700, profile.json 0600 with a fresh id)."""
    root = profile_root(option)
    if root.exists() and not root.is_dir():
        raise ProfileError(f"The profile {root} is not a folder.")
    new = not root.exists()
    with storage(root):
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        if new and sys.platform != "win32":
            root.chmod(0o700)
    with file_lock(root / ".profile.lock"):
        meta_path = root / PROFILE_FILE
        if meta_path.exists():
            try:
                meta = json.loads(meta_path.read_text(encoding="utf-8"))
                profile_id = meta["id"]
                if meta.get("format") != PROFILE_FORMAT or not isinstance(profile_id, str):
                    raise ValueError(f"format {meta.get('format')!r}")
            except (ValueError, KeyError, TypeError) as error:
                raise ProfileError(f"{meta_path} is not a profile file we read: {error}") from None
        else:
            profile_id = secrets.token_hex(8)
            meta = {"format": PROFILE_FORMAT, "id": profile_id}
            write_private(meta_path, json.dumps(meta, indent=2).encode() + b"\n")
        for name in SUBFOLDERS:
            private_folder(root / name)
    return Profile(root, profile_id)


# ---- the keyring and the master secret --------------------------------------------------------


def _module(backend: Any) -> str:
    return type(backend).__module__


def keyring_backend() -> Any:
    """The keyring backend to use, chosen as the module docstring says; NoKeyring otherwise."""
    try:
        import keyring
        import keyring.core
        from keyring.backends import chainer, fail
    except ImportError:  # pragma: no cover - keyring is a dependency
        raise NoKeyring(
            "The Python package `keyring` is not installed. " + _HOW_TO_CHOOSE
        ) from None
    name = os.environ.get(ENV_KEYRING, "").strip()
    try:
        if name:
            backend, chosen = keyring.core.load_keyring(name), True
        else:
            backend = keyring.core.load_config()
            chosen = backend is not None
            if backend is None:
                backend = keyring.get_keyring()
    except Exception as error:  # import errors, "not viable" RuntimeErrors, bad names
        raise NoKeyring(f"The keyring backend {name or '(configured)'} cannot be used: {error}. "
                        + _HOW_TO_CHOOSE) from None  # fmt: skip
    candidates = (
        list(backend.backends) if isinstance(backend, chainer.ChainerBackend) else [backend]
    )
    usable = [
        item
        for item in candidates
        if not isinstance(item, fail.Keyring)
        and _module(item) != "keyring.backends.null"
        and (chosen or not _module(item).startswith("keyrings.alt"))
    ]
    if not usable:
        found = ", ".join(type(item).__name__ for item in candidates) or "none"
        raise NoKeyring(f"No usable keyring backend (found: {found}). " + _HOW_TO_CHOOSE)
    if isinstance(backend, chainer.ChainerBackend) and len(usable) == len(candidates):
        return backend
    return usable[0]  # a chainer lists its backends best first


def master_secret(profile: Profile, *, backend: Any = None) -> bytes:
    """The profile's 32-octet master secret from the keyring, made on first use. Concurrent
    first uses agree (profile lock); a backend that does not keep what it is given is refused."""
    store = backend if backend is not None else keyring_backend()
    from keyring.errors import KeyringError

    try:
        with profile.lock("master-secret"):
            stored = store.get_password(profile.keyring_service, MASTER_SECRET_ENTRY)
            if stored is None:
                fresh = base64.b64encode(secrets.token_bytes(MASTER_SECRET_BYTES)).decode()
                store.set_password(profile.keyring_service, MASTER_SECRET_ENTRY, fresh)
                stored = store.get_password(profile.keyring_service, MASTER_SECRET_ENTRY)
                if stored != fresh:
                    raise NoKeyring(
                        f"The keyring backend {type(store).__name__} did not keep the master "
                        "secret. " + _HOW_TO_CHOOSE
                    )
    except KeyringError as error:
        raise KeyringFailed(f"The keyring refused: {error}") from None
    try:
        secret = base64.b64decode(stored, validate=True)
    except ValueError:
        secret = b""
    if len(secret) != MASTER_SECRET_BYTES:
        raise KeyringFailed(
            f"The keyring entry {profile.keyring_service}/{MASTER_SECRET_ENTRY} is not a master "
            "secret (it was changed outside autosmime)."
        )
    return secret
