"""A real mail stack on loopback: Dovecot (IMAP, IMAPS, LMTP) plus an aiosmtpd submission server.

Tests talk to real servers so that protocol details (LOGIN failures, IDLE pushes, STARTTLS, the
delivery path SMTP -> LMTP -> maildir) are exercised as a user's webmail would exercise them.
Everything lives in one temporary folder and on free loopback ports, so several stacks (and any
system Dovecot) can run side by side. See /work/shared/REFERENCE.md, "A real mail stack".
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import os
import pwd
import re
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from imapclient import IMAPClient

from harness.tls import self_signed

DOMAIN = "example.test"
#: Fixed, known test accounts: login name is the full address.
USERS: dict[str, str] = {
    f"alice@{DOMAIN}": "alice-password-1",
    f"bob@{DOMAIN}": "bob-password-2",
    f"carol@{DOMAIN}": "carol-password-3",
    # The page-boundary tests' would-be hidden recipient (a certificate, a mailbox, no browser).
    f"eve@{DOMAIN}": "eve-password-4",
}
APT_HINT = "apt-get install -y dovecot-imapd dovecot-lmtpd"
MAIL_USER = "mail"  # Dovecot refuses to store mail as root; Debian's `mail` is uid 8.
START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0
# A clean Dovecot stop takes about 1.1 s, but an imap-login process that served a connection
# can keep the master waiting 5 s more; the stack is throw-away (maildir is crash-safe), so
# whatever still runs after this grace period is killed.
DOVECOT_STOP_GRACE = 1.5
TEMP_PREFIX = "autosmime-mail-"

# aiosmtpd 1.4 warns on every successful AUTH about its own use of a deprecated attribute.
logging.getLogger("mail.log").addFilter(
    lambda record: "login_data is deprecated" not in record.getMessage()
)


class HarnessError(RuntimeError):
    """A service of the test harness could not be started or used; the message says why."""


# --------------------------------------------------------------------------------------------
# Small helpers shared with postgres.py


def free_port(host: str = "127.0.0.1") -> int:
    """Ask the kernel for a currently free TCP port (a tiny race remains until it is bound)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_is_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """True if something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def tail(path: Path, lines: int = 30) -> str:
    """The last lines of a log file, for error messages that explain a failed start."""
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"<cannot read {path}: {exc}>"
    return "\n".join(text.splitlines()[-lines:]) or f"<{path} is empty>"


def wait_until(
    check: Callable[[], bool],
    what: str,
    deadline: float,
    explain: Callable[[], str] = lambda: "",
    alive: Callable[[], bool] = lambda: True,
) -> None:
    """Poll `check` until it is true; fail clearly on the deadline or if the process died."""
    last_error = ""
    while True:
        # Liveness first and again after a good check: with a busy port, the answer may come
        # from whatever else holds the port while our server has already died.
        if not alive():
            raise HarnessError(f"{what}: the process exited during start-up.\n{explain()}")
        try:
            if check() and alive():
                return
        except OSError as exc:
            last_error = f"{type(exc).__name__}: {exc}"
        if time.monotonic() > deadline:
            raise HarnessError(f"{what}: not ready in time ({last_error}).\n{explain()}")
        time.sleep(0.02)


def _proc_table() -> dict[int, tuple[str, int, int]]:
    """pid -> (state, ppid, start time) for every process, read from /proc in one sweep."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # Fields after the parenthesised command name: state, ppid, ..., starttime (22nd field).
        fields = stat[stat.rindex(")") + 2 :].split()
        table[int(entry.name)] = (fields[0], int(fields[1]), int(fields[19]))
    return table


def process_tree(root: int) -> dict[int, int]:
    """Live processes descending from `root` (itself first), as pid -> start time.

    The start time makes the record safe against pid reuse. We follow parent links rather than
    process groups because PostgreSQL's children call setsid() and leave the group.
    """
    table = _proc_table()
    found: dict[int, int] = {}
    todo = [root]
    while todo:
        pid = todo.pop()
        if pid in found or pid not in table or table[pid][0] == "Z":
            continue
        found[pid] = table[pid][2]
        todo.extend(child for child, (_, ppid, _) in table.items() if ppid == pid)
    return found


