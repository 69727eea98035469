"""`autosmime sign/verify/encrypt/decrypt` as people and scripts use them, with OpenSSL as peer:
exit 0 only on success, one line saying why otherwise."""

from __future__ import annotations

import base64
import subprocess
import sys
from pathlib import Path

import pytest
from asn1crypto import cms
from harness import pki

MESSAGE = (
    b"From: Alice <alice@example.test>\nTo: bob@example.test\nSubject: CLI\n"
    b"MIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n\nHello from the CLI.\n"
)


def autosmime(*args: str, data: bytes | None = None, env: dict | None = None):
    return subprocess.run(
        [sys.executable, "-m", "native_host.cli", *args],
        input=data,
        capture_output=True,
        check=False,
        env=env,
    )


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("cli")
    root = pki.root()
    issuing = root.intermediate("issuing", "rsa2048")
    alice = issuing.smime("alice@example.test", "p256")
    bob = issuing.smime("bob@example.test", "rsa2048")
    paths = {f"alice_{k}": v for k, v in alice.write(folder, "alice").items()}
    paths |= {f"bob_{k}": v for k, v in bob.write(folder, "bob").items()}
    paths["alice_full"] = folder / "alice.full.pem"
    paths["alice_full"].write_bytes(alice.cert_pem() + alice.chain_pem())
    paths["bob_p12"] = folder / "bob.p12"
    paths["bob_p12"].write_bytes(bob.pkcs12(b"secret"))
    paths["root"] = folder / "root.pem"
    paths["root"].write_bytes(root.cert_pem())
    paths["message"] = folder / "message.eml"
    paths["message"].write_bytes(MESSAGE)
    return paths


def test_sign_verify_round_trip_and_openssl_agrees(files: dict[str, Path]) -> None:
    signed = autosmime(
        "sign", "--key", str(files["alice_key"]), "--cert", str(files["alice_full"]),
        str(files["message"]),
    )  # fmt: skip
    assert signed.returncode == 0, signed.stderr
    checked = autosmime("verify", "--ca", str(files["root"]), "-", data=signed.stdout)
    assert checked.returncode == 0, checked.stderr
    assert b"Valid signature by alice@example.test" in checked.stderr
    peer = subprocess.run(
        ["openssl", "cms", "-verify", "-CAfile", str(files["root"]), "-purpose", "smimesign"],
        input=signed.stdout, capture_output=True, check=False,
    )  # fmt: skip
    assert peer.returncode == 0, peer.stderr
    assert b"Hello from the CLI." in peer.stdout


def test_verify_fails_with_one_line_on_tampering_and_untrusted_roots(files) -> None:
    signed = autosmime(
        "sign", "--no-detached", "--key", str(files["alice_key"]),
        "--cert", str(files["alice_full"]), str(files["message"]),
    ).stdout  # fmt: skip
    other_root = files["root"].with_name("other-root.pem")
    other_root.write_bytes(pki.root("another root").cert_pem())
    untrusted = autosmime("verify", "--ca", str(other_root), data=signed)
    assert untrusted.returncode == 1
    assert b"untrusted" in untrusted.stderr.lower()
    assert len(untrusted.stderr.decode().strip().splitlines()) == 1


def test_verify_writes_the_signed_content_to_stdout_by_default(files: dict[str, Path]) -> None:
    signed = autosmime(
        "sign", "--key", str(files["alice_key"]), "--cert", str(files["alice_full"]),
        str(files["message"]),
    ).stdout  # fmt: skip
    checked = autosmime("verify", "--ca", str(files["root"]), data=signed)
    assert checked.returncode == 0, checked.stderr
    assert b"Hello from the CLI." in checked.stdout and b"Subject: CLI" in checked.stdout
    assert b"application/pkcs7-signature" not in checked.stdout  # the content, not the wrapper
    # altered content: the refusal on stderr, nothing on stdout for a pipe to act on
    altered = signed.replace(b"Hello from the CLI.", b"Hello from Mallory")
    refused = autosmime("verify", "--ca", str(files["root"]), data=altered)
    assert refused.returncode == 1 and refused.stdout == b""


