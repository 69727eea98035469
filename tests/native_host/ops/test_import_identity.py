"""Bring your own certificate through the REAL host process (keys.import): an S/MIME identity
from PKCS#12 files as other programs write them (PBES2 and 3DES by `cryptography`, RC2-40 by
`openssl pkcs12 -legacy` as Outlook and older Windows do, BER by NSS's pk12util as Thunderbird
does) signs and decrypts like an enrolled key, is in the mailbox backup, shows in certs.list,
and reaches the organisation's certificate directory only when the person says so (then after
a real RFC 8823 confirmation by mail)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from asn1crypto import pem as asn1_pem
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs12 as crypto_pkcs12
from harness import pki as test_pki
from harness.devices import Device, account_params, b64, make_device, quoted
from harness.mail import MailStack
from harness.peers import require
from harness.pki_service import ConfiguredPki
from harness.pki_world import Person, PkiWorld

from native_host.domain import backups
from shared_pki import backup, pkcs12
from shared_pki.keys import Credential, load_certificates

pytestmark = pytest.mark.mail

ALICE, BOB = "alice@example.test", "bob@example.test"
PASSWORD = "Identity pässword 7"
FORMATS = ("pbes2", "3des", "rc2-40", "nss-ber")


def pkcs12_file(person: Person, kind: str, folder: Path) -> bytes:
    """person's key, certificate and chain as another program writes them."""
    folder.mkdir(parents=True, exist_ok=True)
    key = person.key
    cert = x509.load_der_x509_certificate(person.certificate.dump())
    chain = [x509.load_der_x509_certificate(c.dump()) for c in person.chain]
    if kind in ("pbes2", "3des"):
        if kind == "pbes2":
            algorithm: Any = serialization.BestAvailableEncryption(PASSWORD.encode())
        else:
            algorithm = (
                serialization.PrivateFormat.PKCS12.encryption_builder()
                .kdf_rounds(2048)
                .key_cert_algorithm(crypto_pkcs12.PBES.PBESv1SHA1And3KeyTripleDESCBC)
                .hmac_hash(hashes.SHA1())
                .build(PASSWORD.encode())
            )
        return crypto_pkcs12.serialize_key_and_certificates(b"alice", key, cert, chain, algorithm)
    (folder / "key.pem").write_bytes(
        key.private_bytes(  # type: ignore[attr-defined]
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    (folder / "cert.pem").write_bytes(asn1_pem.armor("CERTIFICATE", person.certificate.dump()))
    (folder / "chain.pem").write_bytes(
        b"".join(asn1_pem.armor("CERTIFICATE", c.dump()) for c in person.chain)
    )
    if kind == "rc2-40":
        run("openssl", "pkcs12", "-export", "-legacy", "-certpbe", "PBE-SHA1-RC2-40",
            "-keypbe", "PBE-SHA1-3DES", "-inkey", folder / "key.pem", "-in", folder / "cert.pem",
            "-certfile", folder / "chain.pem", "-passout", f"pass:{PASSWORD}",
            "-out", folder / "rc2.p12")  # fmt: skip
        data = (folder / "rc2.p12").read_bytes()
        assert b"\x2a\x86\x48\x86\xf7\x0d\x01\x0c\x01\x06" in data  # pbeWithSHA1And40BitRC2-CBC
        return data
    # NSS: import into a fresh database, export with pk12util (BER, indefinite lengths).
    database = folder / "nssdb"
    database.mkdir()
    run("certutil", "-N", "-d", f"sql:{database}", "--empty-password")
    entry = pkcs12.Pkcs12Entry(key, person.certificate, person.chain, "alice")  # type: ignore[arg-type]
    (folder / "given.p12").write_bytes(pkcs12.build_pfx([entry], PASSWORD, iterations=2000))
    run("pk12util", "-i", folder / "given.p12", "-d", f"sql:{database}", "-W", PASSWORD)
    run("pk12util", "-o", folder / "nss.p12", "-n", "alice", "-d", f"sql:{database}",
        "-W", PASSWORD)  # fmt: skip
    data = (folder / "nss.p12").read_bytes()
    assert data.startswith(b"\x30\x80")  # BER, as NSS writes it
    return data


def run(*args: str | Path) -> None:
    done = subprocess.run(
        [require(str(args[0])), *map(str, args[1:])], capture_output=True, timeout=60, check=False
    )
    assert done.returncode == 0, (done.stdout + done.stderr).decode(errors="replace")


@pytest.fixture(autouse=True)
def fresh_backups(mail_stack: MailStack) -> None:
    """alice's backup folder emptied: her first import makes her recovery code."""
    client = mail_stack.imap_client(ALICE)
    try:
        if client.folder_exists(backups.FOLDER):
            client.delete_folder(backups.FOLDER)
    finally:
        client.logout()


@pytest.fixture
def devices(world: PkiWorld, mail_stack: MailStack, tmp_path: Path) -> Iterator[dict[str, Device]]:
    alice = make_device(tmp_path, "alice", ALICE, world)  # no keys: she brings her own
    bob = make_device(tmp_path, "bob", BOB, world, world.issue(BOB))
    for device in (alice, bob):
        device.start()
        device.ok("account.configure", account_params(mail_stack, world, device.address))
    try:
        yield {ALICE: alice, BOB: bob}
    finally:
        for device in (alice, bob):
            if device.host is not None:
                assert device.host.close() == 0


def newest_backup(stack: MailStack) -> bytes:
    client = stack.imap_client(ALICE)
    try:
        client.select_folder(backups.FOLDER, readonly=True)
        uids = client.search(["ALL"])
        return client.fetch([max(uids)], ["BODY.PEEK[]"])[max(uids)][b"BODY[]"]
    finally:
        client.logout()


@pytest.mark.parametrize("kind", FORMATS)
def test_an_imported_identity_signs_like_an_enrolled_one(
    kind: str,
    devices: dict[str, Device],
    world: PkiWorld,
    mail_stack: MailStack,
    tmp_path: Path,
) -> None:
    alice, bob = devices[ALICE], devices[BOB]
    person = world.issue(ALICE, "rsa", publish=False)  # "from a commercial CA" bob trusts
    data = pkcs12_file(person, kind, tmp_path / kind)
    result = alice.ok("keys.import", {"pkcs12": b64(data), "password": PASSWORD})
    assert result["suite"] == "intl" and result["keyType"] == "rsa2048" and result["trusted"]
    assert result["published"] is False and result["replaced"] is None
    code = result["recoveryCode"]
    assert code, "the first backup of the address made its recovery code, shown once"

    (key,) = alice.ok("certs.list", {})["keys"]
    assert key["keyId"] == result["keyId"] and key["origin"] == "imported"
    assert key["status"] == "current" and key["backup"]["state"] == "proven"
    assert key["certificate"]["serial"] == format(person.certificate.serial_number, "x")
    held = {k.key_id for k in backup.read_backup(newest_backup(mail_stack), code)}
    assert held == {result["keyId"]}

    outcome = alice.ok(
        "compose.send",
        {"from": ALICE, "to": [BOB], "subject": f"Signed with my {kind} identity",
         "text": "Hello.\n", "encrypt": False},
    )  # fmt: skip
    assert outcome["status"] == "sent" and outcome["signed"]
    view = bob.ok("message.open", {"messageId": outcome["messageId"], "folder": "INBOX"})
    (signature,) = view["security"]["signatures"]
    assert signature["signer"] == ALICE and signature["chainValid"] and signature["fromMatches"]
    # Not published: the directory does not have it.
    status, body = get(world, f"/certs/{ALICE}")
    serials = {c["serial"] for c in json.loads(body)["certificates"]} if status == 200 else set()
    assert format(person.certificate.serial_number, "x") not in serials


def get(world: PkiWorld, path: str) -> tuple[int, bytes]:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"{world.url}{path}", timeout=10) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_an_imported_identity_decrypts_what_is_sent_to_it(
    devices: dict[str, Device], world: PkiWorld, tmp_path: Path
) -> None:
    alice, bob = devices[ALICE], devices[BOB]
    person = world.issue(ALICE, publish=False)
    data = pkcs12_file(person, "nss-ber", tmp_path / "nss")
    alice.ok("keys.import", {"pkcs12": b64(data), "password": PASSWORD})
    signed = alice.ok(
        "compose.send",
        {"from": ALICE, "to": [BOB], "subject": "Here is my certificate", "text": "Hi.\n",
         "encrypt": False},
    )  # fmt: skip
    bob.ok("message.open", {"messageId": signed["messageId"], "folder": "INBOX"})  # harvests
    sealed = bob.ok(
        "compose.send",
        {"from": BOB, "to": [ALICE], "subject": "Secret for your own certificate",
         "text": "Only alice reads this.\n"},
    )  # fmt: skip
    assert sealed["status"] == "sent" and sealed["encrypted"]
    view = alice.ok("message.open", {"messageId": sealed["messageId"], "folder": "INBOX"})
    assert view["security"]["decrypted"] and "Only alice reads this." in view["text"]


def test_a_file_that_cannot_be_an_identity_is_refused_in_words(
    devices: dict[str, Device], world: PkiWorld, tmp_path: Path
) -> None:
    alice = devices[ALICE]
    data = pkcs12_file(world.issue(ALICE, publish=False), "pbes2", tmp_path / "p")
    wrong = alice.error("keys.import", {"pkcs12": b64(data), "password": "not it"})
    assert wrong["code"] == "bad_params" and "password does not open" in wrong["message"]
    other = pkcs12_file(world.issue(BOB, publish=False), "pbes2", tmp_path / "b")
    refused = alice.error("keys.import", {"pkcs12": b64(other), "password": PASSWORD})
    assert (
        refused["code"] == "bad_params"
        and f"no usable identity for {ALICE}" in (refused["message"])
    )
    assert BOB in refused["message"]
    assert alice.ok("certs.list", {})["keys"] == []  # nothing was kept


def test_published_only_when_the_person_says_so(mail_stack: MailStack, tmp_path: Path) -> None:
    """Publishing proves the address to the CA by a real RFC 8823 challenge first."""
    ca = test_pki.root("A commercial CA").intermediate("Commercial S/MIME CA")
    party = ca.smime(ALICE, "p256")
    credential = Credential(party.key, party.asn1, tuple(party.chain_asn1))
    data = pkcs12.build_pfx(
        [pkcs12.Pkcs12Entry(credential.key, credential.certificate, credential.chain)], PASSWORD
    )
    with ConfiguredPki(mail_stack, tmp_path / "pki") as service:
        alice = Device("alice", ALICE, tmp_path / "alice")
        alice.folder.mkdir(parents=True)
        alice.start()
        try:
            alice.ok(
                "account.configure",
                {
                    "address": ALICE,
                    "password": mail_stack.users[ALICE],
                    "imapUrl": f"imaps://{quoted(ALICE)}@127.0.0.1:{mail_stack.imaps_port}",
                    "smtpUrl": f"smtp://{quoted(ALICE)}@127.0.0.1:{mail_stack.smtp_port}",
                    "caFile": str(mail_stack.ca_cert_path),
                    "pkiUrl": service.url,
                    "pkiRoots": service.roots_pem.decode("ascii"),
                },
            )
            result = alice.ok(
                "keys.import", {"pkcs12": b64(data), "password": PASSWORD, "publish": True}
            )
            assert result["published"] is True, result["publishProblem"]
            assert result["trusted"] is False and result["trustProblem"]  # another CA's
        finally:
            assert alice.host is not None and alice.host.close() == 0
        status, body = service.get(f"/certs/{ALICE}")
        assert status == 200
        listed = [c["pem"].encode() for c in json.loads(body)["certificates"]]
        assert [load_certificates(pem)[0].dump() for pem in listed] == [party.der]
