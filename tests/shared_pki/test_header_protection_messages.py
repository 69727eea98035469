"""RFC 9788 header protection on whole messages, with the RFC 9216 example keys: what we sign
(hp="clear") and sign and encrypt (hp="cipher") re-reads with every header field; the CMS layer
is unchanged, so OpenSSL, NSS (cmsutil) and Bouncy Castle still verify and decrypt it, and the
payload they hand back reads the same; a message without hp reads as it always did."""

from __future__ import annotations

import datetime
import functools
import subprocess
from pathlib import Path

import pytest
from harness.peers import bouncy_castle, require

from shared_pki import header_protection as hp
from shared_pki import mime, smime
from shared_pki.errors import MalformedInput
from shared_pki.keys import Certificate, Credential, load_certificates, load_private_key

VECTORS = Path(__file__).resolve().parents[1] / "vectors"
RFC9216 = VECTORS / "rfc9216"
AT = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)  # inside every RFC 9216 certificate

HEADERS = [
    ("From", "Alice Lovelace <alice@smime.example>"),
    ("To", "Bob Babbage <bob@smime.example>"),
    ("Cc", "Carlos <carlos@smime.example>"),
    ("Date", "Sat, 20 Feb 2021 10:09:02 -0500"),
    ("Subject", "Grüße: the FooCorp contract"),
    ("Message-ID", "<hp-roundtrip@smime.example>"),
    ("In-Reply-To", "<earlier@smime.example>"),
    ("References", "<first@smime.example> <earlier@smime.example>"),
    ("Reply-To", "Alice Lovelace <alice@smime.example>"),
    ("Keywords", "contract"),
]
ENTITY = mime.build_entity(
    "Bob, we need to cancel this contract.\nFrom the first line on.  ",
    "<p>Bob, we need to cancel this contract.</p>",
    [("terms.bin", "application/octet-stream", bytes(range(256)))],
)
SUBJECT_BYTES = (b"FooCorp", b"Gr=C3=BC", "Grüße".encode())


@functools.cache
def cert(section: str) -> Certificate:
    (certificate,) = load_certificates((RFC9216 / f"section-{section}.crt").read_bytes())
    return certificate


@functools.cache
def key(section: str):
    return load_private_key((RFC9216 / f"section-{section}.key").read_bytes())


ALICE = Credential(key("4.2"), cert("4.1"), ())
ALICE_ENCRYPTION = cert("4.3")
BOB_KEYS = [(cert("5.3"), key("5.4"))]
ANCHORS = [cert("3.1")]


def message() -> bytes:
    return mime.with_outer_headers(ENTITY, HEADERS)


def sign_and_encrypt(headers=HEADERS) -> bytes:
    protected = hp.protect(headers, ENTITY, encrypted=True)
    signed = smime.sign_entity(protected.entity, ALICE)
    sealed = smime.encrypt_entity(signed, [cert("5.3")], sender=ALICE_ENCRYPTION)
    return mime.with_outer_headers(sealed, protected.outer_headers)


def assert_every_field_round_trips(read: hp.ReadHeaders) -> None:
    assert read.protected
    assert [(f.name, f.text) for f in read.headers] == HEADERS
    assert read.discrepancies == ()


# --- our own messages, read back -------------------------------------------------------------


@pytest.mark.parametrize("detached", [True, False])
def test_signed_mail_carries_its_fields_inside_the_signature(detached: bool):
    signed = smime.sign_message(message(), ALICE, detached=detached, protect_headers=True)
    assert mime.split_headers(signed)[0] == mime.header_block(HEADERS)  # outside untouched
    opened = smime.open_message(signed, trust_anchors=ANCHORS)
    assert opened.signed_and_valid, opened.signatures[0].signers[0].summary
    read = opened.headers()
    assert read.hp == "clear" and read.confidential == ()
    assert_every_field_round_trips(read)
    assert read.protection_of("Subject") == "signed"
    unmarked = read.entity.replace(b';\r\n hp="clear"', b"")  # the entity, fields taken off
    assert unmarked == mime.prepare_for_signing(mime.split_headers(message())[1])


def test_a_changed_protected_field_breaks_the_signature():
    signed = smime.sign_message(message(), ALICE, protect_headers=True)
    outer, entity = mime.split_headers(signed)
    assert entity.count(b"Keywords: contract\r\n") == 1  # only inside the signed part
    forged = outer + entity.replace(b"Keywords: contract\r\n", b"Keywords: approved\r\n")
    opened = smime.open_message(forged, trust_anchors=ANCHORS)
    assert not opened.signed_and_valid
    assert opened.headers().protection_of("Keywords") == "unprotected"


