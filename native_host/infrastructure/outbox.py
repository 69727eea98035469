"""The on-disk outbox: a message is stored before submission and removed only after the server
accepted it and its key is recorded as sent, so nothing is lost and nothing is sent twice
(Mailbox.submit and flush_outbox use it)."""

from __future__ import annotations

import contextlib
import email.parser
import email.policy
import hashlib
import json
import os
import re
import secrets
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from native_host.infrastructure.mail_errors import MailError
from native_host.infrastructure.profile import storage, write_private

try:  # POSIX: one flush at a time per outbox, across processes
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

HEADER_PARSER = email.parser.BytesHeaderParser(policy=email.policy.default)


def _message_id(data: bytes) -> str | None:
    end = re.search(rb"\r?\n\r?\n", data)
    headers = HEADER_PARSER.parsebytes(data[: end.end()] if end else data)
    value = headers.get("Message-ID")
    return str(value).strip() if value else None


@dataclass(frozen=True)
class OutboxEntry:
    path: Path
    envelope_from: str
    recipients: tuple[str, ...]
    message_id: str | None
    key: str
    file_sent: bool

    @property
    def id(self) -> str:
        return self.path.stem

    def read_message(self) -> bytes:
        data = self.path.read_bytes()
        return data[data.index(b"\n") + 1 :]


@dataclass(frozen=True)
class FlushResult:
    id: str
    message_id: str | None
    status: str  # "sent", "already-sent", "failed", "filed"
    error: MailError | None = None


def _fsync_dir(path: Path) -> None:
    if os.name != "posix":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Outbox:
    """Messages waiting for submission, one file each, plus a journal of what the server took.

    A message is written (fsync'd) before it is submitted; after the server accepted it, its key
    (Message-ID + envelope) is appended to `sent.log` (fsync'd) and only then the file deleted.
    A crash between acceptance and the journal write is the one window where a retry could send
    twice: SMTP offers no way to ask whether a message arrived.
    Messages whose Sent copy is still to be filed wait in `to-file/`.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        with storage(self.path):
            self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
            (self.path / "to-file").mkdir(mode=0o700, exist_ok=True)
        self.journal = self.path / "sent.log"

    @staticmethod
    def key_for(message: bytes, envelope_from: str, recipients: Iterable[str]) -> str:
        """Same Message-ID and envelope = same submission (Bcc copies differ by envelope)."""
        message_id = _message_id(message)
        basis = message_id.encode() if message_id else hashlib.sha256(message).digest()
        envelope = "\0".join([envelope_from.lower(), *sorted(r.lower() for r in recipients)])
        return hashlib.sha256(basis + b"\0" + envelope.encode()).hexdigest()

    def put(
        self,
        message: bytes,
        envelope_from: str,
        recipients: Sequence[str],
        *,
        file_sent: bool = False,
        folder: str = "",
    ) -> OutboxEntry:
        meta = {
            "from": envelope_from,
            "to": list(recipients),
            "message_id": _message_id(message),
            "key": self.key_for(message, envelope_from, recipients),
            "file_sent": file_sent,
        }
        name = f"{time.time_ns():020d}-{secrets.token_hex(4)}.msg"
        path = (self.path / folder if folder else self.path) / name
        write_private(path, json.dumps(meta).encode() + b"\n" + message)
        return self._entry(path, meta)

    @staticmethod
    def _entry(path: Path, meta: dict[str, Any]) -> OutboxEntry:
        return OutboxEntry(
            path=path,
            envelope_from=meta["from"],
            recipients=tuple(meta["to"]),
            message_id=meta.get("message_id"),
            key=meta["key"],
            file_sent=bool(meta.get("file_sent")),
        )

    def _read(self, folder: Path) -> list[OutboxEntry]:
        entries = []
        for path in sorted(folder.glob("*.msg")):
            with path.open("rb") as handle:
                meta = json.loads(handle.readline())
            entries.append(self._entry(path, meta))
        return entries

    def entries(self) -> list[OutboxEntry]:
        """Messages still to be submitted, oldest first."""
        return self._read(self.path)

    def to_file(self) -> list[OutboxEntry]:
        """Sent messages whose copy still has to be filed in Sent."""
        return self._read(self.path / "to-file")

    def sent_keys(self) -> set[str]:
        try:
            return set(self.journal.read_text().split())
        except FileNotFoundError:
            return set()

    def mark_sent(self, key: str) -> None:
        with storage(self.journal):
            fd = os.open(self.journal, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                os.write(fd, key.encode() + b"\n")
                os.fsync(fd)
            finally:
                os.close(fd)

    def remove(self, entry: OutboxEntry) -> None:
        with contextlib.suppress(FileNotFoundError):
            entry.path.unlink()
        _fsync_dir(entry.path.parent)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """One submitter at a time (another process flushing the same outbox waits)."""
        with storage(self.path):  # only opening the lock file: what runs inside is the caller's
            handle = (self.path / ".lock").open("a")
        with handle:
            if fcntl is not None:
                fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                if fcntl is not None:
                    fcntl.flock(handle, fcntl.LOCK_UN)
