"""SM S/MIME against the real OpenSSL 3 CLI, both directions.

What OpenSSL 3.0 does (checked with 3.0.19, asserted below so a newer OpenSSL that changes it
shows up): `openssl cms -decrypt` reads our SM2 key transport + SM4-CBC (PKCS#7 content types
only; it refuses the GM/T ones). `openssl cms -encrypt` to an SM2 recipient and
`openssl cms -sign` with an SM2 key both fail with "illegal zero content", so its SM4 messages
go to RSA/EC recipients and there are no OpenSSL SM2 signatures to verify. `openssl cms
-verify` has no distid option: it checks the SM2 SignerInfo AND every certificate of the chain
with the empty ID, so it verifies our signatures made with `sm2_id=b""` when the certificates
were also signed with the empty ID, and only with -noverify (signature without chain) when the
certificates carry the standard ID.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from harness import pki
from harness.peers import require
from harness.sm_pki import SmPki

from shared_pki import mime
from shared_pki.cms import enveloped, signed, verify
from shared_pki.cms.sm import BOTH_IDS, EMPTY_ID
from shared_pki.keys import load_private_key
from shared_pki.smime import encrypt_message, open_message, sign_message
from shared_pki.x509 import sm2_certs

require("openssl")

CONTENT = b"Content-Type: text/plain\r\n\r\nSM interop with OpenSSL.\r\n"
MESSAGE = (
    b"From: alice@example.org\r\nTo: bob@example.org\r\nSubject: interop\r\n"
    b"Content-Type: text/plain\r\n\r\nSM interop with OpenSSL.\r\n"
)


def openssl(*args: str | Path, data: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        ["openssl", *map(str, args)], input=data, capture_output=True, check=False
    )


@pytest.fixture(scope="module")
def standard() -> SmPki:
    """Certificates signed with the standard ID (our default)."""
    return SmPki()


@pytest.fixture(scope="module")
def openssl_style() -> SmPki:
    """Root -> intermediate -> leaf, every certificate signed with the empty ID, as OpenSSL
    signs them by default and as `openssl cms -verify` checks them."""
    return SmPki(intermediate=True, cert_id=EMPTY_ID, intermediate_id=EMPTY_ID)


# ---- OpenSSL reads ours ---------------------------------------------------------------------


@pytest.mark.parametrize("form", ["DER", "SMIME"])
def test_openssl_decrypts_our_sm2_sm4_messages(standard: SmPki, tmp_path: Path, form) -> None:
    bob = standard.person("bob@example.org")
    key, cert = bob.write(tmp_path, "bob")
    if form == "DER":
        data = enveloped.encrypt(CONTENT, [bob.cert], cipher="sm4_cbc")
    else:
        alice = standard.person("alice@example.org")
        data = encrypt_message(MESSAGE, [bob.cert], sender=alice.cert)
    result = openssl(
        "cms", "-decrypt", "-inform", form, "-recip", cert, "-inkey", key, data=data
    )  # fmt: skip
    assert result.returncode == 0, result.stderr.decode()
    assert b"SM interop with OpenSSL." in result.stdout


def test_openssl_refuses_the_gmt_convention(standard: SmPki, tmp_path: Path) -> None:
    """The split ecosystem: GM/T content types are for GmSSL; OpenSSL wants PKCS#7's."""
    bob = standard.person("bob@example.org")
    key, cert = bob.write(tmp_path, "bob")
    der = enveloped.encrypt(CONTENT, [bob.cert], cipher="sm4_cbc", convention="gmt")
    result = openssl("cms", "-decrypt", "-inform", "DER", "-recip", cert, "-inkey", key, data=der)
    assert result.returncode != 0
    assert b"not enveloped data" in result.stderr


def test_openssl_verifies_our_sm2_signatures_with_the_empty_id(
    openssl_style: SmPki, tmp_path: Path
) -> None:
    alice = openssl_style.person("alice@example.org")
    root = openssl_style.write_root(tmp_path)
    untrusted = tmp_path / "intermediate.pem"
    untrusted.write_bytes(alice.chain_pem())
    for detached in (False, True):
        der = signed.sign(CONTENT, alice.credential, digest="sm3", detached=detached, sm2_id=b"")
        args = ["cms", "-verify", "-inform", "DER", "-CAfile", root, "-purpose", "smimesign"]
        if detached:
            (tmp_path / "content").write_bytes(CONTENT)
            args += ["-content", tmp_path / "content", "-binary"]
        result = openssl(*args, data=der)
        assert result.returncode == 0, result.stderr.decode()
        assert result.stdout == CONTENT
    # With the standard ID OpenSSL's check fails: it knows only the empty ID.
    standard_id = signed.sign(CONTENT, alice.credential, digest="sm3", detached=False)
    assert openssl("cms", "-verify", "-inform", "DER", "-CAfile", root, data=standard_id).returncode
    # A whole S/MIME message (multipart/signed, micalg=sm3) too.
    message = sign_message(MESSAGE, alice.credential, sm2_id=EMPTY_ID)
    assert b"micalg=sm3" in message
    result = openssl("cms", "-verify", "-CAfile", root, "-purpose", "smimesign", data=message)
    assert result.returncode == 0, result.stderr.decode()


