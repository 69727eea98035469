"""RFC 9788 header protection, the pure part: what protect() writes and what read() makes of it,
of other senders' shapes, and of bad input. Whole signed and encrypted messages are in
test_header_protection_messages.py."""

from __future__ import annotations

import email
import re

import pytest

from shared_pki import header_protection as hp
from shared_pki import mime
from shared_pki.errors import MalformedInput

HEADERS = (
    ("From", "Alice <alice@smime.example>"),
    ("To", "Bob <bob@smime.example>"),
    ("Cc", "Carlos <carlos@smime.example>"),
    ("Date", "Sat, 20 Feb 2021 10:09:02 -0500"),
    ("Subject", "The FooCorp contract"),
    ("Message-ID", "<protected@smime.example>"),
    ("In-Reply-To", "<earlier@smime.example>"),
    ("References", "<first@smime.example> <earlier@smime.example>"),
    ("Reply-To", "Alice <alice@smime.example>"),
    ("Keywords", "contract, urgent"),
    ("Comments", "not for the file"),
)
ENTITY = mime.build_entity("Bob, we need to cancel this contract.", "<p>Bob, we need to…</p>")


def body_of(entity: bytes) -> bytes:
    return re.split(rb"\r\n\r\n", entity, maxsplit=1)[1]


# --- writing ----------------------------------------------------------------------------------


def test_encrypted_payload_carries_every_field_and_records_what_stays_outside():
    protected = hp.protect(HEADERS, ENTITY, encrypted=True)
    assert protected.hp == "cipher"
    inner, content = mime.split_headers(protected.entity)
    fields = mime.header_fields(inner)
    assert [f for f in fields if f[0] != "HP-Outer"] == list(HEADERS)
    assert [v for n, v in fields if n == "HP-Outer"] == [
        "From: Alice <alice@smime.example>",
        "To: Bob <bob@smime.example>",
        "Cc: Carlos <carlos@smime.example>",
        "Date: Sat, 20 Feb 2021 10:09:02 -0500",
        "Subject: [...]",
        "Message-ID: <protected@smime.example>",
        "In-Reply-To: <earlier@smime.example>",
        "References: <first@smime.example> <earlier@smime.example>",
        "Reply-To: Alice <alice@smime.example>",
    ]
    assert re.search(rb'Content-Type: multipart/alternative;.*\r\n hp="cipher"\r\n', content, re.S)
    assert body_of(protected.entity) == body_of(ENTITY)  # the body's bytes are untouched
    outer = dict(protected.outer_headers)
    assert outer["Subject"] == "[...]"
    assert "Keywords" not in outer and "Comments" not in outer
    assert outer["To"] == "Bob <bob@smime.example>"
    assert protected.confidential == ("Subject", "Keywords", "Comments")


def test_signed_payload_says_clear_and_leaves_the_outside_alone():
    protected = hp.protect(HEADERS, ENTITY, encrypted=False)
    assert protected.hp == "clear"
    assert protected.outer_headers == HEADERS
    assert protected.confidential == ()
    assert b"HP-Outer" not in protected.entity
    assert b'\r\n hp="clear"\r\n' in protected.entity
    assert mime.header_fields(mime.split_headers(protected.entity)[0]) == list(HEADERS)


def test_an_entity_without_content_type_gets_rfc_2045s_default_marked():
    protected = hp.protect(HEADERS[:1], b"\r\nplain words\r\n", encrypted=False)
    assert protected.entity.endswith(
        b'Content-Type: text/plain; charset="us-ascii";\r\n hp="clear"\r\n\r\nplain words\r\n'
    )


def test_non_ascii_fields_are_encoded_inside_and_in_hp_outer():
    headers = [("From", "Jörg <joerg@smime.example>"), ("Subject", "Grüße aus Köln")]
    protected = hp.protect(headers, ENTITY, encrypted=True)
    assert protected.entity.isascii()
    assert b"HP-Outer: From: =?utf-8?q?J=C3=B6rg?= <joerg@smime.example>\r\n" in protected.entity
    read = hp.read(mime.header_block(protected.outer_headers), protected.entity, encrypted=True)
    assert read.get("Subject") == "Grüße aus Köln"
    assert read.get("From") == "Jörg <joerg@smime.example>"
    assert read.confidential == ("subject",)
    assert read.discrepancies == ()


