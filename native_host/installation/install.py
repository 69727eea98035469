"""Register the native messaging host with browsers, and take that registration back exactly.
One cohesive thing: install and uninstall must write and remove exactly the same things, and
the receipt both share is what ties them.

install() writes a launcher, the host configuration, one manifest per browser and (Windows)
registry values, and records every one of them with a hash in a receipt. uninstall() removes
only what the receipt lists and only while it is unchanged, so it never deletes a file someone
else wrote or edited. Platform, folders and the registry are parameters: tests exercise the
macOS and Windows logic on Linux with an in-memory registry.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import sys
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePath
from typing import Any, Protocol

from native_host.installation import browsers as browser_table
from native_host.installation.browsers import CHROMIUM, Browser, Roots
from native_host.transport.browser_ids import (
    GECKO_ID,
    HOST_DESCRIPTION,
    HOST_NAME,
    chromium_id,
    chromium_origin,
)

RECEIPT_NAME = "install-receipt.json"
HOST_CONFIG_NAME = "host.json"
LAUNCHER_STEM = "autosmime-host"
RECEIPT_FORMAT = 1
_EXTENSION_ID = re.compile(r"^[a-p]{32}$")


class InstallError(Exception):
    """A problem the user can fix, told in plain words (the commands print it as is)."""


# --- The registry, behind a tiny interface ---------------------------------------------------


class Registry(Protocol):
    """The default values of keys under HKEY_CURRENT_USER: all install needs of the registry."""

    def exists(self, key: str) -> bool: ...

    def read(self, key: str) -> str | None:
        """The key's default value, or None when the key or its default value is absent."""
        ...

    def write(self, key: str, data: str) -> None:
        """Set the key's default value, creating the key and its missing parents."""
        ...

    def delete_value(self, key: str) -> None:
        """Remove the key's default value (the key stays)."""
        ...

    def delete_key_if_empty(self, key: str) -> bool:
        """Delete the key if it has no values and no subkeys; say whether it did."""
        ...


class WindowsRegistry:
    """HKEY_CURRENT_USER through winreg, which is imported here so other platforms never need it."""

    def __init__(self) -> None:
        import winreg  # type: ignore[import-not-found,unused-ignore]

        self._w: Any = winreg
        self._root = winreg.HKEY_CURRENT_USER  # type: ignore[attr-defined,unused-ignore]

    def exists(self, key: str) -> bool:
        try:
            with self._w.OpenKey(self._root, key):
                return True
        except FileNotFoundError:
            return False

    def read(self, key: str) -> str | None:
        try:
            with self._w.OpenKey(self._root, key) as handle:
                value, _kind = self._w.QueryValueEx(handle, "")
        except FileNotFoundError:
            return None
        return value if isinstance(value, str) else None

    def write(self, key: str, data: str) -> None:
        with self._w.CreateKeyEx(self._root, key, 0, self._w.KEY_WRITE) as handle:
            self._w.SetValueEx(handle, "", 0, self._w.REG_SZ, data)

    def delete_value(self, key: str) -> None:
        with self._w.OpenKey(self._root, key, 0, self._w.KEY_SET_VALUE) as handle:
            self._w.DeleteValue(handle, "")

    def delete_key_if_empty(self, key: str) -> bool:
        try:
            with self._w.OpenKey(self._root, key) as handle:
                subkeys, values, _modified = self._w.QueryInfoKey(handle)
        except FileNotFoundError:
            return False
        if subkeys or values:
            return False
        self._w.DeleteKey(self._root, key)
        return True


def system_registry(platform: str) -> Registry | None:
    """The real registry when running on Windows for Windows; None elsewhere."""
    if platform == "win32" and sys.platform == "win32":
        return WindowsRegistry()
    return None


def need_registry(platform: str, registry: Registry | None) -> Registry | None:
    """The registry to use: the one given, else the real one; Windows targets must have one."""
    registry = registry if registry is not None else system_registry(platform)
    if platform == "win32" and registry is None:
        raise ValueError("Windows targets need a registry (pass one when not running on Windows)")
    return registry


