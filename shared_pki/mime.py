"""S/MIME (RFC 8551) MIME wrapping and unwrapping: pure functions, bytes in, bytes out, no crypto.

The CMS blobs come in and go out as DER; the caller signs, verifies, encrypts and decrypts.
What matters here is byte stability: the bytes that get signed are exactly the bytes that travel
inside multipart/signed, and the bytes a verifier hashes are cut from the wire (RFC 1847), never
regenerated. That is why received MIME is split at the byte level and the stdlib `email` package
is used only where it cannot change anything that is signed: to read header parameters (RFC 2231
included) and to build fresh entities from a webmail compose.

Traps of the `email` package this module avoids (see the tests):
- regenerating a parsed message (BytesGenerator) refolds headers and may change line ends, so
  a signed first part must never go through it;
- its quoted-printable encoder protects trailing whitespace but not lines starting with "From ",
  which mbox-style relays rewrite to ">From "; text is encoded here by `_qp_encode` instead;
- compat32 get_content_type() falls back to text/plain for a malformed Content-Type, so a
  missing type and a broken one are told apart by looking at the field itself.
"""

from __future__ import annotations

import binascii
import contextlib
import dataclasses
import functools
import hashlib
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from email import policy as email_policy
from email.generator import BytesGenerator
from email.message import Message, MIMEPart
from email.parser import BytesParser
from io import BytesIO
from typing import Literal

import pybase64

from shared_pki.errors import MalformedInput, PkiError, UnsupportedAlgorithm

__all__ = [
    "MICALG_BY_DIGEST",
    "Leaf",
    "SmimeKind",
    "SmimeLayer",
    "build_entity",
    "canonicalize",
    "digest_for_micalg",
    "header_block",
    "header_fields",
    "is_plain",
    "micalg_for",
    "outer_headers",
    "parse_message",
    "prepare_for_signing",
    "register_content_type_alias",
    "register_micalg",
    "replace_leaves",
    "rewrap_headers",
    "rewrap_pieces",
    "smime_type_for",
    "split_headers",
    "unwrap",
    "unwrap_taking",
    "with_outer_headers",
    "wrap_multipart_signed",
    "wrap_pkcs7_mime",
]

CRLF = b"\r\n"

# RFC 8551 section 3.5.3.1 micalg values, keyed by asn1crypto / hashlib digest names.
# SM3 plugs in from shared_pki.cms.sm with register_micalg("sm3", "sm3").
MICALG_BY_DIGEST: dict[str, str] = {
    "md5": "md5",
    "sha1": "sha-1",
    "sha224": "sha-224",
    "sha256": "sha-256",
    "sha384": "sha-384",
    "sha512": "sha-512",
}
# Names older agents wrote (RFC 3851 and before); accepted on input, never written.
_LEGACY_MICALG = {name: name for name in ("sha1", "sha224", "sha256", "sha384", "sha512")}

_OID_SIGNED_DATA = "1.2.840.113549.1.7.2"
_OID_ENVELOPED_DATA = "1.2.840.113549.1.7.3"
_OID_COMPRESSED_DATA = "1.2.840.113549.1.9.16.1.9"
_OID_AUTH_ENVELOPED_DATA = "1.2.840.113549.1.9.16.1.23"

SmimeKind = Literal["enveloped", "auth_enveloped", "signed_opaque", "multipart_signed", "plain"]
_KIND_BY_OID: dict[str, SmimeKind] = {
    _OID_ENVELOPED_DATA: "enveloped",
    _OID_AUTH_ENVELOPED_DATA: "auth_enveloped",
    _OID_SIGNED_DATA: "signed_opaque",
}
# smime-type parameter (RFC 8551 3.2.2, RFC 5083, RFC 3274) -> CMS content type it labels.
_SMIME_TYPES = {
    "enveloped-data": ("enveloped-data", _OID_ENVELOPED_DATA),
    "authenveloped-data": ("authEnveloped-data", _OID_AUTH_ENVELOPED_DATA),
    "signed-data": ("signed-data", _OID_SIGNED_DATA),
    "certs-only": ("certs-only", _OID_SIGNED_DATA),
    "compressed-data": ("compressed-data", _OID_COMPRESSED_DATA),
}
_PKCS7_MIME_TYPES = ("application/pkcs7-mime", "application/x-pkcs7-mime")
_PKCS7_SIGNATURE_TYPES = ("application/pkcs7-signature", "application/x-pkcs7-signature")
_P7M_SUFFIXES = (".p7m", ".p7c", ".p7z")

_MAX_DEPTH = 32  # nested multiparts in prepare_for_signing; deeper is an attack, not mail
_BUILD_POLICY = email_policy.SMTP  # CRLF line ends, 78-column header folding, no From mangling


# --------------------------------------------------------------------------- micalg table


def register_micalg(digest: str, micalg: str) -> None:
    """Teach the table a new digest (SM3 lives in its own module and calls this)."""
    MICALG_BY_DIGEST[digest.lower()] = micalg.lower()


# CMS content types another convention (GM/T 0010) uses for SignedData/EnvelopedData, mapped to
# the PKCS#7 ones; registered by shared_pki.cms.sm. The layer keeps the OID it found.
_CONTENT_TYPE_ALIASES: dict[str, str] = {}


def register_content_type_alias(alias_oid: str, standard_oid: str) -> None:
    """Read alias_oid wherever the PKCS#7 content type standard_oid is expected."""
    _CONTENT_TYPE_ALIASES[alias_oid] = standard_oid


def _standard(oid: str) -> str:
    return _CONTENT_TYPE_ALIASES.get(oid, oid)


def micalg_for(digest: str) -> str:
    """The micalg parameter value for a digest name ("sha256" -> "sha-256"); a micalg value
    passes through, so callers may hand either."""
    name = digest.strip().lower()
    if name in MICALG_BY_DIGEST:
        return MICALG_BY_DIGEST[name]
    if name in MICALG_BY_DIGEST.values():
        return name
    raise UnsupportedAlgorithm(f"no micalg value is known for digest {digest!r}")


def digest_for_micalg(micalg: str) -> str:
    """The digest name for a micalg value, accepting the pre-RFC 5751 spellings ("sha1")."""
    name = micalg.strip().lower()
    for digest, value in MICALG_BY_DIGEST.items():
        if value == name:
            return digest
    if name in _LEGACY_MICALG:
        return _LEGACY_MICALG[name]
    raise UnsupportedAlgorithm(f"unknown micalg {micalg!r}")


# --------------------------------------------------------------------------- canonical form

_EOL = re.compile(rb"\r?\n")


def canonicalize(entity: bytes) -> bytes:
    """CRLF line ends everywhere (RFC 8551 3.1.1): the form that is hashed and transmitted.

    A CR not followed by LF is content, not a line end, and is left alone; prepare_for_signing
    encodes it. Already-canonical input is returned unchanged (same bytes)."""
    _require_bytes(entity, "entity")
    return _canonical(entity)[0]


def _canonical(entity: bytes) -> tuple[bytes, int]:
    """canonicalize, and the number of CRLF in the result (every LF ends a CRLF then), which
    _needs_protection reuses: counting a two-byte needle is the slow part of both."""
    lines = entity.count(b"\n")
    if lines == entity.count(CRLF):
        return entity, lines
    return entity.replace(CRLF, b"\n").replace(b"\n", CRLF), lines  # = re.sub(rb"\r?\n"), 10x


