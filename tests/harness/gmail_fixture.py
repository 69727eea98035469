"""The Gmail-shaped fixture origin: the static pages of tests/e2e/pages plus what Gmail answers
that a static folder cannot: Show original (`?view=om&permmsgid=msg-f:<dec>`, the raw message
from a file the test writes with `put_raw`), the thread view's content (`/fixture/thread`: what
Gmail renders of that message), the draft/sync POSTs, and a server-side record of
every request with its body (so a test can prove the plaintext never left the page)."""

from __future__ import annotations

import email
import email.policy
import email.utils
import functools
import http.server
import json
import ssl
import threading
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from harness.tls import self_signed
from harness.webmail_server import PAGES, WebmailServer


def rendering(raw: bytes) -> dict[str, object]:
    """What Gmail shows of a message: its text body and its attachment chips. Enveloped and
    opaque-signed mail is an smime.p7m chip with an empty body; multipart/signed shows the signed
    text and an smime.p7s chip; plain mail shows its text."""
    message = email.message_from_bytes(raw, policy=email.policy.default)
    kind = message.get_content_type()
    if kind in ("application/pkcs7-mime", "application/x-pkcs7-mime"):
        return {
            "subject": str(message["subject"] or ""),
            "from": email.utils.parseaddr(str(message["from"] or ""))[1],
            "to": email.utils.parseaddr(str(message["to"] or ""))[1],
            "body": "",
            "attachments": ["smime.p7m"],
        }
    shown = message.get_payload(0) if kind == "multipart/signed" else message
    part = shown.get_body(("plain",)) if shown.is_multipart() else shown
    body = part.get_content() if part is not None and part.get_content_maintype() == "text" else ""
    names = [p.get_filename() for p in shown.iter_attachments()] if shown.is_multipart() else []
    if kind == "multipart/signed":
        names.append("smime.p7s")
    return {
        "subject": str(message["subject"] or ""),
        "from": email.utils.parseaddr(str(message["from"] or ""))[1],
        "to": email.utils.parseaddr(str(message["to"] or ""))[1],
        "body": body,
        "attachments": [n for n in names if n],
    }


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    body: bytes


class _GmailHandler(http.server.SimpleHTTPRequestHandler):
    server_ref: GmailServer

    def log_message(self, format: str, *args: object) -> None:
        pass

    def end_headers(self) -> None:
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def _record(self, body: bytes = b"") -> None:
        self.server_ref.requests.append(Request(self.command, self.path, body))

    def do_GET(self) -> None:
        self._record()
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query)
        if query.get("view") == ["om"]:
            perm = query.get("permmsgid", [""])[0]
            raw = self.server_ref.raw_path(perm)
            if raw is None or not raw.exists():
                self.send_error(404, "no such message")
                return
            data = raw.read_bytes()
            self.send_response(200)
            self.send_header("Content-Type", "message/rfc822")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        if url.path == "/fixture/thread":
            perm = query.get("permmsgid", [""])[0]
            raw = self.server_ref.raw_path(perm)
            shown = rendering(raw.read_bytes()) if raw is not None and raw.exists() else None
            if shown is None:
                self.send_error(404, "no such message")
                return
            data = json.dumps(shown).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        super().do_GET()

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self._record(self.rfile.read(length))
        self.send_response(204)
        self.end_headers()


class GmailServer(WebmailServer):
    """WebmailServer at https://mail.google.com with Show original and a request log."""

    def __init__(self, workdir: Path, pages: Path = PAGES) -> None:
        super().__init__(workdir, pages, "mail.google.com")
        self.requests: list[Request] = []
        self.raw_dir = workdir / "raw"
        self.raw_dir.mkdir(parents=True, exist_ok=True)

    def raw_path(self, perm_id: str) -> Path | None:
        if not perm_id.startswith("msg-f:") or not perm_id[6:].isdigit():
            return None
        return self.raw_dir / f"{perm_id[6:]}.eml"

    def put_raw(self, perm_id: str, data: bytes) -> None:
        path = self.raw_path(perm_id)
        assert path is not None, perm_id
        path.write_bytes(data)

    def start(self) -> GmailServer:
        cert, key = self_signed(self.workdir / "tls", [self.host_name, "127.0.0.1"])
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        handler = type("Handler", (_GmailHandler,), {"server_ref": self})
        factory = functools.partial(handler, directory=str(self.pages))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), factory)
        server.daemon_threads = True
        server.socket = context.wrap_socket(server.socket, server_side=True)
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __enter__(self) -> GmailServer:
        return self.start()

    def all_bytes(self) -> bytes:
        """Every path and body the page sent, for 'the plaintext never left' checks."""
        return b"\n".join(r.path.encode() + b" " + r.body for r in self.requests)
