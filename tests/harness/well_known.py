"""A mail domain's web server on loopback for discovery tests: HTTPS for `example.test` (a
certificate under a test CA) serving `/.well-known/autosmime.json`, reached through an HTTP
CONNECT proxy that maps example.test:443 to it.

Nothing in the product is bent for the test: the host fetches
https://example.test/.well-known/autosmime.json with the standard library, which honours
`https_proxy` (the tunnel: only the network path is redirected, TLS runs end to end with the
real name) and `SSL_CERT_FILE` (the test CA, as an organisation's own CA would be installed).
`env()` is what a host process needs for that.

    with WellKnownSite(tmp_path, "example.test") as site:
        site.document = {...}            # or site.status = 404
        env = site.env()                 # https_proxy, SSL_CERT_FILE, no_proxy
"""

from __future__ import annotations

import contextlib
import http.server
import json
import select
import socket
import socketserver
import ssl
import threading
from pathlib import Path
from types import TracebackType
from typing import Any

from harness.tls import self_signed


class WellKnownSite:
    def __init__(self, folder: Path, domain: str = "example.test") -> None:
        self.folder = folder
        self.domain = domain
        self.document: Any = None
        self.status = 404
        self.requests: list[str] = []
        self._https: http.server.ThreadingHTTPServer | None = None
        self._proxy: socketserver.ThreadingTCPServer | None = None

    # -- what a client needs ------------------------------------------------------------------

    @property
    def ca_file(self) -> Path:
        return self.folder / "tls" / "cert.pem"

    @property
    def proxy_url(self) -> str:
        assert self._proxy is not None
        return f"http://127.0.0.1:{self._proxy.server_address[1]}"

    @property
    def https_port(self) -> int:
        assert self._https is not None
        return self._https.server_address[1]

    def env(self) -> dict[str, str]:
        return {
            "https_proxy": self.proxy_url,
            "HTTPS_PROXY": self.proxy_url,
            "no_proxy": "127.0.0.1,localhost",
            "NO_PROXY": "127.0.0.1,localhost",
            "SSL_CERT_FILE": str(self.ca_file),
        }

    # -- the servers --------------------------------------------------------------------------

    def __enter__(self) -> WellKnownSite:
        cert, key = self_signed(self.folder / "tls", [self.domain])
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        site = self

        class Page(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                site.requests.append(self.path)
                if self.path != "/.well-known/autosmime.json" or site.document is None:
                    self.send_error(site.status if site.document is None else 404)
                    return
                body = (
                    site.document
                    if isinstance(site.document, bytes)
                    else json.dumps(site.document).encode()
                )
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args: object) -> None:
                pass

        https = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page)
        https.daemon_threads = True
        https.socket = context.wrap_socket(https.socket, server_side=True)
        self._https = https
        threading.Thread(target=https.serve_forever, daemon=True).start()

        target = ("127.0.0.1", self.https_port)
        domain = self.domain

        class Tunnel(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                request = self.rfile.readline().decode("latin-1").split()
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass  # the request's header fields
                if len(request) < 2 or request[0] != "CONNECT" or request[1] != f"{domain}:443":
                    self.wfile.write(b"HTTP/1.1 403 Forbidden\r\n\r\n")
                    return
                with socket.create_connection(target) as upstream:
                    self.wfile.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    self.wfile.flush()
                    _pipe(self.connection, upstream)

        proxy = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Tunnel)
        proxy.daemon_threads = True
        self._proxy = proxy
        threading.Thread(target=proxy.serve_forever, daemon=True).start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        for server in (self._proxy, self._https):
            if server is not None:
                server.shutdown()
                server.server_close()


def _pipe(a: socket.socket, b: socket.socket) -> None:
    """Copy both ways until either side closes."""
    sockets = [a, b]
    with contextlib.suppress(OSError):
        while True:
            readable, _, _ = select.select(sockets, [], [], 30)
            if not readable:
                return
            for source in readable:
                data = source.recv(65536)
                if not data:
                    return
                (b if source is a else a).sendall(data)
