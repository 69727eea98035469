"""The native protocol, read from protocol.json (its one definition), as Python values and helpers.

Only message shapes and chunking live here; reading and writing frames is framing.py's job.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from importlib import resources
from typing import Any

import orjson
import pybase64

from native_host.errors import HostError

SCHEMA: dict[str, Any] = json.loads(
    resources.files("native_host").joinpath("protocol.json").read_text("utf-8")
)
VERSION: int = SCHEMA["version"]
LIMITS: dict[str, int] = SCHEMA["limits"]
ERROR_CODES: dict[str, str] = SCHEMA["errorCodes"]
MAX_HOST_TO_BROWSER = LIMITS["maxHostToBrowserFrame"]
MAX_BROWSER_TO_HOST = LIMITS["maxBrowserToHostFrame"]
CHUNK_RAW_BYTES = LIMITS["chunkRawBytes"]
MAX_MESSAGE_BYTES = LIMITS["maxMessageBytes"]


class ProtocolError(HostError):
    """A failure of the channel or of a request's shape (bad_json, bad_chunk, unknown_op...),
    or any code given here; msg_id is the request's id when it could be read."""

    def __init__(self, code: str, message: str, msg_id: Any = None) -> None:
        if code not in ERROR_CODES:
            raise ValueError(f"undeclared error code {code!r}")
        super().__init__(message)
        self.protocol_code = code
        self.msg_id = msg_id

    @property
    def code(self) -> str:
        return self.protocol_code


def encode(message: dict[str, Any]) -> bytes:
    """Serialize a message to the UTF-8 JSON that goes into a frame (compact, non-ASCII kept).
    orjson writes a 24 MB message in 5 ms where json took 38 (and its chunks 150 more); a value
    it refuses (an integer over 64 bits) goes through json, which writes the same JSON."""
    try:
        return orjson.dumps(message)
    except orjson.JSONEncodeError:
        return json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def decode(body: bytes) -> Any:
    """Parse a frame's UTF-8 JSON. ValueError (json.JSONDecodeError or UnicodeDecodeError) when
    it is none; what orjson refuses but json reads (NaN, lone surrogate escapes) is read by
    json, so exactly what json accepts is accepted. One difference: an integer beyond 64 bits
    reads as a float, as JavaScript, the other end, holds every number anyway."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return json.loads(body.decode("utf-8"))


def ok_reply(msg_id: Any, result: Any) -> dict[str, Any]:
    return {"id": msg_id, "ok": True, "result": result}


def error_reply(msg_id: Any, code: str, message: str) -> dict[str, Any]:
    return {"id": msg_id, "ok": False, "error": {"code": code, "message": message}}


def progress_event(msg_id: Any, done: int, total: int, stage: str) -> dict[str, Any]:
    return {"id": msg_id, "event": "progress", "done": done, "total": total, "stage": stage}


def split_into_frames(message: dict[str, Any], max_frame: int) -> Iterator[bytes]:
    """Yield the encoded frames that carry message: itself if it fits in max_frame, else chunks."""
    body = encode(message)
    if len(body) <= max_frame:
        yield body
        return
    msg_id = message.get("id")
    count = -(-len(body) // CHUNK_RAW_BYTES)
    for seq in range(count):
        piece = body[seq * CHUNK_RAW_BYTES : (seq + 1) * CHUNK_RAW_BYTES]
        yield encode(
            {
                "id": msg_id,
                "event": "chunk",
                "seq": seq,
                "count": count,
                "data": pybase64.b64encode(piece).decode("ascii"),
            }
        )


class ChunkAssembler:
    """Joins chunk events back into whole messages, one partial message per id."""

    def __init__(self) -> None:
        self._parts: dict[str | int, list[bytes]] = {}
        self._counts: dict[str | int, int] = {}
        self._sizes: dict[str | int, int] = {}

    def add(self, chunk: dict[str, Any]) -> bytes | None:
        """Take one chunk; return the whole message's JSON bytes when the last one arrives."""
        msg_id, seq, count, data = (chunk.get(k) for k in ("id", "seq", "count", "data"))
        if not isinstance(msg_id, str | int) or isinstance(msg_id, bool):
            raise ProtocolError("bad_chunk", "A chunk has no usable id.", None)
        if not (
            isinstance(seq, int)
            and isinstance(count, int)
            and isinstance(data, str)
            and count >= 2
            and 0 <= seq < count
        ):
            self.discard(msg_id)
            raise ProtocolError("bad_chunk", "A chunk lacks seq, count or data.", msg_id)
        parts = self._parts.setdefault(msg_id, [])
        if self._counts.setdefault(msg_id, count) != count:
            self.discard(msg_id)
            raise ProtocolError(
                "bad_chunk", "Chunks of one message disagree on their count.", msg_id
            )
        if seq != len(parts):
            self.discard(msg_id)
            raise ProtocolError(
                "bad_chunk", f"Chunk {seq} arrived where chunk {len(parts)} was expected.", msg_id
            )
        try:
            piece = pybase64.b64decode(data, validate=True)
        except ValueError:
            self.discard(msg_id)
            raise ProtocolError("bad_chunk", "A chunk's data is not base64.", msg_id) from None
        size = self._sizes.get(msg_id, 0) + len(piece)
        if size > MAX_MESSAGE_BYTES:
            self.discard(msg_id)
            raise ProtocolError(
                "bad_chunk", f"A chunked message grew past {MAX_MESSAGE_BYTES} bytes.", msg_id
            )
        parts.append(piece)
        self._sizes[msg_id] = size
        if len(parts) < count:
            return None
        self.discard(msg_id)
        return b"".join(parts)

    def discard(self, msg_id: Any) -> None:
        if not isinstance(msg_id, str | int):
            return
        self._parts.pop(msg_id, None)
        self._counts.pop(msg_id, None)
        self._sizes.pop(msg_id, None)

    @property
    def pending(self) -> int:
        return len(self._parts)
