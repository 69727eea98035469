"""A throw-away PostgreSQL cluster on a loopback port, for tests that need a real database.

`initdb` into a temporary folder, `postgres` as a non-root user (the server refuses root),
password (SCRAM) authentication even on loopback so that URLs carry real credentials, and a stop
that ends exactly the processes this object started.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import secrets
import shutil
import signal
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from .mail import (
    HarnessError,
    free_port,
    make_owned_tempdir,
    process_tree,
    reap_orphans,
    stop_process_tree,
    tail,
    wait_until,
)

APT_HINT = "apt-get install -y postgresql"
RUN_AS = "postgres"  # used when we are root; as any other user we run as ourselves
START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
TEMP_PREFIX = "autosmime-pg-"


def _postgres_folder(argv: list[str]) -> Path | None:
    """The folder of a `postgres -D <folder>/data ...` started by PostgresServer."""
    if argv and argv[0].endswith("/postgres") and "-D" in argv[:-1]:
        data = Path(argv[argv.index("-D") + 1])
        return data.parent if data.name == "data" else None
    return None


def postgres_bin_dir() -> Path:
    """The highest-versioned /usr/lib/postgresql/*/bin that holds the server binaries."""
    candidates = []
    for bin_dir in Path("/usr/lib/postgresql").glob("*/bin"):
        if (bin_dir / "postgres").exists() and (bin_dir / "initdb").exists():
            version = tuple(int(p) for p in re.findall(r"\d+", bin_dir.parent.name))
            candidates.append((version, bin_dir))
    if not candidates:
        raise HarnessError(
            "no PostgreSQL server binaries under /usr/lib/postgresql/*/bin "
            f"(need initdb and postgres); run: {APT_HINT}"
        )
    return max(candidates)[1]


