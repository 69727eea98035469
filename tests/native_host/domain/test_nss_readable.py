"""Mail from a person enrolled with the defaults is readable by NSS before 3.100 (Thunderbird
115, Debian 12's NSS 3.87), which rejects a whole message that carries one ECDH
(KeyAgreeRecipientInfo) recipient: alice and bob enroll with the defaults against the real PKI
service over real mail, alice sends bob a signed, encrypted message through the host's own send
path, and bob's NSS (`cmsutil`, libnss3-tools) decrypts the copy in his INBOX and verifies
alice's signature. On the previous default (ECDSA P-256, so ECDH for bob and for alice's own
copy) NSS refuses the message (SEC_ERROR_BAD_DER)."""

from __future__ import annotations

import email
import email.policy
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from asn1crypto import cms
from harness.mail import MailStack
from harness.peers import require
from harness.pki_service import ConfiguredPki, quoted

from native_host.domain import backups
from native_host.domain import enrollment as enr
from native_host.domain.certs import CertificateBook
from native_host.domain.keystore import Keystore
from native_host.domain.sending import ComposeRequest, compose_send
from native_host.infrastructure.acme_client import PkiSettings
from native_host.infrastructure.mail_settings import resolve
from native_host.infrastructure.mailbox import Credentials, Mailbox
from native_host.infrastructure.profile import open_profile
from shared_pki import header_protection, mime

pytestmark = pytest.mark.mail

ALICE, BOB = "alice@example.test", "bob@example.test"
KEYRING = "keyrings.alt.file.PlaintextKeyring"
MARKER = "Readable-by-Thunderbird-115"


def mailbox(stack: MailStack, user: str, outbox: Path | None = None) -> Mailbox:
    settings = resolve(
        user,
        imap_url=f"imaps://{quoted(user)}@127.0.0.1:{stack.imaps_port}",
        smtp_url=f"smtp://{quoted(user)}@127.0.0.1:{stack.smtp_port}",
    )
    return Mailbox(
        settings,
        Credentials(password=stack.users[user]),
        ca_file=stack.ca_cert_path,
        timeout=10,
        outbox=outbox,
    )


def run(*args: str | Path) -> bytes:
    done = subprocess.run(
        [require(str(args[0])), *map(str, args[1:])], capture_output=True, timeout=60, check=False
    )
    assert done.returncode == 0, (done.stdout + done.stderr).decode(errors="replace")
    return done.stdout


@pytest.fixture
def service(mail_stack: MailStack, tmp_path: Path) -> Iterator[ConfiguredPki]:
    with ConfiguredPki(mail_stack, tmp_path / "pki") as pki:
        yield pki


def enroll_with_defaults(
    stack: MailStack, service: ConfiguredPki, folder: Path, address: str
) -> Keystore:
    client = stack.imap_client(address)
    try:
        if client.folder_exists(backups.FOLDER):
            client.delete_folder(backups.FOLDER)
    finally:
        client.logout()
    profile = open_profile(folder / address.split("@")[0])
    with mailbox(stack, address) as box:
        enr.Enrollment(
            profile=profile,
            mailbox=box,
            pki=PkiSettings(service.acme_directory_url, service.roots_pem),
            mail_timeout=30,
            validation_timeout=30,
        ).enroll(address)  # the defaults: nothing chosen
    return Keystore.for_profile(profile)


def test_default_enrolled_alice_writes_to_bob_and_bobs_nss_reads_it(
    mail_stack: MailStack,
    service: ConfiguredPki,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", KEYRING)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    alice = enroll_with_defaults(mail_stack, service, tmp_path, ALICE)
    bob = enroll_with_defaults(mail_stack, service, tmp_path, BOB)

    roots = [c for c in PkiSettings(service.acme_directory_url, service.roots_pem).roots()]
    book = CertificateBook(tmp_path / "cache", roots, service.url)
    request = ComposeRequest(ALICE, to=(BOB,), subject="For an old mail program", text=MARKER)
    with mailbox(mail_stack, ALICE, outbox=tmp_path / "outbox") as box:
        outcome = compose_send(
            request,
            keystore=alice,
            book=book,
            mailbox=box,
            tsa_url=service.tsa_url,
            tsa_anchors=roots,
        )
    assert outcome.status == "sent" and outcome.encrypted and outcome.suite == "intl"

    client = mail_stack.imap_client(BOB)
    try:
        client.select_folder("INBOX", readonly=True)
        (uid,) = client.search(["HEADER", "Message-ID", outcome.message_id])
        raw = client.fetch([uid], ["BODY.PEEK[]"])[uid][b"BODY[]"]
    finally:
        client.logout()
    sealed = mime.unwrap(raw).der
    assert sealed is not None
    content = cms.ContentInfo.load(sealed)["content"]
    kinds = {info.name for info in content["recipient_infos"]}
    assert kinds == {"ktri"}, f"recipients {kinds}: NSS before 3.100 reads only ktri"
    assert len(content["recipient_infos"]) == 2  # bob and alice's own copy

    # bob's NSS database: his international key (PKCS#12 as the host exports it) and the
    # organisation's roots, trusted for mail.
    held = bob.current(BOB, "intl")
    assert held is not None
    exported = bob.export_pkcs12([held.key_id], "nss-import-1")
    folder = tmp_path / "nss"
    (folder / "db").mkdir(parents=True)
    (folder / "bob.p12").write_bytes(exported.data)
    (folder / "roots.pem").write_bytes(service.roots_pem)
    db = f"sql:{folder / 'db'}"
    run("certutil", "-N", "-d", db, "--empty-password")
    run("pk12util", "-i", folder / "bob.p12", "-d", db, "-W", "nss-import-1")
    intl_root = roots[0].dump()
    (folder / "root.der").write_bytes(intl_root)
    run("certutil", "-A", "-d", db, "-n", "organisation-root", "-t", "C,C,C", "-i",
        folder / "root.der")  # fmt: skip

    (folder / "sealed.der").write_bytes(sealed)
    inner = run("cmsutil", "-D", "-i", folder / "sealed.der", "-d", db)
    signed = mime.unwrap(inner)
    assert signed.kind == "multipart_signed" and signed.signature and signed.content
    # RFC 9788: NSS hands back the header-protected payload: every field inside, the Subject the
    # outside shows as "[...]", and the text under a Legacy Display Element of that Subject.
    assert b"\r\nSubject: [...]\r\n" in raw and b"old mail program" not in raw
    read = header_protection.read(mime.split_headers(raw)[0], signed.content, encrypted=True)
    assert read.hp == "cipher" and read.get("Subject") == "For an old mail program"
    assert read.discrepancies == ()
    text = email.message_from_bytes(signed.content, policy=email.policy.default).get_content()
    assert text.startswith("Subject: For an old mail program\n\n") and MARKER in text
    (folder / "signature.der").write_bytes(signed.signature)
    (folder / "content").write_bytes(signed.content)
    run("cmsutil", "-D", "-i", folder / "signature.der", "-c", folder / "content",
        "-d", db, "-u", "4")  # fmt: skip
