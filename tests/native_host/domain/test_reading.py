"""message.open: our own sent message (real TSA), OpenSSL's and gpgsm's messages, hostile
HTML, remote images, and old mail under a superseded key."""

from __future__ import annotations

import base64
import hashlib
import subprocess
from pathlib import Path
from typing import Any

from asn1crypto import cms
from harness.pki_world import PkiWorld, run

from native_host.domain.certs import CertificateBook
from native_host.domain.reading import UNREADABLE, open_message
from native_host.domain.sanitize import PLACEHOLDER
from native_host.domain.sending import Attachment, ComposeRequest, build_messages
from shared_pki import mime, smime
from shared_pki.cms import enveloped
from shared_pki.errors import DecryptionFailed
from shared_pki.keys import Certificate, Credential

HOSTILE = """<html><head><style>p{}</style><script>steal()</script></head>
<body onload="steal()"><p>Dear <b onclick="x()">Bob</b></p>
<img src="https://tracker.example/pixel.gif" alt="pixel"><img src="cid:logo@x">
<iframe src="https://evil.example/"></iframe><form action="https://evil.example/"><input></form>
<a href="javascript:steal()">click</a><a href="https://ok.example/">fine</a></body></html>"""


def test_our_sent_message_opens_for_bob_verified_timestamped_and_harvested(
    world: PkiWorld, tmp_path: Path
) -> None:
    alice = world.issue("alice.r@example.test", publish=False)
    bob = world.issue("bob.r@example.test", publish=False)
    request = ComposeRequest(
        sender=alice.address, to=(bob.address,), subject="Grüße — signed & sealed",
        text="Hello Bob.\n", html='<p>Hello <img src="cid:logo@x"></p>',
        attachments=(
            Attachment("a.txt", "text/plain", b"first\n"),
            Attachment("b.bin", "application/octet-stream", bytes(range(256))),
        ),
    )  # fmt: skip
    built = build_messages(
        request, credential=alice.credential, suite="intl",
        sender_certificate=alice.certificate,
        recipient_certificates={bob.address: bob.certificate},
        tsa_url=world.tsa_url, tsa_anchors=world.roots,
    )  # fmt: skip
    assert built.timestamp is not None
    [copy] = built.copies
    bob_store = world.keystore(tmp_path / "keys", bob)
    book = CertificateBook(tmp_path / "cache", world.roots, None)
    view = open_message(copy.message, keystore=bob_store, trust_anchors=world.roots, book=book)

    security = view.security
    assert security.encrypted and security.decrypted and security.suite == "intl"
    assert security.cipher == built.cipher and security.verified
    [signature] = security.signatures
    assert signature.signer == alice.address and signature.from_matches
    assert signature.chain_valid and signature.trusted and signature.reasons == ()
    assert signature.timestamp is not None and signature.timestamp.valid
    assert signature.timestamp.trusted_time == built.timestamp.gen_time
    assert signature.harvested
    assert view.headers["subject"] == "Grüße — signed & sealed"
    assert view.headers["from"] == alice.address and view.headers["to"] == bob.address
    assert view.text == "Hello Bob.\n"
    assert view.html is not None and 'src="cid:logo@x"' in view.html
    assert [(a.name, a.size) for a in view.attachments] == [("a.txt", 6), ("b.bin", 256)]
    assert view.attachments[1].data == bytes(range(256))
    harvested = book.lookup([alice.address])[alice.address]
    assert harvested.source == "harvested"


def test_a_message_from_openssl_cms_opens(world: PkiWorld, tmp_path: Path) -> None:
    bob = world.issue("bob.o@example.test", publish=False)
    _key, cert = bob.write(tmp_path)
    plain = tmp_path / "plain.txt"
    plain.write_bytes(b"Content-Type: text/plain; charset=utf-8\r\n\r\nFrom OpenSSL.\r\n")
    encrypted = run(
        "openssl", "cms", "-encrypt", "-aes-256-cbc", "-in", plain, "-from", "o@example.test",
        "-to", bob.address, "-subject", "openssl says hi", cert,
    )  # fmt: skip
    store = world.keystore(tmp_path / "keys", bob)
    view = open_message(encrypted, keystore=store, trust_anchors=world.roots)
    assert view.security.encrypted and view.security.cipher == "aes256_cbc"
    assert not view.security.signed and view.text == "From OpenSSL.\r\n".replace("\r\n", "\n")
    assert view.headers["subject"] == "openssl says hi"


