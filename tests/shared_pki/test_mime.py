"""RFC 8551 MIME layer: wrap/unwrap round trips for every form, byte stability of what is
signed, canonicalization, 7-bit preparation, nesting, malformed input, and OpenSSL as a peer
(it signs, encrypts, verifies and decrypts what we wrap and unwrap)."""

from __future__ import annotations

import base64
import binascii
import random
import re
import subprocess
from email import policy
from email.parser import BytesParser
from pathlib import Path

import pybase64
import pytest
from asn1crypto import cms, core
from harness.peers import require

from shared_pki import mime
from shared_pki.errors import MalformedInput, UnsupportedAlgorithm

OID_SIGNED = "1.2.840.113549.1.7.2"
OID_ENVELOPED = "1.2.840.113549.1.7.3"
OID_AUTH_ENVELOPED = "1.2.840.113549.1.9.16.1.23"
OID_COMPRESSED = "1.2.840.113549.1.9.16.1.9"
OID_DATA = "1.2.840.113549.1.7.1"

ATTACHMENT = bytes(range(256)) * 8 + b"\r\n\n\r\x00From x\n"  # binary, with line-end traps
UMLAUT_NAME = "Überweisung für März \u2013 Gebühren 2024 (endgültig, bitte prüfen).pdf"


def _der_len(length: int) -> bytes:
    if length < 0x80:
        return bytes([length])
    raw = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def fake_cms(oid: str, size: int = 300) -> bytes:
    """A ContentInfo with the right outline (SEQUENCE { OID, [0] { OCTET STRING } }): the MIME
    layer only looks at the content type, and these tests must not depend on the CMS code."""
    inner = core.OctetString(bytes(random.Random(size).randbytes(size))).dump()
    body = core.ObjectIdentifier(oid).dump() + b"\xa0" + _der_len(len(inner)) + inner
    return b"\x30" + _der_len(len(body)) + body


def parse(data: bytes):
    return BytesParser(policy=policy.default).parsebytes(data)


def text_of(part) -> str:
    """get_content() of a text part keeps the CRLFs of a CRLF message (an email package
    trap): compare text with LF line ends."""
    return part.get_content().replace("\r\n", "\n")


def sample_entity() -> bytes:
    return mime.build_entity(
        "Grüße aus Köln.\nFrom the team \n-- \nSignature",
        "<p>Grüße aus <b>Köln</b></p>",
        [(UMLAUT_NAME, "application/pdf", ATTACHMENT), ("notes.txt", "text/plain", b"a\nb\n")],
    )


OUTER = (
    b"From: =?utf-8?q?J=C3=B6rg_M=C3=BCller?= <joerg@example.org>\r\n"
    b"To: =?utf-8?b?w4Rnb3N0b24=?= <a@example.org>,\r\n"
    b"  Bob <bob@example.org>\r\n"
    b"Cc: carol@example.org\r\n"
    b"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe_und_=E2=82=AC?=\r\n"
    b" =?utf-8?q?_noch_eine_Zeile?=\r\n"
    b"Date: Tue, 02 Jan 2024 10:00:00 +0100\r\n"
    b"Message-ID: <123@example.org>\r\n"
    b"In-Reply-To: <122@example.org>\r\n"
    b"References: <121@example.org> <122@example.org>\r\n"
    b"X-Mailer: autosmime\r\n"
)


# --------------------------------------------------------------------------- canonical form


def test_canonicalize_lf_and_mixed_line_ends_become_crlf() -> None:
    assert mime.canonicalize(b"a\nb\r\nc\n\nd") == b"a\r\nb\r\nc\r\n\r\nd"
    assert mime.canonicalize(b"no line end") == b"no line end"
    canonical = b"A: b\r\n\r\nbody\r\n"
    assert mime.canonicalize(canonical) is canonical  # unchanged, not copied
    assert mime.canonicalize(b"bare\rcr\n") == b"bare\rcr\r\n"  # a lone CR is content


def test_canonicalize_refuses_str() -> None:
    with pytest.raises(TypeError):
        mime.canonicalize("text")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- prepare_for_signing


def _assert_7bit_canonical(data: bytes) -> None:
    assert max(data, default=0) < 0x80
    assert mime.canonicalize(data) == data
    assert all(len(line) <= 998 for line in data.split(b"\r\n"))


def test_prepare_8bit_text_gets_quoted_printable() -> None:
    text = "Grüße aus Köln\nFrom here on \nend\t\n".encode()
    entity = b"Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n" + text
    prepared = mime.prepare_for_signing(entity)
    _assert_7bit_canonical(prepared)
    head, body = prepared.split(b"\r\n\r\n", 1)
    assert b"Content-Transfer-Encoding: quoted-printable" in head
    assert b"8bit" not in head
    assert b"\r\nFrom " not in prepared and not body.startswith(b"From ")
    assert not re.search(rb"[ \t]\r\n", body)
    assert binascii.a2b_qp(body) == mime.canonicalize(text)
    assert text_of(parse(prepared)) == "Grüße aus Köln\nFrom here on \nend\t\n"


def test_prepare_protects_7bit_text_with_from_and_trailing_space() -> None:
    entity = b"Content-Type: text/plain\r\n\r\nFrom me  \r\nok\r\n"
    prepared = mime.prepare_for_signing(entity)
    assert prepared == (
        b"Content-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
        b"=46rom me =20\r\nok\r\n"
    )


def test_prepare_encodes_bare_cr_and_nul() -> None:
    prepared = mime.prepare_for_signing(b"Content-Type: text/plain\r\n\r\na\rb\x00c\r\n")
    assert prepared.endswith(b"\r\n\r\na=0Db=00c\r\n")


def test_prepare_binary_part_of_lf_message_gets_base64_of_exact_bytes() -> None:
    entity = (
        b"Content-Type: multipart/mixed; boundary=XX\n\n--XX\nContent-Type: text/plain\n\nhi\n"
        b"--XX\nContent-Type: application/octet-stream\nContent-Transfer-Encoding: binary\n\n"
        + ATTACHMENT
        + b"\n--XX--\n"
    )
    prepared = mime.prepare_for_signing(entity)
    _assert_7bit_canonical(prepared)
    parts = list(parse(prepared).iter_parts())
    assert text_of(parts[0]) == "hi"  # the last line end belongs to the delimiter
    assert parts[1]["Content-Transfer-Encoding"] == "base64"
    assert parts[1].get_content() == ATTACHMENT


