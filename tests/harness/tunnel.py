"""An HTTP CONNECT proxy on loopback that tunnels chosen host:port pairs to local servers and
refuses everything else: Firefox's stand-in for Chromium's --host-resolver-rules.

With it a page at https://mail.google.com/ (port 443, so the origin is exactly the one the
add-on's manifest names) reaches the Gmail-shaped fixture on its free port. TLS stays end to end
between the browser and the fixture; the proxy only moves bytes. Anything not mapped (a
browser's background traffic) gets 403, so the test browser stays offline.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading


class ConnectTunnel:
    """Maps "host:port" (as in the CONNECT line) to ("127.0.0.1", local_port)."""

    def __init__(self, routes: dict[str, tuple[str, int]]) -> None:
        self.routes = {key.lower(): value for key, value in routes.items()}
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, name="connect-tunnel", daemon=True)
        self._closed = threading.Event()
        self.refused: list[str] = []

    def start(self) -> ConnectTunnel:
        self._thread.start()
        return self

    def close(self) -> None:
        self._closed.set()
        with contextlib.suppress(OSError):
            self._server.close()

    def __enter__(self) -> ConnectTunnel:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _serve(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(client,), daemon=True).start()

    def _handle(self, client: socket.socket) -> None:
        with client:
            head = b""
            while b"\r\n\r\n" not in head and len(head) < 16384:
                chunk = client.recv(4096)
                if not chunk:
                    return
                head += chunk
            request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
            method, _, rest = request_line.partition(" ")
            target = rest.split(" ", 1)[0].lower()
            route = self.routes.get(target) if method.upper() == "CONNECT" else None
            if route is None:
                self.refused.append(request_line)
                client.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
                return
            try:
                upstream = socket.create_connection(route, timeout=10)
            except OSError:
                client.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
                return
            with upstream:
                upstream.settimeout(None)
                client.sendall(b"HTTP/1.1 200 Connection Established\r\n\r\n")
                leftover = head.split(b"\r\n\r\n", 1)[1]
                if leftover:
                    upstream.sendall(leftover)
                self._pump(client, upstream)

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(a, selectors.EVENT_READ, b)
            selector.register(b, selectors.EVENT_READ, a)
            while not self._closed.is_set():
                for key, _ in selector.select(timeout=1.0):
                    source: socket.socket = key.fileobj  # type: ignore[assignment]
                    try:
                        data = source.recv(65536)
                        if not data:
                            return
                        key.data.sendall(data)
                    except OSError:
                        return
