"""DER written around values asn1crypto made, for the few structures that are large or hot:
a 10 MB ciphertext, the certificate set of every TSA token.

Why not asn1crypto's dump() alone: it copies a value into each enclosing level and again when
the tree is serialized, and it re-encodes a whole value on every call when the last byte of
its header is 0x80, taking a long-form length such as 82 02 80 (a 640-byte certificate) for
the indefinite form (0x80 alone). Small fields are still asn1crypto's DER; these helpers only
put headers around them and join the pieces once.
"""

from __future__ import annotations

from asn1crypto import core


def header(tag: int, size: int) -> bytes:
    """Identifier octet (a low tag number) and definite length of a value of `size` bytes."""
    if size < 0x80:
        return bytes((tag, size))
    length = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes((tag, 0x80 | len(length))) + length


def constructed(tag: int, parts: list[bytes]) -> list[bytes]:
    """The pieces of a constructed value holding parts: its header, then the parts (not
    joined, so that a large part is copied only once, when the caller joins everything)."""
    return [header(tag, sum(map(len, parts))), *parts]


def encoded(value: core.Asn1Value) -> bytes:
    """value.dump(), without the re-encoding a header ending in 0x80 triggers: a parsed value
    whose definite-length header and contents are at hand is returned as it was read (a
    parsed, unchanged value is DER already or dump() would not make it so either)."""
    value_header = value._header  # asn1crypto's own cache of the header it parsed or wrote
    if (
        value_header is not None
        and len(value_header) >= 3
        and value_header[0] & 0x1F != 0x1F  # low tag number: one identifier octet
        and value_header[1] & 0x80
        and len(value_header) == 2 + (value_header[1] & 0x7F)  # long-form definite length
        and value.explicit is None
        and not value._trailer
    ):
        return value_header + value.contents
    return value.dump()


def read_header(data: bytes | memoryview, pos: int) -> tuple[int, int, int] | None:
    """(tag, header length, content length) of the value at pos when it has one identifier
    octet and a definite length that fits in data; None otherwise (a high tag number, the
    indefinite form, a length past the end), for the caller to leave to asn1crypto."""
    if pos + 2 > len(data):
        return None
    tag, first = data[pos], data[pos + 1]
    if tag & 0x1F == 0x1F or first == 0x80:
        return None
    if first < 0x80:
        size, header_length = first, 2
    else:
        count = first & 0x7F
        if count > 4 or pos + 2 + count > len(data):
            return None
        size = int.from_bytes(data[pos + 2 : pos + 2 + count], "big")
        header_length = 2 + count
    if pos + header_length + size > len(data):
        return None
    return tag, header_length, size


def children(data: bytes | memoryview, start: int, end: int) -> list[tuple[int, int, int]] | None:
    """(tag, start, end) of each value from start to exactly end, or None (see read_header)."""
    found = []
    pos = start
    while pos < end:
        header = read_header(data, pos)
        if header is None:
            return None
        tag, header_length, size = header
        found.append((tag, pos, pos + header_length + size))
        pos += header_length + size
    return found if pos == end else None
