"""An HTTPS server on loopback that plays a webmail origin (https://mail.google.com) for Chromium.

Chromium maps the real host name to it with --host-resolver-rules, so the extension's unmodified
match patterns apply and its content script runs on our fixture pages.
"""

from __future__ import annotations

import functools
import http.server
import ssl
import threading
from pathlib import Path

from harness.tls import self_signed

PAGES = Path(__file__).resolve().parent.parent / "e2e" / "pages"


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass

    def end_headers(self) -> None:
        self.send_header("Cache-Control", "no-store")
        super().end_headers()


class WebmailServer:
    """Serves a folder of fixture pages over TLS on 127.0.0.1 at a free port."""

    def __init__(self, workdir: Path, pages: Path = PAGES, host_name: str = "mail.google.com"):
        self.host_name = host_name
        self.pages = pages
        self.workdir = workdir
        self._server: http.server.ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> WebmailServer:
        cert, key = self_signed(self.workdir / "tls", [self.host_name, "127.0.0.1"])
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        handler = functools.partial(_QuietHandler, directory=str(self.pages))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        server.daemon_threads = True
        server.socket = context.wrap_socket(server.socket, server_side=True)
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, daemon=True)
        self._thread.start()
        return self

    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.server_address[1]

    @property
    def resolver_rule(self) -> str:
        return f"MAP {self.host_name} 127.0.0.1:{self.port}"

    def url(self, path: str = "/") -> str:
        return f"https://{self.host_name}{path}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> WebmailServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
