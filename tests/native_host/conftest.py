"""Fixtures for installer and doctor tests: a throw-away home, and an in-memory registry.

Every test that installs anything uses `home`, so nothing reaches the real home folder.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from native_host.installation.browsers import Roots


@dataclass(frozen=True)
class Home:
    """The temporary per-user folders the environment now points at."""

    root: Path
    home: Path
    config: Path
    data: Path
    state: Path
    empty_path: Path  # a PATH with no browsers on it

    @property
    def autosmime(self) -> Path:
        return self.data / "autosmime"

    def env(self, **extra: str) -> dict[str, str]:
        """The environment for a subprocess: ours, with no browser on PATH."""
        env = dict(os.environ)
        env.update(
            HOME=str(self.home),
            XDG_CONFIG_HOME=str(self.config),
            XDG_DATA_HOME=str(self.data),
            XDG_STATE_HOME=str(self.state),
            PATH=str(self.empty_path),
        )
        env.update(extra)
        return env

    def tree(self) -> dict[str, bytes | None]:
        """Every file (with its content) and folder below root, to compare before and after."""
        found: dict[str, bytes | None] = {}
        for path in sorted(self.root.rglob("*")):
            relative = str(path.relative_to(self.root))
            found[relative] = path.read_bytes() if path.is_file() else None
        return found


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Home:
    folders = {name: tmp_path / name for name in ("home", "config", "data", "state", "nobin")}
    for folder in folders.values():
        folder.mkdir()
    monkeypatch.setenv("HOME", str(folders["home"]))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(folders["config"]))
    monkeypatch.setenv("XDG_DATA_HOME", str(folders["data"]))
    monkeypatch.setenv("XDG_STATE_HOME", str(folders["state"]))
    # Detection looks at PATH; an empty one makes "which browsers are installed" ours to decide.
    monkeypatch.setenv("PATH", str(folders["nobin"]))
    return Home(
        tmp_path,
        folders["home"],
        folders["config"],
        folders["data"],
        folders["state"],
        folders["nobin"],
    )


class MemoryRegistry:
    """HKEY_CURRENT_USER as a dict (key -> default value), with Windows' case-insensitive keys."""

    def __init__(self, *keys: str) -> None:
        self.keys: dict[str, str | None] = {}
        for key in ("Software", *keys):
            self.write(key, None)

    @staticmethod
    def _norm(key: str) -> str:
        return key.casefold()

    def exists(self, key: str) -> bool:
        return self._norm(key) in self.keys

    def read(self, key: str) -> str | None:
        return self.keys.get(self._norm(key))

    def write(self, key: str, data: str | None) -> None:
        parts = key.split("\\")
        for depth in range(1, len(parts)):
            self.keys.setdefault(self._norm("\\".join(parts[:depth])), None)
        self.keys[self._norm(key)] = data

    def delete_value(self, key: str) -> None:
        if self._norm(key) not in self.keys:
            raise FileNotFoundError(key)
        self.keys[self._norm(key)] = None

    def delete_key_if_empty(self, key: str) -> bool:
        norm = self._norm(key)
        if norm not in self.keys or self.keys[norm] is not None:
            return False
        if any(other.startswith(norm + "\\") for other in self.keys):
            return False
        del self.keys[norm]
        return True


@pytest.fixture
def registry() -> MemoryRegistry:
    """A registry where Chrome has run (its key exists) and nothing else is installed."""
    return MemoryRegistry(r"Software\Google\Chrome")


@pytest.fixture
def windows_roots(home: Home) -> Roots:
    """Windows folders laid out below the temporary home (real paths, so files can be written)."""
    local = home.home / "AppData" / "Local"
    return Roots(
        home=home.home,
        config_home=home.config,
        data_dir=local / "autosmime",
        local_appdata=local,
        appdata=home.home / "AppData" / "Roaming",
        program_dirs=(home.root / "Program Files",),
    )
