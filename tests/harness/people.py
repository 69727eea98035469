"""Two people with real keys, accounts and browsers: alice and bob against the real PKI service
(pki_world.PkiWorld: directory, TSA, certificates issued by its CA as ACME finalize does) and
the real mail stack. Each person has a host profile (AUTOSMIME_PROFILE), a file keyring, and an
ExtensionProfile whose Chromium starts the real host with that environment."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import gmail_story
from harness.browser import ExtensionProfile
from harness.devices import account_params, b64
from harness.mail import MailStack
from harness.native import HostProcess, write_host_config
from native_host.domain.keystore import Keystore
from native_host.infrastructure.profile import open_profile

# The account helpers are the unit harness's (devices), shared with the browser stories.
__all__ = ["KEYRING", "BrowserPerson", "account_params", "b64", "make_person"]

KEYRING = "keyrings.alt.file.PlaintextKeyring"
TESTS = Path(__file__).resolve().parents[1]


@dataclass
class BrowserPerson:
    """One person's device: host profile, keyring and a Chromium profile using both."""

    address: str
    browser: ExtensionProfile

    @property
    def host_profile(self) -> Path:
        return self.browser.root / "autosmime-profile"

    @property
    def xdg_data(self) -> Path:
        return Path(self.browser.env["XDG_DATA_HOME"])

    def keyring_backend(self) -> Any:
        from keyrings.alt.file import PlaintextKeyring

        backend = PlaintextKeyring()
        backend.file_path = str(self.xdg_data / "python_keyring" / "keyring_pass.cfg")
        return backend

    def keystore(self) -> Keystore:
        return Keystore.for_profile(open_profile(self.host_profile), backend=self.keyring_backend())

    def call(self, op: str, params: dict[str, Any]) -> Any:
        """One op through a host process of its own (set-up steps outside the browser)."""
        config, _ = write_host_config(self.browser.root / "setup-host")
        host = HostProcess(config, env=self.browser.env)
        try:
            host.send({"id": 1, "op": op, "params": params})
            while True:
                message = host.receive()
                assert message is not None, "the host closed the channel"
                if message.get("event") == "progress":
                    continue
                assert message["ok"] is True, message
                return message["result"]
        finally:
            host.close()


def make_person(
    root: Path, extension_dir: Path, address: str, world: Any, stack: MailStack
) -> BrowserPerson:
    """A person with an installed host, current keys from the world's CA, a configured account."""
    browser = ExtensionProfile(root, extension_dir)
    person = BrowserPerson(address, browser)
    person.host_profile.mkdir(parents=True, exist_ok=True)
    browser.env.update(
        {"AUTOSMIME_PROFILE": str(person.host_profile), "PYTHON_KEYRING_BACKEND": KEYRING}
    )
    browser.install_host()
    world.add(person.keystore(), world.issue(address))
    gmail_story.SUBJECT_READERS.append(gmail_story.keystore_reader(person.keystore))
    done = person.call("account.configure", account_params(stack, world, address))
    assert done["address"] == address
    return person