# --- The receipt -----------------------------------------------------------------------------


@dataclass
class FileEntry:
    path: str
    sha256: str
    role: str  # "launcher" | "host-config" | "manifest"
    browser: str | None = None
    user_data_dir: str | None = None


@dataclass
class RegistryEntry:
    key: str  # under HKEY_CURRENT_USER
    data: str
    sha256: str
    browser: str
    hive: str = "HKCU"
    value: str = ""  # "" is the key's default value


@dataclass
class Receipt:
    """Everything install wrote, so that uninstall can take back exactly that and nothing else."""

    path: Path
    files: list[FileEntry] = field(default_factory=list)
    registry: list[RegistryEntry] = field(default_factory=list)
    created_dirs: list[str] = field(default_factory=list)
    created_keys: list[str] = field(default_factory=list)
    extension_ids: list[str] = field(default_factory=list)  # besides the built-in dev id

    @classmethod
    def load(cls, path: Path) -> Receipt:
        """The receipt at path, or an empty one when there is none yet."""
        if not path.exists():
            return cls(path)
        try:
            data = json.loads(path.read_text("utf-8"))
            return cls(
                path,
                files=[FileEntry(**entry) for entry in data.get("files", [])],
                registry=[RegistryEntry(**entry) for entry in data.get("registry", [])],
                created_dirs=list(data.get("created_dirs", [])),
                created_keys=list(data.get("created_keys", [])),
                extension_ids=list(data.get("extension_ids", [])),
            )
        except (ValueError, TypeError, AttributeError) as error:
            raise InstallError(f"The install receipt {path} is damaged ({error}).") from None

    def exists(self) -> bool:
        return self.path.exists()

    def to_bytes(self) -> bytes:
        data = {
            "format": RECEIPT_FORMAT,
            "host": HOST_NAME,
            "extension_ids": self.extension_ids,
            "files": [asdict(entry) for entry in self.files],
            "registry": [asdict(entry) for entry in self.registry],
            "created_dirs": self.created_dirs,
            "created_keys": self.created_keys,
        }
        return (json.dumps(data, indent=2) + "\n").encode("utf-8")

    def save(self) -> None:
        _ensure_dir(self.path.parent, self)
        write_atomic(self.path, self.to_bytes(), 0o644)

    def file(self, path: PurePath) -> FileEntry | None:
        return next((entry for entry in self.files if entry.path == str(path)), None)

    def record_file(self, entry: FileEntry) -> None:
        """Add or replace the entry for entry.path (re-installs never duplicate)."""
        self.files = [old for old in self.files if old.path != entry.path] + [entry]

    def record_registry(self, entry: RegistryEntry) -> None:
        self.registry = [old for old in self.registry if old.key != entry.key] + [entry]

    def note_dirs(self, dirs: Iterable[str]) -> None:
        self.created_dirs += [d for d in dirs if d not in self.created_dirs]

    def note_keys(self, keys: Iterable[str]) -> None:
        self.created_keys += [k for k in keys if k not in self.created_keys]

    def registrations(self) -> list[FileEntry | RegistryEntry]:
        """The per-browser entries; the shared launcher and configuration serve these."""
        files: list[FileEntry | RegistryEntry] = [e for e in self.files if e.role == "manifest"]
        return files + list(self.registry)


def receipt_path(roots: Roots) -> Path:
    return Path(roots.data_dir) / RECEIPT_NAME


def load_receipt(roots: Roots | None = None) -> Receipt:
    return Receipt.load(receipt_path(Roots.current() if roots is None else roots))


# --- Files -----------------------------------------------------------------------------------


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_atomic(path: Path, data: bytes, mode: int) -> None:
    """Write through a temporary file in the same folder and rename it over path.

    A browser reading the manifest, or a host reading host.json, sees the old or the new file,
    never half of one.
    """
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temp, mode)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def _ensure_dir(folder: Path, receipt: Receipt) -> None:
    """Create folder and its missing parents, noting them so uninstall may remove them later."""
    missing: list[Path] = []
    current = folder
    while not current.exists() and current != current.parent:
        missing.append(current)
        current = current.parent
    folder.mkdir(parents=True, exist_ok=True)
    receipt.note_dirs(str(d) for d in missing)


