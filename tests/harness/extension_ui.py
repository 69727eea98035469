"""A browser profile for the extension's own pages (popup, onboarding, options): Chromium with
the built extension and the real host installed, the host's keyring confined to the profile's
folder, and helpers to open extension pages and configure the extension."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from playwright.sync_api import Error as PlaywrightError

from harness.browser import ExtensionProfile, launch_options, service_worker
from harness.pki_service import KEYRING
from native_host.transport import browser_ids

ARTIFACTS = Path(__file__).resolve().parents[1] / "e2e" / "artifacts"


def page_url(path: str) -> str:
    return f"chrome-extension://{browser_ids.chromium_id()}/{path}"


@contextmanager
def extension_browser(
    playwright: Any, root: Path, extension_dir: Path, args: list[str] | None = None
) -> Iterator[Any]:
    """A fresh profile (new device): its own home, keyring file and host registration.
    `args`: more Chromium arguments (e.g. a webmail origin mapped to a fixture)."""
    profile = ExtensionProfile(root, extension_dir)
    profile.env["PYTHON_KEYRING_BACKEND"] = KEYRING  # a file below the profile's XDG_DATA_HOME
    profile.env.pop("AUTOSMIME_PROFILE", None)
    profile.install_host()
    context = playwright.chromium.launch_persistent_context(**launch_options(profile, args))
    context.autosmime_profile = profile
    try:
        yield context
    finally:
        context.close()


def configure_extension(context: Any, config: dict[str, Any]) -> None:
    """What an administrator deploys: settings the setup page prefills."""
    service_worker(context).evaluate("(config) => chrome.storage.local.set({ config })", config)


PAINTED = "() => new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)))"


def screenshot(page: Any, name: str) -> Path:
    """tests/e2e/artifacts/<name>.png once every frame has painted: the secure frames are
    out-of-process iframes, which can lag a paint behind the page that holds them."""
    for frame in page.frames:
        # A sandboxed srcdoc frame runs no scripts (evaluating there would wait forever).
        if frame.url.startswith("about:"):
            continue
        try:
            # A frame out of sight (the spare viewer, parked under display:none) paints nothing
            # and is not in the picture.
            if frame.parent_frame is not None and not frame.frame_element().is_visible():
                continue
            frame.evaluate(PAINTED)
        except PlaywrightError:
            # A frame the page removed meanwhile (Roundcube's autosave frame comes and goes) is
            # not in the picture: nothing to wait for. Any other failure is one.
            if not frame.is_detached():
                raise
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