def test_prepare_8bit_non_text_gets_base64_and_multipart_label_becomes_7bit() -> None:
    entity = (
        b"Content-Type: multipart/mixed; boundary=XX\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
        b"--XX\r\nContent-Type: application/json\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
        b'{"name": "J\xc3\xb6rg"}\r\n--XX--\r\n'
    )
    prepared = mime.prepare_for_signing(entity)
    _assert_7bit_canonical(prepared)
    message = parse(prepared)
    assert message["Content-Transfer-Encoding"] == "7bit"
    (part,) = message.iter_parts()
    assert part["Content-Transfer-Encoding"] == "base64"
    assert part.get_content() == b'{"name": "J\xc3\xb6rg"}'


def test_prepare_encodes_inside_message_rfc822() -> None:
    inner = (
        b"From: a@b\r\nSubject: x\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nK\xc3\xb6ln\r\n"
    )
    entity = b"Content-Type: message/rfc822\r\n\r\n" + inner
    prepared = mime.prepare_for_signing(entity)
    _assert_7bit_canonical(prepared)
    assert b"From: a@b\r\nSubject: x\r\n" in prepared
    assert b"K=C3=B6ln" in prepared


def test_prepare_keeps_safe_entities_and_headers_byte_for_byte() -> None:
    entity = sample_entity()
    assert mime.prepare_for_signing(entity) == entity
    odd = (
        b"Content-Type: text/plain;\r\n\tcharset=us-ascii;   format=flowed\r\n"
        b"Content-Disposition: inline\r\n\r\nplain text\r\n"
    )
    assert mime.prepare_for_signing(odd) == odd
    assert mime.prepare_for_signing(mime.prepare_for_signing(odd + b"caf\xc3\xa9\r\n")) == (
        mime.prepare_for_signing(odd + b"caf\xc3\xa9\r\n")
    )


def test_prepare_long_lines_are_soft_broken() -> None:
    entity = b"Content-Type: text/plain\r\n\r\n" + b"word " * 400 + b"\r\n"
    prepared = mime.prepare_for_signing(entity)
    body = prepared.split(b"\r\n\r\n", 1)[1]
    assert max(len(line) for line in body.split(b"\r\n")) <= 76
    assert binascii.a2b_qp(body) == b"word " * 400 + b"\r\n"


def _needs_protection_reference(text: bytes) -> bool:
    """The rules of mime._needs_protection written the slow, obvious way (one regex, every
    line split out), to check the fast one against."""
    lines = text.split(b"\r\n")
    return bool(
        re.search(rb"[^\x01-\x7f]|\r(?!\n)|[ \t]\r\n|[ \t]$|\AFrom |\nFrom ", text)
        or max(map(len, lines)) > 998
    )


@pytest.mark.parametrize("seed", range(40))
def test_needs_protection_agrees_with_the_obvious_rules(seed: int) -> None:
    rng = random.Random(seed)
    alphabet = [b"a", b" ", b"\t", b"\r\n", b"\r", b"From ", b"\xe9", b"\x00", b"x" * 300]
    weights = [40, 8, 1, 10, 1, 1, 1, 1, 3]
    for _ in range(50):
        pieces = rng.choices(alphabet, weights, k=rng.randrange(0, 40))
        text = b"".join(pieces)
        assert mime._needs_protection(text) == _needs_protection_reference(text), text


@pytest.mark.parametrize("length", [997, 998, 999, 1000, 1001, 2500])
@pytest.mark.parametrize("where", ["alone", "first", "middle", "last", "last_unterminated"])
def test_long_line_found_at_every_length_and_place(length: int, where: str) -> None:
    line, short = b"y" * length, b"short line"
    lines = {
        "alone": [line],
        "first": [line, short, short],
        "middle": [short * 50, line, short],
        "last": [short, line, b""],
        "last_unterminated": [short, line],
    }[where]
    text = b"\r\n".join(lines)
    assert mime._has_long_line(text) == (length > 998)
    assert mime._needs_protection(text) == (length > 998)


def test_base64_lines_and_decoding_match_the_standard_library() -> None:
    rng = random.Random(7)
    for size in (0, 1, 56, 57, 58, 1000, 57 * 16 * 1024 + 1, 3_000_001):
        data = rng.randbytes(size)
        encoded = base64.b64encode(data)
        lines = b"".join(encoded[i : i + 76] + b"\r\n" for i in range(0, len(encoded), 76))
        assert mime._b64_lines(data) == lines
        if data:
            assert mime._decode_body(lines, "base64", "x") == data
            assert mime._decode_body(lines.replace(b"\r\n", b" \n\t"), "base64", "x") == data
    for bad in (b"QUJD\r\n!QUJD", b"QU=JD", b"\r\n \t"):
        with pytest.raises(MalformedInput):
            mime._decode_body(bad, "base64", "x")


def _whole_body_base64(body: bytes) -> bytes | None:
    """What base64 bodies decoded to before decoding went chunk by chunk: whitespace stripped,
    final padding supplied, the whole strictly decoded (None: refused)."""
    compact = body.translate(None, b" \t\r\n")
    if not compact:
        return None
    compact += b"=" * (-len(compact) % 4) if len(compact) % 4 != 1 else b""
    try:
        return pybase64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        return None


