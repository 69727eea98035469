"""The real Roundcube 1.6 (Debian's package, elastic skin) on loopback, in front of a MailStack.

Roundcube runs under PHP's built-in server (`php -S`) with a configuration folder of its own
(ROUNDCUBE_CONFIG_DIR): a SQLite database created from Roundcube's own schema, IMAP on the
stack's plain port, SMTP submission with STARTTLS (verified against the stack's certificate) and
AUTH with the user's own login. A small TLS front serves it as https://webmail.example.test
(Chromium maps that name to it with --host-resolver-rules), the way an organisation serves its
Roundcube, and records every byte that crosses it, so a test can prove what the browser sent to
Roundcube and what Roundcube sent back. See /work/shared/REFERENCE.md, "Webmail that nobody here
wrote".
"""

from __future__ import annotations

import contextlib
import re
import secrets
import shutil
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path
from types import TracebackType

from harness.mail import (
    HarnessError,
    MailStack,
    free_port,
    make_owned_tempdir,
    reap_orphans,
    stop_process_tree,
    tail,
    wait_until,
)
from harness.tls import self_signed

APT_HINT = (
    "echo 'roundcube-core roundcube/dbconfig-install boolean false' | debconf-set-selections && "
    "apt-get install -y --no-install-recommends roundcube-core roundcube-sqlite3 php-cli php-cgi"
)
ROUNDCUBE_HOME = Path("/usr/share/roundcube")
PUBLIC_HTML = Path("/var/lib/roundcube/public_html")
ETC = Path("/etc/roundcube")
HOST_NAME = "webmail.example.test"
TEMP_PREFIX = "autosmime-roundcube-"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0

CONFIG = """\
<?php
// Written by tests/harness/roundcube.py for one RoundcubeServer.
$config = [];
$config['db_dsnw'] = 'sqlite:///{db}?mode=0600';
$config['imap_host'] = '127.0.0.1:{imap_port}';
$config['smtp_host'] = 'tls://127.0.0.1:{smtp_port}';
$config['smtp_user'] = '%u';
$config['smtp_pass'] = '%p';
// The stack's self-signed certificate names localhost; verify it, never switch checks off.
$config['smtp_conn_options'] = ['ssl' => [
    'verify_peer' => true, 'verify_peer_name' => true, 'peer_name' => 'localhost',
    'cafile' => '{ca}',
]];
$config['des_key'] = '{des_key}';
$config['product_name'] = 'Roundcube Webmail';
$config['support_url'] = '';
$config['skin'] = 'elastic';
$config['plugins'] = [];
$config['enable_spellcheck'] = false;
$config['login_rate_limit'] = 0;
$config['ip_check'] = false;
$config['create_default_folders'] = true;
$config['draft_autosave'] = {draft_autosave};
$config['htmleditor'] = {htmleditor};
$config['temp_dir'] = '{temp}';
$config['log_dir'] = '{logs}';
$config['log_driver'] = 'file';
$config['imap_cache'] = null;
$config['messages_cache'] = false;
"""

CREATE_DB = """\
$db = new PDO('sqlite:' . $argv[1]);
$db->setAttribute(PDO::ATTR_ERRMODE, PDO::ERRMODE_EXCEPTION);
$db->exec(file_get_contents($argv[2]));
"""


def php_binary() -> str:
    found = shutil.which("php")
    if not found:
        raise HarnessError(f"PHP is not installed; run: {APT_HINT}")
    return found


def roundcube_version() -> str:
    """Roundcube's version from its iniset.php (RCMAIL_VERSION), or a clear error."""
    iniset = ROUNDCUBE_HOME / "program" / "include" / "iniset.php"
    if not iniset.exists() or not PUBLIC_HTML.is_dir():
        raise HarnessError(f"Roundcube is not installed; run: {APT_HINT}")
    match = re.search(r"define\('RCMAIL_VERSION',\s*'([^']+)'", iniset.read_text(errors="replace"))
    if not match:
        raise HarnessError(f"cannot read RCMAIL_VERSION from {iniset}")
    return match[1]


def check_versions(roundcube: str, php: str, modules: str) -> None:
    """The adapter is written against Roundcube 1.6 (elastic): refuse others in words."""
    if not re.match(r"1\.6\.", roundcube):
        raise HarnessError(
            f"Roundcube {roundcube} found; the adapter and this harness are written for 1.6 "
            "(Debian 12). Measure the new DOM and update extension/content/adapters/roundcube.js."
        )
    major_minor = tuple(int(p) for p in re.findall(r"\d+", php)[:2])
    if major_minor < (7, 3):
        raise HarnessError(f"PHP {php} is too old for Roundcube 1.6 (needs 7.3 or newer)")
    if not re.search(r"^pdo_sqlite$", modules, re.MULTILINE | re.IGNORECASE):
        raise HarnessError(f"PHP {php} lacks pdo_sqlite; run: {APT_HINT}")


