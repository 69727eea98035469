"""domain.keystore: keys sealed under the profile's master secret, statuses, never deleted,
atomic and concurrent-safe writes, and PKCS#12 export read by OpenSSL and imported by gpgsm."""

from __future__ import annotations

import datetime
import json
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from asn1crypto import pkcs12 as asn1_p12
from cryptography.hazmat.primitives import hashes, serialization
from harness import pki, sm_pki

from native_host.domain import keystore as ks
from native_host.infrastructure import profile as prof
from shared_pki import backup, pkcs12, sm2
from shared_pki.ca.keystore import seal_key

ADDRESS = "Alice@Example.com"
SECRET = bytes(range(32))
FAST = 2000


@pytest.fixture(scope="module")
def parties():
    ca = pki.root().intermediate("keystore test CA")
    sm = sm_pki.SmPki(intermediate=True)
    return {
        "rsa_old": ca.smime("alice@example.com", "rsa2048"),
        "rsa": ca.smime("alice@example.com", "rsa2048"),
        "ec": ca.smime("alice@example.com", "p256"),
        "sm2": sm.person("alice@example.com"),
        "bob": ca.smime("bob@example.com", "rsa2048"),
    }


def _cert(party):
    return (party.cert, tuple(party.chain)) if isinstance(party, sm_pki.SmParty) else (
        party.asn1, tuple(party.chain_asn1)
    )  # fmt: skip


def _add(store: ks.Keystore, party, suite: str = "intl", address: str = ADDRESS) -> str:
    key_id = store.add_key(address, suite, party.key)
    cert, chain = _cert(party)
    store.attach_certificate(key_id, cert.dump(), chain)
    return key_id


def _der(key) -> bytes:
    if isinstance(key, sm2.SM2PrivateKey):
        return key.to_der()
    return key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if not p.name.endswith(".tmp")}


@pytest.fixture
def store(tmp_path: Path) -> ks.Keystore:
    return ks.Keystore(tmp_path / "keys", SECRET)


def test_lifecycle(store: ks.Keystore, parties) -> None:
    old = _add(store, parties["rsa_old"])
    assert store.record(old).status == "pending"
    assert store.current(ADDRESS, "intl") is None  # pending keys are not used
    store.mark(old, "current")
    new = _add(store, parties["rsa"])
    sm_id = _add(store, parties["sm2"], "sm")
    store.mark(sm_id, "current")
    assert store.current("alice@example.com", "intl").key_id == old
    store.mark(new, "current")  # supersedes the old one
    current = store.current("ALICE@example.com", "intl")
    assert current.key_id == new and current.certificate.dump() == parties["rsa"].der
    assert [c.dump() for c in current.chain] == [c.dump() for c in parties["rsa"].chain_asn1]
    assert store.record(old).status == "superseded"
    assert [s for s, _ in store.record(old).history] == ["pending", "current", "superseded"]
    assert store.current(ADDRESS, "sm").key_id == sm_id
    assert isinstance(store.current(ADDRESS, "sm").key, sm2.SM2PrivateKey)
    # Old keys stay for decryption, newest first.
    assert [h.key_id for h in store.all_keys()] == [old, new, sm_id]
    pairs = store.decryption_pairs()
    assert [cert.dump() for cert, _ in pairs] == [
        parties["sm2"].cert.dump(),
        parties["rsa"].der,
        parties["rsa_old"].der,
    ]
    assert _der(pairs[2][1]) == _der(parties["rsa_old"].key)


def test_reopened_store_reads_the_same(store: ks.Keystore, parties, tmp_path: Path) -> None:
    key_id = _add(store, parties["ec"])
    store.mark(key_id, "current")
    again = ks.Keystore(tmp_path / "keys", SECRET)
    held = again.current(ADDRESS, "intl")
    assert _der(held.key) == _der(parties["ec"].key)
    assert held.record.key_type == "ec-secp256r1"


def test_add_is_idempotent_and_checked(store: ks.Keystore, parties) -> None:
    key_id = store.add_key(ADDRESS, "intl", parties["rsa"].key)
    assert store.add_key("alice@EXAMPLE.com", "intl", parties["rsa"].key) == key_id
    assert len(store.records()) == 1
    with pytest.raises(ks.KeystoreError, match="already kept"):
        store.add_key("bob@example.com", "intl", parties["rsa"].key)
    with pytest.raises(ks.KeystoreError, match="suite"):
        store.add_key(ADDRESS, "sm", parties["ec"].key)
    with pytest.raises(ks.KeystoreError, match="suite"):
        store.add_key(ADDRESS, "intl", parties["sm2"].key)
    with pytest.raises(ks.KeystoreError, match="not a mail address"):
        store.add_key("alice", "intl", parties["ec"].key)


