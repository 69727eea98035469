"""SM2-with-SM3 certificates and PKCS#10 requests (shared_pki.x509.sm2_certs): ours verify
here and in OpenSSL 3 (`openssl verify` / `openssl req -verify` with -vfyopt distid), OpenSSL's
verify here with the ID they were made with (the standard one, or its empty default), and every
check can fail: tampered bytes, wrong issuer, wrong ID.
"""

from __future__ import annotations

import datetime
import subprocess
from pathlib import Path

import pytest
from asn1crypto import pem
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from harness.peers import require

from shared_pki import sm2
from shared_pki.errors import MalformedInput, SigningError, UnsupportedAlgorithm
from shared_pki.x509 import sm2_certs

OPENSSL = require("openssl")
DISTID = "distid:1234567812345678"


def openssl(*args: str | Path) -> subprocess.CompletedProcess[bytes]:
    assert OPENSSL is not None
    return subprocess.run([OPENSSL, *map(str, args)], capture_output=True, timeout=60, check=False)


class Chain:
    """Root -> leaf and root -> intermediate -> leaf, every key SM2."""

    def __init__(self, intermediate_id: bytes = sm2.DEFAULT_ID) -> None:
        self.root_key, self.inter_key, self.leaf_key = (sm2.generate_private_key() for _ in "123")
        self.root = sm2_certs.issue_certificate(
            self.root_key.public_key, {"common_name": "SM2 test root"}, self.root_key, is_ca=True
        )
        self.inter = sm2_certs.issue_certificate(
            self.inter_key.public_key,
            {"common_name": "SM2 test intermediate"},
            self.root_key,
            self.root,
            is_ca=True,
            path_length=0,
            signer_id=intermediate_id,
        )
        self.leaf = sm2_certs.issue_certificate(
            self.leaf_key.public_key,
            {"common_name": "Alice", "email_address": "alice@example.org"},
            self.inter_key,
            self.inter,
            emails=["alice@example.org"],
        )
        self.direct_leaf = sm2_certs.issue_certificate(
            self.leaf_key.public_key,
            {"common_name": "Alice"},
            self.root_key,
            self.root,
            emails=["alice@example.org"],
        )


@pytest.fixture(scope="module")
def chain() -> Chain:
    return Chain()


def _tamper_signature(der: bytes) -> bytes:
    cert = asn1_x509.Certificate.load(der)
    signature = bytearray(cert["signature_value"].native)
    signature[-1] ^= 0x01
    return asn1_x509.Certificate(
        {
            "tbs_certificate": cert["tbs_certificate"],
            "signature_algorithm": cert["signature_algorithm"],
            "signature_value": bytes(signature),
        }
    ).dump()


def _tamper_tbs(der: bytes) -> bytes:
    """Change one byte of the subject public key, keeping the structure valid."""
    index = der.index(asn1_x509.Certificate.load(der).public_key["public_key"].contents[-8:])
    return der[:index] + bytes([der[index] ^ 0x01]) + der[index + 1 :]


def test_certificates_verify_with_their_issuer_and_id_only(chain: Chain) -> None:
    verify = sm2_certs.verify_certificate_signature
    assert verify(chain.root, chain.root)
    assert verify(chain.inter, chain.root)
    assert verify(chain.leaf, chain.inter)
    assert verify(chain.direct_leaf, chain.root)
    assert not verify(chain.leaf, chain.root)  # wrong issuer
    assert not verify(chain.leaf, chain.inter, signer_id=b"")  # wrong ID
    assert not verify(_tamper_signature(chain.leaf), chain.inter)
    assert not verify(_tamper_tbs(chain.leaf), chain.inter)
    assert verify(pem.armor("CERTIFICATE", chain.leaf), pem.armor("CERTIFICATE", chain.inter))


def test_certificate_contents(chain: Chain) -> None:
    leaf = asn1_x509.Certificate.load(chain.leaf)
    inter = asn1_x509.Certificate.load(chain.inter)
    assert leaf["signature_algorithm"]["algorithm"].dotted == "1.2.156.10197.1.501"
    assert leaf["signature_algorithm"]["parameters"].native is None
    assert leaf.issuer == inter.subject
    assert leaf.authority_key_identifier == inter.key_identifier
    assert leaf.subject_alt_name_value.native == ["alice@example.org"]
    assert leaf.key_usage_value.native == {"digital_signature", "key_encipherment"}
    assert leaf.extended_key_usage_value.native == ["email_protection"]
    assert not leaf.ca and inter.ca and inter.max_path_length == 0
    assert 0 < leaf.serial_number < 2**159
    assert sm2_certs.certificate_public_key(chain.leaf) == chain.leaf_key.public_key
    assert sm2_certs.is_sm2_certificate(chain.leaf)


