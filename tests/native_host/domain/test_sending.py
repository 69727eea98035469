"""compose.send end to end: the real PKI service (directory, TSA) and the real mail stack
(aiosmtpd submission -> Dovecot), checked from the outside with OpenSSL."""

from __future__ import annotations

import dataclasses
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from harness.mail import MailStack, free_port
from harness.peers import require
from harness.pki_world import Person, PkiWorld, run

from native_host.domain import reading
from native_host.domain.certs import CertificateBook
from native_host.domain.keystore import Keystore
from native_host.domain.sending import (
    MAX_ATTACHMENTS,
    Attachment,
    ComposeRequest,
    MissingCertificates,
    SendOutcome,
    TooLarge,
    compose_send,
)
from native_host.infrastructure.mail_settings import MailSettings, Security, Server, resolve
from native_host.infrastructure.mailbox import Credentials, Mailbox, Outbox
from shared_pki import header_protection, mime
from shared_pki.cms import enveloped
from shared_pki.errors import NoMatchingKey

pytestmark = pytest.mark.mail

ALICE, BOB, CAROL = "alice@example.test", "bob@example.test", "carol@example.test"
HTML = '<p>Hello <b>Bob</b>, see <img src="cid:logo@x"></p>'
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4


@dataclass
class People:
    alice: Person
    bob: Person
    carol: Person


@pytest.fixture(scope="module")
def people(world: PkiWorld) -> People:
    return People(world.issue(ALICE), world.issue(BOB), world.issue(CAROL, "rsa"))


def settings_for(stack: MailStack, user: str) -> MailSettings:
    return resolve(
        user,
        imap_url=f"imaps://{user.replace('@', '%40')}@127.0.0.1:{stack.imaps_port}",
        smtp_url=f"smtp://{user.replace('@', '%40')}@127.0.0.1:{stack.smtp_port}",
    )


@pytest.fixture
def alice_box(mail_stack: MailStack, tmp_path: Path) -> Iterator[Mailbox]:
    with Mailbox(
        settings_for(mail_stack, ALICE),
        Credentials(password=mail_stack.users[ALICE]),
        ca_file=mail_stack.ca_cert_path,
        timeout=10,
        outbox=tmp_path / "outbox",
    ) as box:
        yield box


@dataclass
class Host:
    keystore: Keystore
    book: CertificateBook


@pytest.fixture
def alice_host(world: PkiWorld, people: People, tmp_path: Path) -> Host:
    store = world.keystore(tmp_path / "keys", people.alice)
    return Host(store, CertificateBook(tmp_path / "cache", world.roots, world.url))


def fetch_all(stack: MailStack, user: str, message_id: str, folder: str = "INBOX") -> list[bytes]:
    client = stack.imap_client(user)
    try:
        if not client.folder_exists(folder):
            return []
        client.select_folder(folder, readonly=True)
        uids = client.search(["HEADER", "Message-ID", message_id])
        return [data[b"BODY[]"] for data in client.fetch(uids, ["BODY.PEEK[]"]).values()]
    finally:
        client.logout()


def headers_of(message: bytes) -> bytes:
    return mime.split_headers(message)[0]


def recipients_of(message: bytes) -> int:
    der = mime.unwrap(message).der
    assert der is not None
    return len(enveloped.inspect(der).recipients)