def _php_folder(argv: list[str]) -> Path | None:
    """The server folder of a `php -d error_log=<folder>/php.log -S ...` started here."""
    if len(argv) >= 3 and Path(argv[0]).name.startswith("php") and argv[1] == "-d":
        key, _, value = argv[2].partition("=")
        if key == "error_log" and value.endswith("/php.log"):
            return Path(value).parent
    return None


class _TlsFront:
    """TLS on a loopback port, relaying to a plain HTTP port; keeps every byte it relays."""

    def __init__(self, cert: Path, key: Path, backend_port: int) -> None:
        self.backend_port = backend_port
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(cert, key)
        self.context.set_alpn_protocols(["http/1.1"])  # plain HTTP/1.1 inside: readable logs
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = int(self.sock.getsockname()[1])
        self.lock = threading.Lock()
        # One stream per connection and direction, so a request never interleaves with another.
        self.to_server: list[bytearray] = []
        self.to_browser: list[bytearray] = []
        self.running = True
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while self.running:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        """One request per connection, relayed in turn: php -S answers one request and closes.

        Read the whole request first, then open the backend: Chromium opens spare
        (preconnected) sockets that may never carry a request, and each would otherwise hold
        one of php -S's workers. One thread per connection and strictly one direction at a
        time, because an SSL socket must not be read and written from two threads at once.
        """
        conn: socket.socket = client
        try:
            client.settimeout(60)
            conn = tls = self.context.wrap_socket(client, server_side=True)
            request = self._read_request(tls)
            if not request:
                return
            with self.lock:
                self.to_server.append(bytearray(request))
                down = bytearray()
                self.to_browser.append(down)
            with socket.create_connection(("127.0.0.1", self.backend_port), timeout=60) as backend:
                backend.sendall(request)
                while data := backend.recv(65536):
                    with self.lock:
                        down += data
                    tls.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                conn.close()

    @staticmethod
    def _read_request(tls: ssl.SSLSocket) -> bytes:
        """Head and body (by Content-Length) of one HTTP/1.1 request; b"" if none came."""
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = tls.recv(65536)
            if not chunk:
                return b""
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        match = re.search(rb"^content-length:\s*(\d+)", head, re.IGNORECASE | re.MULTILINE)
        length = int(match[1]) if match else 0
        while len(body) < length:
            chunk = tls.recv(65536)
            if not chunk:
                break
            body += chunk
        # php -S closes after each answer; say so, so the browser never waits on this socket.
        head = re.sub(rb"(?im)^connection:[^\r\n]*\r\n", b"", head + b"\r\n")
        return head + b"Connection: close\r\n\r\n" + body

    def close(self) -> None:
        self.running = False
        with contextlib.suppress(OSError):
            self.sock.close()


