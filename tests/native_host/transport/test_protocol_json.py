"""The channel's JSON (native_host.protocol.encode/decode): orjson for speed, and exactly what
the standard library's json writes and accepts, so that the fast path changes nothing."""

from __future__ import annotations

import json

import pytest

from native_host.protocol import (
    MAX_HOST_TO_BROWSER,
    ChunkAssembler,
    decode,
    encode,
    split_into_frames,
)

MESSAGES = [
    {"id": 1, "op": "echo", "params": {"payload": "x" * 10}},
    {"id": "a", "ok": True, "result": {"text": 'Grüße 🙂 \u2028 "quoted" \\ \n\t\x01'}},
    {"id": 2, "ok": True, "result": {"serial": 2**70, "n": -(2**64), "f": 1.5, "list": [None]}},
]


@pytest.mark.parametrize("message", MESSAGES)
def test_encode_writes_what_json_writes(message: dict) -> None:
    expected = json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    assert encode(message) == expected
    assert decode(encode(message)) == message


@pytest.mark.parametrize(
    "body",
    [b'{"a":NaN}', b'{"a":"\\ud800"}', b"[1,2]", b'{"a":18446744073709551615}'],
)
def test_decode_accepts_what_json_accepts(body: bytes) -> None:
    assert repr(decode(body)) == repr(json.loads(body))


def test_an_integer_beyond_64_bits_reads_as_javascript_holds_it() -> None:
    assert decode(b'{"a":123456789012345678901234567890}') == {"a": 1.2345678901234568e29}


@pytest.mark.parametrize("body", [b"{", b'{"a":1}x', b"\xff\xfe", b'{"a":"\xe9"}', b""])
def test_decode_refuses_what_json_refuses(body: bytes) -> None:
    with pytest.raises(ValueError):
        json.loads(body.decode("utf-8"))
    with pytest.raises(ValueError):
        decode(body)


def test_a_large_message_travels_in_chunks_and_comes_back_whole() -> None:
    message = {"id": 7, "ok": True, "result": {"text": "é" * 700_000, "data": "A" * 2_000_000}}
    frames = list(split_into_frames(message, MAX_HOST_TO_BROWSER))
    assert len(frames) > 2 and all(len(frame) <= MAX_HOST_TO_BROWSER for frame in frames)
    assembler = ChunkAssembler()
    joined = [assembler.add(decode(frame)) for frame in frames]
    assert joined[:-1] == [None] * (len(frames) - 1)
    assert decode(joined[-1]) == message