def test_a_message_from_gpgsm_opens(world: PkiWorld, tmp_path: Path) -> None:
    gina = world.issue("gina@example.test", "rsa", publish=False)
    home = Path(subprocess.check_output(["mktemp", "-d", "/tmp/gsXXXX"]).decode().strip())
    env = {"GNUPGHOME": str(home), "PATH": "/usr/bin:/bin", "LANG": "C"}
    try:
        home.chmod(0o700)
        fingerprint = hashlib.sha1(world.roots[0].dump()).hexdigest().upper()
        (home / "trustlist.txt").write_text(f"{fingerprint} S relax\n")
        for index, certificate in enumerate([*gina.chain, world.roots[0], gina.certificate]):
            path = tmp_path / f"c{index}.der"
            path.write_bytes(certificate.dump())
            subprocess.run(["gpgsm", "--batch", "--import", path], env=env, capture_output=True)
        source = tmp_path / "plain.txt"
        source.write_bytes(b"Content-Type: text/plain\r\n\r\nFrom gpgsm.\r\n")
        done = subprocess.run(
            ["gpgsm", "--batch", "--disable-crl-checks", "--disable-policy-checks",
             "--recipient", gina.address, "--encrypt", source],
            env=env, capture_output=True, timeout=60,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr.decode(errors="replace")
    finally:
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], env=env, check=False)
        subprocess.run(["rm", "-rf", str(home)], check=False)
    body = mime.wrap_pkcs7_mime(done.stdout, "enveloped-data")
    raw = mime.with_outer_headers(body, [("From", "g@example.test"), ("Subject", "gpgsm")])
    store = world.keystore(tmp_path / "keys", gina)
    view = open_message(raw, keystore=store, trust_anchors=world.roots)
    assert view.security.encrypted and view.security.decrypted
    assert view.text is not None and "From gpgsm." in view.text


def test_hostile_html_is_sanitized_and_remote_images_wait_for_permission(
    world: PkiWorld,
) -> None:
    entity = mime.build_entity("plain part\n", HOSTILE, [("logo.png", "image/png", b"\x89PNG")])
    raw = mime.with_outer_headers(entity, [("From", "x@example.test"), ("Subject", "hi")])
    view = open_message(raw, keystore=None, trust_anchors=world.roots)
    html = view.html or ""
    for bad in ("script", "steal", "onload", "onclick", "iframe", "form", "javascript", "<style"):
        assert bad not in html.lower(), bad
    assert "tracker.example" not in html and PLACEHOLDER in html
    assert view.remote_images_blocked == 1
    assert 'href="https://ok.example/"' in html and "cid:logo@x" in html
    assert not view.security.signed and not view.security.encrypted
    allowed = open_message(raw, keystore=None, trust_anchors=world.roots, allow_remote=True)
    assert 'src="https://tracker.example/pixel.gif"' in (allowed.html or "")
    assert allowed.remote_images_blocked == 0 and "script" not in (allowed.html or "")


def test_old_mail_opens_with_a_superseded_key(world: PkiWorld, tmp_path: Path) -> None:
    old = world.issue("bob.old@example.test", publish=False)
    new = world.issue("bob.old@example.test", publish=False)
    store = world.keystore(tmp_path / "keys", old)
    world.add(store, new)  # renewal: the new key becomes current, the old one superseded
    assert [r.status for r in store.records("bob.old@example.test")] == ["superseded", "current"]
    sender = world.issue("sender.old@example.test", publish=False)
    message = b"From: sender.old@example.test\r\nSubject: old\r\n\r\nWritten long ago.\r\n"
    signed_message = smime.sign_message(message, Credential(sender.key, sender.certificate))
    raw = smime.encrypt_message(signed_message, [old.certificate], sender=sender.certificate)
    view = open_message(raw, keystore=store, trust_anchors=world.roots)
    assert view.security.decrypted and view.text == "Written long ago.\r\n".replace("\r", "")
    # Signed without the chain in the message: the issuing CA is not at hand, so not trusted.
    assert view.security.signed and not view.security.verified
    assert "untrusted" in view.security.signatures[0].codes


def test_mail_for_someone_else_opens_headers_and_says_why_not_the_content(
    world: PkiWorld, tmp_path: Path
) -> None:
    stranger = world.issue("stranger@example.test", publish=False)
    bob = world.issue("bob.x@example.test", publish=False)
    raw = smime.encrypt_message(
        b"From: s@example.test\r\nSubject: not yours\r\n\r\nsecret\r\n",
        [stranger.certificate],
        sender=None,
    )
    view = open_message(raw, keystore=world.keystore(tmp_path / "k", bob), trust_anchors=[])
    assert view.headers["subject"] == "not yours"
    assert view.security.encrypted and not view.security.decrypted
    assert view.text is None and view.security.problem
    assert "not readable" in view.security.summary