def test_openssl_checks_standard_id_certificates_with_the_empty_id(
    standard: SmPki, tmp_path: Path
) -> None:
    alice = standard.person("alice@example.org")
    root = standard.write_root(tmp_path)
    der = signed.sign(CONTENT, alice.credential, digest="sm3", detached=False, sm2_id=b"")
    chain = openssl("cms", "-verify", "-inform", "DER", "-CAfile", root, data=der)
    assert chain.returncode != 0  # the leaf certificate's signature, checked with ID ""
    alone = openssl("cms", "-verify", "-inform", "DER", "-noverify", data=der)
    assert alone.returncode == 0, alone.stderr.decode()


def test_openssl_3_cannot_sign_or_encrypt_with_sm2(standard: SmPki, tmp_path: Path) -> None:
    """If this starts to pass, OpenSSL learned SM2 in CMS: add its signatures to the tests."""
    alice = standard.person("alice@example.org")
    key, cert = alice.write(tmp_path, "alice")
    (tmp_path / "m.txt").write_bytes(CONTENT)
    sign = openssl(
        "cms", "-sign", "-in", tmp_path / "m.txt", "-signer", cert, "-inkey", key, "-md", "sm3",
        "-outform", "DER",
    )  # fmt: skip
    assert sign.returncode != 0 and not sign.stdout
    assert b"illegal zero content" in sign.stderr
    encrypt = openssl(
        "cms", "-encrypt", "-sm4-cbc", "-in", tmp_path / "m.txt", "-outform", "DER", cert
    )
    assert encrypt.returncode != 0 and not encrypt.stdout
    assert b"illegal zero content" in encrypt.stderr


# ---- we read OpenSSL's ----------------------------------------------------------------------


@pytest.mark.parametrize("key_type", ["rsa2048", "p256"])
@pytest.mark.parametrize("form", ["DER", "SMIME"])
def test_we_decrypt_openssl_sm4_messages(tmp_path: Path, key_type: str, form: str) -> None:
    party = pki.root().smime("bob@example.org", key_type)
    paths = party.write(tmp_path, "bob")
    source = tmp_path / "m.eml"
    source.write_bytes(MESSAGE if form == "SMIME" else CONTENT)
    result = openssl(
        "cms", "-encrypt", "-sm4-cbc", "-in", source, "-outform", form, paths["cert"]
    )  # fmt: skip
    assert result.returncode == 0, result.stderr.decode()
    sm2_key = SmPki().person("bob@example.org")
    keys = [(sm2_key.cert, sm2_key.key), (party.asn1, party.key)]  # a mixed key list
    if form == "DER":
        assert enveloped.inspect(result.stdout).cipher == "sm4_cbc"
        assert enveloped.decrypt(result.stdout, keys) == CONTENT
    else:
        opened = open_message(result.stdout, keys=keys)
        assert opened.layers[0].cipher == "sm4_cbc"
        assert b"SM interop with OpenSSL." in opened.message


def test_our_verifier_reads_openssl_style_signatures_when_told(openssl_style: SmPki) -> None:
    """What OpenSSL verifies (empty ID everywhere) we verify with --sm2-id both or empty."""
    alice = openssl_style.person("alice@example.org")
    der = signed.sign(CONTENT, alice.credential, digest="sm3", detached=False, sm2_id=b"")
    anchors = [openssl_style.root.cert]
    assert not verify.verify(der, trust_anchors=anchors).valid
    assert verify.verify(der, trust_anchors=anchors, sm2_ids=BOTH_IDS).valid
    assert verify.verify(der, trust_anchors=anchors, sm2_ids=(EMPTY_ID,)).valid
    layer = mime.unwrap(sign_message(MESSAGE, alice.credential, sm2_id=b""))
    assert layer.micalg == "sm3"


def test_our_sm2_private_keys_are_openssl_keys(standard: SmPki, tmp_path: Path) -> None:
    """Keys OpenSSL generates load as SM2 keys and decrypt what we send them."""
    key_path = tmp_path / "k.pem"
    assert openssl("genpkey", "-algorithm", "SM2", "-out", key_path).returncode == 0
    key = load_private_key(key_path.read_bytes())
    cert = sm2_certs.load_certificate(
        sm2_certs.issue_certificate(
            key.public_key, {"common_name": "k"}, standard.root.key, standard.root.cert
        )
    )
    der = enveloped.encrypt(CONTENT, [cert], cipher="sm4_cbc")
    assert enveloped.decrypt(der, [(cert, key)]) == CONTENT