@pytest.mark.parametrize("chunk", [1, 3, 4, 5, 7, 64])
def test_base64_decoded_in_chunks_accepts_and_refuses_what_the_whole_body_would(
    chunk: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chunk edges must not change the answer: padding just before an edge with only
    whitespace after it is the end; padding followed by more data anywhere is refused."""
    monkeypatch.setattr(mime, "_BASE64_CHUNK", chunk)
    rng = random.Random(chunk)
    bodies = [b"QUJD\r\nQQ==\r\n", b"QQ==\r\n\r\n \t", b"QQ==QUJD", b"QUJDQQ", b"QUJDQ", b"Q\r\nQ"]
    bodies += [b"QUJD" * 3 + b"=" + b"\r\n" * 5, b"\r\n" * 9, b"QUJD\r\n!QUJD", b"QU=JD"]
    for _ in range(300):
        data = rng.randbytes(rng.randrange(0, 40))
        text = bytearray(base64.b64encode(data))
        for _ in range(rng.randrange(0, 6)):  # line breaks, whitespace, and now and then damage
            text.insert(rng.randrange(0, len(text) + 1), rng.choice(b" \t\r\n\n\n=!"))
        if rng.random() < 0.3:
            text = text.rstrip(b"=")
        bodies.append(bytes(text))
    for body in bodies:
        expected = _whole_body_base64(body)
        if expected is None:
            with pytest.raises(MalformedInput):
                mime._decode_body(body, "base64", "x")
        else:
            assert mime._decode_body(body, "base64", "x") == expected, body


def test_smime_type_for_reads_the_content_type_only() -> None:
    def content_info(oid: str) -> bytes:
        inner = core.OctetString(b"x").dump()
        body = core.ObjectIdentifier(oid).dump() + bytes((0xA0, len(inner))) + inner
        return bytes((0x30, len(body))) + body

    assert mime.smime_type_for(content_info("1.2.840.113549.1.7.3")) == "enveloped-data"
    assert mime.smime_type_for(content_info("1.2.840.113549.1.9.16.1.23")) == ("authEnveloped-data")
    assert mime.smime_type_for(content_info("1.2.840.113549.1.7.2")) == "signed-data"
    with pytest.raises(MalformedInput):
        mime.smime_type_for(content_info("1.2.840.113549.1.7.1"))
    with pytest.raises(MalformedInput):
        mime.smime_type_for(content_info("1.2.840.113549.1.7.3")[:-1])


def test_prepare_returns_an_unchanged_entity_itself() -> None:
    entity = b"Content-Type: text/plain\r\n\r\nhello\r\n"
    assert mime.prepare_for_signing(entity) is entity
    eight_bit = b"Content-Type: text/plain\r\nContent-Transfer-Encoding: 8bit\r\n\r\nhello\r\n"
    assert mime.prepare_for_signing(eight_bit).endswith(b"7bit\r\n\r\nhello\r\n")
    folded = b"Content-Type: text/plain;\n charset=us-ascii\n\nhello\n"
    assert mime.prepare_for_signing(folded) == mime.canonicalize(folded)


def _tree(message) -> list:
    """What a reader takes from the email package's tree: every part's type, filename,
    disposition and fields, and each leaf's decoded payload and content."""
    rows = []
    for part in message.walk():
        row = [part.get_content_type(), part.is_multipart(), part.get_filename()]
        row += [part.get_content_disposition(), list(part.items())]
        if not part.is_multipart():
            row.append(part.get_payload(decode=True))
            try:
                row.append(part.get_content())
            except (LookupError, ValueError, KeyError, AttributeError) as error:
                row.append(type(error).__name__)
        rows.append(row)
    return rows


PARSE_SAMPLES = [
    b"From: a@b\r\nSubject: x\r\n\r\nbody only\r\n",
    b"From: a@b\nContent-Type: multipart/mixed; boundary=XX\n\npre\n--XX\nContent-Type: text/"
    b"plain\n\none\n--XX\nContent-Type: message/rfc822\n\nFrom: c@d\n\ninner\n--XX--\nepi\n",
    b"Content-Type: multipart/mixed; boundary=XX\r\n\r\n--XX\r\nContent-Type: text/plain\r\n"
    b"\r\nunclosed\r\n",
    b'Content-Type: multipart/alternative; boundary="b1"\r\n\r\n--b1\r\nContent-Type: text/plai'
    b"n; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nGr=C3=BC=C3=9Fe\r"
    b"\n--b1\r\nContent-Type: multipart/related; boundary=b2\r\n\r\n--b2\r\nContent-Type: te"
    b"xt/html\r\n\r\n<img src=cid:x>\r\n--b2\r\nContent-Type: image/png\r\nContent-ID: <x>\r"
    b"\nContent-Transfer-Encoding: base64\r\n\r\niVBORw0KGgo=\r\n--b2--\r\n\r\n--b1--\r\n",
    b"no headers at all",
    b"Subject: x\r\n\r\n",
    b"\r\nbody without headers",
    b"Content-Type: text/plain; charset=latin-1\r\nContent-Transfer-Encoding: 8bit\r\n\r\n\xe9t"
    b"\xe9\r\n",
    b'Content-Type: multipart/mixed; boundary="x"\r\n\r\n--x\r\n\r\nno part fields\r\n--x--',
    b"Content-Type: multipart/mixed\r\n\r\nno boundary\r\n",
    b"Subject: =?utf-8?q?caf=C3=A9?=\r\n bad continuation\r\n\r\nbody\r\n",
]


@pytest.mark.parametrize("line_end", [b"\r\n", b"\n"])
def test_parse_message_gives_the_email_packages_tree(line_end: bytes) -> None:
    built = mime.build_entity(
        "hello\nworld",
        "<p>hi</p>",
        [
            ("a.bin", "application/octet-stream", bytes(range(256)) * 10),
            ("b.txt", "text/plain", b"x"),
        ],
    )
    vectors = sorted(Path(__file__).parent.parent.joinpath("vectors").rglob("*.eml"))
    samples = [built, *PARSE_SAMPLES, *(path.read_bytes() for path in vectors)]
    for sample in samples:
        sample = sample.replace(b"\r\n", b"\n").replace(b"\n", line_end)
        expected = BytesParser(policy=policy.default).parsebytes(sample)
        assert _tree(mime.parse_message(sample)) == _tree(expected), sample[:120]


def test_quoted_printable_encoder_on_random_text() -> None:
    """Every line within 76 characters, no trailing whitespace, no "From " at a line start,
    and decoding gives the input back."""
    rng = random.Random(8551)
    alphabet = b"From  \t=abc.\xc3\xa9\x00\r" + bytes(range(32, 127))
    for _ in range(300):
        lines = [
            bytes(rng.choice(alphabet) for _ in range(rng.randrange(0, 240)))
            for _ in range(rng.randrange(1, 6))
        ]
        text = b"\r\n".join(line.replace(b"\r", b"") for line in lines)
        if rng.random() < 0.3:
            text = b"From " + text
        encoded = mime._qp_encode(text)
        assert max(encoded, default=0) < 0x80
        for line in encoded.split(b"\r\n"):
            assert len(line) <= 76
            assert not line.startswith(b"From ")
            assert not line.endswith((b" ", b"\t"))
        assert binascii.a2b_qp(encoded) == text


# --------------------------------------------------------------------------- build_entity


def test_build_text_only_is_7bit_text_plain() -> None:
    entity = mime.build_entity("Hello\nworld", None, [])
    assert entity == (
        b'Content-Type: text/plain; charset="utf-8"\r\nContent-Transfer-Encoding: 7bit\r\n\r\n'
        b"Hello\r\nworld\r\n"
    )


def test_build_non_ascii_text_is_quoted_printable() -> None:
    entity = mime.build_entity("Grüße\nFrom here", None, [])
    _assert_7bit_canonical(entity)
    message = parse(entity)
    assert message["Content-Transfer-Encoding"] == "quoted-printable"
    assert text_of(message) == "Grüße\nFrom here\n"
    assert b"\r\n=46rom here\r\n" in entity


def test_build_alternative_mixed_with_attachments() -> None:
    entity = sample_entity()
    _assert_7bit_canonical(entity)
    assert b"MIME-Version" not in entity
    message = parse(entity)
    assert message.get_content_type() == "multipart/mixed"
    alternative, pdf, notes = message.iter_parts()
    assert alternative.get_content_type() == "multipart/alternative"
    plain, html = alternative.iter_parts()
    assert text_of(plain) == "Grüße aus Köln.\nFrom the team \n-- \nSignature\n"
    assert html.get_content_type() == "text/html"
    assert text_of(html) == "<p>Grüße aus <b>Köln</b></p>\n"
    assert pdf.get_filename() == UMLAUT_NAME
    assert b"filename*" in entity  # RFC 2231, not raw UTF-8 nor RFC 2047 in a parameter
    assert pdf.get_content() == ATTACHMENT
    assert notes.get_content_type() == "text/plain"
    assert notes.get_payload(decode=True) == b"a\nb\n"  # attachments are bytes, exactly


def test_build_html_only_and_attachments_only_and_empty() -> None:
    assert parse(mime.build_entity(None, "<p>x</p>", [])).get_content_type() == "text/html"
    only = parse(mime.build_entity(None, None, [("a.bin", "application/octet-stream", b"\x00")]))
    assert only.get_content_type() == "multipart/mixed"
    assert [p.get_filename() for p in only.iter_parts()] == ["a.bin"]
    empty = parse(mime.build_entity(None, None, []))
    assert empty.get_content_type() == "text/plain"


def test_build_is_deterministic() -> None:
    assert sample_entity() == sample_entity()
    assert mime.build_entity("a", "b", []) != mime.build_entity("a", "c", [])


def test_build_rejects_line_breaks_in_filenames() -> None:
    with pytest.raises(MalformedInput):
        mime.build_entity("x", None, [("a\r\nBcc: x.pdf", "application/pdf", b"x")])
    with pytest.raises(TypeError):
        mime.build_entity("x", None, [("a.pdf", "application/pdf", "not bytes")])  # type: ignore[list-item]


@pytest.mark.parametrize("content_type", ["pdf", "application/", "message/rfc822", "a b/c"])
def test_build_rejects_bad_attachment_types(content_type: str) -> None:
    with pytest.raises(MalformedInput):
        mime.build_entity("x", None, [("f", content_type, b"x")])


# --------------------------------------------------------------------------- outer headers


def test_split_headers_separates_rfc5322_from_content_fields() -> None:
    entity = sample_entity()
    message = OUTER + b"MIME-Version: 1.0\r\n" + entity
    outer, inner = mime.split_headers(message)
    assert outer == OUTER
    assert inner == b"MIME-Version: 1.0\r\n" + entity
    assert mime.with_outer_headers(inner, outer) == message  # byte for byte


def test_split_headers_keeps_interleaved_fields_and_raw_body() -> None:
    message = b"Subject: s\nContent-Type: application/octet-stream\nTo: t\n\n\x00\n\xff"
    outer, inner = mime.split_headers(message)
    assert outer == b"Subject: s\r\nTo: t\r\n"
    assert inner == b"Content-Type: application/octet-stream\r\n\r\n\x00\n\xff"


def test_split_headers_drops_an_mbox_separator_but_not_a_from_field() -> None:
    outer, _ = mime.split_headers(b"From joerg@example.org Mon Jan  1 00:00:00 2024\nTo: t\n\nx")
    assert outer == b"To: t\r\n"
    outer, _ = mime.split_headers(b"From : j@example.org\r\nTo: t\r\n\r\nx")
    assert outer == b"From : j@example.org\r\nTo: t\r\n"


def test_with_outer_headers_from_pairs() -> None:
    entity = mime.build_entity("hi", None, [])
    message = mime.with_outer_headers(
        entity,
        [
            ("From", "=?utf-8?q?J=C3=B6rg?= <j@example.org>"),
            ("Subject", "=?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n =?utf-8?q?_mehr?="),
            ("To", "Zoë <zoe@example.org>"),
            ("MIME-Version", "1.0"),
        ],
    )
    assert message.startswith(
        b"From: =?utf-8?q?J=C3=B6rg?= <j@example.org>\r\n"
        b"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n =?utf-8?q?_mehr?=\r\n"
    )
    assert message.count(b"MIME-Version") == 1
    assert message.endswith(b"MIME-Version: 1.0\r\n" + entity)
    parsed = parse(message)
    assert parsed["To"].addresses[0].display_name == "Zoë"
    assert parsed["Subject"] == "Grüße mehr"
    assert max(message) < 0x80


@pytest.mark.parametrize(
    "headers",
    [
        {"Subject": "x\r\nBcc: evil@example.org"},
        {"Subject": "x\nBcc: evil@example.org"},
        {"Subject": "Grüße\r\nBcc: evil@example.org"},
        {"Content-Type": "text/plain"},
        {"Bad Name": "x"},
        b"Content-Type: text/plain\r\n",
        b"not a header\r\n",
    ],
)
def test_with_outer_headers_rejects(headers) -> None:
    with pytest.raises(MalformedInput):
        mime.with_outer_headers(b"Content-Type: text/plain\r\n\r\nx", headers)


# --------------------------------------------------------------------------- micalg


def test_micalg_table() -> None:
    assert mime.micalg_for("sha256") == "sha-256"
    assert mime.micalg_for("SHA-384") == "sha-384"
    assert mime.digest_for_micalg("sha-512") == "sha512"
    assert mime.digest_for_micalg("sha1") == "sha1"  # pre-RFC 5751 spelling
    # SM3 is registered by shared_pki.cms.sm (test_sm_cms checks it); a made-up digest here.
    with pytest.raises(UnsupportedAlgorithm):
        mime.micalg_for("whirlpool")
    mime.register_micalg("whirlpool", "whirlpool")
    try:
        assert mime.micalg_for("whirlpool") == "whirlpool"
        assert mime.digest_for_micalg("WHIRLPOOL") == "whirlpool"
    finally:
        del mime.MICALG_BY_DIGEST["whirlpool"]


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("digest", ["sha256", "sha-384", "sha512"])
def test_multipart_signed_round_trip_is_byte_identical(digest: str) -> None:
    entity = sample_entity()
    signature = fake_cms(OID_SIGNED, 1500)
    wrapped = mime.wrap_multipart_signed(entity, signature, digest)
    _assert_7bit_canonical(wrapped)
    message = mime.with_outer_headers(wrapped, OUTER)
    layer = mime.unwrap(message)
    assert layer.kind == "multipart_signed"
    assert layer.content == entity
    assert layer.signature == signature
    assert layer.micalg == mime.micalg_for(digest)
    assert layer.protocol == "application/pkcs7-signature"
    assert layer.outer_headers == OUTER
    assert layer.entity == b"MIME-Version: 1.0\r\n" + wrapped  # split_headers: a content field
    # The email package agrees on the structure and the signature part's labels.
    parsed = parse(message)
    content_part, signature_part = parsed.iter_parts()
    assert signature_part.get_content_type() == "application/pkcs7-signature"
    assert signature_part.get_param("name") == "smime.p7s"
    assert signature_part.get_filename() == "smime.p7s"
    assert signature_part.get_content() == signature
    assert content_part.get_filename() is None
    # Base64 lines of 76 characters, CRLF.
    b64 = wrapped.split(b"Content-Description: S/MIME Cryptographic Signature\r\n\r\n")[1]
    lines = b64.split(b"\r\n--")[0].rstrip(b"\r\n").split(b"\r\n")
    assert {len(line) for line in lines[:-1]} == {76}
    assert 0 < len(lines[-1]) <= 76


def test_multipart_signed_of_entity_without_final_crlf() -> None:
    entity = b"Content-Type: text/plain\r\n\r\nno final line end"
    layer = mime.unwrap(mime.wrap_multipart_signed(entity, fake_cms(OID_SIGNED), "sha256"))
    assert layer.content == entity


def test_multipart_signed_unwraps_from_lf_only_input() -> None:
    entity = sample_entity()
    signature = fake_cms(OID_SIGNED, 700)
    message = mime.with_outer_headers(
        mime.wrap_multipart_signed(entity, signature, "sha256"), OUTER
    )
    layer = mime.unwrap(message.replace(b"\r\n", b"\n"))
    assert layer.content == entity
    assert layer.signature == signature
    assert layer.outer_headers == OUTER


def test_multipart_signed_old_x_types_and_unlabelled_micalg() -> None:
    signature = fake_cms(OID_SIGNED)
    wrapped = mime.wrap_multipart_signed(
        b"Content-Type: text/plain\r\n\r\nx\r\n", signature, "sha1"
    )
    old = (
        wrapped.replace(b"application/pkcs7-signature", b"application/x-pkcs7-signature")
        .replace(b" micalg=sha-1;", b"")
        .replace(b"boundary=", b"BOUNDARY=")
    )
    layer = mime.unwrap(old)
    assert layer.protocol == "application/x-pkcs7-signature"
    assert layer.micalg is None
    assert layer.signature == signature


def test_multipart_signed_refuses_non_canonical_or_bad_arguments() -> None:
    with pytest.raises(MalformedInput):
        mime.wrap_multipart_signed(
            b"Content-Type: text/plain\n\nx\n", fake_cms(OID_SIGNED), "sha256"
        )
    with pytest.raises(MalformedInput):
        mime.wrap_multipart_signed(b"A: b\r\n\r\nx", fake_cms(OID_ENVELOPED), "sha256")
    with pytest.raises(UnsupportedAlgorithm):
        mime.wrap_multipart_signed(b"A: b\r\n\r\nx", fake_cms(OID_SIGNED), "whirlpool")


def test_boundary_never_occurs_in_content() -> None:
    entity = b"Content-Type: text/plain\r\n\r\n------=_autosmime_\r\n"
    wrapped = mime.wrap_multipart_signed(entity, fake_cms(OID_SIGNED), "sha256")
    boundary = re.search(rb'boundary="([^"]+)"', wrapped).group(1)
    assert boundary not in entity
    assert mime.unwrap(wrapped).content == entity


@pytest.mark.parametrize(
    ("smime_type", "oid", "kind"),
    [
        ("enveloped-data", OID_ENVELOPED, "enveloped"),
        ("authEnveloped-data", OID_AUTH_ENVELOPED, "auth_enveloped"),
        ("signed-data", OID_SIGNED, "signed_opaque"),
        ("certs-only", OID_SIGNED, "signed_opaque"),
    ],
)
def test_pkcs7_mime_round_trip(smime_type: str, oid: str, kind: str) -> None:
    der = fake_cms(oid, 2000)
    wrapped = mime.wrap_pkcs7_mime(der, smime_type)
    _assert_7bit_canonical(wrapped)
    assert wrapped.startswith(
        b"Content-Type: application/pkcs7-mime; smime-type=" + smime_type.encode() + b";\r\n"
        b" name=smime.p7m\r\n"
    )
    parsed = parse(wrapped)
    assert parsed.get_filename() == "smime.p7m"
    assert parsed["Content-Disposition"].content_disposition == "attachment"
    layer = mime.unwrap(mime.with_outer_headers(wrapped, OUTER))
    assert (layer.kind, layer.der, layer.smime_type) == (kind, der, smime_type)
    assert layer.cms_content_type == oid
    assert layer.outer_headers == OUTER


def test_pkcs7_mime_variants_are_decided_by_the_der() -> None:
    der = fake_cms(OID_AUTH_ENVELOPED, 500)
    b64 = binascii.b2a_base64(der, newline=False)
    variants = [
        # the old x- type, base64 in one long line, no padding-sensitive line breaks
        b"Content-Type: application/x-pkcs7-mime; smime-type=authEnveloped-data; name=smime.p7m\n"
        b"Content-Transfer-Encoding: base64\n\n" + b64 + b"\n",
        # no smime-type at all, only the name
        b'Content-Type: application/pkcs7-mime; name="smime.p7m"\r\n'
        b"Content-Transfer-Encoding: BASE64\r\n\r\n" + b64,
        # Outlook's octet-stream with a .p7m filename
        b"Content-Type: application/octet-stream\r\n"
        b'Content-Disposition: attachment; filename="SMIME.P7M"\r\n'
        b"Content-Transfer-Encoding: base64\r\n\r\n" + b64[:40] + b"\r\n " + b64[40:] + b"\r\n",
        # mislabelled: the DER wins, the label is reported as declared
        mime.wrap_pkcs7_mime(der, "authEnveloped-data").replace(b"authEnveloped", b"enveloped"),
        # binary transfer encoding, raw DER
        b"Content-Type: application/pkcs7-mime; smime-type=authEnveloped-data\r\n"
        b"Content-Transfer-Encoding: binary\r\n\r\n" + der,
        b"Content-Type: application/pkcs7-mime; smime-type=authEnveloped-data\r\n"
        b"Content-Transfer-Encoding: binary\r\n\r\n" + der + b"\r\n",
    ]
    for variant in variants:
        layer = mime.unwrap(variant)
        assert layer.kind == "auth_enveloped", variant[:80]
        assert layer.der == der


def test_pkcs7_mime_indefinite_length_ber_is_sniffed() -> None:
    inner = core.OctetString(b"x" * 10).dump()
    ber = (
        b"\x30\x80" + core.ObjectIdentifier(OID_ENVELOPED).dump() + b"\xa0\x80" + inner + b"\0" * 4
    )
    assert mime.unwrap(mime.wrap_pkcs7_mime(ber, "enveloped-data")).der == ber


def test_wrap_pkcs7_mime_checks_label_against_der() -> None:
    with pytest.raises(MalformedInput):
        mime.wrap_pkcs7_mime(fake_cms(OID_SIGNED), "enveloped-data")
    with pytest.raises(UnsupportedAlgorithm):
        mime.wrap_pkcs7_mime(fake_cms(OID_SIGNED), "signed-stuff")
    with pytest.raises(MalformedInput):
        mime.wrap_pkcs7_mime(b"\x30\x03\x02\x01\x00", "signed-data")


def test_compressed_data_is_unsupported_not_malformed() -> None:
    wrapped = mime.wrap_pkcs7_mime(fake_cms(OID_COMPRESSED), "compressed-data")
    with pytest.raises(UnsupportedAlgorithm):
        mime.unwrap(wrapped)


def test_plain_messages() -> None:
    message = OUTER + b"MIME-Version: 1.0\r\n" + sample_entity()
    layer = mime.unwrap(message)
    assert (layer.kind, layer.content_type, layer.outer_headers) == (
        "plain",
        "multipart/mixed",
        OUTER,
    )
    assert layer.entity == b"MIME-Version: 1.0\r\n" + sample_entity()
    assert mime.unwrap(b"Subject: hi\n\nhello\n").kind == "plain"
    assert mime.unwrap(b"\r\nno headers at all").content_type == "text/plain"
    pgp = b"Content-Type: multipart/encrypted; protocol=x; boundary=b\r\n\r\n--b--\r\n"
    assert mime.unwrap(pgp).kind == "plain"


# --------------------------------------------------------------------------- nesting


def test_encrypted_inside_signed_peels_one_layer_at_a_time() -> None:
    enveloped = fake_cms(OID_ENVELOPED, 900)
    inner = mime.wrap_pkcs7_mime(enveloped, "enveloped-data")
    message = mime.with_outer_headers(
        mime.wrap_multipart_signed(inner, fake_cms(OID_SIGNED), "sha256"), OUTER
    )
    outer_layer = mime.unwrap(message)
    assert outer_layer.kind == "multipart_signed"
    assert outer_layer.content == inner
    inner_layer = mime.unwrap(outer_layer.content)
    assert (inner_layer.kind, inner_layer.der, inner_layer.outer_headers) == (
        "enveloped",
        enveloped,
        b"",
    )


def test_signed_inside_encrypted_and_triple_wrap() -> None:
    """What a decrypting caller gets back is an entity without outer headers; each inner layer
    unwraps on its own. Sign, encrypt, sign again (RFC 8551 3.7 triple wrapping)."""
    entity = sample_entity()
    signed = mime.wrap_multipart_signed(entity, fake_cms(OID_SIGNED, 400), "sha256")
    enveloped_der = fake_cms(OID_ENVELOPED, 3000)  # stands for Encrypt(signed)
    encrypted = mime.wrap_pkcs7_mime(enveloped_der, "enveloped-data")
    outer = mime.with_outer_headers(
        mime.wrap_multipart_signed(encrypted, fake_cms(OID_SIGNED, 401), "sha512"), OUTER
    )
    first = mime.unwrap(outer)
    assert first.kind == "multipart_signed" and first.outer_headers == OUTER
    second = mime.unwrap(first.content)
    assert second.kind == "enveloped" and second.der == enveloped_der
    third = mime.unwrap(signed)  # what decrypting enveloped_der would give back
    assert third.kind == "multipart_signed" and third.content == entity
    assert mime.unwrap(third.content).kind == "plain"


# --------------------------------------------------------------------------- malformed input


def _signed(entity: bytes = b"Content-Type: text/plain\r\n\r\nhi\r\n") -> bytes:
    return mime.wrap_multipart_signed(entity, fake_cms(OID_SIGNED, 600), "sha256")


def _parts_message(parts: list[bytes], protocol: bytes = b"application/pkcs7-signature") -> bytes:
    head = b'Content-Type: multipart/signed; protocol="' + protocol + b'"; boundary=BB\r\n\r\n'
    return head + b"".join(b"--BB\r\n" + p + b"\r\n" for p in parts) + b"--BB--\r\n"


_SIG_PART = (
    b"Content-Type: application/pkcs7-signature\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    + binascii.b2a_base64(fake_cms(OID_SIGNED))
)
_TEXT_PART = b"Content-Type: text/plain\r\n\r\nhi"

P7M_HEAD = b"Content-Type: application/pkcs7-mime\r\nContent-Transfer-Encoding: base64\r\n\r\n"
MALFORMED = {
    "empty": b"",
    "whitespace": b"\r\n \r\n",
    "not mime": b"\x00\x01\x02 garbage without any header\n\nbody",
    "continuation first": b" folded: x\r\n\r\nbody",
    "truncated signed": _signed()[:-80],
    "truncated before second part": _signed().split(b"Content-Type: application/pkcs7-s")[0],
    "missing boundary": re.sub(rb'; boundary="[^"]+"', b"", _signed()),
    "empty boundary": re.sub(rb'boundary="[^"]+"', b'boundary=""', _signed()),
    "one part": _parts_message([_TEXT_PART]),
    "three parts": _parts_message([_TEXT_PART, _SIG_PART, _SIG_PART]),
    "wrong protocol": _parts_message([_TEXT_PART, _SIG_PART], b"application/pgp-signature"),
    "no protocol": _parts_message([_TEXT_PART, _SIG_PART]).replace(
        b'protocol="application/pkcs7-signature"; ', b""
    ),
    "second part not a signature": _parts_message([_TEXT_PART, _TEXT_PART]),
    "signature not base64": _parts_message([_TEXT_PART, _SIG_PART.replace(b"base64", b"7bit")]),
    "garbage base64 signature": _parts_message(
        [_TEXT_PART, _SIG_PART.split(b"\r\n\r\n")[0] + b"\r\n\r\n!!not*base64$$\r\n"]
    ),
    "empty signature": _parts_message([_TEXT_PART, _SIG_PART.split(b"\r\n\r\n")[0] + b"\r\n\r\n"]),
    "malformed multipart type": b"Content-Type: multipart; boundary=x\r\n\r\n--x--\r\n",
    "garbage base64 p7m": b"Content-Type: application/pkcs7-mime; smime-type=enveloped-data\r\n"
    b"Content-Transfer-Encoding: base64\r\n\r\n@@@@====\r\n",
    "empty p7m": P7M_HEAD,
    "truncated der": mime.wrap_pkcs7_mime(fake_cms(OID_ENVELOPED, 3000), "enveloped-data")[:-300]
    + b"\r\n",
    "id-data in p7m": P7M_HEAD + binascii.b2a_base64(fake_cms(OID_DATA)),
    "not der in p7m": P7M_HEAD + binascii.b2a_base64(b"hello world, not DER"),
    "unknown cte p7m": b"Content-Type: application/pkcs7-mime\r\nContent-Transfer-Encoding: x-uu"
    b"\r\n\r\nbegin 644\r\n",
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_input_raises_malformed_input(name: str) -> None:
    with pytest.raises(MalformedInput) as info:
        mime.unwrap(MALFORMED[name])
    assert info.value.message  # a sentence, for people


def test_signature_part_that_is_not_signed_data() -> None:
    part = (
        b"Content-Type: application/pkcs7-signature\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + binascii.b2a_base64(fake_cms(OID_ENVELOPED))
    )
    with pytest.raises(MalformedInput, match="not SignedData"):
        mime.unwrap(_parts_message([_TEXT_PART, part]))


@pytest.mark.parametrize(
    "entity",
    [
        b"",
        b"garbage\x00 without headers",
        b"Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\nA: b\r\n\r\nunterminated",
        b"Content-Type: multipart/mixed\r\n\r\n--x--\r\n",
        (b"Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\n" * 40) + b"x",
    ],
)
def test_prepare_for_signing_malformed(entity: bytes) -> None:
    with pytest.raises(MalformedInput):
        mime.prepare_for_signing(entity)


def test_mutated_messages_raise_only_typed_errors() -> None:
    """Random truncations, byte flips, insertions and deletions of real wrapped messages: the
    parser either classifies them or raises a typed error, nothing else."""
    seeds = [
        mime.with_outer_headers(_signed(sample_entity()), OUTER),
        mime.with_outer_headers(
            mime.wrap_pkcs7_mime(fake_cms(OID_ENVELOPED), "enveloped-data"), OUTER
        ),
        OUTER + sample_entity(),
    ]
    rng = random.Random(1847)
    outcomes = {"ok": 0, "typed": 0}
    for case in range(1500):
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randrange(1, 4)):
            if not data:
                break
            at = rng.randrange(len(data))
            action = rng.randrange(4)
            if action == 0:
                del data[at:]
            elif action == 1:
                data[at] = rng.randrange(256)
            elif action == 2:
                data[at:at] = rng.choice([b"\r\n", b"--", b";", b'"', b"\n\n", b"=", b"\x80"])
            else:
                del data[at : at + rng.randrange(1, 50)]
        try:
            mime.unwrap(bytes(data))
            mime.prepare_for_signing(bytes(data))
            outcomes["ok"] += 1
        except (MalformedInput, UnsupportedAlgorithm):
            outcomes["typed"] += 1
        except Exception as exc:  # pragma: no cover - the failure being tested for
            pytest.fail(f"case {case}: {type(exc).__name__}: {exc} for {bytes(data)[:200]!r}")
    assert outcomes["ok"] and outcomes["typed"]


# --------------------------------------------------------------------------- OpenSSL as a peer

OPENSSL = require("openssl")


def run_openssl(*args: str | Path, stdin: bytes | None = None) -> bytes:
    result = subprocess.run(
        [OPENSSL, *map(str, args)], input=stdin, capture_output=True, check=False, timeout=60
    )
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    return result.stdout


@pytest.fixture
def peer(tmp_path: Path) -> dict[str, Path]:
    """A throw-away self-signed key and certificate, plus an LF-only entity file to sign."""
    key, cert = tmp_path / "k", tmp_path / "c"
    run_openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=t",
        "-keyout", key, "-out", cert,
    )  # fmt: skip
    entity = tmp_path / "entity.eml"
    entity.write_bytes(sample_entity().replace(b"\r\n", b"\n"))
    return {"key": key, "cert": cert, "entity": entity, "dir": tmp_path}


