"""Interoperability of enveloped.py with the real OpenSSL 3.0 CLI and gpgsm 2.2, both
directions: they decrypt what we make, we decrypt what they make. Negative controls prove each
peer really checks (a stranger's key and a tampered tag fail in OpenSSL too)."""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from asn1crypto import cms
from cryptography.hazmat.primitives import hashes
from harness import pki
from harness.peers import require

from shared_pki.cms import enveloped
from shared_pki.keys import load_certificates, load_private_key

CONTENT = b"Content-Type: text/plain; charset=utf-8\r\n\r\nInterop \xe2\x9c\x93\r\n"
CIPHERS = ("aes128_cbc", "aes256_cbc", "aes128_gcm", "aes256_gcm")
TRANSPORTS = (
    ("rsa", "rsa_pkcs1v15"),
    ("rsa", "rsa_oaep"),
    ("p256", "ecdh_sha256kdf"),
    ("p256", "ecdh_sha384kdf"),
    ("p384", "ecdh_sha256kdf"),
    ("p384", "ecdh_sha384kdf"),
)

for peer in ("openssl", "gpgsm", "gpgconf"):
    require(peer)


def run(*args: str | Path, stdin: bytes | None = None, env: dict | None = None) -> bytes:
    """Run a peer; its failure fails the test with its own words."""
    done = subprocess.run(
        [str(a) for a in args], input=stdin, capture_output=True, env=env, timeout=60
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    return done.stdout


class Peers:
    """Parties of every key type, written to files for the command line."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        root = pki.root()
        self.parties = {
            "rsa": root.smime("rsa@example.test", "rsa2048"),
            "rsa_b": root.smime("rsa-b@example.test", "rsa2048"),
            "p256": root.smime("p256@example.test", "p256"),
            "p384": root.smime("p384@example.test", "p384"),
            "stranger": root.smime("stranger@example.test", "rsa2048"),
        }
        self.paths = {name: party.write(folder, name) for name, party in self.parties.items()}

    def cert(self, name: str) -> Path:
        return self.paths[name]["cert"]

    def key(self, name: str) -> Path:
        return self.paths[name]["key"]

    def keyring(self) -> list[tuple]:
        """Our view of every key, read back from the files the peers use."""
        return [
            (
                load_certificates(self.cert(name).read_bytes())[0],
                load_private_key(self.key(name).read_bytes()),
            )
            for name in ("rsa", "p256", "p384")
        ]

    def openssl_decrypt(self, der: bytes, name: str) -> bytes:
        message = self.folder / "in.der"
        message.write_bytes(der)
        return run(
            "openssl", "cms", "-decrypt", "-inform", "DER", "-in", message,
            "-recip", self.cert(name), "-inkey", self.key(name),
        )  # fmt: skip


@pytest.fixture(scope="module")
def peers(tmp_path_factory: pytest.TempPathFactory) -> Peers:
    return Peers(tmp_path_factory.mktemp("interop"))


# --- OpenSSL decrypts ours ---------------------------------------------------------------------


@pytest.mark.parametrize("cipher", CIPHERS)
@pytest.mark.parametrize(("name", "transport"), TRANSPORTS)
@pytest.mark.parametrize("use_ski", [False, True], ids=["issuer_serial", "ski"])
def test_openssl_decrypts_ours(peers, cipher, name, transport, use_ski):
    party = peers.parties[name]
    der = enveloped.encrypt(
        CONTENT, [party.asn1], cipher=cipher, key_transport=transport, use_ski=use_ski
    )
    assert peers.openssl_decrypt(der, name) == CONTENT


@pytest.mark.parametrize("cipher", CIPHERS)
@pytest.mark.parametrize("use_ski", [False, True], ids=["issuer_serial", "ski"])
def test_openssl_decrypts_ours_mixed_recipients(peers, cipher, use_ski):
    names = ["rsa", "rsa_b", "p256", "p384"]
    der = enveloped.encrypt(
        CONTENT,
        [peers.parties[name].asn1 for name in names],
        cipher=cipher,
        key_transport=["rsa_pkcs1v15", "rsa_oaep", "ecdh_sha256kdf", "ecdh_sha384kdf"],
        use_ski=use_ski,
    )
    for name in names:
        assert peers.openssl_decrypt(der, name) == CONTENT


def test_openssl_negative_controls(peers):
    """The checks above can fail: OpenSSL refuses a stranger's key and a tampered GCM tag."""
    der = enveloped.encrypt(CONTENT, [peers.parties["rsa"].asn1], cipher="aes256_gcm")
    with pytest.raises(AssertionError):
        peers.openssl_decrypt(der, "stranger")
    mac = bytearray(cms_mac(der))
    mac[0] ^= 1
    with pytest.raises(AssertionError):
        peers.openssl_decrypt(der.replace(cms_mac(der), bytes(mac)), "rsa")


def cms_mac(der: bytes) -> bytes:
    return cms.ContentInfo.load(der)["content"]["mac"].native


# --- We decrypt OpenSSL's ----------------------------------------------------------------------

# name -> (recipient name, extra arguments after -recip, key-encryption algorithm we must see)
OPENSSL_RECIPIENTS = {
    "rsa_pkcs1": ("rsa", [], "rsaes_pkcs1v15"),
    "rsa_keyid": ("rsa", ["-keyid"], "rsaes_pkcs1v15"),
    "rsa_oaep_sha1": ("rsa", ["-keyopt", "rsa_padding_mode:oaep"], "rsaes_oaep"),
    "rsa_oaep_sha256": (
        "rsa",
        ["-keyopt", "rsa_padding_mode:oaep", "-keyopt", "rsa_oaep_md:sha256"],
        "rsaes_oaep",
    ),
    "p256_default_sha1kdf": ("p256", [], "dh_single_pass_std_dh_sha1kdf"),
    "p256_sha256kdf": (
        "p256",
        ["-keyopt", "ecdh_kdf_md:sha256"],
        "dh_single_pass_std_dh_sha256kdf",
    ),
    "p384_default_sha1kdf": ("p384", [], "dh_single_pass_std_dh_sha1kdf"),
    "p384_sha384kdf": (
        "p384",
        ["-keyopt", "ecdh_kdf_md:sha384"],
        "dh_single_pass_std_dh_sha384kdf",
    ),
    "p256_keyid": ("p256", ["-keyid"], "dh_single_pass_std_dh_sha1kdf"),
}


@pytest.mark.parametrize("cipher", CIPHERS)
@pytest.mark.parametrize("case", sorted(OPENSSL_RECIPIENTS))
def test_we_decrypt_openssl(peers, cipher, case):
    name, options, algorithm = OPENSSL_RECIPIENTS[case]
    source = peers.folder / "plain.txt"
    source.write_bytes(CONTENT)
    keyid = ["-keyid"] if "-keyid" in options else []
    keyopts = [o for o in options if o != "-keyid"]
    der = run(
        "openssl", "cms", "-encrypt", "-binary", "-outform", "DER", _openssl_cipher(cipher),
        *keyid, "-in", source, "-recip", peers.cert(name), *keyopts,
    )  # fmt: skip
    info = enveloped.inspect(der)
    assert info.cipher == cipher
    assert [r.key_encryption for r in info.recipients] == [algorithm]
    if keyid:
        assert info.recipients[0].rid.ski is not None
    assert enveloped.decrypt(der, peers.keyring()) == CONTENT


def _openssl_cipher(cipher: str) -> str:
    """aes256_gcm -> -aes-256-gcm"""
    bits, mode = cipher[3:].split("_")
    return f"-aes-{bits}-{mode}"


@pytest.mark.parametrize("cipher", ["aes256_cbc", "aes128_gcm"])
def test_we_decrypt_openssl_streamed_ber(peers, cipher):
    """openssl -stream writes indefinite lengths and the encrypted content in chunks: the
    parser's fast cut (definite DER only) steps aside and asn1crypto reads it whole."""
    source = peers.folder / "plain.txt"
    source.write_bytes(CONTENT * 3000)
    der = run(
        "openssl", "cms", "-encrypt", "-binary", "-stream", "-outform", "DER",
        _openssl_cipher(cipher), "-in", source, peers.cert("rsa"),
    )  # fmt: skip
    assert der[:2] == b"\x30\x80"
    assert enveloped._cut_ciphertext(der) is None
    assert enveloped.decrypt(der, peers.keyring()) == CONTENT * 3000
    ours = enveloped.encrypt(CONTENT, [peers.keyring()[0][0]], cipher=cipher)
    cut = enveloped._cut_ciphertext(ours)
    assert cut is not None and bytes(cut[1]) in ours
    assert enveloped.decrypt(ours, peers.keyring()) == CONTENT


@pytest.mark.parametrize("cipher", ["aes256_cbc", "aes128_gcm"])
def test_we_decrypt_openssl_mixed_recipients(peers, cipher):
    source = peers.folder / "plain.txt"
    source.write_bytes(CONTENT)
    der = run(
        "openssl", "cms", "-encrypt", "-binary", "-outform", "DER", _openssl_cipher(cipher),
        "-in", source, peers.cert("rsa"), peers.cert("p256"), peers.cert("p384"),
    )  # fmt: skip
    assert len(enveloped.inspect(der).recipients) == 3
    for certificate, key in peers.keyring():
        assert enveloped.decrypt(der, [(certificate, key)]) == CONTENT


# --- gpgsm 2.2 (RSA PKCS#1 v1.5 + AES-CBC, issuer-and-serial) ----------------------------------


class Gpgsm:
    """A throw-away GNUPGHOME holding one RSA key (imported from legacy PKCS#12) and a trusted
    root. The folder is short because gpg-agent puts its sockets there."""

    PASSWORD = b"interop-pw"

    def __init__(self, folder: Path) -> None:
        self.home = folder / "gnupg"
        self.home.mkdir(mode=0o700)
        self.env = {"GNUPGHOME": str(self.home), "PATH": "/usr/bin:/bin", "LANG": "C"}
        root = pki.root("gpgsm interop root", "rsa2048")
        self.party = root.smime("gpgsm@example.test", "rsa2048")
        fingerprint = root.cert.fingerprint(hashes.SHA1()).hex().upper()
        (self.home / "trustlist.txt").write_text(f"{fingerprint} S relax\n")
        p12 = folder / "key.p12"
        p12.write_bytes(self.party.pkcs12(self.PASSWORD, legacy=True))
        self.gpgsm("--passphrase-fd", "0", "--import", p12, stdin=self.PASSWORD)
        self.folder = folder

    def gpgsm(self, *args: str | Path, stdin: bytes | None = None) -> bytes:
        return run(
            "gpgsm", "--batch", "--pinentry-mode", "loopback", "--disable-crl-checks",
            *args, stdin=stdin, env=self.env,
        )  # fmt: skip

    def close(self) -> None:
        subprocess.run(
            ["gpgconf", "--homedir", str(self.home), "--kill", "all"],
            capture_output=True,
            env=self.env,
            timeout=30,
        )


@pytest.fixture(scope="module")
def gpgsm() -> Iterator[Gpgsm]:
    with tempfile.TemporaryDirectory(prefix="gs") as folder:
        peer = Gpgsm(Path(folder))
        try:
            yield peer
        finally:
            peer.close()


@pytest.mark.parametrize("cipher", ["aes128_cbc", "aes256_cbc"])
def test_gpgsm_decrypts_ours(gpgsm, cipher):
    der = enveloped.encrypt(CONTENT, [gpgsm.party.asn1], cipher=cipher)
    message = gpgsm.folder / "ours.der"
    message.write_bytes(der)
    plain = gpgsm.gpgsm("--passphrase-fd", "0", "--decrypt", message, stdin=gpgsm.PASSWORD)
    assert plain == CONTENT


@pytest.mark.parametrize(("algo", "cipher"), [("AES", "aes128_cbc"), ("AES256", "aes256_cbc")])
def test_we_decrypt_gpgsm(gpgsm, algo, cipher):
    source = gpgsm.folder / "plain.txt"
    source.write_bytes(CONTENT)
    der = gpgsm.gpgsm(
        "--cipher-algo", algo, "--recipient", "gpgsm@example.test", "--encrypt", source
    )
    assert der[:2] == b"\x30\x80"  # gpgsm writes BER with indefinite lengths
    info = enveloped.inspect(der)
    assert info.cipher == cipher
    assert [r.key_encryption for r in info.recipients] == ["rsaes_pkcs1v15"]
    assert enveloped.decrypt(der, [(gpgsm.party.asn1, gpgsm.party.key)]) == CONTENT
