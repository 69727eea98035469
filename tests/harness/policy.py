"""Enterprise rollout in a real browser: a Chromium policy file where Debian's Chromium reads
it (/etc/chromium/policies/managed/), giving the extension its managed storage
(`3rdparty.extensions.<id>`), as an administrator deploys it.

Chromium reads that folder for every profile on the machine, and every build of this project
has the same development id, so a test's policy would reach whatever other extension build a
test or a person runs meanwhile. So the test's extension gets an id of its own: the built
extension is copied with a fresh key in its manifest (`extension_with_own_id`), the native host
is registered for that id, and the policy names only it; the policy file is removed afterwards.
"""

from __future__ import annotations

import base64
import contextlib
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from harness.browser import ExtensionProfile, launch_options
from harness.pki_service import KEYRING
from native_host.transport import browser_ids

POLICY_FOLDER = Path("/etc/chromium/policies/managed")


def extension_with_own_id(extension_dir: Path, target: Path) -> tuple[Path, str]:
    """A copy of the built extension whose manifest key (so id) is new: (folder, id)."""
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(extension_dir, target)
    key = rsa.generate_private_key(65537, 2048).public_key()
    spki = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    encoded = base64.b64encode(spki).decode("ascii")
    manifest_path = target / "manifest.json"
    manifest = json.loads(manifest_path.read_text("utf-8"))
    manifest["key"] = encoded
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n", "utf-8")
    return target, browser_ids.chromium_id(encoded)


@contextlib.contextmanager
def chromium_policy(extension_id: str, settings: dict[str, Any]) -> Iterator[Path]:
    """The managed storage of one extension as a policy file, removed on exit."""
    POLICY_FOLDER.mkdir(parents=True, exist_ok=True)
    path = POLICY_FOLDER / f"autosmime-test-{extension_id}.json"
    document = {"3rdparty": {"extensions": {extension_id: settings}}}
    path.write_text(json.dumps(document, indent=2) + "\n", "utf-8")
    path.chmod(0o644)
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)


@contextlib.contextmanager
def browser_for(
    playwright: Any,
    root: Path,
    extension_dir: Path,
    extension_id: str,
    env: dict[str, str] | None = None,
) -> Iterator[Any]:
    """Chromium with this extension build (its own id), the real host registered for that id,
    a keyring file below the profile, and more environment (which the host inherits)."""
    profile = ExtensionProfile(root, extension_dir)
    profile.env["PYTHON_KEYRING_BACKEND"] = KEYRING
    profile.env.pop("AUTOSMIME_PROFILE", None)
    profile.env.update(env or {})
    done = profile.autosmime(
        "install", "--browser", "chromium", "--user-data-dir", str(profile.user_data_dir),
        "--extension-id", extension_id,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"autosmime install failed:\n{done.stdout}\n{done.stderr}")
    context = playwright.chromium.launch_persistent_context(**launch_options(profile))
    try:
        yield context
    finally:
        context.close()


def page_url(extension_id: str, path: str) -> str:
    return f"chrome-extension://{extension_id}/{path}"