def test_validity_beyond_2049_uses_generalized_time() -> None:
    key = sm2.generate_private_key()
    start = datetime.datetime(2049, 6, 1, tzinfo=datetime.UTC)
    der = sm2_certs.issue_certificate(
        key.public_key,
        {"common_name": "long"},
        key,
        is_ca=True,
        not_before=start,
        not_after=start + datetime.timedelta(days=400),
    )
    validity = asn1_x509.Certificate.load(der)["tbs_certificate"]["validity"]
    assert validity["not_before"].name == "utc_time"
    assert validity["not_after"].name == "general_time"
    assert validity["not_after"].native.year == 2050


def test_issuing_refuses_mismatched_keys(chain: Chain) -> None:
    other = sm2.generate_private_key()
    with pytest.raises(SigningError):
        sm2_certs.issue_certificate(other.public_key, {"common_name": "x"}, chain.root_key)
    with pytest.raises(SigningError):
        sm2_certs.issue_certificate(
            other.public_key, {"common_name": "x"}, chain.inter_key, chain.root
        )


def test_non_sm2_and_malformed_inputs(chain: Chain, tmp_path: Path) -> None:
    p256 = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "p256")])
    now = datetime.datetime.now(datetime.UTC)
    p256_cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(p256.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(p256, hashes.SHA256())
    )
    from cryptography.hazmat.primitives.serialization import Encoding

    p256_der = p256_cert.public_bytes(Encoding.DER)
    assert not sm2_certs.is_sm2_certificate(p256_der)
    with pytest.raises(UnsupportedAlgorithm):
        sm2_certs.verify_certificate_signature(chain.leaf, p256_der)
    with pytest.raises(UnsupportedAlgorithm):
        sm2_certs.verify_certificate_signature(p256_der, p256_der)
    for garbage in (b"", b"\x30\x00", chain.leaf[:-3], b"-----BEGIN CERTIFICATE-----\nAA\n"):
        with pytest.raises(MalformedInput):
            sm2_certs.verify_certificate_signature(garbage, chain.root)
        with pytest.raises(MalformedInput):
            sm2_certs.verify_csr(garbage)


def test_csr_build_and_verify() -> None:
    key = sm2.generate_private_key()
    der = sm2_certs.build_csr(key, emails=["bob@example.org"], key_usage={"digital_signature"})
    assert sm2_certs.verify_csr(der)
    assert sm2_certs.verify_csr(pem.armor("CERTIFICATE REQUEST", der))
    assert not sm2_certs.verify_csr(der, signer_id=b"")
    assert sm2_certs.csr_public_key(der) == key.public_key
    request = x509.load_der_x509_csr(der)  # cryptography parses it (it cannot check SM2)
    assert request.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == (
        "bob@example.org"
    )
    san = request.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.RFC822Name) == ["bob@example.org"]
    assert request.extensions.get_extension_for_class(x509.KeyUsage).value.digital_signature
    index = der.index(b"bob@example.org")
    tampered = der[:index] + b"c" + der[index + 1 :]
    assert not sm2_certs.verify_csr(tampered)
    empty_id = sm2_certs.build_csr(key, {"common_name": "x"}, signer_id=b"")
    assert sm2_certs.verify_csr(empty_id, signer_id=b"")
    assert not sm2_certs.verify_csr(empty_id)


# --- OpenSSL 3 as a peer -----------------------------------------------------------------------


def _write(folder: Path, **certs: bytes) -> None:
    for name, der in certs.items():
        (folder / f"{name}.pem").write_bytes(pem.armor("CERTIFICATE", der))


def test_openssl_verifies_our_root_to_leaf_chain(chain: Chain, tmp_path: Path) -> None:
    _write(tmp_path, root=chain.root, leaf=chain.direct_leaf, bad=_tamper_signature(chain.leaf))
    args = ["verify", "-vfyopt", DISTID, "-CAfile", tmp_path / "root.pem"]
    result = openssl(*args, tmp_path / "leaf.pem")
    assert result.returncode == 0, result.stderr
    assert b"leaf.pem: OK" in result.stdout
    # The ID is really used: without it (OpenSSL's empty default) the same chain fails.
    no_id = openssl("verify", "-CAfile", tmp_path / "root.pem", tmp_path / "leaf.pem")
    assert no_id.returncode != 0
    _write(tmp_path, bad=_tamper_signature(chain.direct_leaf))
    assert openssl(*args, tmp_path / "bad.pem").returncode != 0


