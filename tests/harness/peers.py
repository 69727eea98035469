"""The independent peers the interoperability tests need (OpenSSL, gpgsm, NSS's cmsutil, Bouncy
Castle). A missing peer is a failure with the fix in words, never a silent skip: `.ci/deps`
installs them."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

# Tools whose Debian package is not named after them.
_PACKAGES = {
    "cmsutil": "libnss3-tools",
    "certutil": "libnss3-tools",
    "pk12util": "libnss3-tools",
    "java": "default-jdk-headless",
    "javac": "default-jdk-headless",
}

# Debian's Bouncy Castle jars (libbcprov-java, libbcpkix-java, libbcutil-java), by their
# unversioned names, and the small Java program that drives them.
BOUNCY_CASTLE_JARS = tuple(
    Path("/usr/share/java") / f"{name}.jar" for name in ("bcprov", "bcpkix", "bcutil")
)
BOUNCY_CASTLE_PACKAGES = "libbcprov-java libbcpkix-java libbcutil-java"
BC_SMIME = Path(__file__).resolve().parent / "java" / "BcSmime.java"


def require(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        package = _PACKAGES.get(tool, tool)
        raise RuntimeError(
            f"{tool} is not installed: run `bash .ci/deps` (Debian package {package})."
        )
    return path


def bouncy_castle(*args: str | Path) -> subprocess.CompletedProcess[bytes]:
    """Run tests/harness/java/BcSmime.java (`decrypt` or `verify`, see that file) on Bouncy
    Castle. Java's single-file source launcher compiles it on each run (about 2 s), which needs
    a JDK, so javac is required too. The caller judges the exit status: a refusal is a result."""
    missing = [jar.name for jar in BOUNCY_CASTLE_JARS if not jar.exists()]
    if missing:
        raise RuntimeError(
            f"Bouncy Castle is not installed ({', '.join(missing)} missing): run `bash .ci/deps`"
            f" (Debian packages {BOUNCY_CASTLE_PACKAGES})."
        )
    require("javac")
    classpath = ":".join(map(str, BOUNCY_CASTLE_JARS))
    return subprocess.run(
        [require("java"), "-cp", classpath, BC_SMIME, *map(str, args)],
        capture_output=True,
        timeout=120,
        check=False,
    )
