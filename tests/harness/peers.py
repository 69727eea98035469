"""The independent peers the interoperability tests need (OpenSSL, gpgsm). A missing peer is a
failure with the fix in words, never a silent skip: `.ci/deps` installs them."""

from __future__ import annotations

import shutil


def require(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise RuntimeError(f"{tool} is not installed: run `bash .ci/deps` (Debian package {tool}).")
    return path