def test_a_long_recipient_list_is_folded_and_still_reads_back():
    to = ", ".join(f"Person {n} <person{n}@smime.example>" for n in range(40))
    protected = hp.protect([("From", "alice@smime.example"), ("To", to)], ENTITY, encrypted=True)
    inner, _ = mime.split_headers(protected.entity)
    hp_outer_lines = [
        line for line in re.split(rb"\r\n(?![ \t])", inner) if line.startswith(b"HP-Outer")
    ]
    assert all(len(part) <= 78 for line in hp_outer_lines for part in line.split(b"\r\n"))
    read = hp.read(mime.header_block(protected.outer_headers), protected.entity, encrypted=True)
    assert read.get("To") == to
    assert read.confidential == () and read.discrepancies == ()


def test_a_policy_is_asked_about_every_field():
    def shy(name: str, value: str) -> str | None:
        return "alice@smime.example" if name == "From" else hp.hcp_baseline(name, value)

    protected = hp.protect(HEADERS[:5], ENTITY, encrypted=True, policy=shy)
    assert dict(protected.outer_headers)["From"] == "alice@smime.example"
    assert b"HP-Outer: From: alice@smime.example\r\n" in protected.entity
    read = hp.read(mime.header_block(protected.outer_headers), protected.entity, encrypted=True)
    assert read.confidential == ("from", "subject")
    assert read.get("From") == "Alice <alice@smime.example>"
    assert read.discrepancies == ()  # the same address: the display name alone was hidden


def test_hcp_no_confidentiality_hides_nothing():
    protected = hp.protect(HEADERS, ENTITY, encrypted=True, policy=hp.hcp_no_confidentiality)
    assert protected.outer_headers == HEADERS and protected.confidential == ()
    read = hp.read(mime.header_block(protected.outer_headers), protected.entity, encrypted=True)
    assert read.confidential == ()
    assert read.protection_of("Subject") == "unprotected"  # not signed, and shown outside


@pytest.mark.parametrize(
    ("headers", "entity", "words"),
    [
        ([("Bcc", "eve@smime.example")], ENTITY, "Bcc cannot be protected"),
        ([("Content-Type", "text/plain")], ENTITY, "describes the entity"),
        ([("HP-Outer", "Subject: x")], ENTITY, "written by protect"),
        ([], ENTITY, "No header fields"),
        (HEADERS, b"Subject: inside already\r\n" + ENTITY, "already carries header fields"),
        (HEADERS, hp.protect(HEADERS, ENTITY, encrypted=False).entity, "header fields"),
        (HEADERS, b'Content-Type: text/plain; hp="clear"\r\n\r\nx', "already header-protected"),
        ([("Subject", "two\r\nBcc: eve@smime.example")], ENTITY, "line break"),
        (b"not a header block\r\n", ENTITY, "not a field"),
    ],
)
def test_bad_input_is_refused_in_words_and_changes_nothing(headers, entity, words):
    before = (list(headers) if not isinstance(headers, bytes) else headers, bytes(entity))
    with pytest.raises(MalformedInput, match=words):
        hp.protect(headers, entity, encrypted=True)
    after = (list(headers) if not isinstance(headers, bytes) else headers, entity)
    assert after == before


def test_a_policy_that_writes_a_line_break_is_refused():
    with pytest.raises(MalformedInput, match="line break"):
        hp.protect(HEADERS, ENTITY, encrypted=True, policy=lambda n, v: v + "\r\nBcc: x@y")


def test_wrong_types_are_type_errors():
    with pytest.raises(TypeError):
        hp.protect(HEADERS, ENTITY.decode(), encrypted=True)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        hp.read("From: a@b\r\n", ENTITY, encrypted=False)  # type: ignore[arg-type]


# --- reading ----------------------------------------------------------------------------------


def protected_pair(encrypted: bool = True, headers=HEADERS) -> tuple[bytes, bytes]:
    protected = hp.protect(headers, ENTITY, encrypted=encrypted)
    return mime.header_block(protected.outer_headers), protected.entity


def test_every_protected_field_reads_back_and_the_confidential_ones_are_named():
    outer, payload = protected_pair()
    read = hp.read(outer, payload, encrypted=True, signature_valid=True)
    assert read.protected and read.hp == "cipher"
    assert [(f.name, f.value) for f in read.headers] == list(HEADERS)
    assert read.shown() == {name.lower(): value for name, value in HEADERS[:9]}
    assert read.confidential == ("subject", "keywords", "comments")
    assert read.protection_of("Subject") == "signed and encrypted"
    assert read.protection_of("To") == "signed"
    assert read.protection_of("X-Unknown") == "unprotected"
    assert len(read.hp_outer) == 9 and read.hp_outer[4] == hp.HeaderField("Subject", "[...]")
    assert read.discrepancies == ()
    assert b"HP-Outer" not in read.entity and b"Subject" not in read.entity
    assert read.message.startswith(b"From: Alice <alice@smime.example>\r\n")