def test_openssl_verifies_our_chain_with_intermediate(tmp_path: Path) -> None:
    """OpenSSL 3.0 applies -vfyopt distid to the leaf only and checks intermediates with the
    empty ID, so a chain it accepts has its intermediate signed with signer_id=b""."""
    chain = Chain(intermediate_id=b"")
    assert sm2_certs.verify_certificate_signature(chain.inter, chain.root, signer_id=b"")
    _write(tmp_path, root=chain.root, inter=chain.inter, leaf=chain.leaf)
    result = openssl(
        "verify",
        "-vfyopt",
        DISTID,
        "-CAfile",
        tmp_path / "root.pem",
        "-untrusted",
        tmp_path / "inter.pem",
        tmp_path / "leaf.pem",
    )
    assert result.returncode == 0, result.stderr
    _write(tmp_path, bad=_tamper_signature(chain.leaf))
    result = openssl(
        "verify",
        "-vfyopt",
        DISTID,
        "-CAfile",
        tmp_path / "root.pem",
        "-untrusted",
        tmp_path / "inter.pem",
        tmp_path / "bad.pem",
    )
    assert result.returncode != 0


def test_openssl_verifies_our_csr(tmp_path: Path) -> None:
    key = sm2.generate_private_key()
    der = sm2_certs.build_csr(key, {"common_name": "carol"}, emails=["carol@example.org"])
    (tmp_path / "csr.pem").write_bytes(pem.armor("CERTIFICATE REQUEST", der))
    result = openssl("req", "-verify", "-noout", "-vfyopt", DISTID, "-in", tmp_path / "csr.pem")
    assert result.returncode == 0, result.stderr
    assert b"verify OK" in result.stdout + result.stderr
    # OpenSSL 3.0 exits 0 after "verify failure": read the words, not the exit code.
    no_id = openssl("req", "-verify", "-noout", "-in", tmp_path / "csr.pem")
    assert b"verify failure" in no_id.stdout + no_id.stderr
    text = openssl("req", "-in", tmp_path / "csr.pem", "-noout", "-text").stdout
    assert b"email:carol@example.org" in text and b"SM2-with-SM3" in text


@pytest.mark.parametrize("distid", [True, False])
def test_we_verify_openssl_certificates_and_csrs(tmp_path: Path, distid: bool) -> None:
    key = sm2.generate_private_key()
    (tmp_path / "key.pem").write_bytes(key.to_pem())
    sigopt = ["-sigopt", DISTID] if distid else []
    vfyopt = ["-vfyopt", DISTID] if distid else []  # x509 -req checks the CSR first
    their_id, other_id = (sm2.DEFAULT_ID, b"") if distid else (b"", sm2.DEFAULT_ID)
    base = ["req", "-new", "-key", tmp_path / "key.pem", "-sm3", *sigopt, "-subj", "/CN=theirs"]
    cert = openssl(*base, "-x509", "-days", "2", "-outform", "DER").stdout
    assert cert, "openssl req -x509 failed"
    assert sm2_certs.verify_certificate_signature(cert, cert, signer_id=their_id)
    assert not sm2_certs.verify_certificate_signature(cert, cert, signer_id=other_id)
    csr = openssl(*base, "-outform", "DER").stdout
    assert sm2_certs.verify_csr(csr, signer_id=their_id)
    assert not sm2_certs.verify_csr(csr, signer_id=other_id)
    # And a leaf OpenSSL issues from its CSR with our root key verifies against our root.
    root = sm2_certs.issue_certificate(key.public_key, {"common_name": "root"}, key, is_ca=True)
    (tmp_path / "root.pem").write_bytes(pem.armor("CERTIFICATE", root))
    (tmp_path / "csr.der").write_bytes(csr)
    leaf = openssl(
        "x509", "-req", "-inform", "DER", "-in", tmp_path / "csr.der", "-CA", tmp_path / "root.pem",
        "-CAkey", tmp_path / "key.pem", "-sm3", *sigopt, *vfyopt, "-days", "1", "-outform", "DER",
    ).stdout  # fmt: skip
    assert leaf, "openssl x509 -req failed"
    assert sm2_certs.verify_certificate_signature(leaf, root, signer_id=their_id)
    assert not sm2_certs.verify_certificate_signature(leaf, root, signer_id=other_id)
