"""Serving the application: uvicorn on one process, or on several processes each with its
own SO_REUSEPORT socket. What `autosmime pki serve` runs once the command line is read."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import socket
import sys
from pathlib import Path
from typing import Any

import uvicorn

from shared_pki.errors import PkiError
from shared_pki.service import app
from shared_pki.service import config as service_config
from shared_pki.service.ca import material
from shared_pki.service.storage.store import Store


def start(data: Path, chosen: dict[str, object]) -> int:
    """Load (or create) the configuration and the CA of data, print what a person needs
    (root fingerprints, the ACME directory), then serve until stopped."""
    try:
        config = service_config.load(data, chosen)
    except (ValueError, OSError) as error:
        print(f"autosmime pki serve: {error}", file=sys.stderr)
        return 2
    data.mkdir(parents=True, exist_ok=True, mode=0o700)
    written = service_config.write_default(config)
    # The schema is made here, once, before any worker starts: workers racing to create it in
    # one SQLite file made all but one fail at start (measured: 2 workers served like 1).
    Store(config.db_url).close()
    try:
        hierarchy, created = material.load_or_create(config)
    except PkiError as error:
        print(f"autosmime pki serve: {error.code}: {error.message}", file=sys.stderr)
        return 2
    print(f"{'Created' if created else 'Loaded'} the CA in {data / material.CA_FOLDER}")
    for family, fingerprint in hierarchy.root_fingerprints().items():
        print(f"  {family} root SHA-256 {fingerprint}")
    print(f"Configuration: {written}")
    print(f"ACME directory: {config.public_url}{config.acme_path}/directory")
    print(f"Certificate directory: {config.public_url}{config.certs_path}/ADDRESS")
    print(f"Time-stamp authority: {config.public_url}{config.tsa_path}", flush=True)
    os.environ[app.DATA_ENV] = str(data)
    os.environ[app.OVERRIDES_ENV] = json.dumps(chosen)
    serve_forever(config.listen_host, config.listen_port, config.workers)
    return 0


def _listening_socket(host: str, port: int, *, reuse_port: bool) -> socket.socket:
    """A bound listening socket with TCP_NODELAY (inherited by accepted connections on Linux:
    uvicorn 0.54 leaves it off on sockets it is handed, and every small response then waits
    ~40 ms for a delayed ACK). With reuse_port each worker binds its own socket and the kernel
    spreads connections over them; one shared socket let the first worker to wake accept every
    keep-alive connection of a burst (measured: 2 workers served like 1)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _uvicorn_config(host: str, port: int) -> Any:
    return uvicorn.Config(
        "shared_pki.service.app:app_from_environment",
        factory=True,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
    )


def _worker(host: str, port: int) -> None:
    """One server process with its own SO_REUSEPORT socket."""
    sock = _listening_socket(host, port, reuse_port=True)
    uvicorn.Server(_uvicorn_config(host, port)).run(sockets=[sock])


def serve_forever(host: str, port: int, workers: int) -> None:
    """Serve with one process, or with `workers` processes each on its own SO_REUSEPORT socket
    (stopped together on SIGTERM or SIGINT)."""
    if workers <= 1 or not hasattr(socket, "SO_REUSEPORT"):
        sock = _listening_socket(host, port, reuse_port=False)
        uvicorn.Server(_uvicorn_config(host, port)).run(sockets=[sock])
        return
    # Bind once here first, so a busy port fails at once and in words, not in every worker.
    _listening_socket(host, port, reuse_port=True).close()
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=_worker, args=(host, port)) for _ in range(workers)]
    for process in processes:
        process.start()
    stopping = False

    def stop(_signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for process in processes:
            if process.is_alive():
                process.terminate()  # SIGTERM: uvicorn shuts down gracefully

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for process in processes:
        process.join()
    if not stopping:
        raise SystemExit("autosmime pki serve: the server processes stopped unexpectedly")
