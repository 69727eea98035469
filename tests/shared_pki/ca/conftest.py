"""Fixtures for the CA tests: hierarchies made once per session, CSR makers, and OpenSSL.

(Fixtures rather than an importable helper module: with --import-mode=importlib and
pythonpath=tests, a helper here would have to be named shared_pki.ca.*, which is the product.)
"""

from __future__ import annotations

import datetime
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from asn1crypto import pem
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from harness.peers import require

from shared_pki.ca import hierarchy as ca_hierarchy
from shared_pki.ca import profile

OPENSSL = require("openssl")
ADDRESS = "alice@example.org"
CRL_BASE = "http://pki.example.test/crl"
AIA_BASE = "http://pki.example.test/ca"
# Yesterday, whole seconds: certificates made at NOW are valid now for openssl verify.
NOW = (datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=1)).replace(microsecond=0)


def _make(intl_key_type: str) -> ca_hierarchy.Hierarchy:
    return ca_hierarchy.create_hierarchy(
        "Autosmime Test",
        intl_key_type=intl_key_type,
        crl_base_url=CRL_BASE,
        aia_base_url=AIA_BASE,
        mail_address="acme@pki.example.test",
        now=NOW,
    )


@pytest.fixture(scope="session")
def ec_hierarchy() -> ca_hierarchy.Hierarchy:
    return _make("ecdsa-p256")


@pytest.fixture(scope="session")
def rsa_hierarchy() -> ca_hierarchy.Hierarchy:
    return _make("rsa-3072")


@pytest.fixture(scope="session", params=["ecdsa-p256", "rsa-3072"])
def any_hierarchy(
    request: pytest.FixtureRequest,
    ec_hierarchy: ca_hierarchy.Hierarchy,
    rsa_hierarchy: ca_hierarchy.Hierarchy,
) -> ca_hierarchy.Hierarchy:
    return ec_hierarchy if request.param == "ecdsa-p256" else rsa_hierarchy


@pytest.fixture
def openssl() -> Callable[..., subprocess.CompletedProcess[str]]:
    def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
        assert OPENSSL is not None
        return subprocess.run(
            [OPENSSL, *map(str, args)], capture_output=True, text=True, timeout=60, check=False
        )

    return run


@pytest.fixture
def write_pem(tmp_path: Path) -> Callable[..., Path]:
    """write_pem(name, der or [der...], label="CERTIFICATE") -> path of a PEM file."""

    def write(name: str, ders: bytes | list[bytes], label: str = "CERTIFICATE") -> Path:
        path = tmp_path / name
        items = [ders] if isinstance(ders, bytes) else ders
        path.write_bytes(b"".join(pem.armor(label, der) for der in items))
        return path

    return write


def _key_usage(bits: set[str]) -> x509.KeyUsage:
    names = (
        "digital_signature",
        "content_commitment",
        "key_encipherment",
        "data_encipherment",
        "key_agreement",
        "key_cert_sign",
        "crl_sign",
    )
    return x509.KeyUsage(**{n: n in bits for n in names}, encipher_only=False, decipher_only=False)


@pytest.fixture
def make_csr() -> Callable[..., bytes]:
    """make_csr(key=None, *, subject=[(oid, value)], san=[GeneralName], key_usage={...},
    extensions=[(ext, critical)], hash=SHA256) -> DER, built with cryptography."""

    def build(
        key: Any = None,
        *,
        subject: list[tuple[Any, str]] | None = None,
        san: list[x509.GeneralName] | None = None,
        key_usage: set[str] | None = None,
        extensions: list[tuple[x509.ExtensionType, bool]] = (),  # type: ignore[assignment]
        hash_algorithm: hashes.HashAlgorithm | None = None,
    ) -> bytes:
        key = key or ec.generate_private_key(ec.SECP256R1())
        if subject is None:
            subject = [(NameOID.EMAIL_ADDRESS, ADDRESS)]
        if san is None:
            san = [x509.RFC822Name(ADDRESS)]
        builder = x509.CertificateSigningRequestBuilder().subject_name(
            x509.Name([x509.NameAttribute(oid, value) for oid, value in subject])
        )
        if san:
            builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
        if key_usage is not None:
            builder = builder.add_extension(_key_usage(key_usage), critical=True)
        for extension, critical in extensions:
            builder = builder.add_extension(extension, critical=critical)
        csr = builder.sign(key, hash_algorithm or hashes.SHA256())
        return csr.public_bytes(serialization.Encoding.DER)

    return build


@pytest.fixture
def issue_leaf() -> Callable[..., bytes]:
    """issue_leaf(hierarchy, csr_der, address=ADDRESS, **issue kwargs) -> DER certificate."""

    def issue(
        h: ca_hierarchy.Hierarchy, csr_der: bytes, address: str = ADDRESS, **kw: Any
    ) -> bytes:
        info = profile.check_csr(csr_der, address)
        issuing = h.issuing(info.family)
        label = f"{info.family}-issuing"
        kw.setdefault("serial", profile.random_serial())
        kw.setdefault("not_before", NOW)
        kw.setdefault("crl_url", h.crl_url(label))
        kw.setdefault("aia_url", h.aia_url(label))
        return profile.issue(info, issuing, **kw)

    return issue