def _with_ciphertext(raw: bytes, change: Any) -> bytes:
    """raw (application/pkcs7-mime) with its CMS rebuilt by change(content_info)."""
    layer = mime.unwrap(raw)
    assert layer.der is not None
    info = cms.ContentInfo.load(layer.der)
    change(info)
    kind = "authEnveloped-data" if layer.kind == "auth_enveloped" else "enveloped-data"
    body = mime.wrap_pkcs7_mime(info.dump(force=True), kind)
    return mime.with_outer_headers(body, OUTER)


OUTER = [("From", "mallory@example.test"), ("Subject", "probe")]


def test_every_way_encrypted_content_fails_is_one_outcome(world: PkiWorld, tmp_path: Path) -> None:
    """A padding oracle needs the failures to differ. Bad CBC padding, a GCM tag that fails, no
    matching key and a malformed envelope: the same view, word for word (message.open's JSON)."""
    from native_host.ops.read import view_to_json

    bob = world.issue("bob.oracle@example.test", publish=False)
    stranger = world.issue("stranger.oracle@example.test", publish=False)
    store = world.keystore(tmp_path / "keys", bob)
    entity = b"Content-Type: text/plain\r\n\r\nthe secret the page wants\r\n"

    def sealed(cipher: str, to: Certificate) -> bytes:
        body = smime.encrypt_message(entity, [to], sender=None, cipher=cipher)
        return mime.with_outer_headers(mime.split_headers(body)[1], OUTER)

    cbc = sealed("aes256_cbc", bob.certificate)
    gcm = sealed("aes256_gcm", bob.certificate)
    pairs = [(bob.certificate, bob.key)]

    def eci(info: cms.ContentInfo) -> Any:
        body = info["content"]
        name = "auth_encrypted_content_info" if "mac" in body else "encrypted_content_info"
        return body[name]

    def bad_padding(value: int) -> bytes:
        def change(info: cms.ContentInfo) -> None:
            data = bytearray(eci(info)["encrypted_content"].native)
            data[-17] ^= value  # the last byte of the last plaintext block, i.e. the padding
            eci(info)["encrypted_content"] = bytes(data)

        return _with_ciphertext(cbc, change)

    # Values whose padding fails (most), and one whose padding holds (garbage that "opens").
    failing = holding = None
    for value in range(1, 256):
        candidate = bad_padding(value)
        try:
            enveloped.decrypt(mime.unwrap(candidate).der, pairs)  # type: ignore[arg-type]
            holding = holding or candidate
        except DecryptionFailed:
            failing = failing or candidate
    assert failing is not None and holding is not None

    def bad_tag(info: cms.ContentInfo) -> None:
        mac = bytearray(info["content"]["mac"].native)
        mac[0] ^= 1
        info["content"]["mac"] = bytes(mac)

    head, _, body = cbc.partition(b"\r\n\r\n")
    der = base64.b64decode(b"".join(body.split()))
    malformed = head + b"\r\n\r\n" + base64.encodebytes(der[: len(der) // 2])
    not_base64 = head + b"\r\n\r\n!!!! not base64 !!!!\r\n"
    probes = {
        "bad CBC padding": failing,
        "bad GCM tag": _with_ciphertext(gcm, bad_tag),
        "no matching key": sealed("aes256_cbc", stranger.certificate),
        "malformed CMS": malformed,
        "broken transfer encoding": not_base64,
    }
    views = {
        name: view_to_json(open_message(raw, keystore=store, trust_anchors=world.roots))
        for name, raw in probes.items()
    }
    first = views["bad CBC padding"]
    assert first["security"]["decrypted"] is False and first["security"]["cipher"] is None
    assert first["security"]["problem"] == UNREADABLE and first["text"] is None
    for name, view in views.items():
        assert view == first, name
    # The padding that holds decrypts to garbage: the viewer must say CBC content is unprotected.
    garbage = open_message(holding, keystore=store, trust_anchors=world.roots).security
    assert garbage.decrypted and garbage.authenticated_cipher is False and not garbage.signed


def test_the_content_cipher_says_whether_it_detects_alteration(
    world: PkiWorld, tmp_path: Path
) -> None:
    bob = world.issue("bob.aead@example.test", publish=False)
    store = world.keystore(tmp_path / "keys", bob)
    entity = b"Content-Type: text/plain\r\n\r\nhello\r\n"
    found = {}
    for cipher in ("aes128_cbc", "aes256_gcm"):
        raw = smime.encrypt_message(entity, [bob.certificate], sender=None, cipher=cipher)
        view = open_message(raw, keystore=store, trust_anchors=world.roots)
        found[cipher] = view.security.authenticated_cipher
    plain = open_message(entity, keystore=store, trust_anchors=world.roots)
    assert found == {"aes128_cbc": False, "aes256_gcm": True}
    assert plain.security.authenticated_cipher is None
