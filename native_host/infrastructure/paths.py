"""Per-user folders of autosmime on Linux, macOS and Windows, honouring XDG variables on Linux.

Tests point HOME/XDG_* (or LOCALAPPDATA) at a temporary folder and everything follows.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

APP = "autosmime"


def _home() -> Path:
    return Path(os.environ.get("HOME") or Path.home())


def data_dir() -> Path:
    """Where the launcher, host configuration and (later) the keystore live."""
    if sys.platform == "win32":
        return Path(os.environ.get("LOCALAPPDATA", _home() / "AppData" / "Local")) / APP
    if sys.platform == "darwin":
        return _home() / "Library" / "Application Support" / APP
    return Path(os.environ.get("XDG_DATA_HOME") or _home() / ".local" / "share") / APP


def state_dir() -> Path:
    """Where logs go."""
    if sys.platform in ("win32", "darwin"):
        return data_dir() / "logs"
    return Path(os.environ.get("XDG_STATE_HOME") or _home() / ".local" / "state") / APP


def config_home() -> Path:
    """The XDG config root on Linux (browsers keep their per-user folders under it)."""
    return Path(os.environ.get("XDG_CONFIG_HOME") or _home() / ".config")
