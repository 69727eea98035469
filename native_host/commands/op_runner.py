"""The command line's side of the ops: a subcommand builds the op's params, calls the SAME
handler the native host calls (native_host.ops), shows progress on stderr for people, and
prints the result (JSON on stdout with --json). Failures are one line on stderr:

    autosmime COMMAND: CODE: sentence

Exit codes: 0 success; 1 the operation failed (CODE from protocol.json's errorCodes); 2 the
command line or its files are wrong; 75 (EX_TEMPFAIL) a message kept in the outbox to be sent
later.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from native_host.errors import HostError, as_host_error

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_QUEUED = 75


class CommandError(HostError):
    """A command-line problem found before the op runs (a file that cannot be read...)."""

    def __init__(self, message: str, code: str = "bad_params") -> None:
        super().__init__(message)
        self.protocol_code = code


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """--json and --progress, accepted after the subcommand too (the global ones come first)."""
    parser.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="print the result as JSON"
    )
    parser.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=argparse.SUPPRESS,
        help="show progress on stderr (default: when stderr is a terminal)",
    )


class CliContext:
    """What an op handler may use (see transport.host.OpContext): progress goes to stderr."""

    origin = "cli"

    def __init__(self, command: str, show: bool) -> None:
        self.command = command
        self.show = show
        self._last = ""

    def progress(self, done: int, total: int, stage: str) -> None:
        if not self.show or stage == self._last:
            return
        self._last = stage
        print(f"[{done}/{total}] {stage}", file=sys.stderr, flush=True)


def one_line(text: str) -> str:
    return " ".join(str(text).split())


def fail(command: str, code: str, message: str, status: int = EXIT_FAILED) -> int:
    print(f"autosmime {command}: {code}: {one_line(message)}", file=sys.stderr, flush=True)
    return status


def wants_json(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "json", False))


def call(
    command: str,
    op: str,
    params: dict[str, Any] | Callable[[], dict[str, Any]],
    args: argparse.Namespace,
    show: Callable[[Any], None],
    finish: Callable[[Any], tuple[Any, int]] | None = None,
) -> int:
    """Run op with params (or a function building them) exactly as the host would. `finish`
    turns the result into what is printed and the exit status (e.g. writes a file); then the
    result is printed as JSON (--json) or shown for people by `show`."""
    from native_host import ops

    progress = getattr(args, "progress", None)
    if progress is None:
        progress = sys.stderr.isatty()
    context = CliContext(command, bool(progress))
    try:
        if callable(params):
            params = params()
        handler = ops.resolve(op)
        assert handler is not None, op
        ops.check_params(op, params)
        result = handler(params, context)
        status = 0
        if finish is not None:
            result, status = finish(result)
    except KeyboardInterrupt:
        return fail(command, "interrupted", "Stopped; run the command again to go on.", 130)
    except Exception as exc:
        error = as_host_error(exc)
        if error is None:
            raise
        code = EXIT_USAGE if error.protocol_code == "bad_params" else EXIT_FAILED
        return fail(command, error.protocol_code, error.protocol_message(), code)
    if wants_json(args):
        json.dump(result, sys.stdout, ensure_ascii=False, indent=2)
        sys.stdout.write("\n")
        sys.stdout.flush()
    else:
        show(result)
    return status


# ---- reading what the command line names ---------------------------------------------------


def read_file(path: str, what: str = "file") -> bytes:
    try:
        return sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
    except OSError as error:
        raise CommandError(f"Cannot read the {what} {path}: {error.strerror}.") from None


def read_text(path: str, what: str = "file") -> str:
    data = read_file(path, what)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise CommandError(f"The {what} {path} is not UTF-8 text.") from None


def secret_from(env_name: str | None, what: str) -> str:
    """A secret from the environment variable env_name, else the first line of stdin (never
    from argv, where `ps` shows it)."""
    if env_name:
        value = os.environ.get(env_name)
        if value is None:
            raise CommandError(f"The environment variable {env_name} is not set.")
        return value
    if sys.stdin.isatty():
        import getpass

        return getpass.getpass(f"{what}: ")
    line = sys.stdin.readline()
    if not line:
        raise CommandError(f"No {what} on stdin.")
    return line.rstrip("\r\n")


def write_private_file(path: str, data: bytes) -> None:
    """Write data to path, readable by the user only (it may hold keys)."""
    target = Path(path)
    temporary = target.with_name(f".{target.name}.{os.getpid()}.{time.time_ns()}.tmp")
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        temporary.replace(target)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        raise CommandError(f"Cannot write {path}: {error.strerror}.", "op_failed") from None


def out(text: str = "") -> None:
    print(text, flush=True)