def still_alive(processes: dict[int, int]) -> list[int]:
    """Which of the recorded processes (pid -> start time) still run (zombies count as gone)."""
    table = _proc_table()
    return [
        pid
        for pid, started in processes.items()
        if pid in table and table[pid][2] == started and table[pid][0] != "Z"
    ]


OWNER_FILE = "owner"


def make_owned_tempdir(prefix: str) -> Path:
    """A temporary folder that records which test process owns it (see reap_orphans)."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    me = os.getpid()
    (root / OWNER_FILE).write_text(f"{me} {_proc_table()[me][2]}\n")
    return root


def reap_orphans(prefix: str, folder_of: Callable[[list[str]], Path | None]) -> list[int]:
    """Kill servers left behind by a test run that died without stop() (SIGKILL, CI timeout).

    A server counts as an orphan only if `folder_of(its argv)` is one of our `prefix` folders
    and the test process recorded in that folder's owner file is gone, so servers of test runs
    still going on (other sessions share this machine) and any other server are left alone.
    Returns the pids killed.
    """
    table = _proc_table()
    killed: list[int] = []
    for pid in list(table):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        folder = folder_of(argv)
        if folder is None or not folder.name.startswith(prefix):
            continue
        try:
            owner_pid, owner_start = map(int, (folder / OWNER_FILE).read_text().split())
        except (OSError, ValueError):
            continue
        if owner_pid in table and table[owner_pid][2] == owner_start:
            continue  # its test run is alive
        for victim in process_tree(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(victim, signal.SIGKILL)
                killed.append(victim)
        shutil.rmtree(folder, ignore_errors=True)
    return killed


def _dovecot_folder(argv: list[str]) -> Path | None:
    """The stack folder of a `dovecot -F -c <folder>/dovecot.conf` started by MailStack."""
    if len(argv) >= 4 and argv[0].endswith("dovecot") and argv[1:3] == ["-F", "-c"]:
        conf = Path(argv[3])
        return conf.parent if conf.name == "dovecot.conf" else None
    return None


def stop_process_tree(
    proc: subprocess.Popen[bytes],
    timeout: float,
    sig: signal.Signals = signal.SIGTERM,
    known: dict[int, int] | None = None,
    grace: float | None = None,
) -> None:
    """Ask the leader we started to stop (`sig`); after `grace` s SIGKILL what is left of its tree.

    Only processes recorded as descendants of our own leader are ever signalled, so another
    Dovecot or PostgreSQL on the machine is never touched.
    """
    recorded = dict(known or {})
    recorded.update(process_tree(proc.pid))
    if proc.poll() is None:
        proc.send_signal(sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=timeout if grace is None else grace)
    recorded.update(process_tree(proc.pid))
    for pid in still_alive(recorded):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    proc.wait(timeout=timeout)
    deadline = time.monotonic() + timeout
    while still_alive(recorded) and time.monotonic() < deadline:
        time.sleep(0.02)


# --------------------------------------------------------------------------------------------
# Dovecot discovery and configuration


def dovecot_binary() -> str:
    """Path of the dovecot binary, or a clear error telling how to install it."""
    found = shutil.which("dovecot") or shutil.which("dovecot", path="/usr/sbin:/sbin")
    if not found:
        raise HarnessError(f"Dovecot is not installed; run: {APT_HINT}")
    return found


def check_dovecot_version(version_output: str) -> tuple[int, int]:
    """Accept only Dovecot 2.3: 2.4 (Debian 13) changed the configuration syntax."""
    match = re.match(r"\s*(\d+)\.(\d+)", version_output)
    if not match:
        raise HarnessError(f"cannot parse `dovecot --version` output: {version_output!r}")
    version = (int(match[1]), int(match[2]))
    if version != (2, 3):
        raise HarnessError(
            f"Dovecot {version_output.strip()} found, but the test harness writes a Dovecot 2.3 "
            "configuration (Debian 12); Dovecot 2.4 (Debian 13) changed the syntax. "
            "Port tests/harness/mail.py to it."
        )
    return version


DOVECOT_CONF = """\
# Written by tests/harness/mail.py for one MailStack; Dovecot 2.3 syntax.
base_dir = {run}
state_dir = {state}
instance_name = {instance}
log_path = {log}
listen = 127.0.0.1
protocols = imap lmtp
shutdown_clients = yes

