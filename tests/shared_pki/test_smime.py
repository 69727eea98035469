"""Whole messages: sign, encrypt, open; nested layers; OpenSSL reads ours and we read its."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from asn1crypto import cms
from harness import pki

from shared_pki import mime, smime
from shared_pki.cms import ciphers, enveloped
from shared_pki.errors import DecryptionFailed, MalformedInput, NoMatchingKey
from shared_pki.keys import Credential

MESSAGE = (
    b"From: Alice <alice@example.test>\r\n"
    b"To: Bob <bob@example.test>\r\n"
    b"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe_aus_K=C3=B6ln?=\r\n"
    b"Date: Sat, 28 Nov 2026 12:00:00 +0000\r\n"
    b"Message-ID: <m1@example.test>\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: 8bit\r\n"
    b"\r\n"
    b"Hallo Bob,\r\nviele Gr\xc3\xbc\xc3\x9fe!\r\nFrom the first line on.  \r\n"
)


@pytest.fixture(scope="module")
def world():
    root = pki.root()
    issuing = root.intermediate("issuing", "p256")
    alice = issuing.smime("alice@example.test", "rsa2048")
    bob = issuing.smime("bob@example.test", "p256")
    carol = issuing.smime("carol@example.test", "rsa2048")
    return root, alice, bob, carol


def credential(party: pki.Party) -> Credential:
    return Credential(party.key, party.asn1, tuple(party.chain_asn1))


def body_text(message: bytes) -> bytes:
    """The decoded text of a single-part message (transfer encoding undone)."""
    import email
    from email import policy

    return email.message_from_bytes(message, policy=policy.default).get_payload(decode=True)


@pytest.mark.parametrize("detached", [True, False])
def test_signed_message_verifies_and_keeps_headers(world, detached: bool) -> None:
    root, alice, _, _ = world
    signed = smime.sign_message(MESSAGE, credential(alice), detached=detached)
    assert signed.startswith(b"From: Alice <alice@example.test>\r\nTo: Bob")
    assert b"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe_aus_K=C3=B6ln?=\r\n" in signed
    opened = smime.open_message(signed, trust_anchors=[root.asn1])
    assert opened.signed_and_valid and not opened.encrypted
    assert opened.layers[0].form == ("multipart" if detached else "opaque")
    assert body_text(opened.message) == body_text(MESSAGE)


def test_sign_then_encrypt_opens_for_every_recipient_and_the_sender(world) -> None:
    root, alice, bob, carol = world
    signed = smime.sign_message(MESSAGE, credential(alice))
    sealed = smime.encrypt_message(signed, [bob.asn1, carol.asn1], sender=alice.asn1)
    for reader in (alice, bob, carol):
        opened = smime.open_message(
            sealed, keys=[(reader.asn1, reader.key)], trust_anchors=[root.asn1]
        )
        assert [layer.kind for layer in opened.layers] == ["encrypted", "signed"]
        assert opened.signed_and_valid
        assert body_text(opened.message) == body_text(MESSAGE)


def test_encrypt_then_sign_is_opened_too(world) -> None:
    root, alice, bob, _ = world
    sealed = smime.encrypt_message(MESSAGE, [bob.asn1], sender=alice.asn1, cipher="aes256_gcm")
    signed = smime.sign_message(sealed, credential(alice), detached=False)
    opened = smime.open_message(signed, keys=[(bob.asn1, bob.key)], trust_anchors=[root.asn1])
    assert [layer.kind for layer in opened.layers] == ["signed", "encrypted"]
    assert opened.layers[1].cipher == "aes256_gcm"
    assert mime.unwrap(sealed).kind == "auth_enveloped"


def test_a_stranger_cannot_open_and_a_tampered_gcm_message_fails_clearly(world) -> None:
    _, alice, bob, carol = world
    sealed = smime.encrypt_message(MESSAGE, [bob.asn1], sender=alice.asn1, cipher="aes128_gcm")
    with pytest.raises(NoMatchingKey):
        smime.open_message(sealed, keys=[(carol.asn1, carol.key)])
    layer = mime.unwrap(sealed)
    assert layer.der is not None
    broken = bytearray(layer.der)
    broken[-20] ^= 1
    tampered = mime.with_outer_headers(
        mime.wrap_pkcs7_mime(bytes(broken), "authEnveloped-data"), mime.split_headers(sealed)[0]
    )
    with pytest.raises(DecryptionFailed):
        smime.open_message(tampered, keys=[(bob.asn1, bob.key)])


def test_tampered_signed_text_is_reported_not_raised(world) -> None:
    root, alice, _, _ = world
    signed = smime.sign_message(MESSAGE, credential(alice))
    tampered = signed.replace(b"Hallo Bob", b"Hallo Eve")
    assert tampered != signed
    opened = smime.open_message(tampered, trust_anchors=[root.asn1])
    assert not opened.signed_and_valid
    assert "message_digest_mismatch" in opened.signatures[0].signers[0].codes


def test_layers_beyond_the_limit_are_refused(world) -> None:
    _, alice, _, _ = world
    message = MESSAGE
    for _ in range(smime.MAX_LAYERS + 1):
        message = smime.sign_message(message, credential(alice), detached=False)
    with pytest.raises(MalformedInput, match="layers"):
        smime.open_message(message)


def openssl(*args: str, data: bytes | None = None) -> bytes:
    done = subprocess.run(["openssl", *args], input=data, capture_output=True, check=False)
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout


def test_openssl_verifies_and_decrypts_our_messages(world, tmp_path: Path) -> None:
    root, alice, bob, _ = world
    (tmp_path / "root.pem").write_bytes(root.cert_pem())
    bob_files = bob.write(tmp_path, "bob")
    signed = smime.sign_message(MESSAGE, credential(alice))
    sealed = smime.encrypt_message(signed, [bob.asn1], sender=alice.asn1)
    inner = openssl(
        "cms", "-decrypt", "-recip", str(bob_files["cert"]), "-inkey", str(bob_files["key"]),
        data=sealed,
    )  # fmt: skip
    content = openssl(
        "cms", "-verify", "-purpose", "smimesign", "-CAfile", str(tmp_path / "root.pem"),
        data=inner,
    )  # fmt: skip
    assert body_text(b"Content-Type: text/plain; charset=utf-8\r\n" + content.split(b"\r\n", 1)[1])


def test_we_verify_and_decrypt_openssls_messages(world, tmp_path: Path) -> None:
    root, alice, bob, _ = world
    alice_files = alice.write(tmp_path, "alice")
    bob_files = bob.write(tmp_path, "bob")
    entity = mime.split_headers(MESSAGE)[1]
    (tmp_path / "entity").write_bytes(entity)
    signed = openssl(
        "cms", "-sign", "-in", str(tmp_path / "entity"), "-signer", str(alice_files["cert"]),
        "-inkey", str(alice_files["key"]), "-certfile", str(alice_files["chain"]),
        "-md", "sha384",
    )  # fmt: skip
    sealed = openssl(
        "cms", "-encrypt", "-aes-256-gcm", str(bob_files["cert"]),
        data=mime.split_headers(MESSAGE)[0] + signed,
    )  # fmt: skip
    opened = smime.open_message(sealed, keys=[(bob.asn1, bob.key)], trust_anchors=[root.asn1])
    assert [layer.kind for layer in opened.layers] == ["encrypted", "signed"]
    assert opened.layers[0].cipher == "aes256_gcm"
    assert opened.signed_and_valid, opened.signatures[0].summary
    assert b"Gr=C3=BC" in opened.message or "Grüße".encode() in opened.message


def test_binary_attachment_survives_encryption_byte_for_byte(world) -> None:
    import email
    from email import policy

    _, alice, bob, _ = world
    blob = bytes(range(256)) * 4 + b"\n\nbare LF\r\n"
    message = (
        b"From: alice@example.test\nTo: bob@example.test\nSubject: blob\nMIME-Version: 1.0\n"
        b'Content-Type: multipart/mixed; boundary="b1"\n\n--b1\nContent-Type: text/plain\n\nsee\n'
        b"--b1\nContent-Type: application/octet-stream\nContent-Transfer-Encoding: binary\n\n"
        + blob
        + b"\n--b1--\n"
    )
    sealed = smime.encrypt_message(message, [bob.asn1], sender=alice.asn1)
    opened = smime.open_message(sealed, keys=[(bob.asn1, bob.key)])
    parts = list(email.message_from_bytes(opened.message, policy=policy.default).iter_parts())
    assert parts[1].get_payload(decode=True) == blob


def test_encrypting_a_signed_message_never_touches_the_signed_part(world) -> None:
    """A part another client signed without protecting trailing spaces stays as it is."""
    from shared_pki.cms import signed as cms_signed

    root, alice, bob, _ = world
    entity = (
        b"Content-Type: text/plain; charset=us-ascii\r\n\r\ntrailing spaces   \r\nFrom here on\r\n"
    )
    signature = cms_signed.sign(entity, credential(alice))
    message = mime.with_outer_headers(
        mime.wrap_multipart_signed(entity, signature, "sha-256"),
        [("From", "alice@example.test"), ("To", "bob@example.test")],
    )
    sealed = smime.encrypt_message(message, [bob.asn1], sender=alice.asn1)
    opened = smime.open_message(sealed, keys=[(bob.asn1, bob.key)], trust_anchors=[root.asn1])
    assert opened.signed_and_valid, opened.signatures[0].summary


@pytest.mark.parametrize("detached", [True, False])
def test_a_whole_signed_message_is_the_entity_with_the_outer_headers(world, detached) -> None:
    """sign_message wraps with the outer headers in one copy: the same bytes as wrapping the
    entity and adding the headers (alice's RSA PKCS#1 v1.5 signature is deterministic)."""
    import datetime

    _, alice, _, _ = world
    when = datetime.datetime(2026, 12, 6, 9, 0, tzinfo=datetime.UTC)
    outer, entity = mime.split_headers(MESSAGE)
    options = {"detached": detached, "signing_time": when}
    whole = smime.sign_message(MESSAGE, credential(alice), **options)
    entity_signed = smime.sign_entity(entity, credential(alice), **options)
    assert whole == mime.with_outer_headers(entity_signed, outer)


def test_a_whole_encrypted_message_has_the_outer_headers_once(world) -> None:
    _, alice, bob, _ = world
    sealed = smime.encrypt_message(MESSAGE, [bob.asn1], sender=alice.asn1)
    outer, entity = mime.split_headers(sealed)
    assert outer == mime.split_headers(MESSAGE)[0]
    assert sealed.count(b"MIME-Version: 1.0\r\n") == 1
    assert entity.startswith(b"MIME-Version: 1.0\r\nContent-Type: application/pkcs7-mime")
    opened = smime.open_message(sealed, keys=[(bob.asn1, bob.key)])
    assert body_text(opened.message) == body_text(MESSAGE)


def _outcome(message: bytes | bytearray, **options) -> object:
    """What opening gives, comparable: the bytes, the layers and each signature's summary (its
    certificates are parsed anew each time), or the error's type and words."""
    try:
        opened = smime.open_message(message, **options)
    except Exception as error:  # the kind and words are what is compared
        return (type(error), str(error))
    layers = [
        (layer.kind, layer.form, layer.cipher, layer.verification and layer.verification.summary)
        for layer in opened.layers
    ]
    return (opened.message, opened.payload, layers, type(opened.message), type(opened.payload))


def _sealed(content: bytes, recipient: pki.Party, cipher: str, headers: bytes = b"") -> bytes:
    """content encrypted as it is (not necessarily MIME), as a message."""
    der = enveloped.encrypt(content, [recipient.asn1], cipher=cipher)
    kind = "authEnveloped-data" if "gcm" in cipher else "enveloped-data"
    return mime.wrap_pkcs7_mime(der, kind, headers=headers or None)


def _altered(message: bytes, change: Callable[[bytearray, int, int], None]) -> bytes:
    """message with change(der, start, end) made to its DER, start:end its ciphertext."""
    layer = mime.unwrap(message)
    assert layer.der is not None
    der = bytearray(layer.der)
    eci = cms.ContentInfo.load(bytes(der))["content"]
    auth = layer.kind == "auth_enveloped"
    eci = eci["auth_encrypted_content_info" if auth else "encrypted_content_info"]
    ciphertext = eci["encrypted_content"].native
    start = der.rfind(ciphertext)
    change(der, start, start + len(ciphertext))
    kind = "authEnveloped-data" if auth else "enveloped-data"
    return mime.with_outer_headers(mime.wrap_pkcs7_mime(bytes(der), kind), layer.outer_headers)


def _flip_tag(der: bytearray, _start: int, end: int) -> None:
    der[-1] ^= 1  # the GCM tag (AuthEnvelopedData's mac comes last)


def _break_padding(der: bytearray, _start: int, end: int) -> None:
    der[end - 17] ^= 0x80  # the last plaintext byte, the pad length, is then above 16


def test_a_bytearray_is_opened_exactly_as_the_same_bytes(world) -> None:
    """The command line hands open_message a bytearray to decode and decrypt in: same result,
    same errors, for every form. Afterwards the buffer holds the plaintext when a plain entity
    was decrypted in it (GCM and CBC), and nothing else in any case."""
    root, alice, bob, carol = world
    big = MESSAGE + b"x" * 1_500_000 + b"\r\n"  # beyond one decoding and one decrypting chunk
    sealed_gcm = smime.encrypt_message(big, [bob.asn1], sender=alice.asn1, cipher="aes256_gcm")
    sealed_cbc = smime.encrypt_message(big, [bob.asn1], sender=alice.asn1, cipher="aes256_cbc")
    signed = smime.sign_message(MESSAGE, credential(alice), detached=False)
    messages = {
        "gcm": sealed_gcm,
        "cbc": sealed_cbc,
        "cbc, signed inside": smime.encrypt_message(
            smime.sign_message(MESSAGE, credential(alice)), [bob.asn1], sender=alice.asn1,
            cipher="aes256_cbc",
        ),
        "signed opaque": signed,
        "signed, then encrypted": smime.encrypt_message(signed, [bob.asn1], sender=alice.asn1),
        "multipart/signed": smime.sign_message(MESSAGE, credential(alice)),
        "plain": MESSAGE,
        "mbox line": b"From alice@example.test Sat Nov 28 12:00:00 2026\r\n" + sealed_gcm,
        "lf only": sealed_gcm.replace(b"\r\n", b"\n"),
        "tag altered": _altered(sealed_gcm, _flip_tag),
        "padding altered": _altered(sealed_cbc, _break_padding),
        "not base64": sealed_gcm.replace(b"MII", b"M!I", 1),
        "empty": b"",
        "not mime": b"\x00\x01 not a message",
        "not mime inside": _sealed(b"\x00\x01 not a message" * 9, bob, "aes256_gcm"),
        "mbox line inside": _sealed(b"From alice Sat Nov 28\r\n" + big, bob, "aes256_gcm"),
        "lf only inside": _sealed(big.replace(b"\r\n", b"\n"), bob, "aes128_cbc"),
        "no body inside": _sealed(b"Content-Type: text/plain\r\n", bob, "aes256_gcm"),
        "empty inside": _sealed(b"\r\n", bob, "aes128_gcm"),
        "multipart/signed inside, outer headers": _sealed(
            smime.sign_message(MESSAGE, credential(alice)), bob, "aes256_gcm",
            headers=mime.split_headers(MESSAGE)[0],
        ),
    }  # fmt: skip
    in_place = {"gcm", "cbc", "lf only", "mbox line inside", "lf only inside", "no body inside"}
    for keys, name in (([(bob.asn1, bob.key)], "bob"), ([(carol.asn1, carol.key)], "carol")):
        for what, message in messages.items():
            expected = _outcome(message, keys=keys, trust_anchors=[root.asn1])
            buffer = bytearray(message)
            assert _outcome(buffer, keys=keys, trust_anchors=[root.asn1]) == expected, (name, what)
            if len(expected) == 5 and name == "bob" and what in in_place:
                assert buffer == expected[1], (name, what)  # the payload, decrypted in it
            elif len(expected) == 5:
                assert not buffer, (name, what)
    bob_key = [(bob.asn1, bob.key)]
    for what in ("tag altered", "padding altered", "not mime inside", "empty inside"):
        assert _outcome(bytearray(messages[what]), keys=bob_key)[0] is DecryptionFailed, what
    for what in ("gcm", "cbc", "mbox line inside", "no body inside"):
        assert len(_outcome(bytearray(messages[what]), keys=bob_key)) == 5, what


@pytest.mark.parametrize("cipher", ["aes256_gcm", "aes128_cbc"])
def test_decrypting_in_place_gives_plaintext_only_once_checked(world, cipher: str) -> None:
    """Decrypting into the DER's own buffer overwrites its ciphertext: only the last key that
    could be the recipient's decrypts in place (an earlier wrong one, PKCS#1 v1.5 giving a
    random content key, fails on the content), and a content whose tag or padding fails
    leaves no plaintext in the buffer and the same DecryptionFailed."""
    _, alice, _, carol = world
    content = MESSAGE + b"Hallo Carol, " * 200_000  # 2.6 MB: several decrypting chunks
    der = enveloped.encrypt(content, [carol.asn1], cipher=cipher)
    wrong_first = [(carol.asn1, alice.key), (carol.asn1, carol.key)]
    for keys in (wrong_first, wrong_first[::-1], [(carol.asn1, carol.key)]):
        buffer = bytearray(der)
        opened, info = enveloped.decrypt_with_info(buffer, keys, in_place=True)
        assert opened == content and info == enveloped.inspect(der)
        assert (opened is buffer) == (keys[-1][1] is carol.key)
        assert enveloped.decrypt_with_info(der, keys, in_place=True)[0] == content  # bytes: new
    change = _flip_tag if "gcm" in cipher else _break_padding
    altered = mime.unwrap(_altered(_sealed(content, carol, cipher), change)).der
    assert altered is not None
    with pytest.raises(DecryptionFailed) as refused:
        enveloped.decrypt(altered, [(carol.asn1, carol.key)])
    buffer = bytearray(altered)
    with pytest.raises(DecryptionFailed) as refused_in_place:
        enveloped.decrypt_with_info(buffer, [(carol.asn1, carol.key)], in_place=True)
    assert str(refused_in_place.value) == str(refused.value) == ciphers.BAD_CONTENT
    assert b"Hallo" not in buffer and b"alice@example.test" not in buffer