class RoundcubeServer:
    """Roundcube 1.6 from Debian on `php -S`, behind a recording TLS front at HOST_NAME."""

    def __init__(
        self,
        stack: MailStack,
        *,
        host_name: str = HOST_NAME,
        draft_autosave: int = 300,
        htmleditor: int = 0,
        workers: int = 6,
    ) -> None:
        self.stack = stack
        self.host_name = host_name
        self.draft_autosave = draft_autosave
        self.htmleditor = htmleditor
        self.workers = workers
        self.root: Path | None = None
        self.php_port = 0
        self.version = ""
        self.php_version = ""
        self._php: subprocess.Popen[bytes] | None = None
        self._front: _TlsFront | None = None

    # ---- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> RoundcubeServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> RoundcubeServer:
        if self.root is not None:
            raise HarnessError("RoundcubeServer already started")
        php = php_binary()
        self.version = roundcube_version()
        self.php_version = subprocess.run(
            [php, "-r", "echo PHP_VERSION;"], capture_output=True, text=True, check=True
        ).stdout.strip()
        modules = subprocess.run([php, "-m"], capture_output=True, text=True, check=True).stdout
        check_versions(self.version, self.php_version, modules)

        reap_orphans(TEMP_PREFIX, _php_folder)
        self.root = make_owned_tempdir(TEMP_PREFIX)
        try:
            self._configure(php)
            self._start_php(php)
            cert, key = self_signed(self.root / "tls", [self.host_name, "127.0.0.1"])
            self._front = _TlsFront(cert, key, self.php_port)
        except BaseException:
            self.stop()
            raise
        return self

    def _configure(self, php: str) -> None:
        assert self.root is not None
        config = self.root / "config"
        config.mkdir()
        for name in ("defaults.inc.php", "mimetypes.php"):
            (config / name).symlink_to(ETC / name)
        for name in ("temp", "logs"):
            (self.root / name).mkdir()
        db = self.root / "roundcube.db"
        (config / "config.inc.php").write_text(
            CONFIG.format(
                db=db,
                imap_port=self.stack.imap_port,
                smtp_port=self.stack.smtp_port,
                ca=self.stack.ca_cert_path,
                des_key=secrets.token_urlsafe(18)[:24],
                draft_autosave=int(self.draft_autosave),
                htmleditor=int(self.htmleditor),
                temp=self.root / "temp",
                logs=self.root / "logs",
            )
        )
        schema = ROUNDCUBE_HOME / "SQL" / "sqlite.initial.sql"
        done = subprocess.run(
            [php, "-r", CREATE_DB, "--", str(db), str(schema)],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise HarnessError(f"creating Roundcube's SQLite database failed:\n{done.stderr}")

    def _start_php(self, php: str) -> None:
        assert self.root is not None
        self.php_port = free_port()
        log = self.root / "php.log"
        env = {
            "PATH": "/usr/bin:/bin",
            "ROUNDCUBE_CONFIG_DIR": str(self.root / "config"),
            "PHP_CLI_SERVER_WORKERS": str(self.workers),
        }
        with open(self.root / "php-server.log", "wb") as out:
            self._php = subprocess.Popen(
                [
                    php,
                    "-d",
                    f"error_log={log}",
                    "-S",
                    f"127.0.0.1:{self.php_port}",
                    "-t",
                    str(PUBLIC_HTML),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.root,
            )
        proc = self._php

        def login_page() -> bool:
            with socket.create_connection(("127.0.0.1", self.php_port), timeout=5) as s:
                s.sendall(b"GET /?_task=login HTTP/1.0\r\nHost: localhost\r\n\r\n")
                answer = b""
                while chunk := s.recv(65536):
                    answer += chunk
                return b"rcmloginuser" in answer

        wait_until(
            login_page,
            f"Roundcube on php -S port {self.php_port}",
            time.monotonic() + START_TIMEOUT,
            explain=self.explain,
            alive=lambda: proc.poll() is None,
        )

    def explain(self) -> str:
        """The ends of the logs that say why Roundcube misbehaved."""
        if self.root is None:
            return ""
        parts = [
            f"--- {p.name} ---\n{tail(p)}"
            for p in (
                self.root / "php-server.log",
                self.root / "php.log",
                self.root / "logs" / "errors.log",
            )
            if p.exists()
        ]
        return "\n".join(parts)

    def stop(self) -> None:
        """Stop the TLS front and php -S with its workers (they outlive a SIGTERMed parent)."""
        if self._front is not None:
            self._front.close()
            self._front = None
        if self._php is not None:
            stop_process_tree(self._php, STOP_TIMEOUT, grace=2.0)
            self._php = None
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None

    # ---- what tests use ----------------------------------------------------------------------

    @property
    def origin(self) -> str:
        return f"https://{self.host_name}"

    def url(self, query: str = "") -> str:
        return f"{self.origin}/{query}"

    @property
    def resolver_rule(self) -> str:
        assert self._front is not None
        return f"MAP {self.host_name} 127.0.0.1:{self._front.port}"

    def connections(self) -> int:
        """How many browser connections the front has seen: give it to sent_by_browser and
        sent_to_browser as `since` to look at what came after (one browser's session)."""
        assert self._front is not None
        with self._front.lock:
            return len(self._front.to_server)

    def sent_by_browser(self, since: int = 0) -> bytes:
        """Every byte any browser sent to Roundcube through the front (requests, forms, uploads)."""
        assert self._front is not None
        with self._front.lock:
            return b"\n".join(bytes(stream) for stream in self._front.to_server[since:])

    def sent_to_browser(self, since: int = 0) -> bytes:
        """Every byte Roundcube answered (pages, JSON, message sources)."""
        assert self._front is not None
        with self._front.lock:
            return b"\n".join(bytes(stream) for stream in self._front.to_browser[since:])

    def request_lines(self) -> list[str]:
        """The request lines ("GET /?_task=... HTTP/1.1") the browser sent, in order."""
        found = re.findall(rb"(?:GET|POST|HEAD) /\S* HTTP/1\.[01]", self.sent_by_browser())
        return [line.decode("latin-1") for line in found]