ssl = yes
ssl_cert = <{cert}
ssl_key = <{key}

disable_plaintext_auth = no
auth_mechanisms = plain login
auth_verbose = yes
# Tests provoke failed logins on purpose; the default 2 s reply delay would only slow them.
auth_failure_delay = 0
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%Lu {passwd}
}}
userdb {{
  driver = passwd-file
  args = username_format=%Lu {passwd}
}}
first_valid_uid = {uid}
last_valid_uid = {uid}
first_valid_gid = {gid}
last_valid_gid = {gid}
mail_location = maildir:~/Maildir

protocol lmtp {{
  postmaster_address = postmaster@{domain}
}}

service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap_port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {imaps_port}
    ssl = yes
  }}
}}
service lmtp {{
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {lmtp_port}
  }}
}}
# The per-IP auth penalty also hits 127.0.0.1: after one failed login every login would wait
# about 4 s. Disabling its socket turns the penalty off.
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
"""


# --------------------------------------------------------------------------------------------
# SMTP submission server (aiosmtpd) that delivers through Dovecot LMTP


@dataclass
class RelayedMessage:
    """A message an authenticated user sent outside DOMAIN: kept for tests, not delivered."""

    mail_from: str
    rcpt_tos: list[str]
    content: bytes


@dataclass
class _SmtpHandler:
    """aiosmtpd hooks: refuse relaying for strangers, deliver local mail via LMTP before 250."""

    users: dict[str, str]
    host: str
    lmtp_port: int
    relayed: list[RelayedMessage] = field(default_factory=list)

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        """Local users are accepted from anyone (we are their MX); other domains need AUTH."""
        domain = address.rpartition("@")[2].lower()
        if domain == DOMAIN:
            if address.lower() not in self.users:
                return "550 5.1.1 No such user here"
        elif not session.authenticated:
            return "554 5.7.1 Relay access denied"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        """Answer 250 only after Dovecot has stored the mail, so tests never have to wait."""
        content = envelope.original_content or b""
        local = [r for r in envelope.rcpt_tos if r.rpartition("@")[2].lower() == DOMAIN]
        remote = [r for r in envelope.rcpt_tos if r not in local]
        loop = asyncio.get_running_loop()
        failures = await loop.run_in_executor(
            None, self._deliver, envelope.mail_from or "", local, content
        )
        if failures:
            return f"554 5.3.0 LMTP delivery failed: {failures}"
        if remote:
            self.relayed.append(RelayedMessage(envelope.mail_from or "", remote, content))
        return "250 2.0.0 Delivered"

    def _deliver(self, mail_from: str, rcpts: list[str], content: bytes) -> dict[str, str]:
        """One LMTP transaction per recipient: smtplib reads only one reply after DATA."""
        failures: dict[str, str] = {}
        if not rcpts:
            return failures
        with smtplib.LMTP(self.host, self.lmtp_port, timeout=30) as lmtp:
            for rcpt in rcpts:
                try:
                    lmtp.sendmail(mail_from, [rcpt], content)
                except smtplib.SMTPException as exc:
                    failures[rcpt] = str(exc)
                    lmtp.rset()
        return failures


def _authenticator(users: dict[str, str]) -> Callable[..., AuthResult]:
    """AUTH PLAIN/LOGIN against the same accounts Dovecot knows."""

    def authenticate(
        server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        login = auth_data.login.decode("utf-8", "replace").lower()
        expected = users.get(login)
        ok = expected is not None and hmac.compare_digest(
            expected.encode(), bytes(auth_data.password)
        )
        if not ok:
            # handled=False makes aiosmtpd answer 535; its default (True) sends no reply at all
            # and the client hangs until its timeout.
            return AuthResult(success=False, handled=False)
        return AuthResult(success=True, auth_data=login)

    return authenticate


class _SmtpServerThread:
    """An aiosmtpd server on its own event loop thread.

    We bind the listening socket ourselves, in the caller's thread: aiosmtpd's Controller hangs
    (instead of failing) when its port is busy, whereas our bind raises at once.
    """

    def __init__(self, sock: socket.socket, factory: Callable[[asyncio.AbstractEventLoop], SMTP]):
        self._sock = sock
        self._factory = factory
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="harness-smtp", daemon=True)

    def start(self, timeout: float) -> None:
        self._thread.start()
        if not self._ready.wait(timeout):
            raise HarnessError("SMTP server thread did not come up in time")
        if self._error is not None:
            raise HarnessError(f"SMTP server failed to start: {self._error!r}")

    def _run(self) -> None:
        loop = self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            server = loop.run_until_complete(
                loop.create_server(lambda: self._factory(loop), sock=self._sock)
            )
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            server.close()
            tasks = asyncio.all_tasks(loop)
            for task in tasks:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            loop.run_until_complete(server.wait_closed())
            loop.run_until_complete(loop.shutdown_default_executor())
            loop.close()

    def stop(self, timeout: float) -> None:
        if self._loop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread.is_alive():
            self._thread.join(timeout)
        self._sock.close()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()


# --------------------------------------------------------------------------------------------
# The stack


class MailStack:
    """Dovecot (IMAP, IMAPS, LMTP) + SMTP submission on loopback, for one test session.

    Ports default to free ones (0); pass a number to pin one (tests use that to prove a busy port
    fails fast). `smtp_auth_require_tls` mirrors real servers: AUTH only after STARTTLS.
    """

    host = "127.0.0.1"

    def __init__(
        self,
        *,
        imap_port: int = 0,
        imaps_port: int = 0,
        lmtp_port: int = 0,
        smtp_port: int = 0,
        smtp_auth_require_tls: bool = True,
    ) -> None:
        self._requested = (imap_port, imaps_port, lmtp_port, smtp_port)
        self.imap_port = imap_port
        self.imaps_port = imaps_port
        self.lmtp_port = lmtp_port
        self.smtp_port = smtp_port
        self.smtp_auth_require_tls = smtp_auth_require_tls
        self.users: dict[str, str] = dict(USERS)
        self.domain = DOMAIN
        self.root: Path | None = None
        self.dovecot_version = ""
        self._dovecot: subprocess.Popen[bytes] | None = None
        self._smtp: _SmtpServerThread | None = None
        self._handler: _SmtpHandler | None = None

    # ---- paths -------------------------------------------------------------------------------

    def _path(self, name: str) -> Path:
        if self.root is None:
            raise HarnessError("MailStack is not started")
        return self.root / name

    @property
    def ca_cert_path(self) -> Path:
        """PEM of the self-signed server certificate: the trust anchor for TLS verification."""
        return self._path("tls/cert.pem")

    @property
    def dovecot_log_path(self) -> Path:
        return self._path("dovecot.log")

    @property
    def relayed(self) -> list[RelayedMessage]:
        """Mail that authenticated users sent to other domains (accepted, never delivered)."""
        return self._handler.relayed if self._handler else []

    def maildir(self, user: str) -> Path:
        """Where Dovecot keeps `user`'s mail, for tests that want to look underneath IMAP."""
        return self._path(f"mail/{user}/Maildir")

    # ---- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> MailStack:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> MailStack:
        """Start Dovecot and the SMTP server; return when both answer on their ports."""
        if self.root is not None:
            raise HarnessError("MailStack already started")
        binary = dovecot_binary()
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False)
        self.dovecot_version = out.stdout.strip() or out.stderr.strip()
        check_dovecot_version(self.dovecot_version)
        if os.geteuid() != 0:
            raise HarnessError("MailStack needs root: Dovecot switches to the `mail` user (uid 8)")
        try:
            mail_pw = pwd.getpwnam(MAIL_USER)
            pwd.getpwnam("dovecot")
        except KeyError as exc:
            raise HarnessError(f"system user missing ({exc}); run: {APT_HINT}") from None

        reap_orphans(TEMP_PREFIX, _dovecot_folder)
        self.root = make_owned_tempdir(TEMP_PREFIX)
        try:
            self._prepare_files(mail_pw.pw_uid, mail_pw.pw_gid)
            self._start_dovecot_with_retries(binary, mail_pw.pw_uid, mail_pw.pw_gid)
            self._start_smtp()
        except BaseException:
            self.stop()
            raise
        return self

    def _prepare_files(self, uid: int, gid: int) -> None:
        root = self._path(".")
        # Others (dovecot, mail) must traverse the folder; listing it is not needed.
        root.chmod(0o711)
        # The certificate is public (any client may verify with it); only the key is private.
        (root / "tls").mkdir(mode=0o711)
        self_signed(self._path("tls"), ["localhost", "127.0.0.1"])
        self._path("tls/cert.pem").chmod(0o644)
        mail = self._path("mail")
        mail.mkdir(mode=0o700)
        os.chown(mail, uid, gid)
        self._path("state").mkdir(mode=0o700)
        passwd = self._path("passwd")
        passwd.write_text(
            "".join(
                f"{user}:{{PLAIN}}{password}:{uid}:{gid}::{mail / user}::\n"
                for user, password in self.users.items()
            )
        )
        # The auth process runs as `dovecot`: it must read this file, nobody else needs to.
        os.chown(passwd, 0, pwd.getpwnam("dovecot").pw_gid)
        passwd.chmod(0o640)

    def _write_dovecot_conf(self, uid: int, gid: int) -> Path:
        self.imap_port, self.imaps_port, self.lmtp_port = (
            port or free_port(self.host) for port in self._requested[:3]
        )
        conf = self._path("dovecot.conf")
        conf.write_text(
            DOVECOT_CONF.format(
                run=self._path("run"),
                state=self._path("state"),
                instance=f"autosmime-test-{os.getpid()}-{self._path('.').resolve().name}",
                log=self.dovecot_log_path,
                cert=self._path("tls/cert.pem"),
                key=self._path("tls/key.pem"),
                passwd=self._path("passwd"),
                uid=uid,
                gid=gid,
                domain=self.domain,
                imap_port=self.imap_port,
                imaps_port=self.imaps_port,
                lmtp_port=self.lmtp_port,
            )
        )
        return conf

    def _remove_stale_state(self) -> None:
        """A killed Dovecot leaves master.pid (it then refuses to start) and old sockets."""
        run = self._path("run")
        for name in ("master.pid", "anvil-auth-penalty"):
            with contextlib.suppress(FileNotFoundError):
                (run / name).unlink()

    def _start_dovecot_with_retries(self, binary: str, uid: int, gid: int) -> None:
        """Free ports can be taken between our probe and Dovecot's bind: retry with new ones."""
        attempts = 1 if any(self._requested[:3]) else 3
        for attempt in range(attempts):
            try:
                self._start_dovecot(binary, uid, gid)
                return
            except HarnessError as exc:
                if attempt + 1 == attempts or "Address already in use" not in str(exc):
                    raise
                self._stop_dovecot()

    def _start_dovecot(self, binary: str, uid: int, gid: int) -> None:
        conf = self._write_dovecot_conf(uid, gid)
        self._remove_stale_state()
        stderr_path = self._path("dovecot.stderr")
        with stderr_path.open("wb") as stderr:
            # Own session: a Ctrl-C in the terminal must not reach it before our orderly stop.
            self._dovecot = subprocess.Popen(
                [binary, "-F", "-c", str(conf)],
                stdin=subprocess.DEVNULL,
                stdout=stderr,
                stderr=stderr,
                start_new_session=True,
            )
        proc = self._dovecot

        def explain() -> str:
            return (
                f"Dovecot stderr:\n{tail(stderr_path)}\n"
                f"Dovecot log ({self.dovecot_log_path}):\n{tail(self.dovecot_log_path)}"
            )

        deadline = time.monotonic() + START_TIMEOUT
        ctx = self.client_ssl_context()
        for what, check in (
            (
                f"Dovecot IMAP on port {self.imap_port}",
                lambda: self._greets(self.imap_port, b"* OK"),
            ),
            (
                f"Dovecot IMAPS on port {self.imaps_port}",
                lambda: self._greets(self.imaps_port, b"* OK", ctx),
            ),
            (
                f"Dovecot LMTP on port {self.lmtp_port}",
                lambda: self._greets(self.lmtp_port, b"220"),
            ),
        ):
            wait_until(check, what, deadline, explain, alive=lambda: proc.poll() is None)

    def _greets(self, port: int, greeting: bytes, ctx: ssl.SSLContext | None = None) -> bool:
        """Readiness = a real connection (and TLS handshake) that gets the protocol greeting.

        A short timeout per attempt (the caller retries until its deadline): a foreign listener
        on a busy port accepts but never greets, and must not stall the failure report.
        """
        with socket.create_connection((self.host, port), timeout=0.5) as raw:
            if ctx is None:
                return raw.recv(256).startswith(greeting)
            with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
                return tls.recv(256).startswith(greeting)

    def _start_smtp(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self._requested[3]))
        except OSError as exc:
            sock.close()
            raise HarnessError(
                f"SMTP port {self.host}:{self._requested[3]} is not available: {exc}"
            ) from exc
        sock.listen(64)
        self.smtp_port = int(sock.getsockname()[1])

        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(self._path("tls/cert.pem"), self._path("tls/key.pem"))
        handler = self._handler = _SmtpHandler(self.users, self.host, self.lmtp_port)
        authenticator = _authenticator(self.users)

        def factory(loop: asyncio.AbstractEventLoop) -> SMTP:
            return SMTP(
                handler,
                hostname="localhost",
                tls_context=tls,
                authenticator=authenticator,
                auth_require_tls=self.smtp_auth_require_tls,
                loop=loop,
            )

        self._smtp = _SmtpServerThread(sock, factory)
        self._smtp.start(START_TIMEOUT)
        smtp = self._smtp
        wait_until(
            lambda: self._greets(self.smtp_port, b"220"),
            f"SMTP on port {self.smtp_port}",
            time.monotonic() + START_TIMEOUT,
            alive=lambda: smtp.alive,
        )

    def stop(self) -> None:
        """Stop exactly what start() started, then delete the temporary folder. Idempotent."""
        if self._smtp is not None:
            self._smtp.stop(STOP_TIMEOUT)
            self._smtp = None
        self._stop_dovecot()
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None

    def _stop_dovecot(self) -> None:
        if self._dovecot is not None:
            stop_process_tree(self._dovecot, STOP_TIMEOUT, grace=DOVECOT_STOP_GRACE)
            self._dovecot = None

    def processes(self) -> dict[int, int]:
        """This stack's live Dovecot processes (master and children), as pid -> start time."""
        return process_tree(self._dovecot.pid) if self._dovecot else {}

    # ---- client helpers ----------------------------------------------------------------------

    def client_ssl_context(self) -> ssl.SSLContext:
        """A verifying client context that trusts only this stack's certificate."""
        return ssl.create_default_context(cafile=str(self.ca_cert_path))

    def imap_client(self, user: str, *, tls: bool = False, timeout: float = 10) -> IMAPClient:
        """A logged-in IMAPClient; `tls=True` uses the IMAPS port with verification."""
        client = IMAPClient(
            self.host,
            port=self.imaps_port if tls else self.imap_port,
            ssl=tls,
            ssl_context=self.client_ssl_context() if tls else None,
            timeout=timeout,
        )
        try:
            client.login(user, self.users[user])
        except BaseException:
            client.shutdown()
            raise
        return client

    def smtp_client(self, user: str | None = None, *, timeout: float = 10) -> smtplib.SMTP:
        """An SMTP connection after STARTTLS (verified), logged in as `user` unless None."""
        client = smtplib.SMTP(
            self.host, self.smtp_port, local_hostname="localhost", timeout=timeout
        )
        try:
            client.starttls(context=self.client_ssl_context())
            if user is not None:
                client.login(user, self.users[user])
        except BaseException:
            client.close()
            raise
        return client
