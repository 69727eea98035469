"""PKI service figures under concurrent load from a second process on loopback (wrk, 64
connections), next to the floor: the same server (Starlette + uvicorn, same workers) answering
its static /health document.

- directory lookups per second and p99 latency (GET /certs/{address}, a real published
  certificate), SQLite and PostgreSQL, one and two workers;
- TSA tokens per second (POST /tsa with a real SHA-256 query).
- ACME orders completed per second (account, order, challenge, finalize, certificate
  download) with validation short-circuited, from 8 client processes, next to the same floor.

Every figure is taken with the abuse limits on at their defaults (pki.toml; counted in the
database: new accounts per address, orders and pending authorizations per account, challenge
mails per address, directory misses per client) and the request size limit, none of them
reached by the load; the directory lookup and the ACME orders are measured once more with the
limits off (0), so the table shows what counting them costs.
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
    set_limits(data, on=True)
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


def set_limits(data: Path, *, on: bool) -> None:
    """pki.toml for the measurement: the per-process lookup cap lifted (one load generator is
    one client), the abuse limits at their defaults (on) or all 0 (off)."""
    from shared_pki.service import config as service_config

    lines = ["directory_rate_per_minute = 1000000000"]
    if not on:
        lines += [f"{knob} = 0" for knob in service_config.LIMITS]
    (data / service_config.CONFIG_NAME).write_text("\n".join(lines) + "\n")


def start(data: Path, port: int, workers: int, db_url: str | None) -> subprocess.Popen[bytes]:
    env = {**os.environ}
    database = ["--db", db_url] if db_url else []
    # The server's log goes to a file: a pipe nobody reads would block it once full.
    log = data / "server.log"
    with open(log, "ab") as handle:
        process = subprocess.Popen(
            [sys.executable, "-m", "native_host.cli", "pki", "serve", "--data", str(data),
             "--listen", f"127.0.0.1:{port}", "--workers", str(workers), *database],
            stdout=subprocess.DEVNULL, stderr=handle, env=env,
        )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                return process
        except OSError:
            time.sleep(0.1)  # still starting
    process.kill()
    raise RuntimeError(f"the PKI service did not come up: {log.read_bytes()[-2000:]!r}")


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


def acme_orders(data: Path, *, limits: bool = True) -> float:
    """Orders completed per second against a short-circuit-validation server on data, with the
    abuse limits at their defaults (not reached: 10 accounts from one address, 15 orders each,
    one pending authorization at a time, a fresh address per order) or off."""
    from concurrent.futures import ProcessPoolExecutor

    from harness.acme_client import ServerProcess

    from shared_pki.service import config as service_config

    off = {} if limits else {knob: 0 for knob in service_config.LIMITS}
    with ServerProcess(data, **off) as server, ProcessPoolExecutor(CLIENTS) as pool:
        list(pool.map(_client_orders, [server.url] * 2))  # warm up the workers
        start = time.perf_counter()
        done = sum(pool.map(_client_orders, [server.url] * CLIENTS))
        return done / (time.perf_counter() - start)


def measure(
    data: Path, script: Path, workers: int, db_url: str | None, *, tsa: bool = True
) -> list[tuple]:
    """(name, rate, p99, floor rate, floor p99) for the directory and the TSA."""
    port = free_port()
    server = start(data, port, workers, db_url)
    try:
        base = f"http://127.0.0.1:{port}"
        floor = wrk(f"{base}/health")
        lookup = wrk(f"{base}/certs/{ADDRESS}")
        tokens = wrk(f"{base}/tsa", script) if tsa else None
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    rows = [("directory lookup", *lookup, *floor)]
    return rows + ([("TSA token", *tokens, *floor)] if tokens else [])


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
        # The cost of the abuse limits: the same lookup with every limit off.
        data = Path(scratch) / "pki-SQLite"
        set_limits(data, on=False)
        for name, rate, p99, floor_rate, floor_p99 in measure(data, script, 1, None, tsa=False):
            lines.append(
                f"| {name}, abuse limits off | SQLite | 1 | {rate:.0f} | {p99:.1f} ms "
                f"| {floor_rate:.0f} | {floor_p99:.1f} ms | {rate / floor_rate:.2f}x |"
            )
        for limits in (True, False):
            orders = acme_orders(Path(scratch) / f"acme-{limits}", limits=limits)
            which = "abuse limits on" if limits else "abuse limits off"
            lines.append(
                f"| ACME orders completed (short-circuit validation, {CLIENTS} clients, {which}) "
                f"| SQLite | 1 | {orders:.1f} | - | {floor[0]:.0f} | {floor[1]:.1f} ms "
                f"| {orders / floor[0]:.4f}x |"
            )
    return lines