def test_alice_sends_bob_html_and_two_attachments_openssl_decrypts_and_verifies(
    world: PkiWorld,
    people: People,
    alice_host: Host,
    alice_box: Mailbox,
    mail_stack: MailStack,
    tmp_path: Path,
) -> None:
    request = ComposeRequest(
        sender=ALICE,
        to=(BOB,),
        subject="Quarterly figures — encrypted",
        text="Hello Bob,\nthe figures.\n",
        html=HTML,
        attachments=(
            Attachment("figures.csv", "text/csv", b"q,value\r\n1,10\r\n2,20\r\n"),
            Attachment("logo.png", "image/png", PNG),
        ),
    )
    outcome = compose_send(
        request,
        keystore=alice_host.keystore,
        book=alice_host.book,
        mailbox=alice_box,
        tsa_url=world.tsa_url,
        tsa_anchors=world.roots,
    )
    assert outcome.status == "sent", outcome.problem
    assert outcome.signed and outcome.encrypted and outcome.suite == "intl"
    assert outcome.cipher and outcome.cipher.startswith("aes")
    assert outcome.timestamped and outcome.timestamp_problem is None

    [received] = fetch_all(mail_stack, BOB, outcome.message_id)
    assert b"application/pkcs7-mime" in received and b"figures.csv" not in received
    assert recipients_of(received) == 2  # bob and alice herself
    path = tmp_path / "received.eml"
    path.write_bytes(received)
    bob_key, bob_cert = people.bob.write(tmp_path)
    decrypted = run(
        "openssl", "cms", "-decrypt", "-in", path, "-recip", bob_cert, "-inkey", bob_key
    )
    assert b"multipart/signed" in decrypted
    (tmp_path / "decrypted.eml").write_bytes(decrypted)
    content = run(
        "openssl", "cms", "-verify", "-in", tmp_path / "decrypted.eml",
        "-CAfile", world.roots_pem(tmp_path),
    )  # fmt: skip
    assert b"figures.csv" in content and b"logo.png" in content and b"text/html" in content
    # The Sent copy was filed, and alice can read it (encrypted to her too).
    [sent] = fetch_all(mail_stack, ALICE, outcome.message_id, "Sent")
    assert sent == received or recipients_of(sent) == 2


def test_bcc_recipients_get_separate_copies_that_reveal_no_one(
    world: PkiWorld, people: People, alice_host: Host, alice_box: Mailbox, mail_stack: MailStack
) -> None:
    request = ComposeRequest(
        sender=ALICE, to=(BOB,), bcc=(CAROL,), subject="With a blind copy", text="Hi.\n"
    )
    outcome = compose_send(
        request, keystore=alice_host.keystore, book=alice_host.book, mailbox=alice_box,
        tsa_url=world.tsa_url,
    )  # fmt: skip
    assert outcome.status == "sent", outcome.problem
    [to_bob] = fetch_all(mail_stack, BOB, outcome.message_id)
    [to_carol] = fetch_all(mail_stack, CAROL, outcome.message_id)
    assert b"carol" not in headers_of(to_bob).lower()
    assert b"bcc" not in headers_of(to_bob).lower() and b"bcc" not in headers_of(to_carol).lower()
    assert recipients_of(to_bob) == 2 and recipients_of(to_carol) == 2
    bob_pair = [(people.bob.certificate, people.bob.key)]
    carol_pair = [(people.carol.certificate, people.carol.key)]
    assert enveloped.decrypt(mime.unwrap(to_carol).der, carol_pair)
    with pytest.raises(NoMatchingKey):
        enveloped.decrypt(mime.unwrap(to_carol).der, bob_pair)
    with pytest.raises(NoMatchingKey):
        enveloped.decrypt(mime.unwrap(to_bob).der, carol_pair)


def test_missing_certificate_sends_nothing_and_lists_who(
    world: PkiWorld, alice_host: Host, alice_box: Mailbox, mail_stack: MailStack
) -> None:
    request = ComposeRequest(
        sender=ALICE, to=(BOB, "dave@example.test"), cc=("erin.none@example.test",),
        subject="Never sent", text="x\n",
    )  # fmt: skip
    with pytest.raises(MissingCertificates) as refused:
        compose_send(
            request, keystore=alice_host.keystore, book=alice_host.book, mailbox=alice_box,
            tsa_url=world.tsa_url,
        )  # fmt: skip
    assert set(refused.value.missing) == {"dave@example.test", "erin.none@example.test"}
    assert "dave@example.test" in refused.value.message
    assert alice_box.outbox is not None and alice_box.outbox.entries() == []
    client = mail_stack.imap_client(BOB)
    try:
        client.select_folder("INBOX", readonly=True)
        assert client.search(["HEADER", "Subject", "Never sent"]) == []
    finally:
        client.logout()