def test_signed_and_encrypted_mail_shows_nothing_of_its_subject_outside():
    sealed = sign_and_encrypt()
    outer, _ = mime.split_headers(sealed)
    assert b"Subject: [...]\r\n" in outer and b"Keywords" not in outer
    assert not any(piece in sealed for piece in SUBJECT_BYTES)
    opened = smime.open_message(sealed, keys=BOB_KEYS, trust_anchors=ANCHORS)
    assert [layer.kind for layer in opened.layers] == ["encrypted", "signed"]
    assert opened.signed_and_valid
    read = opened.headers()
    assert read.hp == "cipher"
    assert_every_field_round_trips(read)
    assert read.confidential == ("subject", "keywords")
    assert read.protection_of("Subject") == "signed and encrypted"
    assert read.protection_of("From") == "signed"
    assert read.message.startswith(mime.header_block(HEADERS))


def test_encrypted_only_mail_is_protected_by_encrypt_message():
    sealed = smime.encrypt_message(
        message(), [cert("5.3")], sender=ALICE_ENCRYPTION, protect_headers=True
    )
    assert not any(piece in sealed for piece in SUBJECT_BYTES)
    read = (smime.open_message(sealed, keys=BOB_KEYS)).headers()
    assert_every_field_round_trips(read)
    assert read.protection_of("Subject") == "encrypted"


def test_encrypt_message_refuses_to_protect_a_message_already_signed():
    signed = smime.sign_message(message(), ALICE)
    with pytest.raises(MalformedInput, match="before signing"):
        smime.encrypt_message(signed, [cert("5.3")], sender=None, protect_headers=True)


def test_a_forged_sender_outside_a_signed_and_encrypted_message_is_a_warning():
    sealed = sign_and_encrypt()
    forged = sealed.replace(
        b"From: Alice Lovelace <alice@smime.example>", b"From: Alice Lovelace <ceo@evil.example>", 1
    )
    read = (smime.open_message(forged, keys=BOB_KEYS, trust_anchors=ANCHORS)).headers()
    assert read.get("From") == "Alice Lovelace <alice@smime.example>"
    assert [(d.field, d.severity) for d in read.discrepancies] == [("from", "warning")]


def test_without_hp_a_message_reads_as_before():
    """Signed the old way: the inner entity has no header fields and no hp parameter."""
    signed = smime.sign_message(message(), ALICE)
    opened = smime.open_message(signed, trust_anchors=ANCHORS)
    read = opened.headers()
    assert not read.protected
    assert [(f.name, f.text) for f in read.headers] == HEADERS
    assert read.message == opened.message


def test_the_pre_rfc_protected_headers_sample_reads_as_unprotected():
    """tests/vectors/protected-headers: inner header fields but no hp parameter (draft-era
    format). RFC 9788 protects only what says hp=, so the outer fields are what is shown."""
    raw = (VECTORS / "protected-headers" / "smime-onepart-signed.eml").read_bytes()
    opened = smime.open_message(raw, at=AT)
    assert b"From: Alice Lovelace <alice@smime.example>\r\n" in opened.payload
    read = opened.headers()
    assert not read.protected and read.protected_fields == ()
    assert read.get("Subject") == "The FooCorp contract"
    assert read.get("Message-ID") == "<smime-onepart-signed@protected-headers.example>"


# --- peers: the CMS layer is unchanged -----------------------------------------------------


