"""Devices for the "new device" stories: a device is a home of its own (HOME, XDG folders, a
file keyring below them, the host's default profile folder), so two devices of one person share
nothing but the mailbox. A host-only device answers ops through a real host process speaking
frames; a browser device is Chromium with the built extension and the host registered for it.

Also what such stories check: which certificates a message is encrypted to, and whether any
form of a private key lies on a device's disk."""

from __future__ import annotations

import base64
import email
import email.policy
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from harness.browser import ExtensionProfile, launch_options
from harness.native import HostProcess, write_host_config
from harness.people import BrowserPerson
from harness.pki_service import KEYRING, PkiServe
from shared_pki.cms.enveloped import inspect
from shared_pki.cms.recipients import RecipientId


def device_profile(root: Path, extension_dir: Path) -> ExtensionProfile:
    """A new device's home: the host keeps its profile in the default place below it."""
    profile = ExtensionProfile(root, extension_dir)
    profile.env["PYTHON_KEYRING_BACKEND"] = KEYRING  # a file below the device's XDG_DATA_HOME
    profile.env.pop("AUTOSMIME_PROFILE", None)
    return profile


def host_device(root: Path, extension_dir: Path, address: str) -> BrowserPerson:
    """A device without a browser: `.call(op, params)` runs the real host in its home."""
    return BrowserPerson(address, device_profile(root, extension_dir))


def call_within(
    person: BrowserPerson, op: str, params: dict[str, Any], timeout: float = 120
) -> Any:
    """person.call with a deadline: one op through a host process of its own, which is killed
    (and the call failed) if it has not answered within timeout seconds."""
    config, _ = write_host_config(person.browser.root / "setup-host")
    host = HostProcess(config, env=person.browser.env)
    watchdog = threading.Timer(timeout, host.proc.kill)
    watchdog.start()
    try:
        host.send({"id": 1, "op": op, "params": params})
        while True:
            message = host.receive()
            assert message is not None, f"{op} did not answer within {timeout} s"
            if message.get("event") == "progress":
                continue
            assert message["ok"] is True, message
            return message["result"]
    finally:
        watchdog.cancel()
        host.close()


def account_params(pki: PkiServe, address: str, password: str) -> dict[str, Any]:
    """account.configure's parameters: what the setup page sends with the deployed settings."""
    return {"address": address, "password": password, **pki.extension_config(address)}


@contextmanager
def browser_device(
    playwright: Any, root: Path, extension_dir: Path, extra_args: list[str] | None = None
) -> Iterator[Any]:
    """A brand-new browser profile with the host installed (what a person does on a new
    computer); the context carries `autosmime_profile` and `person(address)` for host ops."""
    profile = device_profile(root, extension_dir)
    profile.install_host()
    context = playwright.chromium.launch_persistent_context(**launch_options(profile, extra_args))
    context.autosmime_profile = profile
    try:
        yield context
    finally:
        context.close()


# ---- what a message is encrypted to ---------------------------------------------------------


def envelope_recipients(raw: bytes) -> tuple[RecipientId, ...]:
    """The recipient identifiers of an application/pkcs7-mime (enveloped) message."""
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert message.get_content_type() in ("application/pkcs7-mime", "application/x-pkcs7-mime")
    der = message.get_payload(decode=True)
    return tuple(r.rid for r in inspect(der).recipients if r.rid is not None)


def names_certificate(rid: RecipientId, certificate: dict[str, Any]) -> bool:
    """rid names the certificate as certs.list describes it (serial in hex, issuer, SKI)."""
    if rid.serial is not None:
        return format(rid.serial, "x") == certificate["serial"] and (
            rid.issuer == certificate["issuer"]
        )
    return False


# ---- private keys on disk -------------------------------------------------------------------


def secret_forms(key: Any) -> dict[str, bytes]:
    """Byte strings that would betray key in a file: its PKCS#8 DER, the start of that in
    base64 (a PEM's first line, a JSON string), and the private scalar raw and in hex."""
    from cryptography.hazmat.primitives import serialization

    from shared_pki import sm2

    if isinstance(key, sm2.SM2PrivateKey):
        der, scalar = key.to_der(), key.d
    else:
        der = key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        numbers = key.private_numbers()
        scalar = getattr(numbers, "private_value", None) or numbers.d
    raw = scalar.to_bytes((scalar.bit_length() + 7) // 8, "big")
    return {
        "pkcs8": der,
        "pkcs8-base64": base64.b64encode(der)[:64],
        "scalar": raw,
        "scalar-hex": raw.hex().encode(),
        "scalar-HEX": raw.hex().upper().encode(),
    }


def regular_files(root: Path) -> Iterator[Path]:
    """Every regular file below root (symbolic links and sockets left out)."""
    for folder, _dirs, files in os.walk(root, followlinks=False):
        for name in files:
            path = Path(folder, name)
            if path.is_file() and not path.is_symlink():
                yield path


def files_holding(root: Path, needles: dict[str, bytes]) -> list[tuple[Path, str]]:
    """(file, needle name) for every needle found in a file below root."""
    found = []
    for path in regular_files(root):
        try:
            data = path.read_bytes()
        except OSError:  # a file Chromium removed meanwhile
            continue
        found.extend((path, name) for name, needle in needles.items() if needle in data)
    return found
