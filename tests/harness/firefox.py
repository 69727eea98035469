"""Debian's Firefox ESR with the built add-on (dist/firefox.xpi) and the real native host.

Playwright cannot drive Debian's firefox-esr (it needs its own patched build), so the tests speak
Marionette, Firefox's own remote protocol, through Mozilla's `marionette-driver` client: Firefox
is started with `-marionette -headless -no-remote -profile DIR`, the add-on is installed as a
temporary add-on (no signing needed), and the host is registered the way a person registers it,
`autosmime install --browser firefox`, into the test's own HOME
(`~/.mozilla/native-messaging-hosts/`).

Firefox has no --host-resolver-rules: it goes through a CONNECT tunnel (harness.tunnel) that
takes mail.google.com:443 to the Gmail-shaped fixture and refuses everything else, so the page's
origin is exactly https://mail.google.com (the one the add-on's manifest and the secure frames'
parent check name) and the browser stays offline; the session accepts the fixture's self-signed
certificate. The add-on's internal UUID is pinned (`extensions.webextensions.uuids`), so tests
know its origin.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.mail import free_port, port_is_open, stop_process_tree, tail, wait_until
from harness.tunnel import ConnectTunnel
from native_host.transport import browser_ids

FIREFOX = os.environ.get("AUTOSMIME_FIREFOX", "/usr/bin/firefox-esr")
#: The add-on's internal UUID in every test profile: its pages are moz-extension://UUID/...
ADDON_UUID = "5b0f3a52-6d0e-4c59-9a3e-0a7e57a1d0c1"
EXTENSION_ORIGIN = f"moz-extension://{ADDON_UUID}"
START_TIMEOUT = 60.0

# Quiet, deterministic, offline: no first-run pages, no update or telemetry traffic.
PREFS: dict[str, Any] = {
    "extensions.webextensions.uuids": json.dumps({browser_ids.GECKO_ID: ADDON_UUID}),
    "xpinstall.signatures.required": False,
    "browser.shell.checkDefaultBrowser": False,
    "browser.startup.homepage_override.mstone": "ignore",
    "browser.aboutwelcome.enabled": False,
    "datareporting.policy.dataSubmissionEnabled": False,
    "toolkit.telemetry.reportingpolicy.firstRun": False,
    "app.update.disabledForTesting": True,
    "browser.safebrowsing.malware.enabled": False,
    "browser.safebrowsing.phishing.enabled": False,
    "network.connectivity-service.enabled": False,
    "network.captive-portal-service.enabled": False,
    "services.settings.server": "data:,",
    "extensions.getAddons.cache.enabled": False,
}


def require_firefox() -> str:
    if not Path(FIREFOX).exists():
        raise RuntimeError(
            f"{FIREFOX} not found: the Firefox tests need Debian's Firefox ESR "
            "(apt-get install -y firefox-esr)"
        )
    return FIREFOX


def extension_url(path: str) -> str:
    return f"{EXTENSION_ORIGIN}/{path}"


class Firefox:
    """One headless Firefox with the add-on, driven over Marionette. `env` is the person's
    environment (HOME with the host registered for Firefox, the host's profile and keyring)."""

    def __init__(
        self, root: Path, env: dict[str, str], xpi: Path, routes: dict[str, tuple[str, int]]
    ) -> None:
        self.root = root
        self.env = env
        self.xpi = xpi
        self.tunnel = ConnectTunnel(routes)
        self.profile = root / "firefox-profile"
        self.log = root / "firefox.log"
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None
        self.client: Any = None

    def start(self) -> Firefox:
        from marionette_driver.addons import Addons
        from marionette_driver.marionette import Marionette

        binary = require_firefox()
        shutil.rmtree(self.profile, ignore_errors=True)
        self.profile.mkdir(parents=True)
        self.port = free_port()
        self.tunnel.start()
        proxy = {
            "network.proxy.type": 1,
            "network.proxy.ssl": "127.0.0.1",
            "network.proxy.ssl_port": self.tunnel.port,
            "network.proxy.http": "127.0.0.1",
            "network.proxy.http_port": self.tunnel.port,
        }
        prefs = {**PREFS, **proxy, "marionette.port": self.port}
        lines = [f"user_pref({json.dumps(k)}, {json.dumps(v)});\n" for k, v in prefs.items()]
        (self.profile / "user.js").write_text("".join(lines))
        command = [binary, "-marionette", "-headless", "-no-remote", "-profile", str(self.profile)]
        with self.log.open("wb") as log:
            self._process = subprocess.Popen(
                command, env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        try:
            wait_until(
                self._listening,
                "Firefox's Marionette port",
                time.monotonic() + START_TIMEOUT,
                explain=lambda: tail(self.log),
                alive=lambda: self._process is not None and self._process.poll() is None,
            )
            self.client = Marionette(host="127.0.0.1", port=self.port)
            self.client.start_session({"acceptInsecureCerts": True})
            Addons(self.client).install(str(self.xpi), temp=True)
        except BaseException:
            self.close()
            raise
        return self

    def _listening(self) -> bool:
        return port_is_open("127.0.0.1", self.port)

    def close(self) -> None:
        if self.client is not None:
            with contextlib.suppress(Exception):  # the browser may be gone already
                self.client.delete_session()
            self.client = None
        if self._process is not None:
            stop_process_tree(self._process, timeout=10)
            self._process = None
        self.tunnel.close()

    def __enter__(self) -> Firefox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- driving ------------------------------------------------------------------------------

    def page(self, script: str, *args: Any) -> Any:
        """Run script as the webmail page's own script: in the page's realm, no sandbox (what a
        hostile page can do, nothing more). The script is a function body; args are
        `arguments`; a returned promise is awaited."""
        return self.client.execute_script(script, script_args=args, sandbox=None)

    def evaluate(self, function: str, arg: Any = None) -> Any:
        """Playwright's page.evaluate: a JavaScript function (source) called with arg as the
        page's own script, its promise awaited; so harness.hostile's attacks run here as is."""
        return self.page(f"return ({function})(arguments[0]);", arg)

    def wait(
        self, check: Callable[[], Any], what: str, timeout: float = 30.0, interval: float = 0.05
    ) -> Any:
        """Poll check until it returns something truthy; fail naming what never happened."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while True:
            try:
                last = check()
            except Exception as error:  # an element not there yet, a frame reloading
                last = error
            else:
                if last:
                    return last
            if time.monotonic() > deadline:
                raise AssertionError(f"{what}: not within {timeout} s (last: {last!r})")
            time.sleep(interval)

    def in_frame(self, frame_element: Any, action: Callable[[], Any]) -> Any:
        """Run action with Marionette switched into frame_element, then back to the top."""
        self.client.switch_to_frame(frame_element)
        try:
            return action()
        finally:
            self.client.switch_to_frame()
