"""Browser fixtures: the built extension, a webmail origin on loopback, and Chromium with both.

pytest-playwright's `context` fixture is replaced by a persistent context that loads the
extension, so its stock `page` fixture opens pages in the extension's profile.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness.browser import ExtensionProfile, build_extension, launch_options, service_worker
from harness.webmail_server import WebmailServer


@pytest.fixture(scope="session")
def extension_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_extension(tmp_path_factory.mktemp("dist"))


@pytest.fixture(scope="session")
def webmail(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebmailServer]:
    with WebmailServer(tmp_path_factory.mktemp("webmail")) as server:
        yield server


@pytest.fixture
def profile(tmp_path: Path, extension_dir: Path) -> ExtensionProfile:
    profile = ExtensionProfile(tmp_path / "profile", extension_dir)
    profile.install_host()
    return profile


@pytest.fixture
def context(playwright: Any, profile: ExtensionProfile, webmail: WebmailServer) -> Iterator[Any]:
    options = launch_options(
        profile, [f"--host-resolver-rules={webmail.resolver_rule}", "--ignore-certificate-errors"]
    )
    context = playwright.chromium.launch_persistent_context(**options)
    yield context
    context.close()


@pytest.fixture
def worker(context: Any) -> Any:
    return service_worker(context)


# ---- the Gmail story: two people, the real PKI service and mail stack, a Gmail-shaped origin ----

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"


@pytest.fixture(scope="session")
def gmail(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from harness.gmail_fixture import GmailServer

    with GmailServer(tmp_path_factory.mktemp("gmail")) as server:
        yield server


@pytest.fixture(scope="session")
def pki_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from harness.pki_world import PkiWorld

    world = PkiWorld(tmp_path_factory.mktemp("world"))
    try:
        yield world
    finally:
        world.close()


@pytest.fixture(scope="session")
def people(
    tmp_path_factory: pytest.TempPathFactory, extension_dir: Path, pki_world: Any, mail_stack: Any
) -> dict[str, Any]:
    """alice and bob: keys current in the directory, accounts configured, hosts installed."""
    from harness.people import make_person

    root = tmp_path_factory.mktemp("people")
    return {
        name: make_person(root / name, extension_dir, f"{name}@example.test", pki_world, mail_stack)
        for name in ("alice", "bob")
    }


@pytest.fixture
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="session")
def eve(pki_world: Any, people: dict[str, Any]) -> str:
    """eve@example.test: a mailbox on the stack and a certificate in the directory, so mail can
    be encrypted to her; the page-boundary tests' would-be hidden recipient."""
    pki_world.issue("eve@example.test")
    return "eve@example.test"


# ---- Roundcube: the real Roundcube 1.6 over the mail stack, and the extension built for it ----

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def roundcube(mail_stack: Any) -> Iterator[Any]:
    from harness.roundcube import RoundcubeServer

    # Autosave every 2 s, so Roundcube does save drafts while alice writes (and we can look).
    with RoundcubeServer(mail_stack, draft_autosave=2) as server:
        yield server


@pytest.fixture(scope="session")
def roundcube_extension(tmp_path_factory: pytest.TempPathFactory, roundcube: Any) -> Path:
    """The extension as an organisation builds it for its Roundcube (build.py --roundcube)."""
    out = tmp_path_factory.mktemp("dist-roundcube")
    subprocess.run(
        [sys.executable, str(ROOT / "build.py"), "--out", str(out), "--roundcube", roundcube.url()],
        check=True,
    )
    return out / "chromium"
