"""PKCS#12 as NSS writes it, the engine of Thunderbird's and Firefox's certificate backups: BER
with indefinite lengths and constructed OCTET STRINGs, made here by NSS's own pk12util from a
temporary NSS database (Debian package libnss3-tools), read by shared_pki.pkcs12.parse_pfx and
shared_pki.pkcs12.load_pkcs12 with every warning an error. `cryptography`'s loader reads such a
file only through a deprecated BER fallback that warns ("may become an exception"); so do the
old backups, whose certificates NSS encrypted with 40-bit RC2."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from harness import pki
from harness.peers import require

from shared_pki import pkcs12
from shared_pki.errors import KeyLoadError
from shared_pki.pkcs12 import WrongPassword, load_pkcs12

PK12UTIL = require("pk12util")
CERTUTIL = require("certutil")
PASSWORD = "backup pässword"
NICKNAME = "alice backup"
# Thunderbird before NSS chose PBES2: 3DES for the key, 40-bit RC2 for the certificates.
LEGACY = (
    "-c", "PKCS #12 V2 PBE With SHA-1 And 3KEY Triple DES-CBC",
    "-C", "PKCS #12 V2 PBE With SHA-1 And 40 Bit RC2 CBC",
)  # fmt: skip

pytestmark = pytest.mark.filterwarnings("error")


@pytest.fixture(scope="module")
def parties() -> dict[str, pki.Party]:
    ca = pki.root().intermediate("NSS backup test issuing CA")
    return {
        "rsa": ca.smime("alice@example.test", "rsa2048"),
        "ec": ca.smime("alice@example.test", "p256"),
    }


def _run(*args: str | Path) -> None:
    done = subprocess.run([str(a) for a in args], capture_output=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def nss_export(party: pki.Party, folder: Path, *ciphers: str) -> bytes:
    """The party's key, certificate and chain imported into a new NSS database and exported
    by pk12util, as a Thunderbird backup is made."""
    database, secret = folder / "nssdb", folder / "db-password"
    database.mkdir()
    secret.write_text("database password\n")
    _run(CERTUTIL, "-N", "-d", f"sql:{database}", "-f", secret)
    entry = pkcs12.Pkcs12Entry(party.key, party.asn1, tuple(party.chain_asn1), NICKNAME)
    given = folder / "given.p12"
    given.write_bytes(pkcs12.build_pfx([entry], PASSWORD, iterations=2000))
    _run(PK12UTIL, "-i", given, "-d", f"sql:{database}", "-k", secret, "-W", PASSWORD)
    exported = folder / "nss.p12"
    _run(PK12UTIL, "-o", exported, "-n", NICKNAME, "-d", f"sql:{database}", "-k", secret,
         "-W", PASSWORD, *ciphers)  # fmt: skip
    return exported.read_bytes()


def _same_key(ours: object, theirs: object) -> bool:
    return pkcs12.public_key_info(ours) == pkcs12.public_key_info(theirs)


@pytest.mark.parametrize("kind", ["rsa", "ec"])
@pytest.mark.parametrize("ciphers", [(), LEGACY], ids=["default", "legacy-3des-rc2"])
def test_we_read_an_nss_backup_without_cryptographys_ber_fallback(parties, tmp_path, kind, ciphers):
    party = parties[kind]
    data = nss_export(party, tmp_path, *ciphers)
    assert data.startswith(b"\x30\x80")  # BER: an indefinite length, as NSS writes it
    credential = load_pkcs12(data, PASSWORD.encode())
    assert credential.certificate.dump() == party.der
    assert _same_key(credential.key, party.key)
    assert {c.dump() for c in credential.chain} == {c.dump() for c in party.chain_asn1}
    (entry,) = pkcs12.parse_pfx(data, PASSWORD)
    assert entry.certificate.dump() == party.der and _same_key(entry.key, party.key)
    assert entry.friendly_name == NICKNAME


def test_a_wrong_password_on_an_nss_backup_is_said_in_words(parties, tmp_path):
    data = nss_export(parties["ec"], tmp_path)
    with pytest.raises(KeyLoadError, match="Wrong password"):
        load_pkcs12(data, b"not the password")
    with pytest.raises(WrongPassword):
        pkcs12.parse_pfx(data, "not the password")