def test_status_rules(store: ks.Keystore, parties) -> None:
    key_id = store.add_key(ADDRESS, "intl", parties["rsa"].key)
    with pytest.raises(ks.KeystoreError, match="without a certificate"):
        store.mark(key_id, "current")
    with pytest.raises(ks.KeystoreError, match="Unknown status"):
        store.mark(key_id, "deleted")
    with pytest.raises(ks.UnknownKey):
        store.mark("00" * 16, "revoked")
    with pytest.raises(ks.KeystoreError, match="not for this key"):
        store.attach_certificate(key_id, parties["ec"].der)
    store.attach_certificate(key_id, parties["rsa"].der)
    store.attach_certificate(key_id, parties["rsa"].der)  # the same twice: kept once
    assert len(store.record(key_id).certificates) == 1
    store.mark(key_id, "current")
    store.mark(key_id, "expired")
    store.mark(key_id, "revoked")
    with pytest.raises(ks.KeystoreError, match="cannot become"):
        store.mark(key_id, "current")


def test_permissions_and_sealing(store: ks.Keystore, parties) -> None:
    key_id = _add(store, parties["sm2"], "sm")
    assert stat.S_IMODE(store.folder.stat().st_mode) == 0o700
    names = sorted(p.name for p in store.folder.iterdir())
    assert names == sorted([".lock", "index.json", f"{key_id}.key"])
    for path in store.folder.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    sealed = (store.folder / f"{key_id}.key").read_bytes()
    assert sealed.startswith(b"ASKEY")  # shared_pki.ca.keystore's format
    private_scalar = parties["sm2"].key.to_der()[-40:]
    assert private_scalar not in sealed
    for path in store.folder.iterdir():
        assert _der(parties["sm2"].key) not in path.read_bytes()


def test_another_secret_does_not_open(store: ks.Keystore, parties, tmp_path: Path) -> None:
    key_id = _add(store, parties["rsa"])
    other = ks.Keystore(tmp_path / "keys", bytes(32))
    with pytest.raises(ks.KeystoreCorrupt):
        other.records()
    with pytest.raises(ks.KeystoreCorrupt):
        other.private_key(key_id)


def test_tampering_is_noticed(store: ks.Keystore, parties, tmp_path: Path) -> None:
    rsa_id = _add(store, parties["rsa"])
    ec_id = _add(store, parties["ec"])
    index = store.folder / "index.json"
    original = index.read_bytes()
    document = json.loads(original)
    document["keys"][rsa_id]["status"] = "current"
    index.write_bytes(json.dumps(document).encode())
    with pytest.raises(ks.KeystoreCorrupt):
        ks.Keystore(store.folder, SECRET).records()
    index.write_bytes(original)
    # Swap two sealed keys: each opens under the secret but is not the key its name says.
    rsa_file, ec_file = store.folder / f"{rsa_id}.key", store.folder / f"{ec_id}.key"
    rsa_bytes, ec_bytes = rsa_file.read_bytes(), ec_file.read_bytes()
    rsa_file.write_bytes(ec_bytes)
    ec_file.write_bytes(rsa_bytes)
    with pytest.raises(ks.KeystoreCorrupt, match="not the key"):
        ks.Keystore(store.folder, SECRET).private_key(rsa_id)


def test_nothing_is_ever_deleted(store: ks.Keystore, parties) -> None:
    seen: dict[str, bytes] = {}
    ids: list[str] = []

    def check() -> None:
        now = _files(store.folder)
        for name, content in seen.items():
            assert name in now, f"{name} disappeared"
            if name.endswith(".key"):
                assert now[name] == content, f"{name} was rewritten"
        seen.update(now)
        assert [r.key_id for r in store.records()][: len(ids)] == ids

    for name, suite in (("rsa_old", "intl"), ("rsa", "intl"), ("sm2", "sm"), ("ec", "intl")):
        ids.append(_add(store, parties[name], suite))
        check()
        store.mark(ids[-1], "current")
        check()
    store.mark(ids[0], "revoked")
    store.mark(ids[1], "expired")
    check()
    assert {r.status for r in store.records()} == {"revoked", "expired", "current"}
    assert len(store.all_keys()) == 4