@pytest.mark.parametrize("tool", ["cms", "smime"])
def test_openssl_multipart_signed_unwraps_and_our_rewrap_verifies(peer, tool: str) -> None:
    signed = run_openssl(
        tool, "-sign", "-in", peer["entity"], "-signer", peer["cert"], "-inkey", peer["key"]
    )
    layer = mime.unwrap(signed)
    assert layer.kind == "multipart_signed"
    assert layer.content == mime.canonicalize(peer["entity"].read_bytes())
    assert layer.content == sample_entity()
    assert layer.micalg == "sha-256"
    expected = "application/pkcs7-signature" if tool == "cms" else "application/x-pkcs7-signature"
    assert layer.protocol == expected
    assert cms.ContentInfo.load(layer.signature)["content_type"].native == "signed_data"
    # Our re-wrap of what OpenSSL signed verifies in OpenSSL, content byte for byte.
    ours = mime.with_outer_headers(
        mime.wrap_multipart_signed(layer.content, layer.signature, layer.micalg), OUTER
    )
    message = peer["dir"] / "ours.eml"
    message.write_bytes(ours)
    verified = run_openssl("cms", "-verify", "-noverify", "-in", message)
    assert verified == layer.content


def test_openssl_opaque_signed_both_ways(peer) -> None:
    signed = run_openssl(
        "cms", "-sign", "-nodetach", "-in", peer["entity"], "-signer", peer["cert"],
        "-inkey", peer["key"],
    )  # fmt: skip
    layer = mime.unwrap(signed)
    assert (layer.kind, layer.smime_type) == ("signed_opaque", "signed-data")
    source = peer["dir"] / "opaque.eml"
    source.write_bytes(signed)
    assert layer.der == run_openssl("cms", "-cmsout", "-in", source, "-outform", "DER")
    message = peer["dir"] / "ours.eml"
    message.write_bytes(
        mime.with_outer_headers(mime.wrap_pkcs7_mime(layer.der, "signed-data"), OUTER)
    )
    assert run_openssl("cms", "-verify", "-noverify", "-in", message) == sample_entity()


