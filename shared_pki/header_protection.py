"""RFC 9788 header protection: the message's header fields travel inside the signature (and the
encryption), so a relay can neither read an encrypted Subject nor change a signed one unseen.

Pure functions over bytes, no crypto: `protect` turns the message's header fields and its inner
MIME entity into the Cryptographic Payload to sign and/or encrypt, and the header fields to send
outside; `read` takes the payload that came out of the last layer (smime.OpenedMessage.payload;
OpenedMessage.headers() calls it) and the outer header fields, and says what to show.

The format (RFC 9788 section 2):
- the payload's own header section carries a copy of every non-structural header field of the
  message (Subject, From, To, Cc, Date, Message-ID, References...), and its Content-Type says
  so with `hp="clear"` (signed only: nothing is hidden) or `hp="cipher"` (encrypted);
- for `hp="cipher"` the outer header section is what a Header Confidentiality Policy makes of
  each field (hcp_baseline: Subject becomes "[...]", Keywords and Comments are dropped, the rest
  stays so the message can be delivered), and every field left outside is recorded inside as
  `HP-Outer: Name: value`; a protected field with no matching HP-Outer record was confidential;
- a part marked `hp-legacy-display="1"` starts with a Legacy Display Element ("Subject: ..."
  lines for clients that know none of this); a reader that shows the protected headers hides it.
A payload without an hp parameter is not header-protected: its outer header fields are shown, as
before. Bcc is never protected: a copy inside would show it to every recipient.
"""

from __future__ import annotations

import base64
import email
import email.errors
import email.header
import email.policy
import email.utils
import html
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from email.utils import getaddresses
from html.parser import HTMLParser
from typing import Literal

from shared_pki import mime
from shared_pki.errors import MalformedInput

__all__ = [
    "HP_CIPHER",
    "HP_CLEAR",
    "LEGACY_DISPLAY_CLASS",
    "OBSCURED_SUBJECT",
    "SHOWN_FIELDS",
    "Discrepancy",
    "HeaderField",
    "Policy",
    "ProtectedPayload",
    "ReadHeaders",
    "add_legacy_display",
    "hcp_baseline",
    "hcp_no_confidentiality",
    "hide_legacy_display",
    "hp_of",
    "protect",
    "read",
]

HP_CLEAR = "clear"
HP_CIPHER = "cipher"
OBSCURED_SUBJECT = "[...]"
LEGACY_DISPLAY_CLASS = "header-protection-legacy-display"

# What a viewer shows, in this order (the fields of RFC 9788's examples and of threading).
SHOWN_FIELDS = (
    "Subject",
    "From",
    "To",
    "Cc",
    "Date",
    "Reply-To",
    "Message-ID",
    "In-Reply-To",
    "References",
)
# Fields a person reads or a client acts on (RFC 9787 section 1.1.2, plus threading): a change
# to one of these between the inside and the outside is worth saying; Received, DKIM-Signature
# and their kind are added on the way and are not.
_USER_FACING = (
    "from",
    "sender",
    "reply-to",
    "to",
    "cc",
    "date",
    "subject",
    "message-id",
    "in-reply-to",
    "references",
    "keywords",
    "comments",
    "followup-to",
)
_ADDRESS_FIELDS = ("from", "sender", "reply-to", "to", "cc")
_NEVER_PROTECTED = ("bcc",)

Policy = Callable[[str, str], str | None]
"""A Header Confidentiality Policy (RFC 9788 section 3): (field name, value) -> the value to
send outside, or None to leave the field out of the outer header section."""


def hcp_baseline(name: str, value: str) -> str | None:
    """RFC 9788's default policy: the Subject is obscured, Keywords and Comments are removed,
    everything else (addresses, Date, Message-ID, threading) stays for delivery."""
    lowered = name.strip().lower()
    if lowered == "subject":
        return OBSCURED_SUBJECT
    if lowered in ("keywords", "comments"):
        return None
    return value


def hcp_no_confidentiality(name: str, value: str) -> str | None:
    """Every field stays outside as it is (RFC 9788 section 3.3): protected, not hidden."""
    return value