CRASH = textwrap.dedent(
    """
    import os, sys
    from cryptography.hazmat.primitives.asymmetric import ec
    from native_host.domain import keystore as ks
    calls = {"n": 0}
    real = os.replace
    def crashing(src, dst):
        calls["n"] += 1
        if calls["n"] == int(sys.argv[2]):
            os._exit(9)  # the process dies between the temporary write and the rename
        real(src, dst)
    os.replace = crashing
    store = ks.Keystore(sys.argv[1], bytes(range(32)))
    store.add_key("alice@example.com", "intl", ec.generate_private_key(ec.SECP256R1()))
    """
)


@pytest.mark.parametrize("crash_at", [1, 2], ids=["sealing", "index"])
def test_crash_before_rename_keeps_the_previous_state(
    store: ks.Keystore, parties, crash_at: int
) -> None:
    first = _add(store, parties["rsa"])
    store.mark(first, "current")
    before = _files(store.folder)
    run = subprocess.run(
        [sys.executable, "-c", CRASH, str(store.folder), str(crash_at)],
        capture_output=True,
        check=False,
    )
    assert run.returncode == 9, run.stderr
    leftovers = [p.name for p in store.folder.iterdir() if p.name.endswith(".tmp")]
    assert leftovers, "the crash should leave its temporary file behind"
    after = _files(store.folder)
    assert after["index.json"] == before["index.json"]
    reopened = ks.Keystore(store.folder, SECRET)
    assert [r.key_id for r in reopened.records()] == [first]
    assert reopened.current(ADDRESS, "intl").key_id == first
    # The store goes on working after the crash.
    added = reopened.add_key(ADDRESS, "intl", parties["ec"].key)
    assert added in [h.key_id for h in reopened.all_keys()]


def test_resume_after_a_crash_between_seal_and_index(store: ks.Keystore, parties) -> None:
    """A sealed key the index does not name (crash after sealing) is taken over, not doubled."""
    key = parties["ec"].key
    key_id = ks.key_id_of(key)
    prof.write_private(store.folder / f"{key_id}.key", seal_key(key, SECRET, log2_n=14))
    assert store.add_key(ADDRESS, "intl", key) == key_id
    assert _der(ks.Keystore(store.folder, SECRET).private_key(key_id)) == _der(key)


ADDER = textwrap.dedent(
    """
    import sys
    from cryptography.hazmat.primitives.asymmetric import ec
    from native_host.domain import keystore as ks
    store = ks.Keystore(sys.argv[1], bytes(range(32)))
    for _ in range(3):
        key_id = store.add_key(sys.argv[2], "intl", ec.generate_private_key(ec.SECP256R1()))
        store.mark(key_id, "revoked")
    print("ok")
    """
)


def test_concurrent_processes_lose_nothing(store: ks.Keystore) -> None:
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", ADDER, str(store.folder), f"user{n}@example.com"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for n in range(5)
    ]
    for run in runs:
        _, err = run.communicate(timeout=120)
        assert run.returncode == 0, err
    records = store.records()
    assert len(records) == 15
    assert {r.status for r in records} == {"revoked"}
    assert len([p for p in store.folder.iterdir() if p.suffix == ".key"]) == 15


# ---- export ------------------------------------------------------------------------------------


@pytest.fixture
def full(store: ks.Keystore, parties) -> dict[str, str]:
    ids = {
        "rsa_old": _add(store, parties["rsa_old"]),
        "rsa": _add(store, parties["rsa"]),
        "ec": _add(store, parties["ec"]),
        "sm2": _add(store, parties["sm2"], "sm"),
        "bob": _add(store, parties["bob"], address="bob@example.com"),
    }
    store.mark(ids["rsa_old"], "current")
    store.mark(ids["rsa"], "current")
    return ids


def _openssl_info(path: Path, password: str, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["openssl", "pkcs12", *extra, "-info", "-nokeys", "-passin", f"pass:{password}",
         "-in", str(path)],
        capture_output=True, check=False,
    )  # fmt: skip


def test_export_modern_every_key_of_an_address(store, full, tmp_path: Path) -> None:
    exported = store.export_pkcs12(ADDRESS, "pw", "modern", iterations=FAST)
    assert set(exported.key_ids) == {full[n] for n in ("rsa_old", "rsa", "ec", "sm2")}
    assert exported.left_out == {}
    path = tmp_path / "modern.p12"
    path.write_bytes(exported.data)
    info = _openssl_info(path, "pw")
    assert info.returncode == 0, info.stderr
    assert info.stderr.count(b"Shrouded Keybag: PBES2, PBKDF2, AES-256-CBC") == 4
    assert b"MAC: sha256" in info.stderr
    entries = pkcs12.parse_pfx(exported.data, "pw")
    assert any(isinstance(e.key, sm2.SM2PrivateKey) for e in entries)
    assert {e.friendly_name for e in entries} >= {"alice@example.com (intl, current)"}