_MAX_LINE = 998  # RFC 5322 2.1.1, CRLF excluded


def _has_long_line(text: bytes) -> bool:
    """A line of more than 998 characters before its CRLF, in canonical text? Jumps from line
    start to the last line end within the next 1,000 bytes (a window without LF lies inside a
    line too long; every line ending within it is short enough), so a 10 MB body costs some
    10,000 steps rather than a list of every line."""
    window = _MAX_LINE + 2
    pos, size = 0, len(text)
    while size - pos >= window:
        line_end = text.rfind(b"\n", pos, pos + window)
        if line_end < 0:
            return True
        pos = line_end + 1
    # Under 1,000 bytes left: only a last line without CRLF can still be too long.
    return size - max(pos, text.rfind(b"\n", pos) + 1) > _MAX_LINE


def _needs_protection(text: bytes, crlf_count: int | None = None) -> bool:
    """Would a 7-bit relay or an mbox-style gateway change this canonical 7bit/8bit body?
    8-bit or NUL bytes, a bare CR, trailing whitespace (stripped by some relays), a line
    starting "From " (rewritten to ">From "), a line over RFC 5322's 998 characters.
    Plain bytes methods, not one regex: this runs over multi-megabyte bodies (each check is
    one pass in C; crlf_count, when the caller has it, spares one)."""
    if crlf_count is None:
        crlf_count = text.count(CRLF)
    return (
        not text.isascii()
        or b"\x00" in text
        or text.count(b"\r") != crlf_count
        or b" \r\n" in text
        or b"\t\r\n" in text
        or text.endswith((b" ", b"\t"))
        or text.startswith(b"From ")
        or b"\nFrom " in text
        or _has_long_line(text)
    )


def prepare_for_signing(entity: bytes) -> bytes:
    """Make a MIME entity safe to sign (RFC 8551 3.1): every leaf body that is 8-bit, binary,
    has trailing whitespace, "From " lines or overlong lines gets quoted-printable (text) or
    base64 (everything else), so no relay can change a signed byte. Leaves that are already
    safe, and all header fields, keep their bytes; the result is canonical (CRLF).

    Returns the exact bytes to sign and to pass to wrap_multipart_signed."""
    _require_bytes(entity, "entity")
    if not entity or entity.isspace():  # = not entity.strip(), without a copy
        raise MalformedInput("empty entity")
    with _malformed_guard("entity"):
        return _prepare(entity, 0)


def _prepare(entity: bytes, depth: int) -> bytes:
    if depth > _MAX_DEPTH:
        raise MalformedInput(f"MIME nesting deeper than {_MAX_DEPTH} levels")
    head, body = _split_entity(entity)
    fields = _parse_fields(head)
    info = _content_info(fields)
    cte = _field_value(fields, "content-transfer-encoding").strip().lower()

    if info.ctype == "multipart/signed":
        # Already signed: any re-encoding inside would break that signature (RFC 1847).
        return canonicalize(entity)
    if info.maintype == "multipart":
        boundary = info.require_boundary()
        mp = _split_multipart(body, boundary)
        if not mp.closed:
            raise MalformedInput(f"{info.ctype} has no closing boundary (truncated?)")
        pieces = [canonicalize(mp.preamble)]
        for delimiter, part in zip(mp.delimiters, mp.parts, strict=False):
            pieces += [canonicalize(delimiter), _prepare(part, depth + 1)]
        pieces += [canonicalize(mp.delimiters[-1]), canonicalize(mp.epilogue)]
        new_cte = "7bit" if cte in ("8bit", "binary") else None
        return _join_entity(fields, b"".join(pieces), new_cte)

    if info.ctype in ("message/rfc822", "message/global") and cte in ("", "7bit", "8bit"):
        inner = _prepare(body, depth + 1) if body.strip() else canonicalize(body)
        return _join_entity(fields, inner, "7bit" if cte == "8bit" else None)

    if cte in ("base64", "quoted-printable"):
        return _join_entity(fields, canonicalize(body), None)
    if cte not in ("", "7bit", "8bit", "binary"):
        # An x-token encoding (x-uuencode...): we cannot re-encode what we cannot decode.
        return _join_entity(fields, canonicalize(body), None)

    if cte == "binary":
        return _join_entity(fields, _b64_lines(body), "base64")
    text, crlf_count = _canonical(body)
    if not _needs_protection(text, crlf_count):
        if text is body and cte != "8bit" and _is_canonical_head(fields, entity):
            return entity  # nothing to change: spare a copy of the body
        return _join_entity(fields, text, "7bit" if cte == "8bit" else None)
    if info.maintype == "text":
        return _join_entity(fields, _qp_encode(text), "quoted-printable")
    return _join_entity(fields, _b64_lines(text), "base64")


# --------------------------------------------------------------------------- building


def build_entity(
    body_text: str | None,
    html: str | None = None,
    attachments: Iterable[tuple[str, str, bytes]] = (),
) -> bytes:
    """The inner MIME entity a webmail compose produces, ready to sign as is: text/plain (or
    text/html), multipart/alternative when both, inside multipart/mixed with attachments.
    UTF-8 text, RFC 2231 filenames, 7-bit transfer encodings, CRLF, no MIME-Version (that goes
    on the outer message). Deterministic: the same input gives the same bytes (boundaries are
    derived from the content rather than random)."""
    attachments = list(attachments)
    for text in (body_text, html):
        if text is not None and not isinstance(text, str):
            raise TypeError("body_text and html must be str or None")
    for item in attachments:
        if not (
            isinstance(item[0], str) and isinstance(item[1], str) and isinstance(item[2], bytes)
        ):
            raise TypeError("attachments are (filename: str, content_type: str, data: bytes)")
    with _malformed_guard("attachment"):  # e.g. a filename with a line break in it
        bodies = [
            _text_part(text, subtype)
            for text, subtype in ((body_text, "plain"), (html, "html"))
            if text is not None
        ]
        if not bodies and not attachments:
            bodies = [_text_part("", "plain")]
        parts = [_multipart("alternative", bodies)] if len(bodies) == 2 else bodies
        if attachments:
            files = [_attachment_part(*item) for item in attachments]
            parts = [_multipart("mixed", parts + files)]
        return _flatten(parts[0])


def _flatten(root: MIMEPart) -> bytes:
    """Generate with boundaries derived from the leaves; retried with another salt in the
    (astronomically unlikely) case a boundary occurs in the content."""
    leaves = b"".join(
        bytes(part.get_payload(), "ascii", "surrogateescape")
        for part in root.walk()
        if not part.is_multipart()
    )
    multiparts = [part for part in root.walk() if part.is_multipart()]
    for salt in range(100):
        digest = hashlib.sha256(b"%d:" % salt + leaves).hexdigest()
        for index, part in enumerate(multiparts):
            part.set_boundary(f"=_autosmime_{index}_{digest[:32]}")
        if not any(p.get_boundary().encode("ascii") in leaves for p in multiparts):
            break
    out = BytesIO()
    BytesGenerator(out, policy=_BUILD_POLICY, mangle_from_=False).flatten(root)
    return canonicalize(out.getvalue())