def test_attachments_over_25_mb_are_refused(alice_host: Host, alice_box: Mailbox) -> None:
    big = Attachment("big.bin", "application/octet-stream", b"\0" * (MAX_ATTACHMENTS + 1))
    request = ComposeRequest(sender=ALICE, to=(BOB,), attachments=(big,))
    with pytest.raises(TooLarge, match="25 MB"):
        compose_send(
            request, keystore=alice_host.keystore, book=alice_host.book, mailbox=alice_box,
            tsa_url=None,
        )  # fmt: skip


def test_smtp_down_keeps_the_message_in_the_outbox_until_it_can_go_once(
    world: PkiWorld, alice_host: Host, mail_stack: MailStack, tmp_path: Path
) -> None:
    good = settings_for(mail_stack, ALICE)
    down = dataclasses.replace(
        good, smtp=Server("smtp", "127.0.0.1", free_port(), Security.STARTTLS, ALICE)
    )
    creds = Credentials(password=mail_stack.users[ALICE])
    outbox = tmp_path / "outbox"
    request = ComposeRequest(
        sender=ALICE, to=(BOB,), bcc=(CAROL,), subject="Queued while down", text="later\n"
    )
    with Mailbox(down, creds, ca_file=mail_stack.ca_cert_path, outbox=outbox, timeout=5) as box:
        outcome = compose_send(
            request, keystore=alice_host.keystore, book=alice_host.book, mailbox=box,
            tsa_url=f"http://127.0.0.1:{free_port()}/tsa",
        )  # fmt: skip
    assert outcome.status == "queued" and "outbox" in (outcome.problem or "")
    assert not outcome.timestamped and outcome.timestamp_problem.startswith("Timestamp missing")
    assert len(Outbox(outbox).entries()) == 2  # bob's copy and carol's
    assert fetch_all(mail_stack, BOB, outcome.message_id) == []
    with Mailbox(good, creds, ca_file=mail_stack.ca_cert_path, outbox=outbox, timeout=5) as box:
        assert [r.status for r in box.flush_outbox()][:2] == ["sent", "sent"]
        assert box.flush_outbox() == []
    assert len(fetch_all(mail_stack, BOB, outcome.message_id)) == 1
    assert len(fetch_all(mail_stack, CAROL, outcome.message_id)) == 1


# ---- RFC 9788 header protection, read back by peers nobody here wrote -------------------------

SECRET_SUBJECT = "Project Nightjar: the acquisition price"


def send(alice_host: Host, alice_box: Mailbox, world: PkiWorld, **fields: object) -> SendOutcome:
    request = ComposeRequest(sender=ALICE, to=(CAROL,), subject=SECRET_SUBJECT, **fields)
    outcome = compose_send(
        request, keystore=alice_host.keystore, book=alice_host.book, mailbox=alice_box,
        tsa_url=world.tsa_url, tsa_anchors=world.roots,
    )  # fmt: skip
    assert outcome.status == "sent", outcome.problem
    return outcome


def opened_by_carol(world: PkiWorld, people: People, raw: bytes) -> reading.OpenedView:
    pair = [(people.carol.certificate, people.carol.key)]
    return reading.open_message(raw, keystore=None, trust_anchors=world.roots, keys=pair)


