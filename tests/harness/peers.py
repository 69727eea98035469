"""The independent peers the interoperability tests need (OpenSSL, gpgsm, NSS's cmsutil). A
missing peer is a failure with the fix in words, never a silent skip: `.ci/deps` installs them."""

from __future__ import annotations

import shutil

# Tools whose Debian package is not named after them.
_PACKAGES = {"cmsutil": "libnss3-tools", "certutil": "libnss3-tools", "pk12util": "libnss3-tools"}


def require(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        package = _PACKAGES.get(tool, tool)
        raise RuntimeError(
            f"{tool} is not installed: run `bash .ci/deps` (Debian package {package})."
        )
    return path
