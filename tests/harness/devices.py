"""Devices for tests of the host's operations through the REAL host process on pipes, as the
browser uses them: each person's device is a profile folder, a keyring below the test folder
and a host process (harness.native), with keys as enrollment leaves them."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
from asn1crypto import pem as asn1_pem

from harness.mail import MailStack
from harness.native import HostProcess, check_result, write_host_config
from harness.pki_world import Person, PkiWorld
from native_host.domain.keystore import Keystore
from native_host.infrastructure.profile import open_profile
from native_host.protocol import SCHEMA

KEYRING = "keyrings.alt.file.PlaintextKeyring"
MESSAGES = jsonschema.Draft202012Validator(SCHEMA)


def quoted(address: str) -> str:
    return address.replace("@", "%40")


def roots_pem(world: PkiWorld) -> str:
    return "".join(asn1_pem.armor("CERTIFICATE", c.dump()).decode("ascii") for c in world.roots)


def keyring_backend(xdg: Path) -> Any:
    """The same file keyring the host process uses (PYTHON_KEYRING_BACKEND + XDG_DATA_HOME)."""
    from keyrings.alt.file import PlaintextKeyring

    backend = PlaintextKeyring()
    backend.file_path = str(xdg / "python_keyring" / "keyring_pass.cfg")
    return backend


@dataclass
class Device:
    """One person's device: a profile folder, a keyring below the test folder, a host."""

    name: str
    address: str
    folder: Path
    host: HostProcess | None = None
    log_file: Path | None = None
    events: list[dict[str, Any]] = field(default_factory=list)
    #: More environment for the host process (e.g. harness.well_known's proxy and CA).
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def profile(self) -> Path:
        return self.folder / "profile"

    @property
    def xdg(self) -> Path:
        return self.folder / "xdg-data"

    def env(self) -> dict[str, str]:
        return {
            "AUTOSMIME_PROFILE": str(self.profile),
            "PYTHON_KEYRING_BACKEND": KEYRING,
            "XDG_DATA_HOME": str(self.xdg),
            **self.extra_env,
        }

    def keystore(self) -> Keystore:
        profile = open_profile(self.profile)
        return Keystore.for_profile(profile, backend=keyring_backend(self.xdg))

    def start(self) -> HostProcess:
        config, self.log_file = write_host_config(self.folder / "host")
        self.host = HostProcess(config, env=self.env())
        return self.host

    def call(self, op: str, params: dict[str, Any], msg_id: Any = 1) -> dict[str, Any]:
        """One request; progress events are kept in `events`, the reply is returned."""
        assert self.host is not None
        self.host.send({"id": msg_id, "op": op, "params": params})
        while True:
            message = self.host.receive()
            assert message is not None, "the host closed the channel"
            MESSAGES.validate(message)
            if message.get("event") == "progress":
                self.events.append(message)
                continue
            check_result(op, message)
            return message

    def ok(self, op: str, params: dict[str, Any], msg_id: Any = 1) -> Any:
        reply = self.call(op, params, msg_id)
        assert reply["ok"] is True, reply
        return reply["result"]

    def error(self, op: str, params: dict[str, Any]) -> dict[str, str]:
        reply = self.call(op, params)
        assert reply["ok"] is False, reply
        return reply["error"]

    def log(self) -> str:
        assert self.log_file is not None
        return self.log_file.read_text("utf-8") if self.log_file.exists() else ""


def account_params(stack: MailStack, world: PkiWorld, address: str) -> dict[str, Any]:
    return {
        "address": address,
        "password": stack.users[address],
        "imapUrl": f"imaps://{quoted(address)}@127.0.0.1:{stack.imaps_port}",
        "smtpUrl": f"smtp://{quoted(address)}@127.0.0.1:{stack.smtp_port}",
        "caFile": str(stack.ca_cert_path),
        "pkiUrl": world.url,
        "pkiRoots": roots_pem(world),
    }


def make_device(
    tmp: Path, name: str, address: str, world: PkiWorld, *people: Person | None
) -> Device:
    device = Device(name, address, tmp / name)
    device.folder.mkdir(parents=True)
    for person in people:  # keys as enrollment leaves them: current, with the CA's certificate
        if person is not None:
            world.add(device.keystore(), person)
    return device


def fetch_raw(stack: MailStack, user: str, message_id: str, folder: str = "INBOX") -> bytes:
    client = stack.imap_client(user)
    try:
        client.select_folder(folder, readonly=True)
        uids = client.search(["HEADER", "Message-ID", message_id])
        [data] = client.fetch(uids, ["BODY.PEEK[]"]).values()
        return data[b"BODY[]"]
    finally:
        client.logout()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