def _text_part(text: str, subtype: str) -> MIMEPart:
    lines = text.replace("\r\n", "\n").replace("\r", "\n")
    if lines and not lines.endswith("\n"):
        lines += "\n"
    data = lines.encode("utf-8").replace(b"\n", CRLF)
    part = MIMEPart(policy=_BUILD_POLICY)
    part["Content-Type"] = f'text/{subtype}; charset="utf-8"'
    if _needs_protection(data):
        part["Content-Transfer-Encoding"] = "quoted-printable"
        data = _qp_encode(data)
    else:
        part["Content-Transfer-Encoding"] = "7bit"
    # Pre-encoded ASCII: the generator writes it as is (email's own QP would leave "From ").
    part.set_payload(data.decode("ascii"))
    return part


_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


def _attachment_part(filename: str, content_type: str, data: bytes) -> MIMEPart:
    maintype, _, subtype = content_type.split(";", 1)[0].strip().lower().partition("/")
    if not (_TOKEN.fullmatch(maintype) and _TOKEN.fullmatch(subtype)):
        raise MalformedInput(f"attachment content type {content_type!r} is not type/subtype")
    if maintype in ("multipart", "message"):
        # RFC 2046 forbids base64 on these; a forwarded mail goes as application/octet-stream
        # or is built by the caller.
        raise MalformedInput(f"attachment of type {maintype}/{subtype} cannot be base64 encoded")
    part = MIMEPart(policy=_BUILD_POLICY)
    part.set_content(
        data,
        maintype,
        subtype,
        cte="base64",
        disposition="attachment",
        filename=filename,
    )
    return part


def _multipart(subtype: str, children: list[MIMEPart]) -> MIMEPart:
    part = MIMEPart(policy=_BUILD_POLICY)
    part["Content-Type"] = f"multipart/{subtype}"
    for child in children:
        part.attach(child)
    return part


# --------------------------------------------------------------------------- header split


def split_headers(message: bytes) -> tuple[bytes, bytes]:
    """Separate a message into its RFC 5322 header fields (From, To, Subject, Date...) and the
    MIME entity (Content-* and MIME-Version fields plus the body), so the entity can be signed
    or encrypted and the outer fields put back around the result.

    Outer fields keep their bytes (folding and RFC 2047 words included; line ends become
    CRLF); the entity keeps its bytes exactly, so binary parts survive until
    prepare_for_signing encodes them. An mbox "From " separator line is dropped."""
    _require_bytes(message, "message")
    with _malformed_guard("message"):
        split = _Split.of(message)
        return split.outer, split.entity()


def outer_headers(message: bytes) -> bytes:
    """split_headers(message)[0] without building the entity (a copy of the whole body)."""
    _require_bytes(message, "message")
    with _malformed_guard("message"):
        return _Split.of(message).outer


@dataclass(frozen=True)
class _Split:
    """A message cut at its header block: the outer fields, the content fields, and where the
    body starts in `message` (an mbox "From " line already dropped)."""

    message: bytes
    fields: list[_Field]
    body_start: int

    @classmethod
    def of(cls, message: bytes) -> _Split:
        if message.startswith(b"From ") and not _FIELD_START.match(message):
            message = message.split(b"\n", 1)[1] if b"\n" in message else b""
        head_end, body_start = _split_point(message)
        return cls(message, _parse_fields(message[:head_end]), body_start)

    @property
    def outer(self) -> bytes:
        return b"".join(f.raw for f in self.fields if not f.is_content)

    @property
    def content_fields(self) -> list[_Field]:
        return [f for f in self.fields if f.is_content]

    def entity(self) -> bytes:
        """Content fields, CRLF, body: one copy, the body joined from a view."""
        content = b"".join(f.raw for f in self.content_fields)
        return b"".join((content, CRLF, memoryview(self.message)[self.body_start :]))

    def body_view(self) -> memoryview:
        return memoryview(self.message)[self.body_start :]


# --------------------------------------------------------------------------- wrapping


def wrap_multipart_signed(
    entity: bytes,
    signature_der: bytes,
    micalg: str,
    *,
    prepared: bool = False,
    headers: HeaderInput | None = None,
) -> bytes:
    """RFC 8551 3.5.3 multipart/signed around `entity`, whose bytes stay exactly as given (they
    are what was signed). `micalg` is an RFC 8551 value ("sha-256") or a digest name
    ("sha256"). The entity must be canonical (CRLF): a bare LF would be changed on the way and
    break the signature, so it is refused rather than silently fixed. prepared: the entity is
    prepare_for_signing's output as it came (canonical by construction), so the check, two
    passes over a 10 MB body, is skipped. headers: the whole message instead, as
    with_outer_headers(result, headers) would give it (one copy of the body, not two)."""
    _require_bytes(entity, "entity")
    _require_bytes(signature_der, "signature_der")
    if not entity:
        raise MalformedInput("cannot sign an empty entity")
    if not prepared and canonicalize(entity) != entity:
        raise MalformedInput("entity is not canonical (bare LF); pass it through canonicalize()")
    oid = _sniff_cms(signature_der, "signature")
    if _standard(oid) != _OID_SIGNED_DATA:
        raise MalformedInput(f"signature is a CMS {oid}, not SignedData")
    boundary = _new_boundary(entity, signature_der)
    head = (
        b'Content-Type: multipart/signed; protocol="application/pkcs7-signature";\r\n'
        b" micalg=" + micalg_for(micalg).encode("ascii") + b'; boundary="' + boundary + b'"\r\n'
    )
    signature_part = (
        b"Content-Type: application/pkcs7-signature; name=smime.p7s\r\n"
        b"Content-Transfer-Encoding: base64\r\n"
        b"Content-Disposition: attachment; filename=smime.p7s\r\n"
        b"Content-Description: S/MIME Cryptographic Signature\r\n"
        b"\r\n" + _b64_lines(signature_der)
    )
    delimiter = b"\r\n--" + boundary + CRLF
    # One join: chained + would copy the (multi-megabyte) entity once per operator.
    parts = (
        head,
        CRLF,
        b"This is an S/MIME signed message\r\n",
        delimiter,
        entity,
        delimiter,
        signature_part,
        b"\r\n--",
        boundary,
        b"--\r\n",
    )
    return _joined(parts, head, headers)


def wrap_pkcs7_mime(der: bytes, smime_type: str, *, headers: HeaderInput | None = None) -> bytes:
    """RFC 8551 3.2 application/pkcs7-mime entity for a CMS ContentInfo. `smime_type` is
    enveloped-data, authEnveloped-data, signed-data (or certs-only, compressed-data) and must
    agree with the content type inside the DER: a mislabelled message is a bug here, not
    something a receiver should have to guess around. headers: the whole message instead, as
    with_outer_headers(result, headers) would give it (one copy of the body, not two)."""
    _require_bytes(der, "der")
    try:
        label, expected = _SMIME_TYPES[smime_type.strip().lower()]
    except KeyError:
        raise UnsupportedAlgorithm(f"unknown smime-type {smime_type!r}") from None
    oid = _sniff_cms(der, "CMS content")
    if _standard(oid) != expected:
        raise MalformedInput(f"smime-type {label} does not match the CMS content type {oid}")
    head = (
        b"Content-Type: application/pkcs7-mime; smime-type="
        + label.encode("ascii")
        + b";\r\n name=smime.p7m\r\n"
        b"Content-Transfer-Encoding: base64\r\n"
        b"Content-Disposition: attachment; filename=smime.p7m\r\n"
    )
    return _joined((head, CRLF, _b64_lines(der), CRLF), head, headers)


