"""Native messaging frames on byte streams: a 4-byte little-endian length, then that many bytes.

Framing knows nothing of JSON; a frame that cannot be read whole becomes a ProtocolError and the
stream stays in step wherever that is possible (an oversize frame is read and thrown away).
"""

from __future__ import annotations

import struct
from typing import BinaryIO

from native_host.protocol import MAX_BROWSER_TO_HOST, ProtocolError

_HEADER = struct.Struct("<I")
_DISCARD_BLOCK = 1 << 20


def _read_exactly(stream: BinaryIO, size: int) -> bytes:
    data = stream.read(size)
    if data is None:
        data = b""
    while len(data) < size:
        more = stream.read(size - len(data))
        if not more:
            break
        data += more
    return data


def read_frame(stream: BinaryIO, max_size: int = MAX_BROWSER_TO_HOST) -> bytes | None:
    """Return the next frame's body, or None at a clean end of input.

    Raises ProtocolError("truncated_frame") when input ends mid-frame (the caller must stop
    reading), and ProtocolError("frame_too_large") after discarding an oversize frame's body (the
    caller may go on reading).
    """
    header = _read_exactly(stream, _HEADER.size)
    if not header:
        return None
    if len(header) < _HEADER.size:
        raise ProtocolError("truncated_frame", "The input ended inside a frame's length header.")
    (size,) = _HEADER.unpack(header)
    if size > max_size:
        remaining = size
        while remaining:
            block = stream.read(min(remaining, _DISCARD_BLOCK))
            if not block:
                raise ProtocolError(
                    "truncated_frame", f"The input ended inside an oversize frame of {size} bytes."
                )
            remaining -= len(block)
        raise ProtocolError(
            "frame_too_large", f"A frame of {size} bytes exceeds the limit of {max_size} bytes."
        )
    body = _read_exactly(stream, size)
    if len(body) < size:
        raise ProtocolError(
            "truncated_frame", f"The input ended after {len(body)} of {size} bytes of a frame."
        )
    return body


def write_frame(stream: BinaryIO, body: bytes) -> None:
    """Write one frame and flush it, so the browser sees it at once."""
    stream.write(_HEADER.pack(len(body)) + body)
    stream.flush()
