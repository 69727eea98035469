"""The host's operations through the REAL host process on pipes, as the browser uses them: two
devices (alice and bob: separate profiles, keyrings and stores) against the real mail stack
(Dovecot + SMTP submission) and the real PKI service (directory, TSA; certificates issued by
its CA as the ACME finalize step does, see test_certs.PkiWorld)."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from asn1crypto import pem as asn1_pem
from cryptography.hazmat.primitives.serialization import pkcs12
from harness.devices import (
    Device,
    account_params,
    b64,
    fetch_raw,
    make_device,
)
from harness.mail import MailStack
from harness.pki_world import Person, PkiWorld

pytestmark = pytest.mark.mail

ALICE, BOB, CAROL = "alice@example.test", "bob@example.test", "carol@example.test"
HTML = '<p>Hello <b>Bob</b> <img src="cid:logo@x"><script>alert(1)</script></p>'
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8
CSV = b"q,value\r\n1,10\r\n2,20\r\n"
EXPORT_PASSWORD = "export-Pa55-9c1d"
BODY_MARKER = "BODY-MARKER-51ab"


@dataclass
class Pair:
    alice: Device
    bob: Device


@pytest.fixture(scope="module")
def people(world: PkiWorld) -> dict[str, Person]:
    return {
        ALICE: world.issue(ALICE),
        BOB: world.issue(BOB),
        f"sm:{ALICE}": world.issue(ALICE, "sm2"),
        f"sm:{BOB}": world.issue(BOB, "sm2"),
    }


@pytest.fixture(scope="module")
def pair(
    world: PkiWorld,
    people: dict[str, Person],
    mail_stack: MailStack,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Pair]:
    """alice and bob, each with keys and a configured account, hosts running."""
    tmp = tmp_path_factory.mktemp("devices")
    alice = make_device(tmp, "alice", ALICE, world, people[ALICE], people[f"sm:{ALICE}"])
    bob = make_device(tmp, "bob", BOB, world, people[BOB], people[f"sm:{BOB}"])
    for device in (alice, bob):
        device.start()
        result = device.ok("account.configure", account_params(mail_stack, world, device.address))
        assert result["address"] == device.address
    try:
        yield Pair(alice, bob)
    finally:
        for device in (alice, bob):
            if device.host is not None:
                assert device.host.close() == 0


# ---- the story -----------------------------------------------------------------------------


def test_account_configure_proves_the_login_and_returns_no_secret(
    pair: Pair, mail_stack: MailStack, world: PkiWorld
) -> None:
    [account] = pair.alice.ok("account.list", {})["accounts"]
    assert account["address"] == ALICE
    assert account["imap"].startswith("imaps://") and account["smtp"].startswith("smtp://")
    assert account["pki"]["tsa"] == f"{world.url}/tsa"
    assert account["pki"]["certs"] == f"{world.url}/certs"
    assert mail_stack.users[ALICE] not in str(account)
    # the password lives in the keyring, not in the profile's files
    for path in pair.alice.profile.rglob("*"):
        if path.is_file():
            assert mail_stack.users[ALICE].encode() not in path.read_bytes(), path


def test_certs_list_shows_own_keys_with_status_suite_and_expiry(pair: Pair) -> None:
    keys = {key["suite"]: key for key in pair.alice.ok("certs.list", {})["keys"]}
    assert set(keys) == {"intl", "sm"}
    for key in keys.values():
        assert key["address"] == ALICE and key["status"] == "current"
        assert key["notAfter"] and key["certificate"]["expired"] is False
        assert key["backup"]["state"] in ("unknown", "proven")
    assert keys["intl"]["keyType"] == "ec-secp256r1"
    assert keys["sm"]["keyType"].startswith("sm2")


def test_certs_lookup_finds_bob_in_the_directory(pair: Pair, people: dict[str, Person]) -> None:
    results = pair.alice.ok("certs.lookup", {"addresses": [BOB, "nobody@example.test"]})
    found, missing = results["results"]
    assert found["address"] == BOB and found["source"] in ("directory", "cache")
    certs = {cert["suite"]: cert for cert in found["certificates"]}
    assert set(certs) == {"intl", "sm"}  # both algorithms, both from the directory
    for suite, person in (("intl", people[BOB]), ("sm", people[f"sm:{BOB}"])):
        assert certs[suite]["origin"] == "directory"
        expected = asn1_pem.armor("CERTIFICATE", person.certificate.dump()).decode("ascii")
        assert certs[suite]["pem"].strip() == expected.strip()
    assert missing["certificates"] == [] and missing["problems"]


def test_alice_sends_bob_and_bobs_host_opens_it_verified(pair: Pair, mail_stack: MailStack) -> None:
    pair.alice.events.clear()
    outcome = pair.alice.ok(
        "compose.send",
        {
            "from": ALICE,
            "to": [BOB],
            "subject": "Figures, encrypted",
            "text": f"Hello Bob,\nthe figures. {BODY_MARKER}\n",
            "html": HTML,
            "attachments": [
                {"name": "figures.csv", "contentType": "text/csv", "data": b64(CSV)},
                {"name": "logo.png", "contentType": "image/png", "data": b64(PNG)},
            ],
        },
        msg_id="send-1",
    )
    assert outcome["status"] == "sent", outcome["problem"]
    assert outcome["signed"] and outcome["encrypted"] and outcome["timestamped"]
    assert outcome["suite"] == "intl" and outcome["cipher"].startswith("aes")
    stages = [e["stage"] for e in pair.alice.events if e["id"] == "send-1"]
    assert stages[0].startswith("Looking up") and "Sending" in stages and stages[-1] == "Done"

    # bob's host fetches it from his INBOX by Message-ID and opens it
    view = pair.bob.ok("message.open", {"messageId": outcome["messageId"], "folder": "INBOX"})
    security = view["security"]
    assert security["encrypted"] and security["decrypted"] and security["suite"] == "intl"
    assert security["signed"] and security["verified"]
    [signature] = security["signatures"]
    assert signature["signer"] == ALICE and signature["fromMatches"] and signature["chainValid"]
    assert signature["timestamp"]["valid"] and signature["timestamp"]["trustedTime"]
    assert signature["revocation"]["status"] == "good"  # the CA's CRLs, fetched by bob's host
    assert BODY_MARKER in view["text"]
    assert "<script" not in view["html"] and "<b>Bob</b>" in view["html"]
    assert view["headers"]["subject"] == "Figures, encrypted"
    attachments = {a["name"]: base64.b64decode(a["data"]) for a in view["attachments"]}
    assert attachments == {"figures.csv": CSV, "logo.png": PNG}

    # the same message given as raw bytes opens the same way; alice's certificate was harvested
    raw = fetch_raw(mail_stack, BOB, outcome["messageId"])
    again = pair.bob.ok("message.open", {"raw": b64(raw)})
    assert again["security"]["verified"] and again["text"] == view["text"]
    harvested = pair.bob.ok("certs.lookup", {"addresses": [ALICE]})["results"][0]
    assert {c["origin"] for c in harvested["certificates"]} >= {"directory"}


def test_an_account_setting_decides_whether_encrypted_subjects_show(
    pair: Pair, mail_stack: MailStack
) -> None:
    """account.settings stores hideSubject with the account (account.list shows it); compose.send
    follows it unless told, and bob's message.open shows the real Subject, protected, either
    way. The setting survives configuring the account again."""
    assert pair.alice.ok("account.settings", {})["hideSubject"] is True
    subjects = {}
    for hide in (True, False):
        assert pair.alice.ok("account.settings", {"hideSubject": hide})["hideSubject"] is hide
        [account] = pair.alice.ok("account.list", {})["accounts"]
        assert account["hideSubject"] is hide
        subject = f"Setting {hide}: the Nightjar figures"
        outcome = pair.alice.ok(
            "compose.send", {"from": ALICE, "to": [BOB], "subject": subject, "text": "x\n"}
        )
        assert outcome["headerProtection"] == "cipher" and outcome["subjectHidden"] is hide
        raw = fetch_raw(mail_stack, BOB, outcome["messageId"])
        assert (subject.encode() in raw) is not hide and (b"Subject: [...]" in raw) is hide
        view = pair.bob.ok("message.open", {"raw": b64(raw)})
        assert view["headers"]["subject"] == subject
        protection = view["headerProtection"]
        assert protection["protected"] and protection["hp"] == "cipher"
        expected = "signed and encrypted" if hide else "signed"
        assert protection["fields"]["subject"] == expected and protection["warnings"] == []
        subjects[hide] = subject
    told = pair.alice.ok(
        "compose.send",
        {"from": ALICE, "to": [BOB], "subject": "Told to hide", "text": "x\n", "hideSubject": True},
    )
    assert told["subjectHidden"] is True
    refused = pair.alice.call("account.settings", {"hideSubject": "yes"})
    assert refused["error"]["code"] == "bad_params"
    pair.alice.ok("account.settings", {"hideSubject": True})


def test_the_same_story_with_the_sm_suite(pair: Pair) -> None:
    """SM2 signature and key transport, SM4-CBC, SM3: chosen on request, opened without being
    told, verified with the SM2 chain and the timestamp."""
    outcome = pair.alice.ok(
        "compose.send",
        {
            "from": ALICE,
            "to": [BOB],
            "subject": "SM suite",
            "text": f"SM2/SM3/SM4 {BODY_MARKER}\n",
            "attachments": [{"name": "data.csv", "contentType": "text/csv", "data": b64(CSV)}],
            "suite": "sm",
        },
        msg_id="send-sm",
    )
    assert outcome["status"] == "sent", outcome["problem"]
    assert outcome["suite"] == "sm" and outcome["cipher"] == "sm4_cbc"
    view = pair.bob.ok("message.open", {"messageId": outcome["messageId"], "folder": "INBOX"})
    security = view["security"]
    assert security["suite"] == "sm" and security["decrypted"] and security["verified"]
    [signature] = security["signatures"]
    assert signature["signer"] == ALICE and signature["chainValid"]
    assert signature["timestamp"]["valid"]
    assert BODY_MARKER in view["text"]
    assert {a["name"]: base64.b64decode(a["data"]) for a in view["attachments"]} == {
        "data.csv": CSV
    }


def test_a_long_op_does_not_block_echo(pair: Pair) -> None:
    host = pair.alice.host
    assert host is not None
    big = bytes(range(256)) * 8192  # 2 MiB: encryption and submission take a while
    host.send(
        {
            "id": "slow",
            "op": "compose.send",
            "params": {
                "from": ALICE,
                "to": [BOB],
                "subject": "Big",
                "text": "x\n",
                "attachments": [
                    {"name": "big.bin", "contentType": "application/octet-stream", "data": b64(big)}
                ],
            },
        }
    )
    host.send({"id": "quick", "op": "echo", "params": {"payload": "pong"}})
    answers = []
    while len(answers) < 2:
        message = host.receive()
        assert message is not None
        if message.get("event") != "progress":
            answers.append(message)
    assert [a["id"] for a in answers] == ["quick", "slow"], answers
    assert answers[0]["result"] == "pong"
    assert answers[1]["ok"] is True and answers[1]["result"]["status"] == "sent"


MALLORY = "mallory@example.test"
FORGED_FROM = {
    # what the read path answered before: valid true and fromMatches null, null, true
    "=?utf-8?q?alice=40example.test?=": (
        "mismatch",
        f"Signed by {MALLORY}, but the message says it is from {ALICE}.",
    ),
    "undisclosed-recipients:;": (
        "no_sender",
        f"Signed by {MALLORY}, but the message names no sender.",
    ),
    f"{MALLORY}, {ALICE}": (
        "several_senders",
        f"Signed by {MALLORY}, but the message names more than one sender ({MALLORY}, {ALICE}); "
        "a signature vouches for one.",
    ),
}


@pytest.mark.parametrize("from_value", list(FORGED_FROM))
def test_a_signature_by_someone_else_than_the_one_sender_is_a_mismatch_in_words(
    pair: Pair, world: PkiWorld, from_value: str
) -> None:
    """Signed with mallory's (valid) certificate, the message claims another sender, none or
    several: message.open says the mismatch with its reason, never null, never valid."""
    from shared_pki import smime

    mallory = world.issue(MALLORY, publish=False)
    body = b"Content-Type: text/plain; charset=utf-8\r\n\r\nPay the bearer.\r\n"

    def signed(value: str) -> bytes:
        head = f"From: {value}\r\nTo: {BOB}\r\nSubject: invoice\r\n".encode()
        return smime.sign_message(head + body, mallory.credential)

    honest = pair.bob.ok("message.open", {"raw": b64(signed(MALLORY))})["security"]
    [signature] = honest["signatures"]
    assert signature["valid"] and signature["fromMatches"] is True and honest["verified"]
    assert signature["fromCode"] == "match"

    view = pair.bob.ok("message.open", {"raw": b64(signed(from_value))})
    code, reason = FORGED_FROM[from_value]
    [signature] = view["security"]["signatures"]
    assert signature["fromMatches"] is False and signature["fromCode"] == code
    assert signature["fromReason"] == reason
    assert signature["valid"] is False and view["security"]["verified"] is False
    assert f"from_{code}" in signature["codes"] and reason in signature["reasons"]
    assert signature["chainValid"] and reason in signature["summary"]
    assert "Valid signature" not in signature["summary"]


def test_a_revoked_signer_and_a_revoked_recipient_through_the_host(
    world: PkiWorld, mail_stack: MailStack, tmp_path: Path
) -> None:
    """A reader whose profile has no CRL yet: a signature made after its certificate was
    revoked (by the trusted time of its timestamp) is not valid, and the same person's
    certificate is never handed out for encryption; both say why. Bob's certificates (ECDSA
    and SM2) say their revocation was checked."""
    from native_host.domain.sending import ComposeRequest, build_messages
    from shared_pki.service.ca import issuance

    rob = world.issue("rob.revoked@example.test")
    request = ComposeRequest(
        sender=rob.address, to=(CAROL,), subject="late", text="x\n", encrypt=False
    )
    built = build_messages(
        request, credential=rob.credential, suite="intl", sender_certificate=None,
        recipient_certificates={}, tsa_url=world.tsa_url, tsa_anchors=world.roots,
    )  # fmt: skip
    assert built.timestamp is not None
    compromised = built.timestamp.gen_time.timestamp() - 3600
    issuance.revoke(world.state.store, f"{rob.certificate.serial_number:x}", 1, now=compromised)
    reader = make_device(tmp_path, "reader", CAROL, world, None)
    reader.start()
    try:
        reader.ok("account.configure", account_params(mail_stack, world, CAROL))
        view = reader.ok("message.open", {"raw": b64(built.copies[0].message)})
        [signature] = view["security"]["signatures"]
        assert signature["valid"] is False and "revoked" in signature["codes"]
        assert signature["revocation"]["status"] == "revoked"
        assert signature["revocation"]["validAsOf"] is None and signature["revocation"]["revokedAt"]
        assert "before the trusted time" in signature["revocation"]["summary"]
        [found] = reader.ok("certs.lookup", {"addresses": [rob.address]})["results"]
        assert found["certificates"] == []  # the directory withdrew it; the CRL lists it too
        [found] = reader.ok("certs.lookup", {"addresses": [BOB]})["results"]
        assert sorted(c["suite"] for c in found["certificates"]) == ["intl", "sm"]
        assert {c["revocation"]["status"] for c in found["certificates"]} == {"good"}
    finally:
        assert reader.host is not None and reader.host.close() == 0


def test_missing_certificate_is_a_typed_error_and_nothing_is_sent(pair: Pair) -> None:
    error = pair.alice.error(
        "compose.send", {"from": ALICE, "to": [BOB, "nobody@example.test"], "text": "x"}
    )
    assert error["code"] == "missing_certificates"
    assert "nobody@example.test" in error["message"] and BOB not in error["message"]


def test_keys_export_gives_the_pkcs12_the_user_asked_for(
    pair: Pair, people: dict[str, Person]
) -> None:
    result = pair.alice.ok("keys.export", {"flavour": "modern", "password": EXPORT_PASSWORD})
    key, cert, _extra = pkcs12.load_key_and_certificates(
        base64.b64decode(result["pkcs12"]), EXPORT_PASSWORD.encode()
    )
    assert key is not None and cert is not None
    assert cert.public_bytes(_der()) == people[ALICE].certificate.dump()
    # the legacy flavour takes RSA keys only: alice's P-256 key is left out, so nothing is left
    error = pair.alice.error("keys.export", {"flavour": "legacy", "password": EXPORT_PASSWORD})
    assert error["code"] == "op_failed" and "legacy" in error["message"]
    assert pair.alice.error("keys.export", {"password": ""})["code"] == "bad_params"


def _der() -> Any:
    from cryptography.hazmat.primitives.serialization import Encoding

    return Encoding.DER


def test_errors_say_what_to_do_next(pair: Pair, mail_stack: MailStack, world: PkiWorld) -> None:
    wrong = {**account_params(mail_stack, world, CAROL), "password": "not-her-password"}
    error = pair.bob.error("account.configure", wrong)
    assert error["code"] == "mail_failed" and "IMAP" in error["message"]
    assert "not-her-password" not in error["message"]
    error = pair.bob.error("compose.send", {"from": CAROL, "to": [ALICE], "text": "x"})
    assert error["code"] == "not_configured" and "autosmime account add" in error["message"]
    error = pair.bob.error("account.configure", {**wrong, "pkiRoots": "not a PEM"})
    assert error["code"] == "bad_params"
    error = pair.bob.error("message.open", {"raw": "%%%"})
    assert error["code"] == "bad_params"


def test_a_fresh_profile_says_no_account_is_set_up(tmp_path: Path, world: PkiWorld) -> None:
    device = make_device(tmp_path, "fresh", CAROL, world, None)
    device.start()
    try:
        error = device.error("certs.lookup", {"addresses": [BOB]})
        assert error == {
            "code": "not_configured",
            "message": "No account is set up yet: run `autosmime account add ADDRESS` or open "
            "the extension's setup.",
        }
        assert device.ok("certs.list", {}) == {"keys": []}
        assert device.error("keys.export", {"password": "x"})["code"] == "not_configured"
    finally:
        assert device.host is not None and device.host.close() == 0


def test_secrets_never_reach_the_host_log(pair: Pair, mail_stack: MailStack) -> None:
    # runs after the story above (module order): the logs hold all of it
    for device in (pair.alice, pair.bob):
        log = device.log()
        assert '"op": "compose.send"' in log or '"op": "message.open"' in log
        for secret in (
            mail_stack.users[ALICE],
            mail_stack.users[BOB],
            "not-her-password",
            EXPORT_PASSWORD,
            BODY_MARKER,
            b64(CSV),
        ):
            assert secret not in log, (device.name, secret)