class PostgresServer:
    """One PostgreSQL cluster on 127.0.0.1 with one database; `url` is what a client needs."""

    host = "127.0.0.1"

    def __init__(
        self, *, port: int = 0, user: str = "autosmime", dbname: str = "autosmime_test"
    ) -> None:
        self._requested_port = port
        self.port = port
        self.user = user
        # Hex only, so the URL needs no escaping.
        self.password = secrets.token_hex(16)
        self.dbname = dbname
        self.root: Path | None = None
        self.bin_dir: Path | None = None
        self.version = ""
        self._proc: subprocess.Popen[bytes] | None = None
        self._run_as: dict[str, Any] = {}

    @property
    def url(self) -> str:
        """postgresql://user:password@127.0.0.1:PORT/dbname"""
        return f"postgresql://{self.user}:{self.password}@{self.host}:{self.port}/{self.dbname}"

    def url_for(self, dbname: str) -> str:
        """The same server and credentials, another database."""
        return f"postgresql://{self.user}:{self.password}@{self.host}:{self.port}/{dbname}"

    @property
    def data_dir(self) -> Path:
        return self._path("data")

    @property
    def log_path(self) -> Path:
        return self._path("postgres.log")

    def _path(self, name: str) -> Path:
        if self.root is None:
            raise HarnessError("PostgresServer is not started")
        return self.root / name

    def __enter__(self) -> PostgresServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _bin(self, name: str) -> str:
        assert self.bin_dir is not None
        return str(self.bin_dir / name)

    def start(self) -> PostgresServer:
        """initdb, start postgres, wait until it accepts connections, create the database."""
        if self.root is not None:
            raise HarnessError("PostgresServer already started")
        self.bin_dir = postgres_bin_dir()
        self.version = subprocess.run(
            [self._bin("postgres"), "--version"], capture_output=True, text=True, check=True
        ).stdout.strip()
        owner_uid, owner_gid = os.geteuid(), os.getegid()
        if os.geteuid() == 0:
            try:
                account = pwd.getpwnam(RUN_AS)
            except KeyError:
                raise HarnessError(
                    f"PostgreSQL refuses to run as root and there is no `{RUN_AS}` user to run "
                    f"it as; create one (useradd --system {RUN_AS}) or run the tests as non-root"
                ) from None
            owner_uid, owner_gid = account.pw_uid, account.pw_gid
            self._run_as = {"user": owner_uid, "group": owner_gid, "extra_groups": []}

        reap_orphans(TEMP_PREFIX, _postgres_folder)
        self.root = make_owned_tempdir(TEMP_PREFIX)
        try:
            os.chown(self.root, owner_uid, owner_gid)
            self._initdb(owner_uid, owner_gid)
            self._start_with_retries()
            self.psql(f'CREATE DATABASE "{self.dbname}"', dbname="postgres")
        except BaseException:
            self.stop()
            raise
        return self

    def _run(self, args: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        """Run a PostgreSQL tool as the cluster owner, with a clear error on failure."""
        result = subprocess.run(
            args,
            capture_output=True,
            text=True,
            cwd=self.root,
            check=False,
            **self._run_as,
            **kwargs,
        )
        if result.returncode != 0:
            raise HarnessError(
                f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout}{result.stderr}"
            )
        return result

    def _initdb(self, uid: int, gid: int) -> None:
        pwfile = self._path("pwfile")
        pwfile.write_text(self.password + "\n")
        os.chown(pwfile, uid, gid)
        pwfile.chmod(0o600)
        self._run(
            [
                self._bin("initdb"),
                "--pgdata",
                str(self.data_dir),
                "--username",
                self.user,
                f"--pwfile={pwfile}",
                "--auth=scram-sha-256",
                "--encoding=UTF8",
                "--no-locale",
                "--no-sync",  # a test cluster need not survive a power cut
            ]
        )
        pwfile.unlink()

    def _start_with_retries(self) -> None:
        """A probed free port can be taken before postgres binds it: retry with another."""
        attempts = 1 if self._requested_port else 3
        for attempt in range(attempts):
            try:
                self._start_postgres()
                return
            except HarnessError as exc:
                if attempt + 1 == attempts or "could not bind" not in str(exc):
                    raise
                self._stop_postgres()

    def _start_postgres(self) -> None:
        self.port = self._requested_port or free_port(self.host)
        with self.log_path.open("ab") as log:
            # Own session: a Ctrl-C in the terminal must not reach it before our orderly stop.
            self._proc = subprocess.Popen(
                [
                    self._bin("postgres"),
                    "-D",
                    str(self.data_dir),
                    "-p",
                    str(self.port),
                    "-c",
                    f"listen_addresses={self.host}",
                    "-c",
                    f"unix_socket_directories={self.root}",
                    "-c",
                    "fsync=off",
                    "-c",
                    "synchronous_commit=off",
                    "-c",
                    "full_page_writes=off",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                cwd=self.root,
                start_new_session=True,
                **self._run_as,
            )
        proc = self._proc

        pid_file = self.data_dir / "postmaster.pid"

        def accepting() -> bool:
            # Our own postmaster.pid says "ready" (8th line) before we ask pg_isready, which
            # speaks the protocol (0 = accepting): a foreign listener on the port cannot fool
            # the first, and does not make us wait for pg_isready's timeout.
            try:
                lines = pid_file.read_text().splitlines()
            except FileNotFoundError:
                return False
            if len(lines) < 8 or lines[7].strip() != "ready":
                return False
            return (
                subprocess.run(
                    [
                        self._bin("pg_isready"),
                        "-q",
                        "-h",
                        self.host,
                        "-p",
                        str(self.port),
                        "-d",
                        "postgres",
                        "-t",
                        "2",
                    ],
                    check=False,
                ).returncode
                == 0
            )

        wait_until(
            accepting,
            f"PostgreSQL on {self.host}:{self.port}",
            time.monotonic() + START_TIMEOUT,
            explain=lambda: f"PostgreSQL log ({self.log_path}):\n{tail(self.log_path)}",
            alive=lambda: proc.poll() is None,
        )

    def psql(self, sql: str, *, dbname: str | None = None) -> str:
        """Run SQL through `psql` over TCP with the password (no Python driver needed).

        Returns unaligned, tuples-only output; raises HarnessError on any SQL error.
        """
        url = self.url_for(dbname or self.dbname)
        assert self.bin_dir is not None
        result = subprocess.run(
            [self._bin("psql"), url, "-X", "-w", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"],
            input=sql,
            capture_output=True,
            text=True,
            check=False,
            env={**os.environ, "PGCONNECT_TIMEOUT": "5"},
        )
        if result.returncode != 0:
            raise HarnessError(f"psql failed ({result.returncode}): {result.stderr.strip()}")
        return result.stdout

    def processes(self) -> dict[int, int]:
        """This cluster's live processes (postmaster and children), as pid -> start time."""
        return process_tree(self._proc.pid) if self._proc else {}

    def stop(self) -> None:
        """Stop exactly the cluster start() started, then delete its folder. Idempotent."""
        self._stop_postgres()
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None

    def _stop_postgres(self) -> None:
        if self._proc is None:
            return
        # Record the children now: they call setsid() and are orphaned once the postmaster exits.
        known = process_tree(self._proc.pid)
        if self._proc.poll() is None:
            # Should pg_ctl fail, the SIGINT ("fast" shutdown) and SIGKILL below still stop it.
            with contextlib.suppress(HarnessError):
                self._run(
                    [
                        self._bin("pg_ctl"),
                        "stop",
                        "-D",
                        str(self.data_dir),
                        "-m",
                        "fast",
                        "-w",
                        "-t",
                        str(int(STOP_TIMEOUT)),
                    ]
                )
        stop_process_tree(self._proc, STOP_TIMEOUT, signal.SIGINT, known)
        self._proc = None
