"""`autosmime pki serve` as an operator runs it: first start creates and prints the CA, the
service answers on its port, a restart loads the same CA, and SIGTERM stops it cleanly."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get(port: int, path: str) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def serve(data: Path, port: int, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "native_host.cli", "pki", "serve", "--data", str(data),
         "--listen", f"127.0.0.1:{port}", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip


def wait_until_up(process: subprocess.Popen[str], port: int, deadline: float = 30) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if process.poll() is not None:
            raise AssertionError(f"serve exited: {process.stderr.read() if process.stderr else ''}")
        try:
            if get(port, "/health")[0] == 200:
                return
        except OSError:
            time.sleep(0.05)  # connection refused: the server is still starting
    raise AssertionError("the service did not come up")


def stop(process: subprocess.Popen[str]) -> str:
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=20)
    # uvicorn shuts down gracefully, then re-raises the signal so the exit status says SIGTERM.
    assert process.returncode in (0, -signal.SIGTERM), err
    assert "Traceback" not in err, err
    return out


def test_first_start_creates_the_ca_and_a_restart_loads_it(tmp_path: Path) -> None:
    data, port = tmp_path / "pki", free_port()
    first = serve(data, port)
    wait_until_up(first, port)
    status, roots = get(port, "/ca/roots.pem")
    assert status == 200 and roots.count(b"BEGIN CERTIFICATE") == 2
    out = stop(first)
    assert "Created the CA" in out and out.count("root SHA-256") == 2
    assert (data / "pki.toml").exists() and (data / "ca" / "hierarchy.json").exists()
    assert oct((data / "ca" / "intl-root.key").stat().st_mode & 0o777) == "0o600"
    assert b"PRIVATE KEY" not in (data / "ca" / "intl-root.key").read_bytes()
    second = serve(data, port, "--workers", "2")
    wait_until_up(second, port)
    assert get(port, "/ca/roots.pem")[1] == roots
    assert "Loaded the CA" in stop(second)


def test_bad_listen_address_is_refused_in_words(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "native_host.cli", "pki", "serve", "--data", str(tmp_path),
         "--listen", "nonsense"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert done.returncode != 0 and "HOST:PORT" in done.stderr