def test_a_malformed_certificate_is_refused_in_one_short_line(files: dict[str, Path]) -> None:
    """A --ca certificate whose Validity does not parse: one line, no parser context."""
    der = bytearray(pki.root("broken validity").asn1.dump())
    at = der.index(b"\x17\x0d")  # the notBefore UTCTime
    der[at + 2 : at + 6] = b"99XX"
    broken = files["root"].with_name("broken.der")
    broken.write_bytes(bytes(der))
    done = autosmime("verify", "--ca", str(broken), str(files["message"]))
    assert done.returncode == 2 and done.stdout == b""
    [line] = done.stderr.decode().strip().splitlines()
    assert line.startswith("autosmime verify: key_load_error: Not a valid X.509 certificate")
    assert "while parsing" not in line and "asn1crypto" not in line
    assert "(in Validity)" in line and len(line) < 160


def test_decrypt_says_when_the_content_is_not_protected_against_alteration(
    files: dict[str, Path],
) -> None:
    bob = ["--key", str(files["bob_key"]), "--cert", str(files["bob_cert"])]
    cbc = subprocess.run(
        ["openssl", "cms", "-encrypt", "-aes-256-cbc", "-in", str(files["message"]),
         str(files["bob_cert"])],
        capture_output=True, check=True,
    ).stdout  # fmt: skip
    opened = autosmime("decrypt", *bob, data=cbc)
    assert opened.returncode == 0 and b"Hello from the CLI." in opened.stdout
    [line] = opened.stderr.decode().strip().splitlines()
    assert line == (
        "autosmime decrypt: warning: the content is not protected against alteration: it was "
        "encrypted with aes256_cbc, which does not detect changes, and it is not signed, so "
        "anyone on the way could have changed it."
    )
    # GCM detects alteration by itself; a valid signature vouches for CBC content
    gcm = subprocess.run(
        ["openssl", "cms", "-encrypt", "-aes-256-gcm", "-in", str(files["message"]),
         str(files["bob_cert"])],
        capture_output=True, check=True,
    ).stdout  # fmt: skip
    assert autosmime("decrypt", *bob, data=gcm).stderr == b""
    signed = autosmime(
        "sign", "--key", str(files["alice_key"]), "--cert", str(files["alice_full"]),
        str(files["message"]),
    ).stdout  # fmt: skip
    sealed = subprocess.run(
        ["openssl", "cms", "-encrypt", "-aes-256-cbc", str(files["bob_cert"])],
        input=signed, capture_output=True, check=True,
    ).stdout  # fmt: skip
    vouched = autosmime("decrypt", *bob, "--ca", str(files["root"]), data=sealed)
    assert vouched.returncode == 0 and b"not protected" not in vouched.stderr
    unchecked = autosmime("decrypt", *bob, data=sealed)
    assert b"its signature was not checked (give --ca to check it)" in unchecked.stderr


def test_encrypt_to_bob_decrypts_with_openssl_and_with_us(files: dict[str, Path]) -> None:
    sealed = autosmime(
        "encrypt", "--to", str(files["bob_cert"]), "--cert", str(files["alice_full"]),
        "--sign", "--key", str(files["alice_key"]), str(files["message"]),
    )  # fmt: skip
    assert sealed.returncode == 0, sealed.stderr
    peer = subprocess.run(
        ["openssl", "cms", "-decrypt", "-recip", str(files["bob_cert"]),
         "-inkey", str(files["bob_key"])],
        input=sealed.stdout, capture_output=True, check=False,
    )  # fmt: skip
    assert peer.returncode == 0 and b"application/pkcs7-signature" in peer.stdout
    env = {"BOB_P12": "secret", "PATH": "/usr/bin:/bin"}
    opened = autosmime(
        "decrypt", "--key", str(files["bob_p12"]), "--password-env", "BOB_P12",
        "--ca", str(files["root"]), data=sealed.stdout, env=env,
    )  # fmt: skip
    assert opened.returncode == 0, opened.stderr
    assert b"Hello from the CLI." in opened.stdout


