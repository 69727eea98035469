"""compose.send end to end: the real PKI service (directory, TSA) and the real mail stack
(aiosmtpd submission -> Dovecot), checked from the outside with OpenSSL."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from harness.mail import MailStack, free_port
from harness.pki_world import Person, PkiWorld, run

from native_host.domain.certs import CertificateBook
from native_host.domain.keystore import Keystore
from native_host.domain.sending import (
    MAX_ATTACHMENTS,
    Attachment,
    ComposeRequest,
    MissingCertificates,
    TooLarge,
    compose_send,
)
from native_host.infrastructure.mail_settings import MailSettings, Security, Server, resolve
from native_host.infrastructure.mailbox import Credentials, Mailbox, Outbox
from shared_pki import mime
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