@pytest.mark.parametrize(
    ("cipher", "kind", "asn1_type", "smime_type"),
    [
        ("-aes-256-cbc", "enveloped", "enveloped_data", "enveloped-data"),
        ("-aes-128-gcm", "auth_enveloped", "authenticated_enveloped_data", "authEnveloped-data"),
    ],
)
def test_openssl_encrypted_both_ways(peer, cipher, kind, asn1_type, smime_type) -> None:
    encrypted = run_openssl("cms", "-encrypt", cipher, "-in", peer["entity"], peer["cert"])
    layer = mime.unwrap(encrypted)
    assert (layer.kind, layer.smime_type) == (kind, smime_type)
    source = peer["dir"] / "enc.eml"
    source.write_bytes(encrypted)
    assert layer.der == run_openssl("cms", "-cmsout", "-in", source, "-outform", "DER")

    der = run_openssl(
        "cms", "-encrypt", cipher, "-in", peer["entity"], "-outform", "DER", peer["cert"]
    )
    assert cms.ContentInfo.load(der)["content_type"].native == asn1_type
    message = peer["dir"] / "ours.eml"
    message.write_bytes(mime.with_outer_headers(mime.wrap_pkcs7_mime(der, smime_type), OUTER))
    decrypted = run_openssl(
        "cms", "-decrypt", "-in", message, "-recip", peer["cert"], "-inkey", peer["key"]
    )
    assert decrypted == sample_entity()