_SMIME_TYPE_BY_OID = {
    _OID_ENVELOPED_DATA: "enveloped-data",
    _OID_AUTH_ENVELOPED_DATA: "authEnveloped-data",
    _OID_SIGNED_DATA: "signed-data",
}


def smime_type_for(der: bytes) -> str:
    """The smime-type that labels this CMS ContentInfo in wrap_pkcs7_mime (enveloped-data,
    authEnveloped-data or signed-data), from its content type: only the outline is read, so a
    10 MB envelope costs microseconds."""
    _require_bytes(der, "der")
    oid = _standard(_sniff_cms(der, "CMS content"))
    if oid not in _SMIME_TYPE_BY_OID:
        raise MalformedInput(f"CMS {oid} is not enveloped, authEnveloped or signed data")
    return _SMIME_TYPE_BY_OID[oid]


HeaderInput = bytes | Mapping[str, str] | Iterable[tuple[str, str]]


def header_fields(block: bytes) -> list[tuple[str, str]]:
    """(name as written, value) of every field in a header block, in order: the value unfolded
    (line breaks of folding removed) and otherwise as on the wire, RFC 2047 words included.
    Raises MalformedInput when a line is not a field."""
    _require_bytes(block, "block")
    with _malformed_guard("header block"):
        fields = []
        for field in _parse_fields(block):
            name, _, value = field.raw.partition(b":")
            text = _EOL.sub(b"", value).decode("utf-8", "surrogateescape")
            fields.append((name.decode("ascii").strip(), text.strip(" \t")))
        return fields


def header_block(headers: HeaderInput) -> bytes:
    """Header field lines (CRLF) for name/value pairs, written as with_outer_headers writes them
    (ASCII kept as given, non-ASCII RFC 2047 encoded); a bytes block is checked and kept."""
    with _malformed_guard("headers"):
        if isinstance(headers, bytes):
            return b"".join(f.raw for f in _parse_fields(headers))
        items = headers.items() if isinstance(headers, Mapping) else headers
        return b"".join(_header_line(name, value) for name, value in items)


def with_outer_headers(entity: bytes, headers: HeaderInput) -> bytes:
    """A complete RFC 5322 message: the outer fields, MIME-Version: 1.0, then `entity` byte for
    byte. `headers` is the block split_headers returned (kept byte for byte), or name/value
    pairs; ASCII values (RFC 2047 encoded words included) are written exactly as given,
    non-ASCII values are RFC 2047 encoded. Content-* fields belong to the entity and are
    refused here; a MIME-Version among them is replaced by ours."""
    _require_bytes(entity, "entity")
    prefix = _outer_prefix(headers, entity[: _split_point(entity)[0]])
    return b"".join((prefix, entity))


def rewrap_headers(message: bytes, headers: HeaderInput) -> bytes:
    """with_outer_headers(split_headers(message)[1], headers): the message's own RFC 5322
    fields replaced by `headers`, its entity kept byte for byte, in one copy of the body (a
    10 MB message opened was copied twice here)."""
    _require_bytes(message, "message")
    return b"".join(rewrap_pieces(message, headers))


def rewrap_pieces(message: bytes | bytearray, headers: HeaderInput) -> tuple[bytes, memoryview]:
    """rewrap_headers(message, headers) as its two pieces, the header block (with the blank
    line) and a view of message's body, for a writer that writes them one after the other
    rather than hold a 10 MB message beside the entity it came from."""
    if not isinstance(message, bytes | bytearray):
        raise TypeError(f"message must be bytes, not {type(message).__name__}")
    with _malformed_guard("message"):
        body_start = _split_point(message)[1]
        # the header block alone splits as the whole message does (an mbox line included)
        split = _Split.of(bytes(message[:body_start]))
        content = b"".join(f.raw for f in split.content_fields)
    return _outer_prefix(headers, content) + content + CRLF, memoryview(message)[body_start:]


def _outer_prefix(headers: HeaderInput, entity_head: bytes) -> bytes:
    """What with_outer_headers writes before an entity whose header block is entity_head."""
    with _malformed_guard("headers"):
        if isinstance(headers, bytes):
            fields = _parse_fields(headers)
            lines = [f.raw for f in fields if f.name != "mime-version"]
            names = [f.name for f in fields]
        else:
            items = headers.items() if isinstance(headers, Mapping) else headers
            lines, names = [], []
            for name, value in items:
                if name.strip().lower() != "mime-version":
                    lines.append(_header_line(name, value))
                names.append(name.strip().lower())
        for name in names:
            if name.startswith("content-"):
                raise MalformedInput(f"{name} is a content field; it belongs in the entity")
        has_version = any(f.name == "mime-version" for f in _parse_fields(entity_head))
    version = b"" if has_version else b"MIME-Version: 1.0\r\n"
    return b"".join((*lines, version))


def _joined(parts: tuple[bytes, ...], head: bytes, headers: HeaderInput | None) -> bytes:
    """The entity made of parts (its header block is head), or with headers the whole message
    with_outer_headers would make of it, in one copy of a possibly large body."""
    if headers is None:
        return b"".join(parts)
    return b"".join((_outer_prefix(headers, head), *parts))


_FIELD_NAME_STR = re.compile(r"[!-9;-~]+")


def _header_line(name: str, value: str) -> bytes:
    if not _FIELD_NAME_STR.fullmatch(name):
        raise MalformedInput(f"invalid header field name {name!r}")
    if value.isascii():
        # Folding the caller did is kept; any other CR or LF would inject a field.
        folded = re.sub(r"\r?\n(?=[ \t])", "\r\n", value)
        if re.search(r"\r(?!\n[ \t])|(?<!\r)\n", folded):
            raise MalformedInput(f"header {name} contains a line break that is not folding")
        return f"{name}: {folded}\r\n".encode("ascii")
    if "\r" in value or "\n" in value:
        raise MalformedInput(f"header {name} contains a line break")
    header = _BUILD_POLICY.header_factory(name, value)
    return canonicalize(header.fold(policy=_BUILD_POLICY).encode("ascii"))


# --------------------------------------------------------------------------- reading


def parse_message(message: bytes, policy: email_policy.Policy = email_policy.default) -> Message:
    """The email package's tree of a message, as BytesParser(policy=policy).parsebytes makes it,
    with the multipart structure cut at the byte level: the email parser reads only each
    part's header block, and a leaf's body becomes its payload in one piece. The feed parser
    handles a 10 MB body a line at a time (150 ms); this takes a few. Anything out of the
    ordinary (no boundary, an unclosed or nested-too-deep multipart, a message/* part, bytes
    that are not MIME) goes to the email package as a whole, so the tree is always its own."""
    _require_bytes(message, "message")
    try:
        return _parse_fast(message, policy, 0)
    except (_Unusual, PkiError, *_PARSE_ERRORS):
        return BytesParser(policy=policy).parsebytes(message)


class _Unusual(Exception):
    """A structure parse_message leaves to the email package."""


_PARSE_ERRORS = (IndexError, KeyError, ValueError, TypeError, UnicodeError, AttributeError)