def test_without_a_valid_signature_a_hidden_field_is_only_encrypted():
    outer, payload = protected_pair()
    read = hp.read(outer, payload, encrypted=True, signature_valid=False)
    assert read.protection_of("Subject") == "encrypted"
    assert read.protection_of("To") == "unprotected"


def test_without_hp_the_message_reads_as_it_always_did():
    """The inner fields of a payload that does not say hp= are not trusted (they may be
    anything an older client put there), and the outer ones are shown."""
    payload = b"Subject: inner\r\nFrom: mallory@evil.example\r\n" + ENTITY
    outer = b"From: Alice <alice@smime.example>\r\nSubject: outer\r\n"
    read = hp.read(outer, payload, encrypted=True, signature_valid=True)
    assert not read.protected and read.hp is None
    assert read.get("Subject") == "outer" and read.get("From") == "Alice <alice@smime.example>"
    assert read.protected_fields == () and read.confidential == ()
    assert read.discrepancies == ()
    assert read.entity == mime.split_headers(payload)[1]
    assert read.protection_of("Subject") == "unprotected"


def test_an_unknown_hp_value_is_unprotected_and_said_so():
    payload = b'Subject: inner\r\nContent-Type: text/plain; hp="maybe"\r\n\r\nx\r\n'
    read = hp.read(b"Subject: outer\r\n", payload, encrypted=True)
    assert not read.protected and read.get("Subject") == "outer"
    (note,) = read.discrepancies
    assert note.severity == "notice" and 'hp="maybe"' in note.message


def test_another_from_outside_is_a_warning_and_the_protected_sender_is_shown():
    outer, payload = protected_pair()
    forged = outer.replace(b"From: Alice <alice@smime.example>", b"From: Alice <ceo@evil.example>")
    read = hp.read(forged, payload, encrypted=True)
    assert read.get("From") == "Alice <alice@smime.example>"
    warnings = [d for d in read.discrepancies if d.severity == "warning"]
    assert [d.field for d in warnings] == ["from"]
    assert "alice@smime.example" in warnings[0].message
    assert "ceo@evil.example" in warnings[0].message


def test_a_display_name_or_case_change_outside_is_not_another_sender():
    outer, payload = protected_pair(encrypted=False)
    renamed = outer.replace(b"From: Alice <alice@", b"From: Someone <ALICE@")
    read = hp.read(renamed, payload, encrypted=False)
    assert not [d for d in read.discrepancies if d.severity == "warning"]


def test_a_recipient_added_outside_is_not_shown_and_is_said():
    """The replay of RFC 9788 section 10: Mallory adds herself to the outer Cc so a reply
    (from what the outside shows) would be encrypted to her too."""
    outer, payload = protected_pair()
    replayed = outer.replace(
        b"Cc: Carlos <carlos@smime.example>",
        b"Cc: Carlos <carlos@smime.example>, mallory@x.example",
    )
    read = hp.read(replayed, payload, encrypted=True)
    assert read.get_all("Cc") == ["Carlos <carlos@smime.example>"]
    (note,) = read.discrepancies
    assert note.field == "cc" and note.severity == "notice"
    assert "mallory@x.example" in note.message and "changed on the way" in note.message


def test_fields_dropped_or_added_outside_on_the_way_are_said():
    outer, payload = protected_pair()
    dropped = re.sub(rb"Date: [^\r]*\r\n", b"", outer) + b"Sender: relay@lists.example\r\n"
    read = hp.read(dropped, payload, encrypted=True)
    words = {d.field: d.message for d in read.discrepancies}
    assert set(words) == {"date", "sender"}
    assert "did not arrive" in words["date"] and "was added outside" in words["sender"]


def test_refolding_on_the_way_is_not_a_change():
    outer, payload = protected_pair()
    refolded = outer.replace(b"References: <first@", b"References:\r\n    <first@")
    assert hp.read(refolded, payload, encrypted=True).discrepancies == ()


def test_a_signed_subject_changed_outside_is_noticed_and_the_signed_one_shown():
    outer, payload = protected_pair(encrypted=False)
    tagged = outer.replace(b"Subject: The FooCorp", b"Subject: [list] The FooCorp")
    read = hp.read(tagged, payload, encrypted=False, signature_valid=True)
    assert read.get("Subject") == "The FooCorp contract"
    (note,) = read.discrepancies
    assert note.field == "subject" and "[list] The FooCorp contract" in note.message
    assert read.protection_of("Subject") == "signed"


