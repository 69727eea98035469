"""shared_pki.pkcs12: multi-key PFX files with RSA, EC and SM2 keys, both flavours, against
OpenSSL 3 and cryptography in both directions, and the typed refusals."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest
from asn1crypto import core, pem
from asn1crypto import pkcs12 as asn1_p12
from cryptography.hazmat.primitives import serialization
from harness import pki, sm_pki

from shared_pki import pkcs12, sm2
from shared_pki.errors import KeyLoadError, MalformedInput, UnsupportedAlgorithm
from shared_pki.pkcs12 import load_pkcs12

FAST = 2000  # iterations for tests that are not about the iteration count
PASSWORD = "correct horse ünïcode"


@pytest.fixture(scope="module")
def parties():
    ca = pki.root().intermediate("pkcs12 test issuing CA")
    sm = sm_pki.SmPki(intermediate=True)
    return {
        "rsa": ca.smime("alice@example.com", "rsa2048"),
        "ec": ca.smime("alice@example.com", "p256"),
        "sm2": sm.person("alice@example.com"),
    }


def _entry(party, name: str, **extra) -> pkcs12.Pkcs12Entry:
    if isinstance(party, sm_pki.SmParty):
        cert, chain = party.cert, tuple(party.chain)
    else:
        cert, chain = party.asn1, tuple(party.chain_asn1)
    return pkcs12.Pkcs12Entry(party.key, cert, chain, name, **extra)


def _private_der(key) -> bytes:
    if isinstance(key, sm2.SM2PrivateKey):
        return key.to_der()
    return key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _openssl(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["openssl", *args], input=stdin, capture_output=True, check=False)


def test_round_trip_every_key_kind(parties) -> None:
    note = core.UTF8String("metadata").dump()
    entries = [
        _entry(parties["rsa"], "alice rsa", attributes={"2.25.1234": note}),
        _entry(parties["ec"], "alice ec"),
        _entry(parties["sm2"], "alice sm2"),
        pkcs12.Pkcs12Entry(sm2.generate_private_key(), None, (), "pending"),
    ]
    data = pkcs12.build_pfx(entries, PASSWORD, iterations=FAST)
    back = pkcs12.parse_pfx(data, PASSWORD)
    assert len(back) == 4
    for wrote, read in zip(entries, back, strict=True):
        assert _private_der(read.key) == _private_der(wrote.key)
        assert read.friendly_name == wrote.friendly_name
        if wrote.certificate is None:
            assert read.certificate is None and read.chain == ()
        else:
            assert read.certificate.dump() == wrote.certificate.dump()
            assert [c.dump() for c in read.chain] == [c.dump() for c in wrote.chain]
    assert back[0].attributes == {"2.25.1234": note}
    assert isinstance(back[2].key, sm2.SM2PrivateKey)


def test_several_certificates_of_one_key(parties) -> None:
    rsa = parties["rsa"]
    issuer = pki.Authority(parties["ec"].key, parties["ec"].cert)  # any key can sign here
    renewed = issuer._sign(issuer._builder(rsa.cert.subject, rsa.key.public_key(), 30))
    renewed_asn1 = pki.Party(rsa.key, renewed).asn1
    entry = pkcs12.Pkcs12Entry(rsa.key, rsa.asn1, tuple(rsa.chain_asn1), "rsa", (renewed_asn1,))
    back = pkcs12.parse_pfx(pkcs12.build_pfx([entry], "pw", iterations=FAST), "pw")
    assert back[0].certificate.dump() == rsa.asn1.dump()
    assert [c.dump() for c in back[0].other_certificates] == [renewed_asn1.dump()]
    assert [c.dump() for c in back[0].chain] == [c.dump() for c in rsa.chain_asn1]


def test_certificate_of_another_key_is_refused(parties) -> None:
    wrong = pkcs12.Pkcs12Entry(parties["rsa"].key, parties["ec"].asn1)
    with pytest.raises(KeyLoadError):
        pkcs12.build_pfx([wrong], "pw", iterations=FAST)


def test_openssl_reads_ours_with_rsa_ec_and_sm2_keys(parties, tmp_path: Path) -> None:
    entries = [_entry(parties[kind], kind) for kind in ("rsa", "ec", "sm2")]
    path = tmp_path / "ours.p12"
    path.write_bytes(pkcs12.build_pfx(entries, "s3cret"))  # default: 600k iterations
    info = _openssl("pkcs12", "-info", "-nokeys", "-passin", "pass:s3cret", "-in", str(path))
    assert info.returncode == 0, info.stderr
    report = info.stderr.decode()
    assert "MAC: sha256, Iteration 600000" in report
    assert report.count("Shrouded Keybag: PBES2, PBKDF2, AES-256-CBC, Iteration 600000") == 3
    assert "PRF hmacWithSHA256" in report
    # With the keys: OpenSSL decrypts all three and prints the same PKCS#8 we put in.
    keys = _openssl("pkcs12", "-nocerts", "-nodes", "-passin", "pass:s3cret", "-in", str(path))
    assert keys.returncode == 0, keys.stderr

    printed = [der for _, _, der in pem.unarmor(keys.stdout, multiple=True)]
    assert sorted(printed) == sorted(_private_der(e.key) for e in entries)
    wrong = _openssl("pkcs12", "-info", "-nokeys", "-passin", "pass:nope", "-in", str(path))
    assert wrong.returncode != 0 and b"mac verify error" in wrong.stderr.lower()


def test_openssl_reads_the_legacy_flavour(parties, tmp_path: Path) -> None:
    path = tmp_path / "legacy.p12"
    path.write_bytes(pkcs12.build_pfx([_entry(parties["rsa"], "rsa")], "pw", flavour="legacy"))
    info = _openssl("pkcs12", "-legacy", "-info", "-nokeys", "-passin", "pass:pw", "-in", str(path))
    assert info.returncode == 0, info.stderr
    report = info.stderr.decode()
    assert "MAC: sha1, Iteration 2048" in report
    assert "Shrouded Keybag: pbeWithSHA1And3-KeyTripleDES-CBC, Iteration 2048" in report
    assert "PKCS7 Encrypted data: pbeWithSHA1And3-KeyTripleDES-CBC" in report


def test_cryptography_reads_ours_and_we_read_cryptographys(parties) -> None:
    rsa = parties["rsa"]
    for flavour in ("modern", "legacy"):
        data = pkcs12.build_pfx([_entry(rsa, "rsa")], "pw", flavour=flavour, iterations=FAST)
        credential = load_pkcs12(data, b"pw")
        assert credential.certificate.dump() == rsa.der
        assert len(credential.chain) == 2
    for legacy in (False, True):
        back = pkcs12.parse_pfx(rsa.pkcs12(b"pw", legacy=legacy), "pw")
        assert len(back) == 1 and back[0].certificate.dump() == rsa.der
        assert back[0].friendly_name == "test"
        assert {c.dump() for c in back[0].chain} == {c.dump() for c in rsa.chain_asn1}


@pytest.mark.parametrize("kind", ["rsa", "ec", "sm2"])
def test_we_read_openssl_export(parties, tmp_path: Path, kind: str) -> None:
    party = parties[kind]
    key = tmp_path / "key.pem"
    key.write_bytes(party.key_pem())
    cert = tmp_path / "cert.pem"
    cert.write_bytes(party.cert_pem())
    chain = tmp_path / "chain.pem"
    chain.write_bytes(party.chain_pem())
    out = tmp_path / "openssl.p12"
    made = _openssl(
        "pkcs12", "-export", "-inkey", str(key), "-in", str(cert), "-certfile", str(chain),
        "-name", "from openssl", "-passout", "pass:pw", "-out", str(out),
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    (entry,) = pkcs12.parse_pfx(out.read_bytes(), "pw")
    assert _private_der(entry.key) == _private_der(party.key)
    expected = party.cert if kind == "sm2" else party.asn1
    assert entry.certificate.dump() == expected.dump()
    assert entry.friendly_name == "from openssl"
    assert len(entry.chain) == len(party.chain)


def test_openssl_legacy_exports(parties, tmp_path: Path) -> None:
    rsa = parties["rsa"]
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    key.write_bytes(rsa.key_pem())
    cert.write_bytes(rsa.cert_pem())
    base = ["pkcs12", "-export", "-legacy", "-inkey", str(key), "-in", str(cert)]
    des = tmp_path / "3des.p12"
    made = _openssl(*base, "-certpbe", "PBE-SHA1-3DES", "-passout", "pass:pw", "-out", str(des))
    assert made.returncode == 0, made.stderr
    assert pkcs12.parse_pfx(des.read_bytes(), "pw")[0].certificate.dump() == rsa.der
    # OpenSSL's -legacy default encrypts certificates with RC2-40 (as Windows and old NSS
    # did); RC2-128 and RC4 are rarer, read all the same.
    for certpbe in (None, "PBE-SHA1-RC2-128", "PBE-SHA1-RC4-128", "PBE-SHA1-RC4-40"):
        old = tmp_path / f"{certpbe}.p12"
        chosen = ["-certpbe", certpbe] if certpbe else []
        made = _openssl(*base, *chosen, "-passout", "pass:pw", "-out", str(old))
        assert made.returncode == 0, made.stderr
        assert pkcs12.parse_pfx(old.read_bytes(), "pw")[0].certificate.dump() == rsa.der
        assert load_pkcs12(old.read_bytes(), b"pw").certificate.dump() == rsa.der
    nomac = tmp_path / "nomac.p12"
    made = _openssl(*base, "-certpbe", "PBE-SHA1-3DES", "-nomac", "-passout", "pass:pw",
                    "-out", str(nomac))  # fmt: skip
    assert made.returncode == 0, made.stderr
    with pytest.raises(KeyLoadError, match="no MAC"):
        pkcs12.parse_pfx(nomac.read_bytes(), "pw")
    assert len(pkcs12.parse_pfx(nomac.read_bytes(), "pw", require_mac=False)) == 1


def test_wrong_password(parties) -> None:
    data = pkcs12.build_pfx([_entry(parties["sm2"], "sm2")], PASSWORD, iterations=FAST)
    with pytest.raises(pkcs12.WrongPassword) as raised:
        pkcs12.parse_pfx(data, PASSWORD + "x")
    assert isinstance(raised.value, KeyLoadError)
    assert raised.value.code == "wrong_password"


def _pfx_parts(data: bytes):
    pfx = asn1_p12.Pfx.load(data)
    return pfx, pfx["auth_safe"]["content"].native


def test_tampering_is_told_from_a_wrong_password(parties) -> None:
    entries = [_entry(parties["rsa"], "rsa"), _entry(parties["ec"], "ec")]
    data = pkcs12.build_pfx(entries, "pw", iterations=FAST)
    assert data.count(b"rsa".decode().encode("utf-16-be")) == 1
    # 1. The friendly name (plain, in the key bags' attributes) is changed: MAC fails, the keys
    #    still decrypt, so the password was right and the file was altered.
    renamed = data.replace("rsa".encode("utf-16-be"), "RSA".encode("utf-16-be"))
    with pytest.raises(pkcs12.Pkcs12Tampered):
        pkcs12.parse_pfx(renamed, "pw")
    # 2. The MAC value itself is changed.
    pfx, _ = _pfx_parts(data)
    mac = bytearray(pfx["mac_data"]["mac"]["digest"].native)
    mac[0] ^= 1
    forged = data.replace(pfx["mac_data"]["mac"]["digest"].native, bytes(mac))
    with pytest.raises(pkcs12.Pkcs12Tampered):
        pkcs12.parse_pfx(forged, "pw")
    # 3. A flipped bit anywhere in the encrypted certificates: refused, never returned.
    _, auth_safe = _pfx_parts(data)
    middle = data.index(auth_safe) + 200
    flipped = bytearray(data)
    flipped[middle] ^= 0x10
    with pytest.raises(KeyLoadError):
        pkcs12.parse_pfx(bytes(flipped), "pw")


@pytest.mark.parametrize("data", [b"", b"not a pfx", b"\x30\x03\x02\x01\x03"])
def test_not_a_pfx(data: bytes) -> None:
    with pytest.raises(MalformedInput):
        pkcs12.parse_pfx(data, "pw")


def test_parameters_are_checked(parties) -> None:
    entry = _entry(parties["ec"], "ec")
    with pytest.raises(UnsupportedAlgorithm):
        pkcs12.build_pfx([entry], "pw", iterations=10)
    with pytest.raises(UnsupportedAlgorithm):
        pkcs12.build_pfx([entry], "pw", flavour="rc2")  # type: ignore[arg-type]
    with pytest.raises(KeyLoadError):
        pkcs12.build_pfx([], "pw")


def test_kdf_against_openssl(tmp_path: Path) -> None:
    """The RFC 7292 B.2 KDF (which MAC keys use) against OpenSSL's own implementation, which
    takes the password octets as they are: hand it the BMPString form we derive from."""
    bmp = ("pässword".encode("utf-16-be") + b"\x00\x00").hex()
    for digest in ("sha1", "sha256", "sha512"):
        made = _openssl(
            "kdf", "-keylen", "40", "-kdfopt", f"digest:{digest.upper()}",
            "-kdfopt", f"hexpass:{bmp}", "-kdfopt", "hexsalt:0102030405060708",
            "-kdfopt", "iter:5", "-kdfopt", "id:3", "PKCS12KDF",
        )  # fmt: skip
        if made.returncode != 0:
            pytest.skip(f"openssl kdf PKCS12KDF unavailable: {made.stderr!r}")
        expected = bytes.fromhex(made.stdout.decode().strip().replace(":", ""))
        ours = pkcs12.pkcs12_kdf(
            "pässword".encode(), bytes.fromhex("0102030405060708"), 3, 5, 40, digest
        )
        assert ours == expected


def _gnupg_key(password: bytes, salt: bytes, iterations: int) -> bytes:
    """gpgsm 2.2's 3DES key (sm/minip12.c string_to_key): an updated block of I is printed
    without its leading zero octets, left-aligned, over the old bytes."""
    pw = password + b"\x00"
    i = bytearray(bytes(salt[n % len(salt)] for n in range(64)))
    i += bytes(x for n in range(32) for x in (0, pw[n % len(pw)]))
    out = b""
    while True:
        a = hashlib.sha1(b"\x01" * 64 + bytes(i)).digest()
        for _ in range(iterations - 1):
            a = hashlib.sha1(a).digest()
        out += a
        if len(out) >= 24:
            return out[:24]
        b = int.from_bytes((a * 4)[:64], "big") + 1
        for start in (0, 64):
            value = (int.from_bytes(i[start : start + 64], "big") + b) % (1 << 512)
            printed = value.to_bytes(64, "big").lstrip(b"\x00")
            i[start : start + len(printed)] = printed


def test_gnupg_check_matches_what_gpgsm_derives() -> None:
    good = bad = None
    for n in range(2000):
        salt = n.to_bytes(8, "big")
        same = pkcs12.pkcs12_kdf(b"pw", salt, 1, 3, 24, "sha1") == _gnupg_key(b"pw", salt, 3)
        assert pkcs12.gnupg_derives_the_same_key(b"pw", salt, 3) == same
        if same:
            good = good or salt
        else:
            bad = bad or salt
        if good and bad:
            break
    assert good and bad, "no salt of 2000 shows the gpgsm difference"


def test_legacy_exports_draw_salts_gpgsm_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    bad = next(
        s
        for s in (n.to_bytes(8, "big") for n in range(4000))
        if not pkcs12.gnupg_derives_the_same_key(b"pw", s, 7)
    )
    drawn = iter([bad, b"\x11" * 8])
    monkeypatch.setattr(pkcs12.os, "urandom", lambda size: next(drawn))
    algorithm = pkcs12._legacy_algorithm(7, b"pw")
    assert algorithm["parameters"]["salt"].native == b"\x11" * 8
    assert pkcs12.gnupg_derives_the_same_key(b"pw", b"\x11" * 8, 7)