# --------------------------------------------------------------------------- writing


@dataclass(frozen=True)
class ProtectedPayload:
    """What `protect` makes. entity: the Cryptographic Payload to sign and/or encrypt (canonical
    CRLF, the body bytes untouched). outer_headers: the fields to put outside, for
    mime.with_outer_headers. confidential: names of the fields the outside does not show as they
    are (obscured or removed); empty for hp="clear"."""

    entity: bytes
    outer_headers: tuple[tuple[str, str], ...]
    hp: Literal["clear", "cipher"]
    confidential: tuple[str, ...]


def protect(
    headers: mime.HeaderInput,
    entity: bytes,
    *,
    encrypted: bool,
    policy: Policy = hcp_baseline,
) -> ProtectedPayload:
    """The Cryptographic Payload and outer header fields of a message (RFC 9788 section 5.2).

    headers: the message's header fields (From, To, Subject...), as name/value pairs (non-ASCII
    values are RFC 2047 encoded) or the block mime.split_headers returned. entity: the inner MIME
    entity (mime.build_entity), without header fields of its own. encrypted: the payload will be
    encrypted (hp="cipher", the policy applies, HP-Outer records what stays outside); False for
    signed-only mail (hp="clear", the outside is left as it is).

    Sign and encrypt the returned entity as is (smime.sign_entity, smime.encrypt_entity):
    smime.encrypt_message would lift its header fields back out. MalformedInput for a Bcc or
    content field among the headers, an entity that already carries header fields or an hp
    parameter, or a policy that returns a value with a line break."""
    if not isinstance(entity, bytes):
        raise TypeError(f"entity must be bytes, not {type(entity).__name__}")
    fields = _header_pairs(headers)
    if not fields:
        raise MalformedInput("No header fields to protect.")
    for name, _ in fields:
        lowered = name.lower()
        if lowered in _NEVER_PROTECTED:
            raise MalformedInput(
                "Bcc cannot be protected: every recipient could read it inside. Send each Bcc "
                "recipient a copy of their own without it."
            )
        if lowered.startswith("content-") or lowered == "mime-version":
            raise MalformedInput(f"{name} describes the entity; it is not a header to protect.")
        if lowered == "hp-outer":
            raise MalformedInput("HP-Outer is written by protect, not given to it.")

    outside, content = mime.split_headers(entity)
    if outside:
        raise MalformedInput(
            "The entity already carries header fields of its own: protect the entity that "
            "mime.build_entity made, before signing or encrypting."
        )
    head, body = _split(content)
    hp: Literal["clear", "cipher"] = HP_CIPHER if encrypted else HP_CLEAR
    marked = _with_hp_parameter(head, hp)

    outer: list[tuple[str, str]] = []
    records: list[bytes] = []
    confidential: list[str] = []
    for name, value in fields:
        if not encrypted:
            outer.append((name, value))
            continue
        shown = policy(name, value)
        if shown is not None and not isinstance(shown, str):
            raise TypeError("a header confidentiality policy returns str or None")
        if shown is None or shown != value:
            confidential.append(name)
        if shown is None:
            continue
        outer.append((name, shown))
        wire = _unfold(mime.header_block([(name, shown)]))
        records.append(_fold(b"HP-Outer: " + wire))
    inner = mime.header_block(fields)
    payload = inner + b"".join(records) + marked + b"\r\n" + body
    return ProtectedPayload(payload, tuple(outer), hp, tuple(dict.fromkeys(confidential)))


def _header_pairs(headers: mime.HeaderInput) -> list[tuple[str, str]]:
    if isinstance(headers, bytes):
        return mime.header_fields(headers)
    items = headers.items() if isinstance(headers, Mapping) else headers
    pairs = []
    for item in items:
        name, value = item
        if not isinstance(name, str) or not isinstance(value, str):
            raise TypeError("headers are (name: str, value: str) pairs")
        pairs.append((name.strip(), value))
    return pairs