# --- What gets written -----------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """One registration: a browser, its manifest file, and (Windows) the registry key naming it."""

    browser: Browser
    manifest: Path
    registry_key: str | None = None
    user_data_dir: Path | None = None

    @property
    def label(self) -> str:
        if self.user_data_dir is not None:
            return f"{self.browser.label} (profile {self.user_data_dir})"
        return self.browser.label


def launcher_path(roots: Roots, platform: str) -> Path:
    suffix = ".bat" if platform == "win32" else ""
    return Path(roots.data_dir) / "bin" / f"{LAUNCHER_STEM}{suffix}"


def host_config_path(roots: Roots) -> Path:
    return Path(roots.data_dir) / HOST_CONFIG_NAME


def launcher_text(python: str, config: PurePath, platform: str) -> bytes:
    """The program browsers start: this Python, the host module, and our configuration."""
    if platform == "win32":
        # cmd.exe expands %VAR% even inside quotes; paths cannot contain double quotes.
        def quote(text: str) -> str:
            return '"' + text.replace("%", "%%") + '"'

        lines = [
            "@echo off",
            "rem autosmime native messaging host launcher, written by `autosmime install`.",
            f"{quote(python)} -m native_host --config {quote(str(config))} %*",
        ]
        return ("\r\n".join(lines) + "\r\n").encode("utf-8")
    lines = [
        "#!/bin/sh",
        "# autosmime native messaging host launcher, written by `autosmime install`.",
        "# Browsers start it; `autosmime uninstall` removes it.",
        f'exec {shlex.quote(python)} -m native_host --config {shlex.quote(str(config))} "$@"',
    ]
    return ("\n".join(lines) + "\n").encode("utf-8")


def _json_bytes(data: Any) -> bytes:
    return (json.dumps(data, indent=2) + "\n").encode("utf-8")


def host_config(origins: Sequence[str]) -> dict[str, Any]:
    """What the host reads to decide which callers it serves."""
    return {"allowed_origins": list(origins), "allowed_extensions": [GECKO_ID]}


def manifest(browser: Browser, launcher: PurePath, origins: Sequence[str]) -> dict[str, Any]:
    """The native messaging host manifest, in the shape the browser's family expects."""
    data: dict[str, Any] = {
        "name": HOST_NAME,
        "description": HOST_DESCRIPTION,
        "path": str(launcher),
        "type": "stdio",
    }
    if browser.family == CHROMIUM:
        data["allowed_origins"] = list(origins)
    else:
        data["allowed_extensions"] = [GECKO_ID]
    return data


def normalize_extension_id(raw: str) -> str:
    """Accept an id or its chrome-extension:// origin; refuse anything else in plain words."""
    text = raw.strip().removeprefix("chrome-extension://").rstrip("/")
    if not _EXTENSION_ID.match(text):
        raise InstallError(
            f"{raw!r} is not a Chromium extension id (32 letters from a to p, "
            "as shown on chrome://extensions)."
        )
    return text


def merged_extension_ids(*groups: Iterable[str]) -> list[str]:
    """The dev id first, then every other id once, in the order first seen."""
    return list(dict.fromkeys([chromium_id(), *(i for group in groups for i in group)]))


# --- Choosing targets ------------------------------------------------------------------------


def _named(names: Sequence[str]) -> list[Browser]:
    """The browsers called names, each once; an unknown name is an InstallError."""
    chosen: dict[str, Browser] = {}
    for name in names:
        try:
            chosen.setdefault(name, browser_table.get(name))
        except KeyError as error:
            raise InstallError(str(error.args[0]).capitalize() + ".") from None
    return list(chosen.values())


def default_target(browser: Browser, platform: str, roots: Roots) -> Target:
    return Target(
        browser,
        Path(browser_table.manifest_path(browser, platform, roots)),
        browser_table.registry_key(browser, platform),
    )


