"""`autosmime sign/verify/encrypt/decrypt` with SM2 keys and certificates: the suite chosen from
the keys or forced with --suite, signer IDs with --sm2-id, OpenSSL as a peer."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from harness import pki
from harness.sm_pki import SmPki

MESSAGE = (
    b"From: alice@example.org\nTo: bob@example.org\nSubject: SM CLI\n"
    b"Content-Type: text/plain; charset=utf-8\n\nHello in SM from the CLI.\n"
)


def autosmime(*args: str | Path, data: bytes | None = None):
    return subprocess.run(
        [sys.executable, "-m", "native_host.cli", *map(str, args)],
        input=data,
        capture_output=True,
        check=False,
    )


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("smcli")
    sm = SmPki()
    paths: dict[str, Path] = {"sm_root": sm.write_root(folder)}
    for name in ("alice", "bob"):
        paths[f"{name}_sm_key"], paths[f"{name}_sm_cert"] = sm.person(f"{name}@example.org").write(
            folder, f"{name}-sm"
        )
    root = pki.root()
    for name, key_type in (("alice", "p256"), ("bob", "rsa2048")):
        written = root.smime(f"{name}@example.org", key_type).write(folder, f"{name}-intl")
        paths[f"{name}_intl_key"], paths[f"{name}_intl_cert"] = written["key"], written["cert"]
    paths["intl_root"] = folder / "intl-root.pem"
    paths["intl_root"].write_bytes(root.cert_pem())
    paths["message"] = folder / "message.eml"
    paths["message"].write_bytes(MESSAGE)
    return paths


def test_sign_and_verify_with_sm2(files: dict[str, Path]) -> None:
    signed = autosmime(
        "sign", "--key", files["alice_sm_key"], "--cert", files["alice_sm_cert"], files["message"]
    )
    assert signed.returncode == 0, signed.stderr
    assert b"micalg=sm3" in signed.stdout
    checked = autosmime("verify", "--ca", files["sm_root"], data=signed.stdout)
    assert checked.returncode == 0, checked.stderr
    assert b"Valid signature by alice@example.org" in checked.stderr
    # Made with the empty ID: refused by default, accepted with --sm2-id both or empty.
    empty = autosmime(
        "sign", "--key", files["alice_sm_key"], "--cert", files["alice_sm_cert"],
        "--sm2-id", "empty", files["message"],
    )  # fmt: skip
    assert empty.returncode == 0, empty.stderr
    assert autosmime("verify", "--ca", files["sm_root"], data=empty.stdout).returncode == 1
    for ids in ("both", "empty"):
        # the certificates carry the standard ID, so "empty" alone fails on the chain
        result = autosmime("verify", "--ca", files["sm_root"], "--sm2-id", ids, data=empty.stdout)
        assert result.returncode == (0 if ids == "both" else 1), result.stderr


def test_sign_refuses_a_suite_the_key_is_not(files: dict[str, Path]) -> None:
    result = autosmime(
        "sign", "--key", files["alice_sm_key"], "--cert", files["alice_sm_cert"],
        "--suite", "intl", files["message"],
    )  # fmt: skip
    assert result.returncode == 1
    assert b"cannot sign" in result.stderr
    bad_id = autosmime("verify", "--ca", files["sm_root"], "--sm2-id", "xyz", data=MESSAGE)
    assert bad_id.returncode == 2


@pytest.mark.parametrize("convention", ["pkcs7", "gmt"])
def test_encrypt_chosen_from_the_keys_and_decrypt_with_mixed_keys(files, convention) -> None:
    encrypted = autosmime(
        "encrypt", "--to", files["bob_sm_cert"], "--cert", files["alice_sm_cert"],
        "--key", files["alice_sm_key"], "--sign", "--convention", convention, files["message"],
    )  # fmt: skip
    assert encrypted.returncode == 0, encrypted.stderr
    decrypted = autosmime(
        "decrypt", "--key", files["bob_intl_key"], "--cert", files["bob_intl_cert"],
        "--key", files["bob_sm_key"], "--cert", files["bob_sm_cert"], "--ca", files["sm_root"],
        data=encrypted.stdout,
    )  # fmt: skip
    assert decrypted.returncode == 0, decrypted.stderr
    assert b"Hello in SM from the CLI." in decrypted.stdout
    assert b"Valid signature by alice@example.org" in decrypted.stderr


def test_openssl_decrypts_what_the_cli_encrypts_with_sm(files: dict[str, Path]) -> None:
    encrypted = autosmime(
        "encrypt", "--to", files["bob_sm_cert"], "--suite", "sm", files["message"]
    )
    assert encrypted.returncode == 0, encrypted.stderr
    peer = subprocess.run(
        ["openssl", "cms", "-decrypt", "-recip", str(files["bob_sm_cert"]),
         "-inkey", str(files["bob_sm_key"])],
        input=encrypted.stdout, capture_output=True, check=False,
    )  # fmt: skip
    assert peer.returncode == 0, peer.stderr
    assert b"Hello in SM from the CLI." in peer.stdout


def test_suite_policy_on_the_command_line(files: dict[str, Path]) -> None:
    both = [
        "--to", files["bob_sm_cert"], "--to", files["bob_intl_cert"],
        "--cert", files["alice_sm_cert"], "--cert", files["alice_intl_cert"],
    ]  # fmt: skip
    decrypt_sm = ["--key", files["bob_sm_key"], "--cert", files["bob_sm_cert"]]
    decrypt_intl = ["--key", files["bob_intl_key"], "--cert", files["bob_intl_cert"]]
    # Everyone has both kinds: international unless SM is preferred.
    intl = autosmime("encrypt", *both, files["message"])
    assert intl.returncode == 0, intl.stderr
    assert autosmime("decrypt", *decrypt_sm, data=intl.stdout).returncode == 1
    assert autosmime("decrypt", *decrypt_intl, data=intl.stdout).returncode == 0
    preferred = autosmime("encrypt", *both, "--prefer-sm", files["message"])
    assert preferred.returncode == 0, preferred.stderr
    assert autosmime("decrypt", *decrypt_sm, data=preferred.stdout).returncode == 0
    assert autosmime("decrypt", *decrypt_intl, data=preferred.stdout).returncode == 1
    # A recipient without an SM2 certificate: --prefer-sm falls back, --suite sm refuses.
    intl_only = ["--to", files["bob_intl_cert"], "--cert", files["alice_sm_cert"],
                 "--cert", files["alice_intl_cert"]]  # fmt: skip
    fallback = autosmime("encrypt", *intl_only, "--prefer-sm", files["message"])
    assert fallback.returncode == 0, fallback.stderr
    assert autosmime("decrypt", *decrypt_intl, data=fallback.stdout).returncode == 0
    forced = autosmime("encrypt", *intl_only, "--suite", "sm", files["message"])
    assert forced.returncode == 1
    assert b"no SM2 certificate" in forced.stderr
