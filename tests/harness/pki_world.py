"""The real PKI service in this process, with its CA issuing and publishing certificates as the
ACME finalize step does, and keystores holding them: what the host's certs, sending, reading,
command-line and end-to-end tests share. The `world` fixture (tests/conftest.py) gives one per
test module."""

from __future__ import annotations

import datetime
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import uvicorn
from asn1crypto import pem as asn1_pem
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from sqlalchemy import insert

from native_host.domain.keystore import Keystore
from shared_pki import sm2
from shared_pki.ca import profile
from shared_pki.keys import Certificate, Credential, parse_certificate
from shared_pki.service import config as service_config
from shared_pki.service.app import create_app
from shared_pki.service.storage.store import certificates as certificates_table
from shared_pki.x509 import sm2_certs


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Person:
    address: str
    key: object
    certificate: Certificate
    chain: tuple[Certificate, ...]

    @property
    def credential(self) -> Credential:
        return Credential(self.key, self.certificate, self.chain)

    def write(self, folder: Path) -> tuple[Path, Path]:
        """key.pem and cert.pem for openssl."""
        stem = self.address.split("@")[0]
        key_path, cert_path = folder / f"{stem}-{id(self)}.key", folder / f"{stem}-{id(self)}.pem"
        key_path.write_bytes(
            self.key.private_bytes(  # type: ignore[attr-defined]
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        cert_path.write_bytes(asn1_pem.armor("CERTIFICATE", self.certificate.dump()))
        return key_path, cert_path


class PkiWorld:
    """The real PKI service served by uvicorn in this process, and helpers to issue and publish
    certificates from its CA as the ACME finalize step does."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = service_config.load(
            folder / "pki",
            {
                "db_url": f"sqlite:///{folder / 'pki.sqlite3'}",
                "directory_rate_per_minute": 100000,
                "public_url": self.url,
            },
        )
        self.app = create_app(config)
        self.state = self.app.state.service
        self.hierarchy = self.state.hierarchy
        self.server = uvicorn.Server(uvicorn.Config(self.app, log_level="warning", lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]})
        self.thread.daemon = True
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise AssertionError("the PKI service did not start")
            time.sleep(0.01)  # waiting for start-up, not for an outcome
        self._sock = sock

    def close(self) -> None:
        self.server.should_exit = True
        self.thread.join(20)
        self._sock.close()

    @property
    def tsa_url(self) -> str:
        return f"{self.url}/tsa"

    @property
    def roots(self) -> list[Certificate]:
        return [self.hierarchy.intl_root.certificate, self.hierarchy.sm2_root.certificate]

    def roots_pem(self, folder: Path) -> Path:
        path = folder / "roots.pem"
        path.write_bytes(asn1_pem.armor("CERTIFICATE", self.hierarchy.intl_root.certificate.dump()))
        return path

    def issue(
        self, address: str, key_type: str = "p256", *, publish: bool = True, days: int = 30
    ) -> Person:
        family = "sm2" if key_type == "sm2" else "intl"
        if key_type == "sm2":
            key = sm2.generate_private_key()
            csr = sm2_certs.build_csr(key, emails=(address,))
        else:
            key = (
                rsa.generate_private_key(65537, 2048)
                if key_type == "rsa"
                else ec.generate_private_key(ec.SECP256R1())
            )
            csr = (
                x509.CertificateSigningRequestBuilder()
                .subject_name(x509.Name([]))
                .add_extension(x509.SubjectAlternativeName([x509.RFC822Name(address)]), False)
                .sign(key, hashes.SHA256())
                .public_bytes(serialization.Encoding.DER)
            )
        info = profile.check_csr(csr, address)
        serial = profile.random_serial()
        now = datetime.datetime.now(datetime.UTC)
        issuing = self.hierarchy.issuing(family)
        der = profile.issue(
            info, issuing, serial=serial, not_before=now - datetime.timedelta(minutes=5),
            days=days, crl_url=self.hierarchy.crl_url(f"{family}-issuing"),
            aia_url=self.hierarchy.aia_url(f"{family}-issuing"),
        )  # fmt: skip
        cert = parse_certificate(der)
        if publish:
            with self.state.store.transaction() as db:
                db.execute(
                    insert(certificates_table).values(
                        serial=f"{serial:x}", issuer=family, address=address,
                        algorithm={"rsa": "rsa", "sm2": "sm2"}.get(key_type, "ecdsa"),
                        not_before=cert.not_valid_before.timestamp(),
                        not_after=cert.not_valid_after.timestamp(), der=der, published=True,
                    )
                )  # fmt: skip
        return Person(address, key, cert, (issuing.certificate,))

    def keystore(self, folder: Path, *people: Person, status: str = "current") -> Keystore:
        store = Keystore(folder, b"k" * 32)
        for person in people:
            self.add(store, person, status)
        return store

    @staticmethod
    def add(store: Keystore, person: Person, status: str = "current") -> str:
        suite = "sm" if isinstance(person.key, sm2.SM2PrivateKey) else "intl"
        key_id = store.add_key(person.address, suite, person.key)
        store.attach_certificate(key_id, person.certificate.dump(), person.chain)
        store.mark(key_id, "current")
        if status != "current":
            store.mark(key_id, status)
        return key_id


def run(*args: str | Path, stdin: bytes | None = None) -> bytes:
    done = subprocess.run([str(a) for a in args], input=stdin, capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    return done.stdout