def _split(entity: bytes) -> tuple[bytes, bytes]:
    """(content field lines, body) of an entity whose header section holds content fields only."""
    if entity.startswith(b"\r\n"):
        return b"", entity[2:]
    if entity.startswith(b"\n"):
        return b"", entity[1:]
    blank = re.search(rb"\n\r?\n", entity)
    if blank is None:
        return mime.canonicalize(entity), b""
    return mime.canonicalize(entity[: blank.start() + 1]), entity[blank.end() :]


_HP_PARAM = re.compile(rb";\s*hp\s*\*?\s*=", re.IGNORECASE)


def _with_hp_parameter(head: bytes, hp: str) -> bytes:
    """The content field lines with hp="..." added to Content-Type (one made if there is none:
    RFC 2045's default, text/plain in US-ASCII)."""
    lines = re.split(rb"\r\n(?![ \t])", head.removesuffix(b"\r\n")) if head else []
    out = []
    found = False
    for line in lines:
        if re.match(rb"content-type[ \t]*:", line, re.IGNORECASE):
            if found:
                raise MalformedInput("The entity has two Content-Type fields.")
            found = True
            if _HP_PARAM.search(line):
                raise MalformedInput("The entity is already header-protected (it has hp=).")
            line = line.rstrip(b" \t;") + b';\r\n hp="' + hp.encode("ascii") + b'"'
        out.append(line + b"\r\n")
    if not found:
        out.append(
            b'Content-Type: text/plain; charset="us-ascii";\r\n hp="' + hp.encode() + b'"\r\n'
        )
    return b"".join(out)


def _unfold(line: bytes) -> bytes:
    return re.sub(rb"\r\n(?=[ \t])", b"", line).removesuffix(b"\r\n")


def _fold(line: bytes, width: int = 78) -> bytes:
    """Fold a long field at spaces (RFC 5322 2.2.3) so no line passes `width` where a space
    allows it; CRLF-terminated."""
    out: list[bytes] = []
    while len(line) > width:
        cut = line.rfind(b" ", 0, width)
        if cut <= line.find(b":") + 1:
            cut = line.find(b" ", width)
            if cut < 0:
                break
        out.append(line[:cut])
        line = line[cut:]
    out.append(line)
    return b"\r\n".join(out) + b"\r\n"


# --------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class HeaderField:
    """One header field: name as written, value unfolded and otherwise as on the wire."""

    name: str
    value: str

    @property
    def text(self) -> str:
        """The value for people: RFC 2047 encoded words decoded."""
        return _decode(self.value)


@dataclass(frozen=True)
class Discrepancy:
    """Something about the header fields a person should know, in words. severity "warning":
    the outside claims another sender than the protected From (RFC 9788 section 4.4), or a
    payload claims protection the message does not have; "notice": a field changed between what
    the sender wrote and what arrived (a mailing list's Subject tag, a relay's refolding...)."""

    field: str
    severity: Literal["warning", "notice"]
    message: str


