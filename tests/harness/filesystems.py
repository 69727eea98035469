"""A folder on a file system of its own, to meet the local faults a person meets: a disk that is
full, a folder that became read-only. A tmpfs of a few hundred KiB is mounted there (root only:
`mount -t tmpfs`; tests skip elsewhere), filled to the last byte with a filler file, remounted
read-only, and unmounted afterwards. No LD_PRELOAD, no fake: the kernel says ENOSPC and EROFS.

    with SmallDisk(tmp_path / "profile") as disk:
        ...                    # set the profile up
        with disk.full():      # every write now fails with ENOSPC
            ...
        with disk.read_only(): # every write now fails with EROFS
            ...
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

import pytest

FILLER = ".filler"


def _mount(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["mount", *args], capture_output=True, text=True, check=False)


class SmallDisk:
    """A tmpfs of size_kib mounted at `where` (made if missing)."""

    def __init__(self, where: Path, size_kib: int = 2048) -> None:
        self.where = Path(where)
        self.size_kib = size_kib
        self.mounted = False

    def __enter__(self) -> SmallDisk:
        if os.geteuid() != 0:
            pytest.skip("mounting a small tmpfs needs root")
        self.where.mkdir(parents=True, exist_ok=True)
        done = _mount(
            "-t", "tmpfs", "-o", f"size={self.size_kib}k,mode=0700", "tmpfs", str(self.where)
        )
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
        self.mounted = True
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self.mounted:
            done = subprocess.run(["umount", str(self.where)], capture_output=True, check=False)
            if done.returncode != 0:  # a process of the test still has a file open: detach
                subprocess.run(["umount", "-l", str(self.where)], check=True)
            self.mounted = False

    @contextlib.contextmanager
    def full(self) -> Iterator[None]:
        """Every free byte taken by a filler file; freed again afterwards."""
        filler = self.where / FILLER
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            for size in (64 * 1024, 1024, 1):
                try:
                    while os.write(fd, b"\0" * size):
                        pass
                except OSError as error:
                    if error.errno != errno.ENOSPC:
                        raise
        finally:
            os.close(fd)
        try:
            yield
        finally:
            filler.unlink()

    @contextlib.contextmanager
    def read_only(self) -> Iterator[None]:
        """The file system remounted read-only; writable again afterwards."""
        done = _mount("-o", "remount,ro", str(self.where))
        assert done.returncode == 0, done.stderr
        try:
            yield
        finally:
            done = _mount("-o", "remount,rw", str(self.where))
            assert done.returncode == 0, done.stderr

    def files(self) -> dict[str, bytes]:
        """Every file below the mount (the filler aside) with its content."""
        return {
            str(path.relative_to(self.where)): path.read_bytes()
            for path in sorted(self.where.rglob("*"))
            if path.is_file() and path.name != FILLER
        }
