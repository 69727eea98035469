"""RFC 9788's own signed example messages (appendix C, made with the RFC 9216 example keys) as
known answers for message.open: each opens verified, with hp="clear", and shows exactly the
header fields the RFC's example carries inside its signature, each marked "signed"; the text is
the RFC's. The signatures prove the bytes (OpenSSL verifies them against the RFC 9216 CA too);
where they came from is in tests/vectors/README.md."""

from __future__ import annotations

import datetime
import subprocess
from pathlib import Path

import pytest
from harness.peers import require

from native_host.domain.reading import open_message
from shared_pki.keys import load_certificates

VECTORS = Path(__file__).resolve().parents[2] / "vectors"
RFC9788 = VECTORS / "rfc9788"
CA = VECTORS / "rfc9216" / "section-3.1.crt"  # Sample LAMPS RSA Certification Authority
AT = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)  # inside every RFC 9216 certificate

ALICE = "Alice <alice@smime.example>"
BOB = "Bob <bob@smime.example>"

#: name -> (Date, the first words of the text) as the RFC's example has them
EXAMPLES = {
    "smime-one-part-hp": ("Sat, 20 Feb 2021 10:06:02 -0500", "text/plain"),
    "smime-multipart-hp": ("Sat, 20 Feb 2021 10:07:02 -0500", "text/plain"),
    "smime-one-part-complex-hp": ("Sat, 20 Feb 2021 12:06:02 -0500", "multipart/alternative"),
}


def _open(raw: bytes):
    return open_message(raw, keystore=None, trust_anchors=load_certificates(CA.read_bytes()), at=AT)


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_rfc9788_signed_examples_open_with_the_rfc_headers(name: str) -> None:
    date, payload_kind = EXAMPLES[name]
    view = _open((RFC9788 / f"{name}.eml").read_bytes())

    assert view.security.verified, view.security.summary
    [signature] = view.security.signatures
    assert signature.valid and signature.from_matches, signature.summary
    assert view.header_protection.protected and view.header_protection.hp == "clear"
    assert view.headers == {
        "subject": name,
        "message-id": f"<{name}@example>",
        "from": ALICE,
        "to": BOB,
        "date": date,
    }
    assert view.header_protection.fields == dict.fromkeys(view.headers, "signed")
    assert not view.header_protection.warnings  # outside and inside agree in these examples
    assert view.text is not None and view.text.startswith(f"This is the\n{name}\nmessage.\n")
    assert f"payload is a {payload_kind}" in " ".join(view.text.split())
    if payload_kind == "multipart/alternative":
        assert view.html is not None and f"<b>{name}</b>" in view.html
        [image] = view.attachments
        assert image.content_type == "image/png" and image.inline and image.data[:4] == b"\x89PNG"


def test_an_altered_protected_subject_is_not_verified() -> None:
    """The known answer can fail: one byte of the signed Subject changed, and the signature
    no longer holds, so nothing is shown as protected by it."""
    raw = (RFC9788 / "smime-multipart-hp.eml").read_bytes()
    inner = raw.index(b"Subject: smime-multipart-hp", raw.index(b"--54f"))
    altered = raw[:inner] + b"Subject: smime-multipart-HP" + raw[inner + 27 :]
    view = _open(altered)
    assert not view.security.verified
    assert view.header_protection.fields.get("subject") != "signed"


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_openssl_verifies_the_examples_as_stored(name: str, tmp_path: Path) -> None:
    """A peer says the stored bytes are the signed ones: nothing was lost in copying."""
    openssl = require("openssl")
    stored, content = RFC9788 / f"{name}.eml", tmp_path / "content"
    done = subprocess.run(
        [openssl, "cms", "-verify", "-in", str(stored), "-CAfile", str(CA), "-out", str(content)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert f"Subject: {name}" in content.read_text("utf-8")
