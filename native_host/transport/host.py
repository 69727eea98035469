"""The native messaging host loop: read frames, dispatch ops, write replies, never crash.

Started by the browser through the launcher that `autosmime install` wrote; argv carries the
caller's origin (Chromium: "chrome-extension://ID/"; Firefox: the manifest path, then the add-on
id). Only extensions named in the host configuration are served.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any, BinaryIO

from native_host import ops
from native_host.errors import HostError, as_host_error
from native_host.protocol import (
    MAX_HOST_TO_BROWSER,
    ChunkAssembler,
    ProtocolError,
    decode,
    error_reply,
    ok_reply,
    progress_event,
    split_into_frames,
)
from native_host.transport.framing import read_frame, write_frame

#: Threads for ops marked long in native_host.ops (enroll, send, open...): they run beside the
#: loop, which keeps answering hello, echo and the other short ops meanwhile.
LONG_OP_WORKERS = 4


class Caller:
    """Who started the host, as read from argv."""

    def __init__(self, argv: list[str]) -> None:
        self.origin: str | None = None
        for arg in argv:
            if arg.startswith("chrome-extension://"):
                self.origin = arg if arg.endswith("/") else arg + "/"
        # Firefox passes the manifest path, then the add-on id.
        if self.origin is None and len(argv) >= 2 and argv[0].endswith(".json"):
            self.origin = argv[1]


class HostConfig:
    """Allowed callers and the log file, from the JSON file the installer wrote."""

    def __init__(self, allowed: set[str], log_file: Path) -> None:
        self.allowed = allowed
        self.log_file = log_file

    @classmethod
    def load(cls, path: str | None) -> HostConfig:
        from native_host.infrastructure import paths

        data: dict[str, Any] = {}
        if path:
            with open(path, encoding="utf-8") as handle:
                data = json.load(handle)
        else:
            from native_host.transport.browser_ids import default_allowed

            data = default_allowed()
        allowed = set(data.get("allowed_origins", [])) | set(data.get("allowed_extensions", []))
        log_file = Path(data.get("log_file") or paths.state_dir() / "host.log")
        return cls(allowed, log_file)


class Log:
    """JSON lines of events; callers pass only metadata (op, id, sizes, codes), never payloads."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def event(self, event: str, **fields: Any) -> None:
        line = json.dumps({"t": round(time.time(), 3), "event": event, **fields}, default=str)
        try:
            with self._lock:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with open(self.path, "a", encoding="utf-8") as handle:
                    handle.write(line + "\n")
        except OSError:
            pass  # A log we cannot write must not take the channel down.


class OpContext:
    """What a handler may use besides its params: progress reports and who is calling."""

    def __init__(self, host: Host, msg_id: Any) -> None:
        self._host = host
        self.msg_id = msg_id
        self.origin = host.origin

    def progress(self, done: int, total: int, stage: str) -> None:
        self._host.send(progress_event(self.msg_id, done, total, stage))


def _request_fields(message: Any) -> tuple[Any, str, dict[str, Any]]:
    """Check a decoded frame against the request shape of protocol.json; return its fields."""
    if not isinstance(message, dict):
        raise ProtocolError("bad_request", "A request must be a JSON object.")
    msg_id = message.get("id")
    if not isinstance(msg_id, str | int) or isinstance(msg_id, bool):
        raise ProtocolError("bad_request", "A request needs an id (a string or an integer).")
    op = message.get("op")
    if not isinstance(op, str) or not op:
        raise ProtocolError("bad_request", "A request needs an op (a string).", msg_id)
    params = message.get("params")
    if not isinstance(params, dict):
        raise ProtocolError("bad_request", "A request needs params (an object).", msg_id)
    extra = set(message) - {"id", "op", "params"}
    if extra:
        raise ProtocolError("bad_request", f"Unknown request fields: {sorted(extra)}.", msg_id)
    return msg_id, op, params