@dataclass(frozen=True)
class ReadHeaders:
    """What `read` found.

    protected: the payload carries header protection (an hp parameter of a known value).
    hp: "clear", "cipher" or None. encrypted / signature_valid: as the caller said.
    headers: the fields to show: the protected ones when protected (the outer ones are then
    ignored, not merged), else the outer ones. outer: the outer fields as they arrived.
    protected_fields: lowercased names of the fields found inside. confidential: lowercased names
    of the protected fields the outside did not show as they are (hp="cipher" on an encrypted
    message only). hp_outer: what the HP-Outer records said was outside.
    discrepancies: what differs, in words. entity: the payload's MIME entity (content fields and
    body) with the protected fields and HP-Outer taken off and Legacy Display Elements hidden;
    legacy_display_hidden: how many parts had one removed."""

    protected: bool
    hp: str | None
    encrypted: bool
    signature_valid: bool
    headers: tuple[HeaderField, ...]
    outer: tuple[HeaderField, ...]
    protected_fields: tuple[str, ...]
    confidential: tuple[str, ...]
    hp_outer: tuple[HeaderField, ...]
    discrepancies: tuple[Discrepancy, ...]
    entity: bytes
    legacy_display_hidden: int = 0

    def get(self, name: str) -> str | None:
        """The decoded value of the first shown field of that name, or None."""
        values = self.get_all(name)
        return values[0] if values else None

    def get_all(self, name: str) -> list[str]:
        lowered = name.lower()
        return [f.text for f in self.headers if f.name.lower() == lowered]

    def shown(self) -> dict[str, str]:
        """{lowercased name: decoded value} of SHOWN_FIELDS present, for a viewer."""
        return {n.lower(): v for n in SHOWN_FIELDS if (v := self.get(n)) is not None}

    def protection_of(self, name: str) -> str:
        """How one field reached us (RFC 9788 section 4.3): "signed and encrypted" (hidden from
        the outside and under a valid signature), "encrypted" (hidden, no valid signature),
        "signed" (inside a valid signature, also shown outside), or "unprotected"."""
        lowered = name.lower()
        if not self.protected or lowered not in self.protected_fields:
            return "unprotected"
        hidden = lowered in self.confidential
        if hidden:
            return "signed and encrypted" if self.signature_valid else "encrypted"
        return "signed" if self.signature_valid else "unprotected"

    @property
    def message(self) -> bytes:
        """A whole message to render: the shown fields, then the entity."""
        fields = [(f.name, f.value if f.value.isascii() else f.text) for f in self.headers]
        return mime.with_outer_headers(self.entity, fields)


def read(
    outer_headers: bytes,
    payload: bytes,
    *,
    encrypted: bool,
    signature_valid: bool = False,
) -> ReadHeaders:
    """The header fields of a message whose layers are off (RFC 9788 section 4).

    outer_headers: the message's own header block (mime.split_headers(raw)[0]). payload: the
    Cryptographic Payload, i.e. the innermost entity with its own header fields (what
    smime.OpenedMessage.payload holds: the decrypted content, or the first part of a
    multipart/signed). encrypted: an encryption layer was removed. signature_valid: every
    signature over the payload holds (only for the words of protection_of).
    Bytes that are not MIME: MalformedInput; nothing given is changed."""
    for value, what in ((outer_headers, "outer_headers"), (payload, "payload")):
        if not isinstance(value, bytes):
            raise TypeError(f"{what} must be bytes, not {type(value).__name__}")
    outer = tuple(
        HeaderField(n, v)
        for n, v in mime.header_fields(outer_headers)
        if not (n.lower().startswith("content-") or n.lower() == "mime-version")
    )
    inner_block, entity = mime.split_headers(payload)
    inner = [HeaderField(n, v) for n, v in mime.header_fields(inner_block)]
    hp = _content_param(entity, "hp")
    hp = hp.strip().lower() if hp is not None else None
    base = {"encrypted": encrypted, "signature_valid": signature_valid, "outer": outer}
    if hp not in (HP_CLEAR, HP_CIPHER):
        notes = ()
        if hp is not None:
            notes = (
                Discrepancy(
                    "hp",
                    "notice",
                    f'The message names an unknown kind of header protection (hp="{hp}"); its '
                    "header fields are shown as they arrived, unprotected.",
                ),
            )
        return ReadHeaders(
            protected=False,
            hp=None,
            headers=outer,
            protected_fields=(),
            confidential=(),
            hp_outer=(),
            discrepancies=notes,
            entity=entity,
            **base,  # type: ignore[arg-type]
        )

    notes_list: list[Discrepancy] = []
    records: list[HeaderField] = []
    fields: list[HeaderField] = []
    for item in inner:
        if item.name.lower() != "hp-outer":
            fields.append(item)
            continue
        name, colon, value = item.value.partition(":")
        if not colon or not re.fullmatch(r"[!-9;-~]+", name.strip()):
            notes_list.append(
                Discrepancy(
                    "hp-outer", "notice", f"An HP-Outer record is not a field: {item.value!r}."
                )
            )
            continue
        records.append(HeaderField(name.strip(), value.strip(" \t")))

    confidential: tuple[str, ...] = ()
    if hp == HP_CIPHER and not encrypted:
        notes_list.append(
            Discrepancy(
                "hp",
                "warning",
                'The message says its header fields were encrypted (hp="cipher") but it was '
                "not encrypted: nothing in it was confidential.",
            )
        )
    elif hp == HP_CIPHER:
        recorded = {(r.name.lower(), _normal(r.value)) for r in records}
        confidential = tuple(
            dict.fromkeys(
                f.name.lower() for f in fields if (f.name.lower(), _normal(f.value)) not in recorded
            )
        )
    if hp == HP_CLEAR and records:
        notes_list.append(
            Discrepancy(
                "hp-outer",
                "notice",
                'HP-Outer records in a payload marked hp="clear" were ignored.',
            )
        )
    if not fields:
        notes_list.append(
            Discrepancy(
                "hp",
                "warning",
                "The message is marked as header-protected but carries no header fields inside.",
            )
        )
    notes_list += _compare(fields, outer, records if hp == HP_CIPHER and encrypted else None)
    cleaned, hidden, problems = hide_legacy_display(entity)
    notes_list += [Discrepancy("legacy-display", "notice", p) for p in problems]
    return ReadHeaders(
        protected=True,
        hp=hp,
        headers=tuple(fields),
        protected_fields=tuple(dict.fromkeys(f.name.lower() for f in fields)),
        confidential=confidential,
        hp_outer=tuple(records),
        discrepancies=tuple(notes_list),
        entity=cleaned,
        legacy_display_hidden=hidden,
        **base,  # type: ignore[arg-type]
    )


