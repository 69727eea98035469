"""The CA's own material on disk: created on first start, sealed under a passphrase, loaded by
every server process.

The passphrase comes from AUTOSMIME_PKI_PASSPHRASE when set (what a deployment should do: a
secret manager or the service unit provides it); otherwise first start generates one into
DATA/secret/passphrase (mode 0600) so that the embedded default runs with no setup. Keys are
never written unsealed."""

from __future__ import annotations

import base64
import os
import secrets
from pathlib import Path

from shared_pki.ca import keystore
from shared_pki.ca.hierarchy import Hierarchy, create_hierarchy
from shared_pki.service.config import ServiceConfig

PASSPHRASE_ENV = "AUTOSMIME_PKI_PASSPHRASE"
CA_FOLDER = "ca"


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)
    temporary.replace(path)


def passphrase(data_dir: Path) -> bytes:
    """The passphrase that seals the CA keys (see the module docstring)."""
    from_env = os.environ.get(PASSPHRASE_ENV)
    if from_env:
        return from_env.encode("utf-8")
    path = data_dir / "secret" / "passphrase"
    if not path.exists():
        _write_private(path, base64.urlsafe_b64encode(secrets.token_bytes(32)) + b"\n")
    return path.read_bytes().strip()


def load_or_create(config: ServiceConfig) -> tuple[Hierarchy, bool]:
    """The hierarchy of config.data_dir, creating it on first start; (hierarchy, created)."""
    folder = config.data_dir / CA_FOLDER
    secret = passphrase(config.data_dir)
    if (folder / "hierarchy.json").exists():
        files = {path.name: path.read_bytes() for path in folder.iterdir() if path.is_file()}
        return keystore.deserialize_hierarchy(files, secret), False
    hierarchy = create_hierarchy(
        config.ca_name,
        intl_key_type=config.intl_key_type,
        crl_base_url=f"{config.public_url}/crl",
        aia_base_url=f"{config.public_url}/ca",
        mail_address=config.mail_from or f"ca@{_host(config.public_url)}",
    )
    for name, data in keystore.serialize_hierarchy(hierarchy, secret).items():
        _write_private(folder / name, data)
    return hierarchy, True


def _host(url: str) -> str:
    host = url.split("://", 1)[-1].split("/", 1)[0].rsplit(":", 1)[0]
    return host if "." in host else f"{host}.invalid"