def run(tool: str, *args: str | Path, data: bytes | None = None) -> bytes:
    done = subprocess.run(
        [require(tool), *map(str, args)], input=data, capture_output=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    return done.stdout


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("hp-peers")
    return {
        name: RFC9216 / f"section-{section}"
        for name, section in (("ca", "3.1.crt"), ("bob.crt", "5.3.crt"), ("bob.key", "5.4.key"))
    } | {"dir": folder}


def test_openssl_verifies_our_signed_mail_and_hands_back_the_protected_payload(files):
    signed = smime.sign_message(message(), ALICE, protect_headers=True)
    payload = run("openssl", "cms", "-verify", "-CAfile", files["ca"], data=signed)
    read = hp.read(mime.split_headers(signed)[0], payload, encrypted=False)
    assert read.hp == "clear"
    assert_every_field_round_trips(read)


def test_openssl_decrypts_and_verifies_our_signed_and_encrypted_mail(files):
    sealed = sign_and_encrypt()
    inner = run(
        "openssl", "cms", "-decrypt", "-recip", files["bob.crt"], "-inkey", files["bob.key"],
        data=sealed,
    )  # fmt: skip
    payload = run("openssl", "cms", "-verify", "-CAfile", files["ca"], data=inner)
    read = hp.read(mime.split_headers(sealed)[0], payload, encrypted=True)
    assert read.hp == "cipher"
    assert_every_field_round_trips(read)
    assert read.confidential == ("subject", "keywords")


@pytest.fixture(scope="module")
def nss_db(files) -> str:
    """An NSS database holding Bob's decryption key and trusting the RFC 9216 RSA CA."""
    folder = files["dir"]
    pem = folder / "bob.pem"
    pem.write_bytes(files["bob.key"].read_bytes() + files["bob.crt"].read_bytes())
    run(
        "openssl", "pkcs12", "-export", "-in", pem, "-out", folder / "bob.p12", "-passout",
        "pass:nss", "-certpbe", "AES-256-CBC", "-keypbe", "AES-256-CBC", "-macalg", "sha256",
    )  # fmt: skip
    (folder / "db").mkdir()
    db = f"sql:{folder / 'db'}"
    run("certutil", "-N", "-d", db, "--empty-password")
    run("pk12util", "-i", folder / "bob.p12", "-d", db, "-W", "nss")
    run("certutil", "-A", "-d", db, "-n", "lamps-rsa-ca", "-t", "C,C,C", "-i", files["ca"])
    return db


def test_nss_decrypts_and_verifies_our_signed_and_encrypted_mail(files, nss_db):
    sealed = sign_and_encrypt()
    folder = files["dir"]
    (folder / "sealed.der").write_bytes(mime.unwrap(sealed).der or b"")
    inner = run("cmsutil", "-D", "-i", folder / "sealed.der", "-d", nss_db)
    signed = mime.unwrap(inner)
    assert signed.kind == "multipart_signed" and signed.signature and signed.content
    (folder / "signature.der").write_bytes(signed.signature)
    (folder / "content").write_bytes(signed.content)
    run(
        "cmsutil", "-D", "-i", folder / "signature.der", "-c", folder / "content",
        "-d", nss_db, "-u", "4",
    )  # fmt: skip
    read = hp.read(mime.split_headers(sealed)[0], signed.content, encrypted=True)
    assert_every_field_round_trips(read)


def test_nss_refuses_a_signed_payload_whose_protected_field_was_changed(files, nss_db):
    """The check above can fail: the same cmsutil call on a changed protected field."""
    signed = mime.unwrap(smime.sign_message(message(), ALICE, protect_headers=True))
    folder = files["dir"]
    (folder / "signature2.der").write_bytes(signed.signature or b"")
    (folder / "forged").write_bytes(
        (signed.content or b"").replace(b"Keywords: contract", b"Keywords: approved")
    )
    done = subprocess.run(
        [require("cmsutil"), "-D", "-i", folder / "signature2.der", "-c", folder / "forged",
         "-d", nss_db, "-u", "4"],
        capture_output=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode != 0
    assert b"DigestMismatch" in done.stdout + done.stderr


def bc(*args: str | Path) -> bytes:
    done = bouncy_castle(*args)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    return done.stdout


@pytest.fixture(scope="module")
def bc_decrypted(files) -> tuple[bytes, mime.SmimeLayer]:
    """Our signed-and-encrypted message and the signed entity Bouncy Castle decrypted from it
    with Bob's key (the source launcher compiles on each run: decrypt once for both tests)."""
    sealed = sign_and_encrypt()
    folder = files["dir"]
    (folder / "bc-sealed.der").write_bytes(mime.unwrap(sealed).der or b"")
    inner = bc("decrypt", folder / "bc-sealed.der", files["bob.crt"], files["bob.key"])
    return sealed, mime.unwrap(inner)


def test_bouncy_castle_decrypts_and_verifies_our_signed_and_encrypted_mail(files, bc_decrypted):
    sealed, signed = bc_decrypted
    assert signed.kind == "multipart_signed" and signed.signature and signed.content
    folder = files["dir"]
    (folder / "bc-signature.der").write_bytes(signed.signature)
    (folder / "bc-content").write_bytes(signed.content)
    verified = bc("verify", folder / "bc-signature.der", folder / "bc-content", files["ca"])
    assert verified == b"verified: O=IETF,OU=LAMPS WG,CN=Alice Lovelace\n"
    outer = mime.split_headers(sealed)[0]
    assert b"Subject: [...]\r\n" in outer
    read = hp.read(outer, signed.content, encrypted=True)
    assert read.hp == "cipher"
    assert_every_field_round_trips(read)
    assert read.get("Subject") == "Grüße: the FooCorp contract"
    assert ("Subject", "[...]") in [(f.name, f.text) for f in read.hp_outer]
    assert read.confidential == ("subject", "keywords")


def test_bouncy_castle_refuses_a_signed_payload_whose_protected_field_was_changed(
    files, bc_decrypted
):
    """The check above can fail: the same verify on the payload with its Subject changed."""
    _, signed = bc_decrypted
    content = signed.content or b""
    assert content.count(b" the FooCorp contract\r\n") == 1  # the protected Subject, inside
    folder = files["dir"]
    (folder / "bc-signature2.der").write_bytes(signed.signature or b"")
    (folder / "bc-forged").write_bytes(
        content.replace(b" the FooCorp contract\r\n", b" the BarCorp contract\r\n")
    )
    done = bouncy_castle("verify", folder / "bc-signature2.der", folder / "bc-forged", files["ca"])
    assert done.returncode != 0
    assert b"CMSSignerDigestMismatchException" in done.stderr
