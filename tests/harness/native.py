"""A real native host process on pipes, and a client that speaks frames to it as a browser would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema

from native_host.protocol import (
    MAX_HOST_TO_BROWSER,
    SCHEMA,
    ChunkAssembler,
    decode,
    encode,
    split_into_frames,
)
from native_host.transport.browser_ids import GECKO_ID, chromium_id, chromium_origin
from native_host.transport.framing import read_frame, write_frame

ORIGIN = chromium_origin(chromium_id())


def write_host_config(folder: Path) -> tuple[Path, Path]:
    """A host configuration allowing the development extension; returns (config, log file)."""
    folder.mkdir(parents=True, exist_ok=True)
    log_file = folder / "host.log"
    config = folder / "host.json"
    config.write_text(
        json.dumps(
            {
                "allowed_origins": [ORIGIN],
                "allowed_extensions": [GECKO_ID],
                "log_file": str(log_file),
            }
        )
    )
    return config, log_file


class HostProcess:
    """`python -m native_host` with the caller's origin in argv, exactly as a browser starts it."""

    def __init__(
        self,
        config: Path,
        origin: str = ORIGIN,
        env: dict[str, str] | None = None,
        program: list[str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        """env: variables to set for the host on top of ours (AUTOSMIME_PROFILE, keyring...);
        program: what starts the host (default `python -m native_host`)."""
        self.proc = subprocess.Popen(
            [*(program or [sys.executable, "-m", "native_host"]), "--config", str(config), origin],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
            cwd=cwd,
        )
        self._chunks = ChunkAssembler()
        self.frames_seen: list[int] = []

    def send_raw(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def send(self, message: dict[str, Any]) -> None:
        """Send a message the way the extension does: chunked if it is larger than a frame."""
        assert self.proc.stdin is not None
        for frame in split_into_frames(message, MAX_HOST_TO_BROWSER):
            write_frame(self.proc.stdin, frame)

    def receive_frame(self) -> dict[str, Any] | None:
        """The next frame as it came, checked against the browser's 1 MiB limit."""
        assert self.proc.stdout is not None
        body = read_frame(self.proc.stdout, max_size=MAX_HOST_TO_BROWSER)
        if body is None:
            return None
        self.frames_seen.append(len(body))
        return decode(body)

    def receive(self) -> dict[str, Any] | None:
        """The next whole message, reassembling chunks."""
        while True:
            frame = self.receive_frame()
            if frame is None or frame.get("event") != "chunk":
                return frame
            joined = self._chunks.add(frame)
            if joined is not None:
                return decode(joined)

    def call(self, op: str, params: dict[str, Any], msg_id: Any = 1) -> dict[str, Any]:
        """One request and its reply; a successful reply's result is checked against the op's
        result schema in protocol.json."""
        self.send({"id": msg_id, "op": op, "params": params})
        reply = self.receive()
        assert reply is not None, "the host closed the channel"
        check_result(op, reply)
        return reply

    def close(self, timeout: float = 10) -> int:
        """Close stdin (the browser going away) and return the exit status."""
        if self.proc.stdin and not self.proc.stdin.closed:
            self.proc.stdin.close()
        code = self.proc.wait(timeout=timeout)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream:
                stream.close()
        return code


def check_result(op: str, reply: dict[str, Any]) -> None:
    """A reply's result against protocol.json's result schema of op (errors: their envelope
    is checked by whoever validates whole messages)."""
    spec = SCHEMA["ops"].get(op)
    if reply.get("ok") is True and spec is not None:
        jsonschema.Draft202012Validator(spec["result"]).validate(reply["result"])


def frame(body: bytes) -> bytes:
    return len(body).to_bytes(4, "little") + body


__all__ = ["ORIGIN", "HostProcess", "check_result", "encode", "frame", "write_host_config"]