def test_cipher_on_a_message_that_was_not_encrypted_is_a_warning_and_hides_nothing():
    outer, payload = protected_pair(encrypted=True)
    read = hp.read(outer, payload, encrypted=False)
    assert read.confidential == ()
    assert [d.severity for d in read.discrepancies if d.field == "hp"] == ["warning"]


def test_a_malformed_hp_outer_record_is_ignored_in_words():
    payload = (
        b"Subject: real\r\nHP-Outer: no colon here\r\n"
        b'Content-Type: text/plain; hp="cipher"\r\n\r\nx\r\n'
    )
    read = hp.read(b"", payload, encrypted=True)
    assert read.get("Subject") == "real" and read.hp_outer == ()
    assert any(d.field == "hp-outer" for d in read.discrepancies)


def test_raw_8bit_fields_read_as_utf8_and_broken_bytes_as_replacement_characters():
    payload = (
        b'Subject: Gr\xc3\xbc\xc3\x9fe \xff\r\nContent-Type: text/plain; hp="clear"\r\n\r\nx\r\n'
    )
    read = hp.read("Subject: Grüße \ufffd\r\n".encode(), payload, encrypted=False)
    assert read.get("Subject") == "Grüße \ufffd"
    assert read.message.isascii()


def test_a_payload_that_is_not_mime_is_refused():
    with pytest.raises(MalformedInput):
        hp.read(b"", b"\x00not a field\r\n\r\n", encrypted=True)


# --- legacy display ---------------------------------------------------------------------------

LEGACY_PLAIN = (
    b"Subject: Dinner plans\r\n"
    b"From: Alice <alice@smime.example>\r\n"
    b'Content-Type: text/plain; charset="us-ascii"; hp-legacy-display="1";\r\n hp="cipher"\r\n'
    b"\r\n"
    b"Subject: Dinner plans\r\n"
    b"\r\n"
    b"Let's meet at 8pm.\r\n"
)
LEGACY_HTML = (
    b"Subject: Dinner plans\r\n"
    b'Content-Type: text/html; charset="us-ascii"; hp-legacy-display="1";\r\n hp="cipher"\r\n'
    b"\r\n"
    b'<html><body><div class="header-protection-legacy-display">\r\n'
    b"<pre>Subject: Dinner plans</pre><div>nested</div>\r\n"
    b"</div>\r\n<p>Let's meet at 8pm.</p>\r\n</body></html>\r\n"
)


def payload_text(entity: bytes) -> str:
    import email
    import email.policy

    message = email.message_from_bytes(entity, policy=email.policy.default)
    return message.get_content().replace("\r\n", "\n")


def test_the_plain_legacy_display_element_is_hidden():
    read = hp.read(b"Subject: [...]\r\n", LEGACY_PLAIN, encrypted=True)
    assert read.legacy_display_hidden == 1
    assert payload_text(read.entity) == "Let's meet at 8pm.\n"
    assert b"hp-legacy-display" not in read.entity


def test_the_html_legacy_display_element_is_hidden_nested_divs_and_all():
    read = hp.read(b"Subject: [...]\r\n", LEGACY_HTML, encrypted=True)
    assert read.legacy_display_hidden == 1
    html = payload_text(read.entity)
    assert "Dinner plans" not in html and "nested" not in html
    assert "<p>Let's meet at 8pm.</p>" in html


def test_legacy_display_in_a_multipart_alternative_is_hidden_in_both_parts():
    entity = mime.build_entity("Subject: Dinner\n\nThe text.", "<div class='x'>keep</div>")
    entity = entity.replace(
        b'text/plain; charset="utf-8"', b'text/plain; charset="utf-8"; hp-legacy-display="1"'
    )
    entity = entity.replace(b"<div class='x'>", b"<div class='header-protection-legacy-display'>")
    entity = entity.replace(
        b'text/html; charset="utf-8"', b'text/html; charset="utf-8"; hp-legacy-display="1"'
    )
    protected = hp.protect([("Subject", "Dinner")], entity, encrypted=True)
    read = hp.read(b"Subject: [...]\r\n", protected.entity, encrypted=True)
    assert read.legacy_display_hidden == 2
    assert b"Subject: Dinner" not in read.entity.split(b"\r\n\r\n", 1)[1]
    assert b"keep" not in read.entity


def test_a_part_marked_but_not_shaped_like_a_legacy_display_is_shown_whole_and_said():
    payload = LEGACY_PLAIN.replace(
        b"\r\nSubject: Dinner plans\r\n\r\nLet", b"\r\nJust text\r\n\r\nLet"
    )
    read = hp.read(b"", payload, encrypted=True)
    assert read.legacy_display_hidden == 0
    assert "Just text" in payload_text(read.entity)
    (note,) = [d for d in read.discrepancies if d.field == "legacy-display"]
    assert "shown whole" in note.message