def hp_of(payload: bytes) -> str | None:
    """The kind of header protection a Cryptographic Payload claims ("clear" or "cipher"), or
    None: read from its Content-Type alone, without parsing the body (cheap on big messages).
    MalformedInput for bytes that are not MIME."""
    _, entity = mime.split_headers(payload)
    hp = _content_param(entity, "hp")
    hp = hp.strip().lower() if hp is not None else None
    return hp if hp in (HP_CLEAR, HP_CIPHER) else None


def _compare(
    inner: list[HeaderField],
    outer: tuple[HeaderField, ...],
    records: list[HeaderField] | None,
) -> list[Discrepancy]:
    """The RFC 9788 checks, in words. From first (a different sender outside is how a spoof
    borrows a signature); then, for an encrypted payload, every user-facing field the HP-Outer
    records say was outside against what arrived; for a signed-only one, the protected fields
    against the outer ones."""
    notes: list[Discrepancy] = []
    inner_from = _addresses(inner, "from")
    outer_from = _addresses(outer, "from")
    if inner_from and inner_from != outer_from:
        shown_outer = ", ".join(sorted(outer_from)) or "no address"
        notes.append(
            Discrepancy(
                "from",
                "warning",
                f"The protected From is {', '.join(sorted(inner_from))}, but the message arrived "
                f"From {shown_outer}. The protected sender is shown; the outside may be forged.",
            )
        )
    for name in _USER_FACING:
        if name == "from":
            continue
        arrived = [_normal(f.value) for f in outer if f.name.lower() == name]
        if records is not None:
            expected = [_normal(r.value) for r in records if r.name.lower() == name]
            if arrived == expected:
                continue
            label = _label(name)
            if not expected:
                text = f"{label} was added outside on the way ({_quote(arrived)}); it is not shown."
            elif not arrived:
                text = f"{label} the sender left outside ({_quote(expected)}) did not arrive."
            else:
                text = (
                    f"{label} outside was changed on the way: the sender sent {_quote(expected)},"
                    f" it arrived as {_quote(arrived)}. The protected one is shown."
                )
            notes.append(Discrepancy(name, "notice", text))
        else:
            protected = [_normal(f.value) for f in inner if f.name.lower() == name]
            if not protected or arrived == protected:
                continue
            if name in _ADDRESS_FIELDS and _addresses(inner, name) == _addresses(outer, name):
                continue
            notes.append(
                Discrepancy(
                    name,
                    "notice",
                    f"{_label(name)} outside ({_quote(arrived)}) is not the signed one "
                    f"({_quote(protected)}); the signed one is shown.",
                )
            )
    return notes