def test_we_decrypt_what_openssl_encrypts(files: dict[str, Path]) -> None:
    peer = subprocess.run(
        ["openssl", "cms", "-encrypt", "-aes-128-cbc", "-in", str(files["message"]),
         str(files["bob_cert"])],
        capture_output=True, check=False,
    )  # fmt: skip
    assert peer.returncode == 0
    opened = autosmime(
        "decrypt", "--key", str(files["bob_key"]), "--cert", str(files["bob_cert"]),
        data=peer.stdout,
    )  # fmt: skip
    assert opened.returncode == 0, opened.stderr
    assert b"Hello from the CLI." in opened.stdout


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        (["decrypt", "--key", "{alice_key}", "--cert", "{alice_cert}"], 1, b"no_matching_key"),
        (["decrypt", "--key", "/nonexistent.pem", "--cert", "{bob_cert}"], 2, b"Cannot read"),
        (["verify", "--ca", "{root}"], 1, b"not signed"),
        (["sign", "--key", "{bob_p12}"], 2, b"key_load_error"),
    ],
)
def test_failures_exit_non_zero_with_one_line(files, args: list[str], code: int, says: bytes):
    sealed = autosmime("encrypt", "--to", str(files["bob_cert"]), str(files["message"])).stdout
    data = MESSAGE if args[0] == "verify" or args[0] == "sign" else sealed
    done = autosmime(*(a.format(**files) for a in args), data=data)
    assert done.returncode == code
    assert says in done.stderr
    assert len(done.stderr.decode().strip().splitlines()) == 1
    assert done.stdout == b""


@pytest.mark.parametrize("cipher", ["-aes-256-gcm", "-aes-128-cbc"])
def test_a_large_message_with_an_altered_tag_or_padding_writes_nothing(
    files: dict[str, Path], tmp_path: Path, cipher: str
) -> None:
    """The command line decodes and decrypts a message in the buffer it read it into (several
    decoding and decrypting chunks here); plaintext must still come out only after the GCM tag
    or the CBC padding is checked, whether from a file or stdin."""
    big = MESSAGE + b"Many lines of text.\n" * 150_000  # 3 MB
    sealed = subprocess.run(
        ["openssl", "cms", "-encrypt", cipher, str(files["bob_cert"])],
        input=big, capture_output=True, check=True,
    ).stdout  # fmt: skip
    head, _, body = sealed.partition(b"\n\n")
    der = bytearray(base64.b64decode(body))
    if "gcm" in cipher:
        der[-1] ^= 1  # the last byte of the GCM tag (AuthEnvelopedData's mac comes last)
    else:
        info = cms.ContentInfo.load(bytes(der))["content"]["encrypted_content_info"]
        ciphertext = info["encrypted_content"].native
        end = der.rfind(ciphertext) + len(ciphertext)
        der[end - 17] ^= 0x80  # the last plaintext byte, the pad length, is then above 16
    altered = head + b"\n\n" + base64.encodebytes(bytes(der))
    bob = ["--key", str(files["bob_key"]), "--cert", str(files["bob_cert"])]
    good = autosmime("decrypt", *bob, data=sealed)
    assert good.returncode == 0, good.stderr
    assert good.stdout.endswith(b"Many lines of text.\r\n" * 3)
    (tmp_path / "altered.eml").write_bytes(altered)
    for done in (
        autosmime("decrypt", *bob, data=altered),
        autosmime("decrypt", *bob, str(tmp_path / "altered.eml")),
    ):
        assert done.returncode == 1
        assert done.stdout == b""
        [line] = done.stderr.decode().strip().splitlines()
        assert line.startswith("autosmime decrypt: decryption_failed: ")
