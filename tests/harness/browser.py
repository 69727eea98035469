"""Debian's Chromium with the built extension and the real native host registered in its profile.

Everything a browser test touches lives under one temporary root: HOME and XDG folders (so the
installer, the host's log and Chromium write nothing into the real home), the Chromium
user-data-dir, and the host registration made by the real `autosmime install`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("AUTOSMIME_CHROMIUM", "/usr/bin/chromium")
BASE_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
]


def require_chromium() -> str:
    if not Path(CHROMIUM).exists():
        raise RuntimeError(
            f"{CHROMIUM} not found: browser tests need Debian's Chromium "
            "(apt-get install -y chromium)"
        )
    return CHROMIUM


def build_extension(out: Path) -> Path:
    """Run build.py into out and return the unpacked Chromium extension folder."""
    subprocess.run([sys.executable, str(ROOT / "build.py"), "--out", str(out)], check=True)
    return out / "chromium"


class ExtensionProfile:
    """A private home, a Chromium user-data-dir, and the native host installed for it."""

    def __init__(self, root: Path, extension_dir: Path) -> None:
        self.root = root
        self.extension_dir = extension_dir
        self.user_data_dir = root / "chromium-profile"
        self.env = {
            **os.environ,
            "HOME": str(root / "home"),
            "XDG_CONFIG_HOME": str(root / "home" / ".config"),
            "XDG_DATA_HOME": str(root / "home" / ".local" / "share"),
            "XDG_STATE_HOME": str(root / "home" / ".local" / "state"),
            "XDG_CACHE_HOME": str(root / "home" / ".cache"),
        }
        for key in ("HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME"):
            Path(self.env[key]).mkdir(parents=True, exist_ok=True)

    def autosmime(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run the real `autosmime` command in this profile's environment."""
        return subprocess.run(
            [sys.executable, "-m", "native_host.cli", *args],
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
        )

    def install_host(self) -> None:
        done = self.autosmime(
            "install", "--browser", "chromium", "--user-data-dir", str(self.user_data_dir)
        )
        if done.returncode != 0:
            raise RuntimeError(f"autosmime install failed:\n{done.stdout}\n{done.stderr}")

    @property
    def host_log(self) -> Path:
        return Path(self.env["XDG_STATE_HOME"]) / "autosmime" / "host.log"

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def launch_options(
    profile: ExtensionProfile, extra_args: list[str] | None = None
) -> dict[str, Any]:
    """Options for launch_persistent_context (a non-persistent context loads no extension)."""
    extension = str(profile.extension_dir)
    return {
        "user_data_dir": str(profile.user_data_dir),
        "executable_path": require_chromium(),
        "headless": True,
        "ignore_default_args": ["--disable-extensions"],
        "args": [
            f"--disable-extensions-except={extension}",
            f"--load-extension={extension}",
            *BASE_ARGS,
            *(extra_args or []),
        ],
        "env": profile.env,
    }


def service_worker(context: Any, timeout_ms: float = 10_000) -> Any:
    """The extension's service worker (present once launch returns, or awaited)."""
    for worker in context.service_workers:
        if worker.url.startswith("chrome-extension://"):
            return worker
    return context.wait_for_event("serviceworker", timeout=timeout_ms)