@pytest.fixture(scope="module")
def carol_nss(world: PkiWorld, people: People, tmp_path_factory: pytest.TempPathFactory) -> str:
    """An NSS database holding carol's key (RSA) and trusting the PKI's international root."""
    folder = tmp_path_factory.mktemp("nss")
    key, cert = people.carol.write(folder)
    (folder / "carol.pem").write_bytes(key.read_bytes() + cert.read_bytes())
    run(
        require("openssl"), "pkcs12", "-export", "-in", folder / "carol.pem", "-out",
        folder / "carol.p12", "-passout", "pass:nss", "-certpbe", "AES-256-CBC",
        "-keypbe", "AES-256-CBC", "-macalg", "sha256",
    )  # fmt: skip
    (folder / "db").mkdir()
    db = f"sql:{folder / 'db'}"
    run(require("certutil"), "-N", "-d", db, "--empty-password")
    run(require("pk12util"), "-i", folder / "carol.p12", "-d", db, "-W", "nss")
    roots = world.roots_pem(folder)
    run(require("certutil"), "-A", "-d", db, "-n", "intl-root", "-t", "C,C,C", "-i", roots)
    return db


def test_encrypted_mail_says_only_dots_outside_and_openssl_and_nss_still_open_it(
    world: PkiWorld,
    people: People,
    alice_host: Host,
    alice_box: Mailbox,
    mail_stack: MailStack,
    carol_nss: str,
    tmp_path: Path,
) -> None:
    """What Dovecot holds for carol: Subject "[...]" outside, the real one nowhere in the
    clear. OpenSSL and NSS decrypt and verify it (the CMS layers are unchanged) and hand back
    the hp="cipher" payload with every field inside and the Legacy Display Element at the top
    of the text; our reader shows the real Subject, protected, with that element hidden."""
    text = "Carol, the price is in the attachment.\n"
    outcome = send(alice_host, alice_box, world, text=text, cc=(BOB,))
    assert outcome.header_protection == "cipher" and outcome.subject_hidden
    assert outcome.to_json()["headerProtection"] == "cipher"
    [raw] = fetch_all(mail_stack, CAROL, outcome.message_id)
    outer = headers_of(raw)
    assert b"\r\nSubject: [...]\r\n" in b"\r\n" + outer
    assert b"Nightjar" not in raw and b"HP-Outer" not in raw

    key, cert = people.carol.write(tmp_path)
    (tmp_path / "raw.eml").write_bytes(raw)
    signed = run(
        require("openssl"), "cms", "-decrypt", "-in", tmp_path / "raw.eml", "-recip", cert,
        "-inkey", key,
    )  # fmt: skip
    (tmp_path / "signed.eml").write_bytes(signed)
    roots = world.roots_pem(tmp_path)
    payload = run(
        require("openssl"), "cms", "-verify", "-in", tmp_path / "signed.eml", "-CAfile", roots
    )
    read = header_protection.read(outer, mime.canonicalize(payload), encrypted=True)
    assert read.hp == "cipher" and read.get("Subject") == SECRET_SUBJECT
    assert read.get("Cc") == BOB and read.get("Message-ID") == outcome.message_id
    assert read.confidential == ("subject",) and read.discrepancies == ()
    assert read.legacy_display_hidden == 1
    assert f"Subject: {SECRET_SUBJECT}".encode() in base64_bodies(payload)

    # NSS (cmsutil) verifies the signature over the protected payload. (NSS 3.87 cannot decrypt
    # this envelope: alice's P-256 key makes her own copy an ECDH recipient. With the default
    # RSA keys it does: test_nss_readable.py decrypts header-protected mail from Dovecot.)
    layer = mime.unwrap(mime.canonicalize(signed))
    assert layer.kind == "multipart_signed" and layer.signature and layer.content
    (tmp_path / "signature.der").write_bytes(layer.signature)
    (tmp_path / "content").write_bytes(layer.content)
    run(
        require("cmsutil"), "-D", "-i", tmp_path / "signature.der", "-c", tmp_path / "content",
        "-d", carol_nss, "-u", "4",
    )  # fmt: skip
    nss_read = header_protection.read(outer, layer.content, encrypted=True)
    assert nss_read.get("Subject") == SECRET_SUBJECT and nss_read.hp == "cipher"
    (tmp_path / "altered").write_bytes(layer.content.replace(b"Nightjar", b"Nightowl"))
    refused = subprocess.run(
        [require("cmsutil"), "-D", "-i", tmp_path / "signature.der", "-c", tmp_path / "altered",
         "-d", carol_nss, "-u", "4"],
        capture_output=True, timeout=60, check=False,
    )  # fmt: skip
    assert refused.returncode != 0  # the same call fails on a changed protected Subject

    view = opened_by_carol(world, people, raw)
    assert view.headers["subject"] == SECRET_SUBJECT and view.headers["cc"] == BOB
    assert view.header_protection.protected and view.header_protection.hp == "cipher"
    assert view.header_protection.fields["subject"] == "signed and encrypted"
    assert view.header_protection.fields["from"] == "signed"
    assert view.header_protection.warnings == ()
    assert view.text == text  # the Legacy Display Element is hidden
    assert [s.from_matches for s in view.security.signatures] == [True]