def test_legacy_display_is_left_alone_without_header_protection_or_the_marker():
    unprotected = LEGACY_PLAIN.replace(b';\r\n hp="cipher"', b"")
    read = hp.read(b"Subject: Dinner plans\r\n", unprotected, encrypted=True)
    assert "Subject: Dinner plans" in payload_text(read.entity)
    unmarked = LEGACY_PLAIN.replace(b' hp-legacy-display="1";', b"")
    read = hp.read(b"Subject: [...]\r\n", unmarked, encrypted=True)
    assert read.legacy_display_hidden == 0
    assert "Subject: Dinner plans" in payload_text(read.entity)


def test_a_legacy_display_we_write_heads_both_body_parts_and_is_hidden_again():
    entity = mime.build_entity(
        "The text.\n",
        "<html><body><p>The &amp; HTML</p></body></html>",
        [("notes.txt", "text/plain", b"an attachment, left alone")],
    )
    shown = hp.add_legacy_display(entity, [("Subject", "Grüße <b>&")])
    parts = [p for p in email.message_from_bytes(shown).walk() if not p.is_multipart()]
    plain, html, attached = (p.get_payload(decode=True).decode() for p in parts)
    assert plain == "Subject: Grüße <b>&\n\nThe text.\n"
    assert html.startswith(
        '<html><body><div class="header-protection-legacy-display">'
        "<pre>Subject: Grüße &lt;b&gt;&amp;</pre></div>"
    )
    assert attached == "an attachment, left alone"
    assert [p.get_param("hp-legacy-display") for p in parts] == ["1", "1", None]
    protected = hp.protect([("Subject", "Grüße <b>&")], shown, encrypted=True)
    read = hp.read(b"Subject: [...]\r\n", protected.entity, encrypted=True)
    assert read.legacy_display_hidden == 2 and read.discrepancies == ()
    assert b"Gr" not in read.entity.split(b"\r\n\r\n", 1)[1]  # nothing of it is left


def test_hiding_the_legacy_display_rewrites_only_the_parts_that_had_one():
    """Every byte outside the changed body part is the sender's (the email package's generator
    rewrote the whole entity); a forwarded message keeps its own legacy display."""
    entity = mime.build_entity(
        "The text.\n", None, [("notes.txt", "text/plain", b"an attachment, left alone")]
    )
    shown = hp.add_legacy_display(entity, [("Subject", "Dinner")])
    delimiter = b"--" + email.message_from_bytes(shown).get_boundary().encode()
    forwarded = delimiter + b"\r\nContent-Type: message/rfc822\r\n\r\n" + LEGACY_PLAIN + b"\r\n"
    shown = shown.replace(delimiter + b"--", forwarded + delimiter + b"--")
    protected = hp.protect([("Subject", "Dinner")], shown, encrypted=True)
    read = hp.read(b"Subject: [...]\r\n", protected.entity, encrypted=True)
    assert read.legacy_display_hidden == 1
    sent, shown_parts = protected.entity.split(delimiter), read.entity.split(delimiter)
    assert len(sent) == len(shown_parts) == 5  # head, text, attachment, forwarded, close
    assert shown_parts[2:] == sent[2:]  # byte for byte
    before, after = (
        email.message_from_bytes(part.lstrip(b"\r\n")).get_payload(decode=True)
        for part in (sent[1], shown_parts[1])
    )
    assert before.replace(b"\r\n", b"\n") == b"Subject: Dinner\n\nThe text.\n"
    assert after.replace(b"\r\n", b"\n") == b"The text.\n"


def test_no_fields_no_legacy_display():
    entity = mime.build_entity("Just text.\n")
    assert hp.add_legacy_display(entity, []) == entity
    with pytest.raises(MalformedInput):
        hp.add_legacy_display(entity, [("Subject", "two\r\nlines")])


def test_hp_of_reads_the_kind_from_the_content_type_alone():
    entity = mime.build_entity("x\n")
    assert hp.hp_of(entity) is None
    assert hp.hp_of(hp.protect([("Subject", "s")], entity, encrypted=True).entity) == "cipher"
    assert hp.hp_of(hp.protect([("Subject", "s")], entity, encrypted=False).entity) == "clear"
    assert hp.hp_of(entity.replace(b"text/plain;", b'text/plain; hp="other";', 1)) is None
