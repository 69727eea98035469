"""SignedData interoperability, both directions, with the real OpenSSL 3.0 CLI and gpgsm 2.2.

Ours -> theirs: `openssl cms -verify` / `gpgsm --verify` must accept our DER (and fail on a
tampered copy, so the check can fail). Theirs -> ours: what `openssl cms -sign` and
`gpgsm --sign` write must verify with shared_pki.cms.verify. The MIME forms are the MIME
layer's tests.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest
from asn1crypto import cms, pem
from cryptography.hazmat.primitives import hashes
from harness import pki
from harness.peers import require

from shared_pki.cms import signed
from shared_pki.cms.verify import verify
from shared_pki.keys import Credential

CONTENT = b"Content-Type: text/plain; charset=utf-8\r\n\r\nInterop \xc3\xa9t\xc3\xa9.\r\n"
ADDRESS = "alice@example.org"
OPENSSL = require("openssl")
GPGSM = require("gpgsm")


@cache
def root() -> pki.Authority:
    return pki.root("interop root", "p256")


@cache
def ica() -> pki.Authority:
    return root().intermediate("interop ica", "rsa2048")


@cache
def party(key_type: str) -> pki.Party:
    return ica().smime(ADDRESS, key_type)


def credential(p: pki.Party) -> Credential:
    return Credential(p.key, p.asn1, tuple(p.chain_asn1))


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("signed_interop")
    (folder / "root.pem").write_bytes(root().cert_pem())
    (folder / "content.bin").write_bytes(CONTENT)
    for key_type in ("rsa2048", "p256", "p384"):
        party(key_type).write(folder, key_type)
    return folder


def openssl(*args: str | Path) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([OPENSSL, *map(str, args)], capture_output=True, timeout=60)


def openssl_verify(folder: Path, der: bytes, detached: bool, name: str = "ours.der"):
    (folder / name).write_bytes(der)
    out = folder / f"{name}.out"
    args = ["cms", "-verify", "-inform", "DER", "-binary", "-in", folder / name]
    args += ["-CAfile", folder / "root.pem", "-purpose", "smimesign", "-out", out]
    if detached:
        args += ["-content", folder / "content.bin"]
    result = openssl(*args)
    return result, out.read_bytes() if out.exists() else b""


MATRIX = [
    ("rsa2048", False, "sha256"),
    ("rsa2048", False, "sha384"),
    ("rsa2048", False, "sha512"),
    ("rsa2048", True, "sha256"),
    ("rsa2048", True, "sha384"),
    ("rsa2048", True, "sha512"),
    ("p256", False, "sha256"),
    ("p256", False, "sha384"),
    ("p256", False, "sha512"),
    ("p384", False, "sha256"),
    ("p384", False, "sha384"),
    ("p384", False, "sha512"),
]


# ---- ours -> OpenSSL ---------------------------------------------------------------------------


@pytest.mark.parametrize("detached", [True, False], ids=["detached", "attached"])
@pytest.mark.parametrize(("key_type", "pss", "digest"), MATRIX)
def test_openssl_verifies_our_signature(files, key_type, pss, digest, detached):
    der = signed.sign(
        CONTENT, credential(party(key_type)), digest=digest, pss=pss, detached=detached
    )
    result, output = openssl_verify(files, der, detached)
    assert result.returncode == 0, result.stderr.decode()
    assert b"Verification successful" in result.stderr
    assert output == CONTENT


@pytest.mark.parametrize("key_type", ["rsa2048", "p256"])
def test_openssl_verifies_ski_signers_several_signers_and_pem(files, key_type):
    der = signed.sign(
        CONTENT, [credential(party(key_type)), credential(party("p384"))], use_ski=True
    )
    result, _ = openssl_verify(files, der, detached=True)
    assert result.returncode == 0, result.stderr.decode()
    (files / "ours.pem").write_bytes(pem.armor("CMS", der))
    result = openssl(
        "cms", "-verify", "-inform", "PEM", "-binary", "-in", files / "ours.pem",
        "-CAfile", files / "root.pem", "-content", files / "content.bin", "-out", os.devnull,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr.decode()


def test_openssl_verifies_our_signature_with_a_timestamp_attribute_added(files):
    der = signed.sign(CONTENT, credential(party("p256")))
    token = signed.sign(
        signed.signature_value(der, 0), credential(party("rsa2048")), detached=False
    )
    stamped = signed.add_unsigned_attribute(der, 0, "signature_time_stamp_token", token)
    result, _ = openssl_verify(files, stamped, detached=True)
    assert result.returncode == 0, result.stderr.decode()


def test_openssl_rejects_tampered_content_and_untrusted_root(files):
    """The negative controls: the checks above would catch a broken signature."""
    der = signed.sign(CONTENT, credential(party("p256")))
    (files / "other.bin").write_bytes(CONTENT + b"x")
    (files / "ours.der").write_bytes(der)
    tampered = openssl(
        "cms", "-verify", "-inform", "DER", "-binary", "-in", files / "ours.der",
        "-CAfile", files / "root.pem", "-content", files / "other.bin", "-out", os.devnull,
    )  # fmt: skip
    assert tampered.returncode != 0
    (files / "stranger.pem").write_bytes(pki.root("stranger").cert_pem())
    untrusted = openssl(
        "cms", "-verify", "-inform", "DER", "-binary", "-in", files / "ours.der",
        "-CAfile", files / "stranger.pem", "-content", files / "content.bin", "-out", os.devnull,
    )  # fmt: skip
    assert untrusted.returncode != 0


# ---- OpenSSL -> ours ---------------------------------------------------------------------------


def openssl_sign(folder: Path, key_type: str, digest: str, *extra: str) -> bytes:
    out = folder / f"theirs-{key_type}-{digest}.der"
    result = openssl(
        "cms", "-sign", "-binary", "-outform", "DER", "-md", digest,
        "-in", folder / "content.bin", "-signer", folder / f"{key_type}.cert.pem",
        "-inkey", folder / f"{key_type}.key.pem", "-certfile", folder / f"{key_type}.chain.pem",
        "-out", out, *extra,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr.decode()
    return out.read_bytes()


@pytest.mark.parametrize("detached", [True, False], ids=["detached", "nodetach"])
@pytest.mark.parametrize(("key_type", "pss", "digest"), MATRIX)
def test_we_verify_openssl_signature(files, key_type, pss, digest, detached):
    extra = (["-keyopt", "rsa_padding_mode:pss"] if pss else []) + (
        [] if detached else ["-nodetach"]
    )
    der = openssl_sign(files, key_type, digest, *extra)
    result = verify(
        der,
        content=CONTENT if detached else None,
        trust_anchors=[root().asn1],
        from_address=ADDRESS,
    )
    assert result.valid, result.summary
    [one] = result.signers
    assert one.digest_algorithm == digest
    assert result.detached is detached and result.content == CONTENT
    assert one.signing_time is not None and one.capabilities
    assert one.signing_certificate_ok is None  # OpenSSL adds no ESS attribute by default
    if pss:
        assert one.signature_algorithm == "1.2.840.113549.1.1.10"
    # And we notice a change, so this test can fail.
    if detached:
        bad = verify(der, content=CONTENT[:-1], trust_anchors=[root().asn1])
        assert bad.signers[0].codes == ("message_digest_mismatch",)


@pytest.mark.parametrize("key_type", ["rsa2048", "p384"])
def test_we_verify_openssl_signature_without_signed_attributes(files, key_type):
    der = openssl_sign(files, key_type, "sha256", "-noattr")
    info = cms.ContentInfo.load(der)["content"]["signer_infos"][0]
    assert info["signed_attrs"].native is None
    result = verify(der, content=CONTENT, trust_anchors=[root().asn1])
    assert result.valid, result.summary
    assert result.signers[0].message_digest_ok is None
    bad = verify(der, content=CONTENT + b"!", trust_anchors=[root().asn1])
    assert bad.signers[0].codes == ("bad_signature",)


@pytest.mark.parametrize("detached", [True, False], ids=["detached", "nodetach"])
def test_we_verify_openssl_streamed_ber_signature(files, detached):
    """-stream writes indefinite-length BER, as streaming mail clients do."""
    der = openssl_sign(files, "p256", "sha256", "-stream", *([] if detached else ["-nodetach"]))
    assert der[1] == 0x80  # indefinite length
    result = verify(der, content=CONTENT if detached else None, trust_anchors=[root().asn1])
    assert result.valid, result.summary
    assert result.content == CONTENT


def test_we_verify_openssl_rsa_signature_with_bare_rsa_encryption_oid(files):
    der = openssl_sign(files, "rsa2048", "sha256")
    info = cms.ContentInfo.load(der)["content"]["signer_infos"][0]
    assert info["signature_algorithm"]["algorithm"].dotted == "1.2.840.113549.1.1.1"
    assert verify(der, content=CONTENT, trust_anchors=[root().asn1]).valid


def test_we_verify_openssl_signature_with_chain_given_separately(files):
    der = openssl_sign(files, "p256", "sha256", "-nocerts")
    result = verify(der, content=CONTENT, trust_anchors=[root().asn1])
    assert result.signers[0].codes == ("signer_certificate_missing",)
    p = party("p256")
    result = verify(
        der, content=CONTENT, trust_anchors=[root().asn1], intermediates=[p.asn1, *p.chain_asn1]
    )
    assert result.valid, result.summary


# ---- gpgsm, both directions (RSA PKCS#1 v1.5, the one it reads) --------------------------------


@pytest.fixture(scope="module")
def gpgsm_home(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Path, pki.Party, pki.Authority, dict]]:
    """A throw-away GNUPGHOME that trusts an RSA root and holds the signer's legacy PKCS#12."""
    folder = tmp_path_factory.mktemp("gpgsm")
    home = folder / "home"
    home.mkdir(mode=0o700)
    gpg_root = pki.root("gpgsm interop root", "rsa2048")
    signer = gpg_root.smime(ADDRESS, "rsa2048")
    fingerprint = gpg_root.cert.fingerprint(hashes.SHA1()).hex(":").upper()
    (home / "trustlist.txt").write_text(f"{fingerprint} S relax\n")
    (home / "gpgsm.conf").write_text("disable-crl-checks\n")
    (folder / "root.pem").write_bytes(gpg_root.cert_pem())
    (folder / "signer.p12").write_bytes(signer.pkcs12(b"interop", legacy=True))
    (folder / "content.bin").write_bytes(CONTENT)
    env = {**os.environ, "GNUPGHOME": str(home)}
    try:
        gpgsm(env, "--import", folder / "root.pem")
        gpgsm(env, "--import", folder / "signer.p12")
        yield folder, signer, gpg_root, env
    finally:
        subprocess.run(["gpgconf", "--kill", "gpg-agent"], env=env, capture_output=True)