def base64_bodies(entity: bytes) -> bytes:
    """Every base64 body of an entity, decoded (the text parts of a legacy display)."""
    import email
    import email.policy

    message = email.message_from_bytes(entity, policy=email.policy.compat32)
    return b"\n".join(
        part.get_payload(decode=True) or b"" for part in message.walk() if not part.is_multipart()
    )


def test_signed_mail_carries_its_fields_inside_the_signature_as_hp_clear(
    world: PkiWorld, people: People, alice_host: Host, alice_box: Mailbox, mail_stack: MailStack
) -> None:
    outcome = send(alice_host, alice_box, world, text="Signed, readable.\n", encrypt=False)
    assert outcome.header_protection == "clear" and not outcome.subject_hidden
    [raw] = fetch_all(mail_stack, CAROL, outcome.message_id)
    assert f"Subject: {SECRET_SUBJECT}".encode() in headers_of(raw)
    view = opened_by_carol(world, people, raw)
    assert view.header_protection.hp == "clear"
    assert view.header_protection.fields["subject"] == "signed"
    assert view.headers["subject"] == SECRET_SUBJECT and view.text == "Signed, readable.\n"
    # Changing the subject outside is said; the signed one is shown.
    changed = raw.replace(f"Subject: {SECRET_SUBJECT}".encode(), b"Subject: Nothing to see", 1)
    view = opened_by_carol(world, people, changed)
    assert view.headers["subject"] == SECRET_SUBJECT
    assert [w.field for w in view.header_protection.warnings] == ["subject"]


def test_an_account_that_shows_subjects_still_protects_them(
    world: PkiWorld, people: People, alice_host: Host, alice_box: Mailbox, mail_stack: MailStack
) -> None:
    outcome = send(alice_host, alice_box, world, text="Subject in the clear.\n", hide_subject=False)
    assert outcome.header_protection == "cipher" and not outcome.subject_hidden
    [raw] = fetch_all(mail_stack, CAROL, outcome.message_id)
    assert f"Subject: {SECRET_SUBJECT}".encode() in headers_of(raw)
    view = opened_by_carol(world, people, raw)
    assert view.header_protection.fields["subject"] == "signed"
    assert view.header_protection.legacy_display_hidden == 0
    assert view.text == "Subject in the clear.\n"


def test_the_signer_is_checked_against_the_protected_from(
    world: PkiWorld, people: People, alice_host: Host, alice_box: Mailbox, mail_stack: MailStack
) -> None:
    """A relay that rewrites the outer From of alice's encrypted mail to carol's address: the
    signature still matches the protected From (alice), and the rewrite is a warning."""
    outcome = send(alice_host, alice_box, world, text="From alice.\n")
    [raw] = fetch_all(mail_stack, CAROL, outcome.message_id)
    forged = raw.replace(f"From: {ALICE}".encode(), f"From: {CAROL}".encode(), 1)
    assert forged != raw
    view = opened_by_carol(world, people, forged)
    assert view.headers["from"] == ALICE
    assert [s.from_matches for s in view.security.signatures] == [True]
    [warning] = view.header_protection.warnings
    assert warning.field == "from" and warning.severity == "warning"
