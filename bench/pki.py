"""PKI service figures under concurrent load from a second process on loopback (wrk, 64
connections), next to the floor: the same server (Starlette + uvicorn, same workers) answering
its static /health document.

- directory lookups per second and p99 latency (GET /certs/{address}, a real published
  certificate), SQLite and PostgreSQL, one and two workers;
- TSA tokens per second (POST /tsa with a real SHA-256 query).
- ACME orders completed per second (account, order, challenge, finalize, certificate
  download) with validation short-circuited, from 8 client processes, next to the same floor.
"""

from __future__ import annotations

import datetime
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

DURATION = "5s"
CONNECTIONS = 64
ADDRESS = "bench@example.test"
TSA_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/timestamp-query"
local f = io.open("{query}", "rb")
wrk.body = f:read("*all")
f:close()
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def publish(data: Path, db_url: str | None = None) -> None:
    """Issue and record a certificate pair for ADDRESS with the service's own CA, as ACME
    finalize does (run before the server starts, in this process)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from sqlalchemy import insert

    from shared_pki.ca import profile
    from shared_pki.service import config as service_config
    from shared_pki.service.ca import material as ca_state
    from shared_pki.service.storage.store import Store, certificates

    data.mkdir(parents=True, exist_ok=True)
    # One load generator is one client: lift the per-client limit for the measurement.
    (data / service_config.CONFIG_NAME).write_text("directory_rate_per_minute = 1000000000\n")
    config = service_config.load(data, {"db_url": db_url})
    hierarchy, _ = ca_state.load_or_create(config)
    store = Store(config.db_url)
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .add_extension(x509.SubjectAlternativeName([x509.RFC822Name(ADDRESS)]), False)
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.DER)
    )
    now = datetime.datetime.now(datetime.UTC)
    serial = profile.random_serial()
    der = profile.issue(
        profile.check_csr(csr, ADDRESS), hierarchy.issuing("intl"), serial=serial,
        not_before=now, days=30, crl_url=hierarchy.crl_url("intl-issuing"),
        aia_url=hierarchy.aia_url("intl-issuing"),
    )  # fmt: skip
    with store.transaction() as db:
        db.execute(
            insert(certificates).values(
                serial=f"{serial:x}", issuer="intl", address=ADDRESS, algorithm="ecdsa",
                not_before=now.timestamp() - 60, not_after=now.timestamp() + 86400 * 30,
                der=der, published=True,
            )
        )  # fmt: skip
    store.close()


def start(data: Path, port: int, workers: int, db_url: str | None) -> subprocess.Popen[bytes]:
    env = {**os.environ}
    database = ["--db", db_url] if db_url else []
    process = subprocess.Popen(
        [sys.executable, "-m", "native_host.cli", "pki", "serve", "--data", str(data),
         "--listen", f"127.0.0.1:{port}", "--workers", str(workers), *database],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                return process
        except OSError:
            time.sleep(0.1)  # still starting
    process.kill()
    raise RuntimeError(f"the PKI service did not come up: {process.communicate()[1][-2000:]!r}")


def wrk(url: str, script: Path | None = None) -> tuple[float, float]:
    """(requests per second, p99 latency in ms) from wrk --latency."""
    argv = ["wrk", "-t2", f"-c{CONNECTIONS}", f"-d{DURATION}", "--latency"]
    if script:
        argv += ["-s", str(script)]
    out = subprocess.run([*argv, url], capture_output=True, text=True, check=True).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    match = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    assert match, out
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[match.group(2)]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        raise RuntimeError(f"{errors.group(1)} failed responses from {url}")
    return rate, float(match.group(1)) * scale


ORDERS_PER_CLIENT = 15
CLIENTS = 8


def _client_orders(url: str) -> int:
    """One client process: register, then complete ORDERS_PER_CLIENT orders (each a fresh key
    and address, so no authorization reuse flatters the figure)."""
    import httpx
    from harness.acme_client import AcmeClient, new_key

    with httpx.Client(timeout=30) as http:
        client = AcmeClient(http, f"{url}/acme/directory", retry_bad_nonce=True)
        client.register()
        for n in range(ORDERS_PER_CLIENT):
            client.issue(f"user{os.getpid()}-{n}@example.test", new_key("p256"))
    return ORDERS_PER_CLIENT


def acme_orders(data: Path) -> float:
    """Orders completed per second against a short-circuit-validation server on data."""
    from concurrent.futures import ProcessPoolExecutor

    from harness.acme_client import ServerProcess

    with ServerProcess(data) as server, ProcessPoolExecutor(CLIENTS) as pool:
        list(pool.map(_client_orders, [server.url] * 2))  # warm up the workers
        start = time.perf_counter()
        done = sum(pool.map(_client_orders, [server.url] * CLIENTS))
        return done / (time.perf_counter() - start)


def measure(data: Path, script: Path, workers: int, db_url: str | None) -> list[tuple]:
    """(name, rate, p99, floor rate, floor p99) for the directory and the TSA."""
    port = free_port()
    server = start(data, port, workers, db_url)
    try:
        base = f"http://127.0.0.1:{port}"
        floor = wrk(f"{base}/health")
        lookup = wrk(f"{base}/certs/{ADDRESS}")
        tokens = wrk(f"{base}/tsa", script)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    return [("directory lookup", *lookup, *floor), ("TSA token", *tokens, *floor)]


def run(repeat: int = 1) -> list[str]:
    from harness.postgres import PostgresServer

    lines = [
        "| figure | database | workers | ours (req/s) | ours p99 | floor /health (req/s) "
        "| floor p99 | ratio |",
        "|---|---|---|---|---|---|---|---|",
    ]
    with (
        tempfile.TemporaryDirectory(prefix="autosmime-bench-pki-") as scratch,
        PostgresServer() as postgres,
    ):
        query = Path(scratch) / "q.tsq"
        (Path(scratch) / "data").write_bytes(b"bench")
        subprocess.run(["openssl", "ts", "-query", "-data", str(Path(scratch) / "data"),
                        "-sha256", "-cert", "-out", str(query)], check=True)  # fmt: skip
        script = Path(scratch) / "tsa.lua"
        script.write_text(TSA_SCRIPT.format(query=query))
        floor: tuple = ()
        for database, db_url in (("SQLite", None), ("PostgreSQL", postgres.url)):
            data = Path(scratch) / f"pki-{database}"
            publish(data, db_url)
            for workers in (1, 2):
                for name, rate, p99, floor_rate, floor_p99 in measure(
                    data, script, workers, db_url
                ):
                    floor = (floor_rate, floor_p99)
                    lines.append(
                        f"| {name} | {database} | {workers} | {rate:.0f} | {p99:.1f} ms "
                        f"| {floor_rate:.0f} | {floor_p99:.1f} ms | {rate / floor_rate:.2f}x |"
                    )
        orders = acme_orders(Path(scratch) / "acme")
        lines.append(
            f"| ACME orders completed (short-circuit validation, {CLIENTS} clients) | SQLite | 1 "
            f"| {orders:.1f} | - | {floor[0]:.0f} | {floor[1]:.1f} ms | {orders / floor[0]:.4f}x |"
        )
    return lines