def user_data_dir_targets(names: Sequence[str], user_data_dir: Path, platform: str) -> list[Target]:
    """Targets for a Chromium profile started with --user-data-dir (Linux and macOS only)."""
    if platform == "win32":
        raise InstallError(
            "--user-data-dir is not supported on Windows: Chromium on Windows finds native "
            "hosts only through the registry."
        )
    chosen = _named(names or ["chromium"])
    others = [b.label for b in chosen if b.family != CHROMIUM]
    if others:
        raise InstallError(
            f"--user-data-dir is for Chromium-family browsers; {', '.join(others)} keeps "
            "its native hosts elsewhere."
        )
    manifest_file = Path(browser_table.user_data_dir_manifest(user_data_dir))
    return [Target(chosen[0], manifest_file, None, user_data_dir)]


def no_browser_message() -> str:
    labels = ", ".join(b.label for b in browser_table.BROWSERS)
    return (
        f"No supported browser was found for this user (looked for {labels}: their profile "
        "folders and programs). Name one with --browser, or use --user-data-dir DIR for a "
        "Chromium profile started with a custom data folder."
    )


def resolve_targets(
    names: Sequence[str] | None,
    user_data_dir: Path | None,
    *,
    platform: str,
    roots: Roots,
    env: Mapping[str, str],
) -> tuple[list[Target], dict[str, str]]:
    """The targets named, or else those of the browsers found; also returns what was found."""
    if user_data_dir is not None:
        return user_data_dir_targets(names or [], Path(user_data_dir).absolute(), platform), {}
    if names:
        return [default_target(b, platform, roots) for b in _named(names)], {}
    found = browser_table.detect(platform, roots, env)
    targets = [default_target(browser_table.get(name), platform, roots) for name in found]
    return targets, found


# --- install ---------------------------------------------------------------------------------


@dataclass
class Action:
    """One thing install or uninstall did, for printing: verb, what it is, where."""

    verb: str  # "wrote" | "unchanged" | "removed" | "kept" | "gone"
    what: str
    where: str


@dataclass
class InstallResult:
    targets: list[Target]
    found: dict[str, str]  # browser name -> evidence, when none was named
    actions: list[Action]
    warnings: list[str]
    receipt: Path
    allowed_origins: list[str]
    allowed_extensions: list[str]


class _Writer:
    """Writes files and registry values, recording each in the receipt as it goes."""

    def __init__(self, receipt: Receipt, registry: Registry | None) -> None:
        self.receipt = receipt
        self.registry = registry
        self.actions: list[Action] = []
        self.warnings: list[str] = []

    def file(self, path: Path, data: bytes, mode: int, entry: FileEntry, what: str) -> None:
        """Write data to path unless it is already there; entry's hash becomes that of data."""
        _ensure_dir(path.parent, self.receipt)
        old = self.receipt.file(path)
        current = path.read_bytes() if path.is_file() else None
        if current == data and _mode_matches(path, mode):
            self.actions.append(Action("unchanged", what, str(path)))
        else:
            if current is not None and (old is None or old.sha256 != sha256(current)):
                self.warnings.append(
                    f"Replaced {path}: autosmime had not written it, or it was changed since."
                )
            write_atomic(path, data, mode)
            self.actions.append(Action("wrote", what, str(path)))
        entry.sha256 = sha256(data)
        self.receipt.record_file(entry)

    def registry_value(self, key: str, data: str, browser: str, what: str) -> None:
        assert self.registry is not None
        where = rf"HKEY_CURRENT_USER\{key}"
        created = _missing_keys(self.registry, key)
        current = self.registry.read(key)
        if current == data:
            self.actions.append(Action("unchanged", what, where))
        else:
            old = next((e for e in self.receipt.registry if e.key == key), None)
            if current is not None and (old is None or old.data != current):
                self.warnings.append(f"Replaced {where}, which named {current}.")
            self.registry.write(key, data)
            self.actions.append(Action("wrote", what, f"{where} = {data}"))
        self.receipt.note_keys(created)
        self.receipt.record_registry(RegistryEntry(key, data, sha256(data.encode()), browser))


