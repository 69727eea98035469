"""The PostgreSQL harness runs a real server with password auth, and stops what it started."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from harness import postgres as pg_harness
from harness.mail import HarnessError, port_is_open, reap_orphans, still_alive
from harness.postgres import PostgresServer

pytestmark = pytest.mark.postgres


def test_url_points_at_loopback(postgres: PostgresServer) -> None:
    url = urlsplit(postgres.url)
    assert url.scheme == "postgresql"
    assert (url.hostname, url.port) == ("127.0.0.1", postgres.port)
    assert (url.username, url.password) == (postgres.user, postgres.password)
    assert url.path == f"/{postgres.dbname}"


def test_create_insert_select(postgres: PostgresServer) -> None:
    out = postgres.psql(
        "CREATE TABLE harness_probe (id serial PRIMARY KEY, note text NOT NULL);"
        "INSERT INTO harness_probe (note) VALUES ('alpha'), ('beta');"
        "SELECT note FROM harness_probe ORDER BY id;"
        "DROP TABLE harness_probe;"
    )
    assert out.split() == ["alpha", "beta"]
    assert postgres.psql("SELECT current_database()").strip() == postgres.dbname


def test_sql_errors_raise(postgres: PostgresServer) -> None:
    with pytest.raises(HarnessError, match="no_such_table"):
        postgres.psql("SELECT * FROM no_such_table")


def test_wrong_password_refused(postgres: PostgresServer) -> None:
    right = postgres.password
    postgres.password = "wrong-password"
    try:
        with pytest.raises(HarnessError, match="password authentication failed"):
            postgres.psql("SELECT 1")
    finally:
        postgres.password = right


def test_stop_leaves_nothing_running(postgres: PostgresServer) -> None:
    server = PostgresServer().start()
    assert server.psql("SELECT 41 + 1").strip() == "42"
    processes = server.processes()
    assert len(processes) > 1  # postmaster + checkpointer, walwriter, ...
    root, port = server.root, server.port
    assert root is not None

    started = time.monotonic()
    server.stop()

    assert time.monotonic() - started < 10
    assert not port_is_open("127.0.0.1", port)
    assert still_alive(processes) == []
    assert not root.exists()
    server.stop()  # idempotent
    # Only its own cluster was stopped: the session's server still answers.
    assert postgres.psql("SELECT 1").strip() == "1"


def test_busy_port_fails_clearly() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        server = PostgresServer(port=busy.getsockname()[1])
        with pytest.raises(HarnessError, match="could not bind"):
            server.start()
    assert server.root is None and server.processes() == {}


ORPHAN_SCRIPT = """
import json, time
from harness.postgres import PostgresServer
server = PostgresServer().start()
print(json.dumps({"root": str(server.root), "processes": server.processes()}), flush=True)
time.sleep(60)
"""


def test_orphans_of_a_killed_run_are_reaped(postgres: PostgresServer) -> None:
    tests_dir = Path(__file__).resolve().parents[1]
    child = subprocess.Popen(
        [sys.executable, "-c", ORPHAN_SCRIPT],
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(tests_dir)},
    )
    try:
        assert child.stdout is not None
        info = json.loads(child.stdout.readline())
    finally:
        child.kill()  # like a CI timeout: no stop(), no cleanup
        child.wait()
    processes = {int(pid): start for pid, start in info["processes"].items()}
    assert still_alive(processes), "the orphaned cluster should still be running"

    killed = reap_orphans(pg_harness.TEMP_PREFIX, pg_harness._postgres_folder)

    # Transient children (a login process, a backend) may have exited on their own.
    leader = next(iter(processes))  # process_tree lists the root first
    assert leader in killed, "the orphaned postmaster was not killed"
    deadline = time.monotonic() + 5
    while still_alive(processes) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert still_alive(processes) == []
    assert not Path(info["root"]).exists()
    # A cluster whose test process is alive (ours) is not an orphan.
    assert postgres.psql("SELECT 1").strip() == "1"
