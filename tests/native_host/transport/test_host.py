"""The real host process on pipes: every op, every bad-frame case, chunking, origin check, logs."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from harness.native import HostProcess, encode, frame, write_host_config

from native_host.protocol import MAX_BROWSER_TO_HOST, MAX_HOST_TO_BROWSER, SCHEMA

MESSAGE_SCHEMA = jsonschema.Draft202012Validator(SCHEMA)
SECRET = "PAYLOAD-MARKER-7f3a"


@pytest.fixture
def host(tmp_path: Path):
    config, log_file = write_host_config(tmp_path)
    process = HostProcess(config)
    process.log_file = log_file
    yield process
    process.close()


def check(message: dict[str, Any] | None) -> dict[str, Any]:
    assert message is not None, "the host closed the channel instead of answering"
    MESSAGE_SCHEMA.validate(message)
    return message


def error_code(message: dict[str, Any] | None) -> str:
    message = check(message)
    assert message["ok"] is False, message
    return message["error"]["code"]


def test_hello_names_versions_and_ops(host: HostProcess) -> None:
    reply = check(host.call("hello", {}, msg_id="h1"))
    assert reply["id"] == "h1" and reply["ok"] is True
    assert reply["result"]["protocol"] == SCHEMA["version"]
    assert {"hello", "echo"} <= set(reply["result"]["ops"])
    assert reply["result"]["limits"]["maxHostToBrowserFrame"] == MAX_HOST_TO_BROWSER


def test_echo_with_progress_events(host: HostProcess) -> None:
    host.send({"id": 5, "op": "echo", "params": {"payload": {"a": [1, "ü"]}, "progress": 3}})
    events = [check(host.receive()) for _ in range(4)]
    assert [e.get("done") for e in events[:3]] == [1, 2, 3]
    assert all(e["event"] == "progress" and e["total"] == 3 for e in events[:3])
    assert events[3] == {"id": 5, "ok": True, "result": {"a": [1, "ü"]}}


@pytest.mark.parametrize("size", [5 * 2**20, 64 * 2**20])
def test_large_payloads_both_ways_travel_in_chunks(host: HostProcess, size: int) -> None:
    payload = ("0123456789abcdef" * (size // 16))[:size]
    reply = check(host.call("echo", {"payload": payload}, msg_id="big"))
    assert reply["result"] == payload
    assert max(host.frames_seen) <= MAX_HOST_TO_BROWSER
    assert len(host.frames_seen) >= size // 2**19


@pytest.mark.parametrize(
    ("body", "code", "msg_id"),
    [
        (b"{not json", "bad_json", None),
        (b'{"id": 1, "op": "echo", "params": {"payload": "\xff\xfe"}}', "bad_json", None),
        (b"[1, 2, 3]", "bad_request", None),
        (b'{"op": "echo", "params": {}}', "bad_request", None),
        (b'{"id": true, "op": "echo", "params": {}}', "bad_request", None),
        (b'{"id": 9, "params": {}}', "bad_request", 9),
        (b'{"id": 9, "op": "echo"}', "bad_request", 9),
        (b'{"id": 9, "op": "echo", "params": [], "x": 1}', "bad_request", 9),
        (b'{"id": 9, "op": "echo", "params": {}, "x": 1}', "bad_request", 9),
        (b'{"id": 9, "op": "no.such.op", "params": {}}', "unknown_op", 9),
        (b'{"id": 9, "op": "echo", "params": {"payload": 1, "progress": -1}}', "bad_params", 9),
        (b'{"id": 9, "event": "chunk", "seq": 1, "count": 2, "data": "AA=="}', "bad_chunk", 9),
        (b'{"id": 9, "event": "chunk", "seq": 0, "count": 2, "data": "!!"}', "bad_chunk", 9),
        (b'{"id": [1], "event": "chunk", "seq": 0, "count": 2, "data": ""}', "bad_chunk", None),
    ],
)
def test_bad_frames_get_typed_errors_and_the_host_goes_on(
    host: HostProcess, body: bytes, code: str, msg_id: Any
) -> None:
    host.send_raw(frame(body))
    reply = check(host.receive())
    assert reply["ok"] is False and reply["error"]["code"] == code
    assert reply["id"] == msg_id
    assert reply["error"]["message"]
    assert check(host.call("echo", {"payload": "still here"}))["result"] == "still here"


def test_chunks_that_disagree_are_refused(host: HostProcess) -> None:
    host.send_raw(frame(encode({"id": 3, "event": "chunk", "seq": 0, "count": 3, "data": "e30="})))
    host.send_raw(frame(encode({"id": 3, "event": "chunk", "seq": 1, "count": 4, "data": "e30="})))
    assert error_code(host.receive()) == "bad_chunk"
    assert check(host.call("echo", {"payload": 1}))["result"] == 1


def test_oversize_frame_is_discarded_and_the_channel_stays_in_step(host: HostProcess) -> None:
    size = MAX_BROWSER_TO_HOST + 1
    host.send_raw(struct.pack("<I", size) + b"x" * size)
    assert error_code(host.receive()) == "frame_too_large"
    assert check(host.call("echo", {"payload": "after"}))["result"] == "after"


@pytest.mark.parametrize(
    "data",
    [b"\x05\x00", struct.pack("<I", 100) + b"{}", struct.pack("<I", MAX_BROWSER_TO_HOST + 5)],
    ids=["header", "body", "oversize"],
)
def test_truncated_input_gets_an_error_and_a_clean_exit(host: HostProcess, data: bytes) -> None:
    host.send_raw(data)
    assert host.proc.stdin is not None
    host.proc.stdin.close()
    assert error_code(host.receive()) == "truncated_frame"
    assert host.receive() is None
    assert host.close() == 0


def test_a_caller_that_is_not_allowed_is_refused(tmp_path: Path) -> None:
    config, _ = write_host_config(tmp_path)
    intruder = HostProcess(config, origin="chrome-extension://aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa/")
    intruder.send({"id": 1, "op": "hello", "params": {}})
    assert error_code(intruder.receive()) == "forbidden_origin"
    assert intruder.close() == 1


def test_logs_carry_metadata_never_payloads(host: HostProcess) -> None:
    host.call("echo", {"payload": SECRET})
    host.send_raw(frame(b'{"broken ' + SECRET.encode()))
    error_code(host.receive())
    host.close()
    log = host.log_file.read_text()
    events = [json.loads(line)["event"] for line in log.splitlines()]
    assert {"start", "op", "error", "stop"} <= set(events)
    assert SECRET not in log