def _parse_fast(entity: bytes, policy: email_policy.Policy, depth: int) -> Message:
    if depth > _MAX_DEPTH:
        raise _Unusual
    head_end, body_start = _split_point(entity)
    if body_start == head_end:  # no blank line: all header, or not MIME at all
        raise _Unusual
    node = BytesParser(policy=policy).parsebytes(entity[:body_start], headersonly=True)
    if node.defects or node.get_payload():
        raise _Unusual  # the header block did not parse cleanly: let the parser say how
    body = entity[body_start:]
    maintype = node.get_content_maintype()
    if maintype == "message":
        raise _Unusual  # message/rfc822 and friends: a sub-message the parser builds
    if maintype != "multipart":
        node.set_payload(body.decode("ascii", "surrogateescape"))
        return node
    boundary = node.get_boundary()
    if not boundary or not boundary.isascii():
        raise _Unusual
    parts = _split_multipart(body, boundary.encode("ascii"))
    if not parts.closed or not parts.parts:
        raise _Unusual
    node.set_payload([_parse_fast(part, policy, depth + 1) for part in parts.parts])
    node.preamble = _text_between(parts.preamble, strip_end=True)
    node.epilogue = _text_between(parts.epilogue, strip_end=False)
    return node


def _text_between(data: bytes, *, strip_end: bool) -> str | None:
    """A preamble or epilogue as the feed parser keeps it (None when there is none)."""
    if not data:
        return None if strip_end else ""
    text = data.decode("ascii", "surrogateescape")
    return text.removesuffix("\n").removesuffix("\r") if strip_end else text


# --------------------------------------------------------------------------- rewriting leaves


@dataclass(frozen=True)
class Leaf:
    """One part that is not multipart, as replace_leaves hands it over."""

    ctype: str
    fields: tuple[_Field, ...]
    body: bytes  # as transferred (Content-Transfer-Encoding not undone)
    info: _ContentInfo

    def param(self, name: str) -> str | None:
        return self.info.param(name)

    @property
    def is_attachment(self) -> bool:
        return (
            _field_value(list(self.fields), "content-disposition")
            .strip()
            .lower()
            .startswith("attachment")
        )

    @property
    def charset(self) -> str | None:
        value = self.info.message.get_content_charset()
        return None if value is None else str(value)

    def decoded(self) -> bytes:
        """The body with its transfer encoding undone (MalformedInput when it is broken)."""
        cte = _field_value(list(self.fields), "content-transfer-encoding").strip().lower()
        return _decode_body(self.body, cte, self.ctype)

    def with_text(self, text: str, *, drop_param: str) -> bytes:
        """This part holding text instead: UTF-8 in base64, Content-Type with charset=utf-8 and
        without drop_param, every other field kept byte for byte."""
        content_type = next(f for f in self.fields if f.name == "content-type")
        message = _PARSER.parsebytes(content_type.raw + CRLF, headersonly=True)
        message.set_param("charset", "utf-8")
        message.del_param(drop_param)
        lines = [
            _header_line("Content-Type", str(message["Content-Type"]))
            if f is content_type
            else f.raw
            for f in self.fields
            if f.name != "content-transfer-encoding"
        ]
        lines.append(b"Content-Transfer-Encoding: base64\r\n")
        return b"".join((*lines, CRLF, _b64_lines(text.encode("utf-8"))))


def replace_leaves(entity: bytes, replace: Callable[[Leaf], bytes | None]) -> tuple[bytes, int]:
    """The entity with every leaf for which replace returns bytes replaced by them, and how
    many were; all other bytes are kept, so nothing is parsed or regenerated twice (the email
    package's generator rewrote the whole entity to change one part). Multiparts are entered
    at any depth; message/* parts are leaves (a forwarded message is its own). Bytes that are
    not MIME: MalformedInput."""
    _require_bytes(entity, "entity")
    count = [0]
    with _malformed_guard("entity"):
        return _replace_leaves(entity, replace, 0, count), count[0]


def _replace_leaves(
    entity: bytes, replace: Callable[[Leaf], bytes | None], depth: int, count: list[int]
) -> bytes:
    if depth > _MAX_DEPTH:
        raise MalformedInput(f"MIME nesting deeper than {_MAX_DEPTH} levels")
    head_end, body_start = _split_point(entity)
    fields = _parse_fields(entity[:head_end])
    info = _content_info(fields)
    body = entity[body_start:]
    if info.maintype != "multipart":
        new = replace(Leaf(info.ctype, tuple(fields), body, info))
        if new is None:
            return entity
        count[0] += 1
        return new
    pieces, last, changed = [entity[:body_start]], 0, False
    for start, end in _split_multipart(body, info.require_boundary()).spans:
        part = body[start:end]
        new = _replace_leaves(part, replace, depth + 1, count)
        pieces += [body[last:start], new]
        last, changed = end, changed or new is not part
    return b"".join((*pieces, body[last:])) if changed else entity


# --------------------------------------------------------------------------- unwrapping


@dataclass(frozen=True)
class SmimeLayer:
    """One S/MIME layer of a message; a caller peels layers by calling unwrap again on the
    decrypted content or on `content` of a multipart/signed.

    kind: enveloped | auth_enveloped | signed_opaque (decided from the CMS content type in the
    DER, not from labels) | multipart_signed | plain.
    outer_headers: the RFC 5322 fields around the entity (CRLF), empty for an inner entity.
    entity: this layer's MIME entity (content fields and body), canonical; made when first
    read, since a reader peeling a 10 MB message never reads it (two copies and two passes).
    der: the CMS ContentInfo of an application/pkcs7-mime layer.
    content: the first part of multipart/signed exactly as on the wire (what was signed).
    signature: the detached SignedData of multipart/signed.
    micalg, protocol: multipart/signed parameters, lowercased (micalg may be None).
    smime_type: the smime-type parameter as declared (None when absent).
    cms_content_type: dotted OID sniffed from `der` or `signature`."""

    kind: SmimeKind
    outer_headers: bytes
    split: _Split = dataclasses.field(repr=False, compare=False)
    content_type: str
    der: bytes | None = None
    content: bytes | None = None
    signature: bytes | None = None
    micalg: str | None = None
    protocol: str | None = None
    smime_type: str | None = None
    cms_content_type: str | None = None
    # A binary transfer encoding: the entity is kept as it came.
    binary: bool = dataclasses.field(default=False, repr=False)
    known_entity: bytes | None = dataclasses.field(default=None, repr=False, compare=False)
    # unwrap_taking: the message's bytes now hold `der`, a bytearray
    taken: bool = dataclasses.field(default=False, repr=False, compare=False)

    @functools.cached_property
    def entity(self) -> bytes:
        if self.taken:
            raise ValueError("the entity of a layer unwrap_taking decoded in place is gone")
        if self.known_entity is not None:
            return self.known_entity
        raw = self.split.entity()
        return raw if self.binary else canonicalize(raw)


def unwrap(message: bytes) -> SmimeLayer:
    """Classify a message or entity and take one S/MIME layer off it. Accepts LF-only input
    (canonicalized first), application/pkcs7-* and the old application/x-pkcs7-* types,
    base64 with or without line breaks, and application/octet-stream named *.p7m.

    Raises MalformedInput for input that is not MIME or a broken S/MIME structure, and
    UnsupportedAlgorithm for compressed-data (RFC 3274)."""
    _require_bytes(message, "message")
    with _malformed_guard("message"):
        return _unwrap(message)