def _mode_matches(path: Path, mode: int) -> bool:
    """Permission bits only mean something on POSIX file systems."""
    return os.name != "posix" or (path.stat().st_mode & 0o777) == mode


def _missing_keys(registry: Registry, key: str) -> list[str]:
    """The key and those of its parents that do not exist yet, deepest first (never Software)."""
    parts = key.split("\\")
    missing = []
    for depth in range(len(parts), 1, -1):
        candidate = "\\".join(parts[:depth])
        if registry.exists(candidate):
            break
        missing.append(candidate)
    return missing


def install(
    browsers: Sequence[str] | None = None,
    user_data_dir: Path | None = None,
    extension_ids: Sequence[str] = (),
    *,
    platform: str = sys.platform,
    roots: Roots | None = None,
    env: Mapping[str, str] | None = None,
    registry: Registry | None = None,
    python: str = sys.executable,
) -> InstallResult:
    """Register the host with the named browsers (or those found); safe to run again.

    Raises InstallError, in plain words, when a name or id is wrong or no browser is found.
    """
    platform = browser_table.platform_key(platform)
    env = os.environ if env is None else env
    roots = Roots.current() if roots is None else roots
    extra_ids = [normalize_extension_id(raw) for raw in extension_ids]
    targets, found = resolve_targets(
        browsers, user_data_dir, platform=platform, roots=roots, env=env
    )
    if not targets:
        raise InstallError(no_browser_message())
    registry = need_registry(platform, registry) if any(t.registry_key for t in targets) else None

    receipt = Receipt.load(receipt_path(roots))
    ids = merged_extension_ids(receipt.extension_ids, extra_ids)
    origins = [chromium_origin(i) for i in ids]
    writer = _Writer(receipt, registry)
    try:
        _write_everything(writer, targets, origins, roots, platform, python)
    finally:
        receipt.extension_ids = ids[1:]
        receipt.save()
    return InstallResult(
        targets, found, writer.actions, writer.warnings, receipt.path, origins, [GECKO_ID]
    )


def _write_everything(
    writer: _Writer,
    targets: Sequence[Target],
    origins: Sequence[str],
    roots: Roots,
    platform: str,
    python: str,
) -> None:
    config = host_config_path(roots)
    launcher = launcher_path(roots, platform)
    launcher_mode = 0o644 if platform == "win32" else 0o755
    writer.file(
        launcher,
        launcher_text(python, config, platform),
        launcher_mode,
        FileEntry(str(launcher), "", "launcher"),
        "launcher",
    )
    writer.file(
        config,
        _json_bytes(host_config(origins)),
        0o644,
        FileEntry(str(config), "", "host-config"),
        "host configuration",
    )
    for target in targets:
        data = _json_bytes(manifest(target.browser, launcher, origins))
        entry = FileEntry(
            str(target.manifest),
            "",
            "manifest",
            target.browser.name,
            str(target.user_data_dir) if target.user_data_dir else None,
        )
        writer.file(target.manifest, data, 0o644, entry, f"manifest for {target.label}")
        if target.registry_key:
            what = f"registry key for {target.label}"
            writer.registry_value(
                target.registry_key, str(target.manifest), target.browser.name, what
            )


# --- uninstall -------------------------------------------------------------------------------


@dataclass
class UninstallResult:
    receipt: Path
    had_receipt: bool
    actions: list[Action]
    warnings: list[str]
    remaining: list[str]  # registrations still installed (when only some browsers were removed)


def _selected(
    entry: FileEntry | RegistryEntry, names: Sequence[str] | None, user_data_dir: Path | None
) -> bool:
    if names and entry.browser not in names:
        return False
    if user_data_dir is None:
        return True
    return getattr(entry, "user_data_dir", None) == str(Path(user_data_dir).absolute())


_ROLE_WORDS = {"launcher": "launcher", "host-config": "host configuration", "manifest": "manifest"}


def _label(name: str | None) -> str:
    try:
        return browser_table.get(name or "").label
    except KeyError:
        return str(name)