def gpgsm(env: dict, *args: str | Path, check: bool = True) -> subprocess.CompletedProcess[bytes]:
    command = [GPGSM, "--batch", "--status-fd", "1", "--pinentry-mode", "loopback"]
    command += ["--passphrase-fd", "0", *map(str, args)]
    result = subprocess.run(command, input=b"interop\n", env=env, capture_output=True, timeout=60)
    if check:
        assert result.returncode == 0, result.stderr.decode()
    return result


@pytest.mark.parametrize("detached", [True, False], ids=["detached", "attached"])
def test_gpgsm_verifies_our_rsa_signature(gpgsm_home, detached):
    folder, signer, _root, env = gpgsm_home
    der = signed.sign(CONTENT, credential(signer), detached=detached)
    (folder / "ours.der").write_bytes(der)
    args = [folder / "ours.der"] + ([folder / "content.bin"] if detached else [])
    result = gpgsm(env, "--verify", *args)
    assert b"[GNUPG:] GOODSIG" in result.stdout and b"[GNUPG:] VALIDSIG" in result.stdout
    assert b"TRUST_FULLY" in result.stdout
    if detached:
        (folder / "other.bin").write_bytes(CONTENT + b"x")
        bad = gpgsm(env, "--verify", folder / "ours.der", folder / "other.bin", check=False)
        assert bad.returncode != 0 and b"[GNUPG:] BADSIG" in bad.stdout


@pytest.mark.parametrize("detached", [True, False], ids=["detached", "attached"])
def test_we_verify_gpgsm_signature(gpgsm_home, detached):
    folder, _signer, gpg_root, env = gpgsm_home
    out = folder / f"theirs-{detached}.der"
    mode = "--detach-sign" if detached else "--sign"
    gpgsm(env, "-u", ADDRESS, mode, "--output", out, folder / "content.bin")
    der = out.read_bytes()
    result = verify(
        der,
        content=CONTENT if detached else None,
        trust_anchors=[gpg_root.asn1],
        from_address=ADDRESS,
    )
    assert result.valid, result.summary
    assert result.content == CONTENT
    if detached:
        bad = verify(der, content=CONTENT + b"x", trust_anchors=[gpg_root.asn1])
        assert bad.signers[0].codes == ("message_digest_mismatch",)