def is_plain(message: bytes | bytearray) -> bool:
    """Whether unwrap(message) gives a plain layer (no S/MIME), told from the header block
    alone, which is all that decides it: a 10 MB entity decrypted into a bytearray need not be
    copied to bytes to learn that. False as well where unwrap would raise."""
    with contextlib.suppress(PkiError):
        return unwrap(bytes(message[: _split_point(message)[1]])).kind == "plain"
    return False


def unwrap_taking(buffer: bytearray) -> SmimeLayer | None:
    """unwrap of a message in a bytearray its owner gives up, when its body is base64 CMS
    (application/pkcs7-mime or a .p7m file): the body is decoded into the bytearray itself,
    which then holds the layer's `der` and nothing else, so that a 13 MB message and its 10 MB
    DER are never held at once. The layer's `entity` is gone (reading it raises ValueError).
    None, the bytearray untouched, for any other message: unwrap it as bytes. Errors are
    unwrap's; after one, what the bytearray holds is unspecified."""
    if not isinstance(buffer, bytearray):
        raise TypeError(f"buffer must be a bytearray, not {type(buffer).__name__}")
    with _malformed_guard("message"):
        if not buffer or buffer.isspace() or buffer.startswith(b"From "):
            return None  # unwrap says what is wrong; an mbox line is rare enough to copy
        body_start = _split_point(buffer)[1]
        split = _Split.of(bytes(buffer[:body_start]))
        info = _content_info(split.content_fields)
        cte = _field_value(split.content_fields, "content-transfer-encoding").strip().lower()
        if cte != "base64" or not _is_cms_entity(info):
            return None

        def decode_in_place(_cte: str, what: str) -> bytearray:
            with memoryview(buffer) as view:
                written = 0

                def write(chunk: bytes) -> None:
                    # never past what was read: 4 characters read give 3 bytes written
                    nonlocal written
                    view[written : written + len(chunk)] = chunk
                    written += len(chunk)

                _decode_base64(view[body_start:], what, write)
            del buffer[written:]
            return buffer

        return _unwrap_split(split, decode_in_place, taken=True)


def _is_cms_entity(info: _ContentInfo) -> bool:
    name = (info.param("name") or info.filename or "").strip().lower()
    return info.ctype in _PKCS7_MIME_TYPES or (
        info.ctype == "application/octet-stream" and name.endswith(_P7M_SUFFIXES)
    )


def _unwrap(message: bytes) -> SmimeLayer:
    if not message or message.isspace():
        raise MalformedInput("empty message")
    split = _Split.of(message)  # the entity is joined only when someone needs it
    return _unwrap_split(split, lambda cte, what: _decode_body(split.body_view(), cte, what))


def _unwrap_split(
    split: _Split, decode: Callable[[str, str], bytes | bytearray], *, taken: bool = False
) -> SmimeLayer:
    fields = split.content_fields
    info = _content_info(fields)
    outer = canonicalize(split.outer)
    cte = _field_value(fields, "content-transfer-encoding").strip().lower()
    if info.ctype == "multipart/signed":
        return _unwrap_multipart_signed(info, canonicalize(split.entity()), outer, split)
    if _is_cms_entity(info):
        der = decode(cte, info.ctype)
        if cte != "base64":
            der = _trim_line_end(der, info.ctype)
        oid = _sniff_cms(der, info.ctype)
        smime_type = info.param("smime-type")
        if oid == _OID_COMPRESSED_DATA:
            raise UnsupportedAlgorithm("compressed-data (RFC 3274) is not supported")
        if _standard(oid) not in _KIND_BY_OID:
            raise MalformedInput(f"{info.ctype} carries CMS {oid}, not an S/MIME content type")
        return SmimeLayer(
            kind=_KIND_BY_OID[_standard(oid)],
            outer_headers=outer,
            split=split,
            content_type=info.ctype,
            der=der,
            smime_type=smime_type.strip() if smime_type else None,
            cms_content_type=oid,
            binary=cte == "binary",
            taken=taken,
        )
    return SmimeLayer(
        kind="plain",
        outer_headers=outer,
        split=split,
        content_type=info.ctype,
        binary=cte == "binary",
    )


def _unwrap_multipart_signed(
    info: _ContentInfo, entity: bytes, outer: bytes, split: _Split
) -> SmimeLayer:
    protocol = (info.param("protocol") or "").strip().lower()
    if not protocol:
        raise MalformedInput("multipart/signed without a protocol parameter")
    if protocol not in _PKCS7_SIGNATURE_TYPES:
        raise MalformedInput(f"multipart/signed protocol {protocol!r} is not S/MIME")
    boundary = info.require_boundary()
    _, body = _split_entity(entity)
    body_offset = len(entity) - len(body)
    mp = _split_multipart(body, boundary)
    if not mp.closed:
        raise MalformedInput("multipart/signed has no closing boundary (truncated?)")
    if len(mp.parts) != 2:
        raise MalformedInput(
            f"multipart/signed has {len(mp.parts)} part(s); RFC 1847 requires exactly two"
        )
    start, end = mp.spans[0]
    content = entity[body_offset + start : body_offset + end]

    sig_head, sig_body = _split_entity(mp.parts[1])
    sig_fields = _parse_fields(sig_head)
    sig_info = _content_info(sig_fields)
    if sig_info.ctype not in _PKCS7_SIGNATURE_TYPES:
        raise MalformedInput(
            f"second part of multipart/signed is {sig_info.ctype}, not a signature"
        )
    sig_cte = _field_value(sig_fields, "content-transfer-encoding").strip().lower()
    if sig_cte != "base64":
        raise MalformedInput(f"signature part is not base64 (transfer encoding {sig_cte!r})")
    signature = _decode_body(sig_body, "base64", what="signature part")
    oid = _sniff_cms(signature, "signature part")
    if _standard(oid) != _OID_SIGNED_DATA:
        raise MalformedInput(f"signature part carries CMS {oid}, not SignedData")
    micalg = info.param("micalg")
    return SmimeLayer(
        kind="multipart_signed",
        outer_headers=outer,
        split=split,
        known_entity=entity,
        content_type=info.ctype,
        content=content,
        signature=signature,
        micalg=micalg.strip().lower() if micalg else None,
        protocol=protocol,
        cms_content_type=oid,
    )


# --------------------------------------------------------------------------- raw MIME parsing


@dataclass(frozen=True)
class _Field:
    name: str  # lowercased field name
    raw: bytes  # the whole field, folding included, CRLF-terminated

    @property
    def is_content(self) -> bool:
        return self.name.startswith("content-") or self.name == "mime-version"


_FIELD_START = re.compile(rb"([!-9;-~]+)[ \t]*:")


def _split_entity(entity: bytes) -> tuple[bytes, bytes]:
    """(header block, body) at the first empty line, whatever the line ends."""
    head_end, body_start = _split_point(entity)
    return entity[:head_end], entity[body_start:]


def _split_point(entity: bytes) -> tuple[int, int]:
    """Where the header block ends and the body starts (_split_entity without copying the
    body, which may be megabytes)."""
    if entity.startswith(CRLF):
        return 0, 2
    if entity.startswith(b"\n"):
        return 0, 1
    blank = _BLANK_LINE.search(entity)
    if blank is None:
        return len(entity), len(entity)
    return blank.start() + 1, blank.end()


_BLANK_LINE = re.compile(rb"\n\r?\n")


