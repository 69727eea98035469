"""SM2 test PKIs made on the fly with shared_pki.x509.sm2_certs: a root, an optional
intermediate, and S/MIME end entities, with PEM files for OpenSSL when a test needs a peer.

`intermediate_id` is the SM2 ID the root signs the intermediate with: OpenSSL 3.0 checks
intermediate certificates with the empty ID whatever `-vfyopt distid:` says, so a chain OpenSSL
must accept needs b"" there.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from pathlib import Path

from asn1crypto import pem
from asn1crypto import x509 as asn1_x509

from shared_pki import sm2
from shared_pki.keys import Credential
from shared_pki.x509 import sm2_certs


@dataclass
class SmParty:
    """An SM2 key, its certificate and the certificates between it and the root."""

    key: sm2.SM2PrivateKey
    cert: asn1_x509.Certificate
    chain: list[asn1_x509.Certificate] = field(default_factory=list)

    @property
    def credential(self) -> Credential:
        return Credential(self.key, self.cert, tuple(self.chain))

    def key_pem(self) -> bytes:
        return self.key.to_pem()

    def cert_pem(self) -> bytes:
        return pem.armor("CERTIFICATE", self.cert.dump())

    def chain_pem(self) -> bytes:
        return b"".join(pem.armor("CERTIFICATE", c.dump()) for c in self.chain)

    def write(self, folder: Path, name: str) -> tuple[Path, Path]:
        """key and certificate (followed by its chain) as PEM files; returns their paths."""
        key_path, cert_path = folder / f"{name}.key", folder / f"{name}.pem"
        key_path.write_bytes(self.key_pem())
        cert_path.write_bytes(self.cert_pem() + self.chain_pem())
        return key_path, cert_path


class SmPki:
    """Root (and intermediate if asked) signing end entities, all SM2-with-SM3."""

    def __init__(
        self,
        *,
        intermediate: bool = False,
        cert_id: bytes = sm2.DEFAULT_ID,
        intermediate_id: bytes = sm2.DEFAULT_ID,
    ) -> None:
        self.cert_id = cert_id
        root_key = sm2.generate_private_key()
        root_der = sm2_certs.issue_certificate(
            root_key.public_key,
            {"common_name": "SM2 test root", "organization_name": "autosmime tests"},
            root_key,
            is_ca=True,
            signer_id=cert_id,
        )
        self.root = SmParty(root_key, sm2_certs.load_certificate(root_der))
        self.issuer = self.root
        if intermediate:
            key = sm2.generate_private_key()
            der = sm2_certs.issue_certificate(
                key.public_key,
                {"common_name": "SM2 test intermediate", "organization_name": "autosmime tests"},
                root_key,
                root_der,
                is_ca=True,
                path_length=0,
                signer_id=intermediate_id,
            )
            self.issuer = SmParty(key, sm2_certs.load_certificate(der), [])

    def person(
        self,
        email: str,
        *,
        key_usage: tuple[str, ...] | None = None,
        not_after: datetime.datetime | None = None,
        not_before: datetime.datetime | None = None,
    ) -> SmParty:
        key = sm2.generate_private_key()
        der = sm2_certs.issue_certificate(
            key.public_key,
            {"common_name": email, "organization_name": "autosmime tests"},
            self.issuer.key,
            self.issuer.cert,
            emails=[email],
            key_usage=key_usage,
            not_before=not_before,
            not_after=not_after,
            signer_id=self.cert_id,
        )
        chain = [] if self.issuer is self.root else [self.issuer.cert]
        return SmParty(key, sm2_certs.load_certificate(der), chain)

    def write_root(self, folder: Path) -> Path:
        path = folder / "sm2-root.pem"
        path.write_bytes(self.root.cert_pem())
        return path