def _label(name: str) -> str:
    return "The " + "-".join(part.capitalize() for part in name.split("-")).replace("Id", "ID")


def _quote(values: list[str]) -> str:
    return "; ".join(f'"{_decode(v)}"' for v in values) or "nothing"


def _addresses(fields: Iterable[HeaderField], name: str) -> set[str]:
    values = [f.text for f in fields if f.name.lower() == name]
    return {address.casefold() for _, address in getaddresses(values) if address}


def _normal(value: str) -> str:
    """Folding whitespace made one space: relays may refold a field without changing it."""
    return " ".join(value.split())


def _decode(value: str) -> str:
    # Raw 8-bit bytes that are not UTF-8 arrive as surrogates (header_fields): shown as U+FFFD.
    value = value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    try:
        return str(email.header.make_header(email.header.decode_header(value)))
    except (ValueError, LookupError, email.errors.HeaderParseError):
        return value


def _content_param(entity: bytes, name: str) -> str | None:
    head, _ = _split(entity)
    message = email.message_from_bytes(head + b"\r\n", policy=email.policy.compat32)
    value = message.get_param(name)
    if value is None or isinstance(value, str):
        return value
    return str(email.utils.collapse_rfc2231_value(value))


# --------------------------------------------------------------------------- legacy display


def add_legacy_display(entity: bytes, fields: mime.HeaderInput) -> bytes:
    """The entity with a Legacy Display Element of `fields` (the user-facing fields the outside
    no longer shows, e.g. the Subject that became "[...]") at the top of every main body part,
    each marked hp-legacy-display="1" (RFC 9788 section 2.1.2): a client that knows nothing of
    header protection then shows the real Subject as the first line of the text; one that does
    hides it (hide_legacy_display). text/plain gets "Name: value" lines and a blank line,
    text/html a div of class header-protection-legacy-display. Give the entity mime.build_entity
    made (no header fields of its own), before protect(); parts that are attachments are left
    alone. Returns the entity unchanged when there are no fields or no main body part."""
    pairs = [(name, _decode(value)) for name, value in _header_pairs(fields)]
    if not pairs:
        return entity
    for name, value in pairs:
        if "\n" in value or "\r" in value:
            raise MalformedInput(f"The {name} field has a line break.")
    try:
        message = email.message_from_bytes(entity, policy=email.policy.compat32)
    except (ValueError, TypeError, IndexError) as error:  # pragma: no cover - the parser is lenient
        raise MalformedInput(f"The entity is not MIME: {error}") from None
    changed = 0
    for part in message.walk():
        if part.is_multipart() or part.get_content_type() not in ("text/plain", "text/html"):
            continue
        disposition = (part.get("Content-Disposition") or "").strip().lower()
        if disposition.startswith("attachment") or part.get_filename() is not None:
            continue
        raw = part.get_payload(decode=True) or b""
        try:
            text = raw.decode(part.get_content_charset() or "us-ascii")
        except (LookupError, UnicodeDecodeError):
            raise MalformedInput("A body part is not in a charset that can be read.") from None
        text = text.replace("\r\n", "\n")
        if part.get_content_type() == "text/plain":
            shown = "".join(f"{name}: {value}\n" for name, value in pairs) + "\n" + text
        else:
            shown = _html_with_legacy_display(text, pairs)
        del part["Content-Transfer-Encoding"]
        part["Content-Transfer-Encoding"] = "base64"
        part.set_param("charset", "utf-8")
        part.set_param("hp-legacy-display", "1")
        part.set_payload(base64.encodebytes(shown.encode("utf-8")).decode("ascii"))
        changed += 1
    if not changed:
        return entity
    return mime.canonicalize(message.as_bytes(policy=email.policy.SMTP))