def _parse_fields(head: bytes) -> list[_Field]:
    """Header fields with their exact bytes (line ends made CRLF); anything that is not a
    field or a continuation line means this is not MIME."""
    fields: list[_Field] = []
    if not head:
        return fields
    lines = canonicalize(head).split(CRLF)
    if lines[-1] == b"":
        lines.pop()
    for number, line in enumerate(lines, 1):
        if line[:1] in (b" ", b"\t"):
            if not fields:
                raise MalformedInput("not MIME: header block starts with a continuation line")
            fields[-1] = _Field(fields[-1].name, fields[-1].raw + line + CRLF)
            continue
        match = _FIELD_START.match(line)
        if match is None:
            raise MalformedInput(f"not MIME: header line {number} is not a field: {line[:40]!r}")
        fields.append(_Field(match.group(1).decode("ascii").lower(), line + CRLF))
    return fields


def _field_value(fields: list[_Field], name: str) -> str:
    for field in fields:
        if field.name == name:
            value = field.raw.split(b":", 1)[1]
            return _EOL.sub(b"", value).decode("ascii", "replace")
    return ""


def _is_canonical_head(fields: list[_Field], entity: bytes) -> bool:
    """Is entity exactly its fields (as _parse_fields gives them), CRLF and the body, so that
    _join_entity(fields, body, None) would give entity back?"""
    head = b"".join(f.raw for f in fields) + CRLF
    return entity.startswith(head)


def _join_entity(fields: list[_Field], body: bytes, new_cte: str | None) -> bytes:
    raws = [f.raw for f in fields]
    if new_cte is not None:
        raws = [f.raw for f in fields if f.name != "content-transfer-encoding"]
        raws.append(f"Content-Transfer-Encoding: {new_cte}\r\n".encode("ascii"))
    return b"".join((*raws, CRLF, body))


@dataclass(frozen=True)
class _ContentInfo:
    """Content-Type of one entity, read with the email package (RFC 2231 parameters)."""

    ctype: str
    message: Message

    @property
    def maintype(self) -> str:
        return self.ctype.split("/", 1)[0]

    def param(self, name: str) -> str | None:
        value = self.message.get_param(name)
        if value is None or isinstance(value, str):
            return value
        from email.utils import collapse_rfc2231_value

        return str(collapse_rfc2231_value(value))

    @property
    def filename(self) -> str | None:
        value = self.message.get_filename()
        return None if value is None else str(value)

    def require_boundary(self) -> bytes:
        boundary = self.message.get_boundary()
        if not boundary:
            raise MalformedInput(f"{self.ctype} without a boundary parameter")
        try:
            return str(boundary).encode("ascii")
        except UnicodeEncodeError:
            raise MalformedInput(f"{self.ctype} boundary is not ASCII") from None


_PARSER = BytesParser(policy=email_policy.compat32)


def _content_info(fields: list[_Field]) -> _ContentInfo:
    content = b"".join(f.raw for f in fields if f.is_content)
    message = _PARSER.parsebytes(content + CRLF, headersonly=True)
    raw_type = _field_value(fields, "content-type").split(";", 1)[0].strip()
    ctype = message.get_content_type()
    # compat32 turns a malformed type into text/plain; that is what RFC 2045 5.2 says too, but
    # a multipart or pkcs7 label that failed to parse should not pass as plain text.
    if ctype != raw_type.lower() and raw_type.lower().startswith(("multipart", "application/")):
        raise MalformedInput(f"malformed Content-Type {raw_type!r}")
    return _ContentInfo(ctype, message)


@dataclass(frozen=True)
class _Multipart:
    preamble: bytes
    delimiters: list[bytes]  # one before each part, then the close delimiter (if closed)
    parts: list[bytes]
    spans: list[tuple[int, int]]  # (start, end) of each part within the body
    epilogue: bytes
    closed: bool


def _split_multipart(body: bytes, boundary: bytes) -> _Multipart:
    """RFC 2046 5.1.1 at the byte level: a part is what lies between the line end ending a
    delimiter line and the line end that starts the next one (RFC 1847: exactly what was
    signed). Transport padding after a boundary is allowed; a longer line that merely starts
    with the boundary is content."""
    delimiters: list[bytes] = []
    spans: list[tuple[int, int]] = []
    preamble = body
    epilogue = b""
    closed = False
    start: int | None = None
    for begin, end, is_close in _delimiters(body, b"--" + boundary):
        if start is None:
            preamble = body[:begin]
        else:
            spans.append((start, begin))
        delimiters.append(body[begin:end])
        if is_close:
            closed = True
            epilogue = body[end:]
            break
        start = end
    if not closed and start is not None:
        spans.append((start, len(body)))  # unterminated last part
    parts = [body[s:e] for s, e in spans]
    if not closed:
        delimiters.append(b"")
    return _Multipart(preamble, delimiters, parts, spans, epilogue, closed)


def _delimiters(body: bytes, marker: bytes) -> Iterator[tuple[int, int, bool]]:
    """(start, end, is_close) of each delimiter line, its preceding line end included and its
    own line end included. bytes.find, not a regex: this runs over multi-megabyte bodies."""
    pos = last_end = 0
    size = len(body)
    while (found := body.find(marker, pos)) >= 0:
        pos = found + 1
        if found == 0:
            begin = 0
        elif body[found - 1] == 0x0A:
            begin = found - 1
            if begin >= last_end + 1 and body[begin - 1] == 0x0D:
                begin -= 1
            if begin < last_end:
                continue  # that line end already ended the previous delimiter line
        else:
            continue
        after = found + len(marker)
        is_close = body.startswith(b"--", after)
        if is_close:
            after += 2
        while after < size and body[after] in (0x20, 0x09):
            after += 1
        if after == size:
            end = size
        elif body.startswith(CRLF, after):
            end = after + 2
        elif body[after] == 0x0A:
            end = after + 1
        else:
            continue
        yield begin, end, is_close
        pos = last_end = end


def _new_boundary(*content: bytes) -> bytes:
    """A boundary that does not occur in the content ("=_" cannot appear in base64 or valid
    QP), derived from the content so that wrapping is deterministic: from each part's length
    and its first and last 64 KiB (hashing all of a 10 MB body would cost more than the rest of
    the wrapping; the check below is what guarantees the boundary is absent)."""
    digest = hashlib.sha256()
    for chunk in content:
        digest.update(b"%d:" % len(chunk))
        digest.update(hashlib.sha256(chunk[:_BOUNDARY_SAMPLE] + chunk[-_BOUNDARY_SAMPLE:]).digest())
    for salt in range(1000):
        seed = digest.copy()
        seed.update(b"%d" % salt)
        boundary = b"----=_autosmime_" + seed.hexdigest()[:32].encode("ascii")
        if not any(boundary in chunk for chunk in content):
            return boundary
    raise MalformedInput("no MIME boundary avoids this content")


_BOUNDARY_SAMPLE = 1 << 16


# --------------------------------------------------------------------------- encodings


def _b64_lines(data: bytes) -> bytes:
    """Base64 in 76-character lines, CRLF after each (RFC 2045 6.8). pybase64 encodes with
    SIMD and breaks the lines in C: 17 ms for 10 MB where b64encode and slicing took 55
    (encoding in cache-sized blocks measured slower still)."""
    return pybase64.encodebytes(data).replace(b"\n", CRLF)


_BASE64_WHITESPACE = b" \t\r\n"
# Encoded bytes decoded at a time: big enough for C speed, small enough that the four short-lived
# copies a chunk makes stay in the allocator's heap (1 MiB chunks added 4 MiB to the command
# line's peak; 64 KiB are as fast, 25 ms for 13 MB either way).
_BASE64_CHUNK = 1 << 16