def test_openssl_sign_then_encrypt_peels_in_two_steps(peer) -> None:
    signed = peer["dir"] / "signed.eml"
    signed.write_bytes(
        run_openssl(
            "cms", "-sign", "-in", peer["entity"], "-signer", peer["cert"], "-inkey", peer["key"]
        )
    )
    encrypted = run_openssl("cms", "-encrypt", "-aes-256-cbc", "-in", signed, peer["cert"])
    outer = mime.unwrap(encrypted)
    assert outer.kind == "enveloped"
    der = peer["dir"] / "env.der"
    der.write_bytes(outer.der)
    inner_bytes = run_openssl(
        "cms", "-decrypt", "-inform", "DER", "-in", der,
        "-recip", peer["cert"], "-inkey", peer["key"],
    )  # fmt: skip
    inner = mime.unwrap(inner_bytes)
    assert inner.kind == "multipart_signed"
    assert inner.content == sample_entity()


def test_openssl_signs_our_encrypted_entity(peer) -> None:
    """Encrypt-then-sign: OpenSSL signs the application/pkcs7-mime entity we wrapped; the
    signed content is that entity byte for byte and peels to the same DER."""
    der = run_openssl("cms", "-encrypt", "-in", peer["entity"], "-outform", "DER", peer["cert"])
    entity = peer["dir"] / "p7m.eml"
    entity.write_bytes(mime.wrap_pkcs7_mime(der, "enveloped-data"))
    signed = run_openssl(
        "cms", "-sign", "-in", entity, "-signer", peer["cert"], "-inkey", peer["key"]
    )
    layer = mime.unwrap(signed)
    assert layer.content == entity.read_bytes()
    inner = mime.unwrap(layer.content)
    assert (inner.kind, inner.der) == ("enveloped", der)


@pytest.mark.parametrize(
    "message",
    [
        b"From: a@example.test\r\nSubject: s\r\nMIME-Version: 1.0\r\nContent-Type: text/plain\r\n"
        b"\r\nbody\r\n",
        b"Subject: lf\nContent-Type: text/plain;\n charset=utf-8\n\nbody\n",
        b"Content-Type: text/plain\r\n\r\nonly content fields\r\n",
        b"Subject: no content fields\r\n\r\nbody",
        b"\r\nno header at all",
        b"From x@y Mon Jan  1 00:00:00 2024\nFrom: mbox@example.test\n\nbody",
    ],
)
def test_rewrap_headers_is_with_outer_headers_of_the_entity(message: bytes) -> None:
    outer = b"From: outer@example.test\r\nSubject: outer\r\n"
    expected = mime.with_outer_headers(mime.split_headers(message)[1], outer)
    assert mime.rewrap_headers(message, outer) == expected
    assert mime.rewrap_headers(message, [("To", "b@example.test")]) == mime.with_outer_headers(
        mime.split_headers(message)[1], [("To", "b@example.test")]
    )
    with pytest.raises(MalformedInput):
        mime.rewrap_headers(message, b"Content-Type: text/html\r\n")