def _html_with_legacy_display(text: str, pairs: list[tuple[str, str]]) -> str:
    """The HTML with the element right after <body> (or at the very start without one)."""
    lines = "\n".join(html.escape(f"{name}: {value}", quote=False) for name, value in pairs)
    element = f'<div class="{LEGACY_DISPLAY_CLASS}"><pre>{lines}</pre></div>\n'
    body = re.search(r"<body\b[^>]*>", text, re.IGNORECASE)
    if body is None:
        return element + text
    return text[: body.end()] + element + text[body.end() :]


def hide_legacy_display(entity: bytes) -> tuple[bytes, int, tuple[str, ...]]:
    """Remove the Legacy Display Element of every main body part marked hp-legacy-display="1"
    (RFC 9788 section 4.5.3): in text/plain the leading "Name: value" lines and the blank line
    after them, in text/html every div of class header-protection-legacy-display. Returns the
    entity (only the changed parts rewritten, every other byte kept), how many parts changed,
    and what could not be removed, in words. Only for the payload of a header-protected
    message."""
    if b"hp-legacy-display" not in entity.lower():
        return entity, 0, ()
    problems: list[str] = []

    def without_legacy_display(part: mime.Leaf) -> bytes | None:
        if part.ctype not in ("text/plain", "text/html") or part.is_attachment:
            return None
        if part.param("hp-legacy-display") != "1":
            return None
        try:
            raw = part.decoded()
        except MalformedInput:
            raw = b""  # an undecodable body has no legacy display to find: said below
        charset = part.charset or "us-ascii"
        try:
            text = raw.decode(charset, "replace")
        except LookupError:
            text = raw.decode("utf-8", "replace")
        kept = _strip_plain(text) if part.ctype == "text/plain" else _strip_html(text)
        if kept is None:
            problems.append(
                f"A {part.ctype} part is marked as starting with a legacy display of the header "
                "fields, but does not; it is shown whole."
            )
            return None
        return part.with_text(kept, drop_param="hp-legacy-display")

    cleaned, changed = mime.replace_leaves(entity, without_legacy_display)
    return cleaned, changed, tuple(problems)


_FIELD_LINE = re.compile(r"[!-9;-~]+:( .*)?")


def _strip_plain(text: str) -> str | None:
    """The text after the leading header-field lines and the blank line that ends them, or None
    when the text does not start that way."""
    lines = text.replace("\r\n", "\n").split("\n")
    count = 0
    for index, line in enumerate(lines):
        if line == "":
            return "\n".join(lines[index + 1 :]).replace("\n", "\r\n") if count else None
        if _FIELD_LINE.fullmatch(line) or (count and line[:1] in (" ", "\t")):
            count += 1
            continue
        return None
    return None


class _LegacyDivs(HTMLParser):
    """Spans (start, end) of the outermost div elements of the legacy display class."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=False)
        self.text = text
        self.starts = [0] + [m.end() for m in re.finditer("\n", text)]
        self.spans: list[tuple[int, int]] = []
        self.depth = 0
        self.begin = 0

    def _offset(self) -> int:
        line, column = self.getpos()
        return self.starts[line - 1] + column

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag != "div":
            return
        if self.depth:
            self.depth += 1
            return
        classes = " ".join(value or "" for key, value in attrs if key == "class").split()
        if LEGACY_DISPLAY_CLASS in classes:
            self.depth = 1
            self.begin = self._offset()

    def handle_endtag(self, tag: str) -> None:
        if tag != "div" or not self.depth:
            return
        self.depth -= 1
        if not self.depth:
            close = self.text.find(">", self._offset())
            self.spans.append((self.begin, len(self.text) if close < 0 else close + 1))


def _strip_html(text: str) -> str | None:
    parser = _LegacyDivs(text)
    parser.feed(text)
    parser.close()
    if not parser.spans:
        return None
    out, last = [], 0
    for start, end in parser.spans:
        out.append(text[last:start])
        last = end
    out.append(text[last:])
    return "".join(out)