def test_export_default_iterations(store, full) -> None:
    exported = store.export_pkcs12([full["rsa"]], "pw")
    assert asn1_p12.Pfx.load(exported.data)["mac_data"]["iterations"].native == 600_000


def test_export_legacy_leaves_out_ec_and_sm2(store, full, parties, tmp_path: Path) -> None:
    exported = store.export_pkcs12(ADDRESS, "pw", "legacy")
    assert set(exported.key_ids) == {full["rsa_old"], full["rsa"]}
    assert set(exported.left_out) == {full["ec"], full["sm2"]}
    assert "gpgsm" in exported.left_out[full["ec"]]
    path = tmp_path / "legacy.p12"
    path.write_bytes(exported.data)
    info = _openssl_info(path, "pw", "-legacy")
    assert info.returncode == 0, info.stderr
    assert b"pbeWithSHA1And3-KeyTripleDES-CBC" in info.stderr and b"MAC: sha1" in info.stderr
    with pytest.raises(ks.KeystoreError, match="Nothing to export"):
        store.export_pkcs12([full["ec"], full["sm2"]], "pw", "legacy")


def _gpgsm(home: Path, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["gpgsm", "--homedir", str(home), "--batch", "--pinentry-mode", "loopback", *args],
        input=stdin,
        capture_output=True,
        check=False,
        timeout=120,
    )


@pytest.mark.parametrize("which", [["rsa"], ["rsa_old", "rsa"]], ids=["one", "current-and-old"])
def test_gpgsm_imports_the_legacy_export(store, full, parties, tmp_path: Path, which) -> None:
    exported = store.export_pkcs12([full[n] for n in which], "pw", "legacy")
    path = tmp_path / "legacy.p12"
    path.write_bytes(exported.data)
    home = tmp_path / "gnupg"
    home.mkdir(mode=0o700)
    (home / "gpg-agent.conf").write_text("allow-loopback-pinentry\n")
    try:
        imported = _gpgsm(home, "--passphrase-fd", "0", "--import", str(path), stdin=b"pw\n")
        assert imported.returncode == 0, imported.stderr
        listed = _gpgsm(home, "--with-colons", "--list-secret-keys")
        assert listed.returncode == 0, listed.stderr
        fingerprints = {
            line.split(":")[9]
            for line in listed.stdout.decode().splitlines()
            if line.startswith("fpr:")
        }
        # gpgsm 2.2 imports only the first key of a file; the export puts the current one first.
        assert b"secret keys imported: 1" in imported.stderr
        expected = parties["rsa"].cert.fingerprint(hashes.SHA1()).hex().upper()
        assert fingerprints == {expected}, imported.stderr.decode()
    finally:
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], check=False)


def test_backup_keys_round_trip_through_a_backup(store, full) -> None:
    code = backup.new_recovery_code()
    held = store.backup_keys(ADDRESS)
    assert [k.key_id for k in held] == [full[n] for n in ("rsa_old", "rsa", "ec", "sm2")]
    message = backup.build_backup(
        "alice@example.com", held, code, datetime.datetime.now(datetime.UTC), iterations=FAST
    )
    restored = backup.read_backup(message, code)
    assert [(k.key_id, k.status, k.suite) for k in restored] == [
        (k.key_id, k.status, k.suite) for k in held
    ]


def test_for_profile_uses_the_keyring(home, monkeypatch, tmp_path: Path, parties) -> None:
    monkeypatch.setenv(prof.ENV_KEYRING, "keyrings.alt.file.PlaintextKeyring")
    profile = prof.open_profile(tmp_path / "alice")
    store = ks.Keystore.for_profile(profile)
    key_id = _add(store, parties["rsa"])
    again = ks.Keystore.for_profile(prof.open_profile(tmp_path / "alice"))
    assert _der(again.private_key(key_id)) == _der(parties["rsa"].key)
    bob_secret = prof.master_secret(prof.open_profile(tmp_path / "bob"))
    with pytest.raises(ks.KeystoreCorrupt):  # bob's secret does not open alice's store
        ks.Keystore(profile.keys_dir, bob_secret).records()