class Host:
    def __init__(
        self, inp: BinaryIO, out: BinaryIO, origin: str | None, allowed: set[str], log: Log
    ) -> None:
        self.inp = inp
        self.out = out
        self.origin = origin
        self.allowed = allowed
        self.log = log
        self._write_lock = threading.Lock()
        self._chunks = ChunkAssembler()
        self._pool: Any = None  # a ThreadPoolExecutor, made on the first long op

    def _submit(self, work: Any) -> None:
        """Run work on the pool of long ops (made on first use: cold start stays fast)."""
        if self._pool is None:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(LONG_OP_WORKERS, thread_name_prefix="op")
        self._pool.submit(work)

    def send(self, message: dict[str, Any]) -> None:
        with self._write_lock:
            for frame in split_into_frames(message, MAX_HOST_TO_BROWSER):
                write_frame(self.out, frame)

    def fail(self, error: HostError, msg_id: Any = None) -> None:
        """Answer with error's protocol code and sentence (for msg_id, else the id it carries)."""
        if msg_id is None:
            msg_id = getattr(error, "msg_id", None)
        self.log.event("error", code=error.protocol_code, id=msg_id)
        self.send(error_reply(msg_id, error.protocol_code, error.protocol_message()))

    def serve(self) -> int:
        """Answer frames until input ends; exit status 0 unless the caller is not allowed."""
        self.log.event("start", origin=self.origin, pid=os.getpid())
        if self.origin not in self.allowed:
            self.log.event("refused", origin=self.origin)
            self.fail(
                ProtocolError(
                    "forbidden_origin",
                    f"The extension {self.origin or '(none)'} is not allowed to use this host.",
                )
            )
            return 1
        while True:
            try:
                body = read_frame(self.inp)
            except ProtocolError as error:
                self.fail(error)
                if error.code == "truncated_frame":
                    break
                continue
            if body is None:
                break
            self.handle_frame(body, whole=False)
        if self._pool is not None:  # long ops still running finish and answer first
            self._pool.shutdown(wait=True)
        self.log.event("stop", pending_chunks=self._chunks.pending)
        return 0

    def handle_frame(self, body: bytes, *, whole: bool) -> None:
        """Decode one frame (or a reassembled message) and answer it; errors become replies."""
        msg_id = None
        try:
            try:
                message = decode(body)
            except ValueError:  # json.JSONDecodeError and UnicodeDecodeError are ValueErrors
                raise ProtocolError("bad_json", "A frame was not valid UTF-8 JSON.") from None
            if isinstance(message, dict) and message.get("event") == "chunk" and not whole:
                joined = self._chunks.add(message)
                if joined is not None:
                    self.handle_frame(joined, whole=True)
                return
            msg_id, op, params = _request_fields(message)
            handler = ops.resolve(op)
            if handler is None:
                raise ProtocolError("unknown_op", f"There is no operation called {op!r}.", msg_id)
            long = ops.is_long(op)
            self.log.event("op", op=op, id=msg_id, bytes=len(body), long=long)
        except ProtocolError as error:
            if error.msg_id is None:
                error.msg_id = msg_id
            self.fail(error)
            return
        if long:
            self._submit(lambda: self.run_op(op, handler, params, msg_id))
        else:
            self.run_op(op, handler, params, msg_id)

    def run_op(self, op: str, handler: ops.Handler, params: dict[str, Any], msg_id: Any) -> None:
        """Call the handler and answer; every failure becomes an error reply (logged without
        payloads: op, id, sizes, codes and where a bug happened)."""
        started = time.monotonic()
        try:
            try:
                ops.check_params(op, params)
                result = handler(params, OpContext(self, msg_id))
                reply = ok_reply(msg_id, result)
            except Exception as exc:  # typed failures answer in words; the host survives bugs
                error = as_host_error(exc)
                if error is not None:
                    self.fail(error, msg_id)
                    return
                frames = traceback.extract_tb(exc.__traceback__)
                where = [f"{f.filename}:{f.lineno}:{f.name}" for f in frames]
                self.log.event("internal", id=msg_id, type=type(exc).__name__, where=where)
                self.send(
                    error_reply(
                        msg_id,
                        "internal",
                        "The host failed unexpectedly; see the host log for where.",
                    )
                )
                return
            self.send(reply)
            ms = round((time.monotonic() - started) * 1000, 1)
            self.log.event("done", op=op, id=msg_id, ms=ms)
        except (BrokenPipeError, OSError) as error:  # the browser went away mid-op
            self.log.event("unanswered", op=op, id=msg_id, type=type(error).__name__)


def main(argv: list[str]) -> int:
    config_path = None
    rest: list[str] = []
    it = iter(argv)
    for arg in it:
        if arg == "--config":
            config_path = next(it, None)
        else:
            rest.append(arg)
    stdout = sys.stdout.buffer
    # Anything printed by mistake goes to stderr, never into the framed channel.
    sys.stdout = sys.stderr
    try:
        config = HostConfig.load(config_path)
    except (OSError, ValueError) as error:
        config = HostConfig(set(), HostConfig.load(None).log_file)
        Log(config.log_file).event("bad_config", path=config_path, error=type(error).__name__)
    host = Host(sys.stdin.buffer, stdout, Caller(rest).origin, config.allowed, Log(config.log_file))
    try:
        return host.serve()
    except (BrokenPipeError, KeyboardInterrupt):
        return 0