def _remove_file(entry: FileEntry, what: str, result: UninstallResult) -> bool:
    """Delete the file if it is still what we wrote; say whether the receipt can forget it."""
    path = Path(entry.path)
    if not path.is_file():
        result.actions.append(Action("gone", what, entry.path))
        return True
    try:
        if sha256(path.read_bytes()) != entry.sha256:
            result.actions.append(Action("kept", what, entry.path))
            result.warnings.append(
                f"Left {path} in place: it was changed after autosmime wrote it, so it is no "
                "longer ours to delete."
            )
            return True
        path.unlink()
    except OSError as error:
        result.warnings.append(f"Could not remove {path}: {error.strerror or error}.")
        return False
    result.actions.append(Action("removed", what, entry.path))
    return True


def _remove_value(entry: RegistryEntry, registry: Registry, result: UninstallResult) -> None:
    """Delete our default value if it still names our manifest; otherwise leave it, warning."""
    where = rf"HKEY_CURRENT_USER\{entry.key}"
    what = f"registry key for {_label(entry.browser)}"
    current = registry.read(entry.key)
    if current is None:
        result.actions.append(Action("gone", what, where))
    elif current != entry.data:
        result.actions.append(Action("kept", what, where))
        result.warnings.append(f"Left {where} in place: it now names {current}, not our manifest.")
    else:
        registry.delete_value(entry.key)
        result.actions.append(Action("removed", what, where))


def _prune(receipt: Receipt, registry: Registry | None, result: UninstallResult) -> None:
    """Remove folders and registry keys install created that are now empty, deepest first."""
    for folder in sorted(receipt.created_dirs, key=lambda d: len(Path(d).parts), reverse=True):
        path = Path(folder)
        try:
            if path.is_dir() and not any(path.iterdir()):
                path.rmdir()
                result.actions.append(Action("removed", "empty folder", folder))
            if not path.exists():
                receipt.created_dirs.remove(folder)
        except OSError as error:
            result.warnings.append(f"Could not remove folder {path}: {error.strerror or error}.")
    if registry is None:
        return
    for key in sorted(receipt.created_keys, key=lambda k: k.count("\\"), reverse=True):
        if registry.delete_key_if_empty(key):
            result.actions.append(Action("removed", "empty registry key", key))
        if not registry.exists(key):
            receipt.created_keys.remove(key)


def uninstall(
    browsers: Sequence[str] | None = None,
    user_data_dir: Path | None = None,
    *,
    platform: str = sys.platform,
    roots: Roots | None = None,
    registry: Registry | None = None,
) -> UninstallResult:
    """Take back what the receipt lists (all of it, or one browser's or profile's part).

    The launcher, host configuration and receipt go when no registration is left.
    """
    platform = browser_table.platform_key(platform)
    roots = Roots.current() if roots is None else roots
    names = [b.name for b in _named(browsers)] if browsers else None
    receipt = Receipt.load(receipt_path(roots))
    result = UninstallResult(receipt.path, receipt.exists(), [], [], [])
    if not result.had_receipt:
        return result
    if receipt.registry:
        registry = need_registry(platform, registry)

    for entry in [e for e in receipt.files if e.role == "manifest"]:
        what = f"manifest for {_label(entry.browser)}"
        if _selected(entry, names, user_data_dir) and _remove_file(entry, what, result):
            receipt.files.remove(entry)
    for reg_entry in list(receipt.registry):
        if registry is not None and _selected(reg_entry, names, user_data_dir):
            _remove_value(reg_entry, registry, result)
            receipt.registry.remove(reg_entry)

    remaining = receipt.registrations()
    if not remaining:
        for entry in list(receipt.files):
            if _remove_file(entry, _ROLE_WORDS.get(entry.role, entry.role), result):
                receipt.files.remove(entry)
    if not remaining and not receipt.files:
        receipt.path.unlink(missing_ok=True)
        result.actions.append(Action("removed", "install receipt", str(receipt.path)))
        _prune(receipt, registry, result)
    else:
        _prune(receipt, registry, result)
        receipt.save()
    result.remaining = [
        e.path if isinstance(e, FileEntry) else rf"HKEY_CURRENT_USER\{e.key}" for e in remaining
    ]
    return result
