"""A desktop install as a person gets it: a fresh virtual environment with `pip install .` and
no extra (so none of the PKI service's server stack), plus only the test keyring backend.

Built once per test session (about 12 s with pip's cache warm) from a copy of the sources, so
that the build leaves nothing in the work tree and nothing editable points back into it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("pyproject.toml", "README.md", "native_host", "shared_pki")


class DesktopInstall:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.venv = folder / "venv"
        source = folder / "source"
        for name in SOURCES:
            origin = ROOT / name
            if origin.is_dir():
                shutil.copytree(origin, source / name, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                source.mkdir(parents=True, exist_ok=True)
                shutil.copy2(origin, source / name)
        subprocess.run([sys.executable, "-m", "venv", str(self.venv)], check=True)
        pip = [str(self.python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        # keyrings.alt: the file keyring the tests confine to their folder; not a server package.
        done = subprocess.run(
            [*pip, str(source), "keyrings.alt"], capture_output=True, text=True, timeout=600
        )
        if done.returncode != 0:
            raise RuntimeError(f"pip install . failed:\n{done.stderr[-3000:]}")
        self.work = folder / "cwd"  # run from here: never from the source tree
        self.work.mkdir()

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    @property
    def autosmime(self) -> Path:
        return self.venv / "bin" / "autosmime"

    def has_module(self, name: str) -> bool:
        found = subprocess.run(
            [str(self.python), "-c", f"import importlib.util as u; print(u.find_spec({name!r}))"],
            capture_output=True,
            text=True,
            cwd=self.work,
            check=True,
        )
        return found.stdout.strip() != "None"