def _decode_body(body: bytes | memoryview, cte: str, what: str) -> bytes:
    if cte == "base64":
        decoded = BytesIO()
        _decode_base64(body, what, decoded.write)
        # getvalue() hands over the buffer it grew in place: one allocation of the result
        return decoded.getvalue()
    if cte == "quoted-printable":
        return binascii.a2b_qp(body)
    if cte in ("", "7bit", "8bit", "binary"):
        return bytes(body)
    raise MalformedInput(f"{what}: unsupported transfer encoding {cte!r}")


def _decode_base64(body: bytes | memoryview, what: str, write: Callable[[bytes], object]) -> int:
    """Decode base64 with line breaks (any whitespace) chunk by chunk, passing the decoded
    pieces in order to write; how many bytes were decoded. The same as stripping the whitespace
    and strictly decoding the whole (any byte outside the alphabet, or "=" before the end, is
    refused; missing final padding is supplied), without the two whole-body copies that took:
    a chunk is cut after whole 4-character groups, and a group holding "=" waits for the end.
    translate deletes in one C pass (the regex took 190 ms for 13 MB)."""
    view = memoryview(body)
    carry = b""
    seen = decoded = 0
    for start in range(0, len(view), _BASE64_CHUNK):
        piece = carry + bytes(view[start : start + _BASE64_CHUNK]).translate(
            None, _BASE64_WHITESPACE
        )
        seen += len(piece) - len(carry)
        if start + _BASE64_CHUNK < len(view):  # not the last chunk: keep any partial group
            padding = piece.find(b"=")
            usable = len(piece) if padding < 0 else padding
            usable -= usable % 4
            piece, carry = piece[:usable], piece[usable:]
        else:
            carry = b""
            if not seen:
                break
            piece += b"=" * (-len(piece) % 4) if len(piece) % 4 != 1 else b""
        if piece:
            try:
                chunk = pybase64.b64decode(piece, validate=True)
            except (binascii.Error, ValueError):
                raise MalformedInput(f"{what}: body is not valid base64") from None
            write(chunk)
            decoded += len(chunk)
    if not seen:
        raise MalformedInput(f"{what}: empty base64 body")
    return decoded


_QP_TOKENS = [
    bytes([b]) if (33 <= b <= 126 and b != 61) or b in (9, 32) else b"=%02X" % b for b in range(256)
]
_QP_PLAIN_LINE = re.compile(rb"[!-<>-~ \t]{0,76}")


def _qp_encode(data: bytes) -> bytes:
    """Quoted-printable (RFC 2045 6.7) of canonical text: CRLF stay hard line breaks, soft
    breaks keep lines within 76 characters, trailing whitespace is encoded, and a line that
    would start with "From " starts with "=46rom " instead."""
    return CRLF.join(_qp_line(line) for line in data.split(CRLF))


def _qp_line(line: bytes) -> bytes:
    if (
        _QP_PLAIN_LINE.fullmatch(line)
        and not line.endswith((b" ", b"\t"))
        and not line.startswith(b"From ")
    ):
        return line
    tokens = [_QP_TOKENS[b] for b in line]
    if line[-1:] in (b" ", b"\t"):
        tokens[-1] = b"=%02X" % line[-1]
    out: list[bytes] = []
    current: list[bytes] = []
    length = 0
    for index, token in enumerate(tokens):
        if length + len(token) > 75:  # room for the soft break "="
            out.append(b"".join(current) + b"=")
            current, length = [], 0
        if length == 0 and line.startswith(b"From ", index):
            token = b"=46"
        current.append(token)
        length += len(token)
    out.append(b"".join(current))
    return CRLF.join(out)  # every segment but the last ends in the soft break "="


# --------------------------------------------------------------------------- DER sniffing


def _der_header(data: bytes, pos: int, what: str) -> tuple[int, int, int | None]:
    """(tag, header length, content length or None when indefinite) of the TLV at pos."""
    if pos + 2 > len(data):
        raise MalformedInput(f"{what}: truncated DER")
    tag, first = data[pos], data[pos + 1]
    if tag & 0x1F == 0x1F:
        raise MalformedInput(f"{what}: unexpected high tag number in DER")
    if first < 0x80:
        return tag, 2, first
    if first == 0x80:
        return tag, 2, None
    count = first & 0x7F
    if count > 4 or pos + 2 + count > len(data):
        raise MalformedInput(f"{what}: bad DER length")
    return tag, 2 + count, int.from_bytes(data[pos + 2 : pos + 2 + count], "big")


def _sniff_cms(der: bytes, what: str) -> str:
    """The content type OID of a CMS ContentInfo, checking its outline (SEQUENCE of OID and
    [0] content, nothing truncated or trailing) without parsing the content: cheap, and robust
    to the BER indefinite lengths OpenSSL's streaming output uses."""
    tag, header, length = _der_header(der, 0, what)
    if tag != 0x30:
        raise MalformedInput(f"{what}: not a CMS ContentInfo (no outer SEQUENCE)")
    if length is None:
        if not der.endswith(b"\x00\x00"):
            raise MalformedInput(f"{what}: truncated BER (no end-of-contents)")
    elif header + length != len(der):
        state = "truncated" if header + length > len(der) else "followed by trailing bytes"
        raise MalformedInput(f"{what}: CMS ContentInfo is {state}")
    oid_tag, oid_header, oid_length = _der_header(der, header, what)
    if oid_tag != 0x06 or not oid_length:
        raise MalformedInput(f"{what}: ContentInfo does not start with a content type OID")
    oid_start = header + oid_header
    oid_bytes = der[oid_start : oid_start + oid_length]
    content_at = oid_start + oid_length
    if len(oid_bytes) != oid_length or der[content_at : content_at + 1] != b"\xa0":
        raise MalformedInput(f"{what}: ContentInfo has no [0] content")
    return _decode_oid(oid_bytes, what)


def _trim_line_end(der: bytes, what: str) -> bytes:
    """Raw (binary/8bit) DER usually arrives with the message's final line end after it."""
    _, header, length = _der_header(der, 0, what)
    if length is not None and der[header + length :].strip(b" \t\r\n") == b"":
        return der[: header + length]
    return der


def _decode_oid(data: bytes, what: str) -> str:
    arcs: list[int] = []
    value = 0
    for byte in data:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            arcs.append(value)
            value = 0
    if data[-1] & 0x80:
        raise MalformedInput(f"{what}: truncated OID")
    first = arcs[0]
    head = [min(first // 40, 2), first - 40 * min(first // 40, 2)]
    return ".".join(str(arc) for arc in head + arcs[1:])


# --------------------------------------------------------------------------- helpers


def _require_bytes(value: object, name: str) -> None:
    if not isinstance(value, bytes):
        raise TypeError(f"{name} must be bytes, not {type(value).__name__}")


@contextlib.contextmanager
def _malformed_guard(what: str) -> Iterator[None]:
    """The promise of errors.py: parsers raise typed errors only, even on inputs no branch
    above anticipated."""
    try:
        yield
    except PkiError:
        raise
    except (IndexError, KeyError, ValueError, TypeError, UnicodeError, AttributeError) as exc:
        raise MalformedInput(f"malformed MIME {what}: {exc}") from exc
