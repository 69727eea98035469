"""An RFC 3161 time-stamp authority that is not ours: `openssl ts -reply` behind a tiny HTTP
wrapper (POST application/timestamp-query, answer application/timestamp-reply), with its own
root and TSA certificate, for tests that the host takes timestamps from any TSA.

    with OpenSslTsa(tmp_path) as tsa:
        tsa.url, tsa.root_pem
"""

from __future__ import annotations

import datetime
import http.server
import subprocess
import tempfile
import threading
from pathlib import Path
from types import TracebackType

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from harness import pki
from harness.peers import require

QUERY = "application/timestamp-query"
REPLY = "application/timestamp-reply"
POLICY = "1.3.6.1.4.1.99999.77.1"
CONFIG = """\
[ tsa ]
default_tsa = tsa_config

[ tsa_config ]
dir = {folder}
serial = $dir/serial
crypto_device = builtin
signer_cert = $dir/tsa.cert.pem
certs = $dir/tsa.chain.pem
signer_key = $dir/tsa.key.pem
signer_digest = sha256
default_policy = {policy}
digests = sha256, sha384, sha512
accuracy = secs:1
ordering = yes
tsa_name = yes
ess_cert_id_chain = no
ess_cert_id_alg = sha256
"""


def _tsa_party(root: pki.Authority) -> pki.Party:
    """A TSA certificate as RFC 3161 wants it: critical extendedKeyUsage timeStamping only."""
    key = pki.new_key("p256")
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "OpenSSL test TSA (not ours)")])
        )
        .issuer_name(root.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(root.key.public_key()),
            critical=False,
        )
        .sign(root.key, hashes.SHA256())
    )
    return pki.Party(key, cert, [root.cert])


class OpenSslTsa:
    """`openssl ts -reply` served over HTTP on a free loopback port (see the module docstring).
    `replies` counts the tokens it made."""

    def __init__(self, folder: Path) -> None:
        self.openssl = require("openssl")
        self.folder = folder
        self.root = pki.root("OpenSSL TSA test root", "p256")
        self.tsa = _tsa_party(self.root)
        self.replies = 0
        self._lock = threading.Lock()
        self._server: http.server.ThreadingHTTPServer | None = None

    @property
    def root_pem(self) -> bytes:
        return self.root.cert_pem()

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/timestamp"

    def reply(self, query: bytes) -> bytes:
        """openssl ts -reply for one DER query (serialised: openssl keeps a serial file)."""
        with self._lock, tempfile.TemporaryDirectory(dir=self.folder) as work:
            query_file, reply_file = Path(work) / "q.tsq", Path(work) / "r.tsr"
            query_file.write_bytes(query)
            done = subprocess.run(
                [self.openssl, "ts", "-reply", "-config", str(self.folder / "tsa.cnf"),
                 "-queryfile", str(query_file), "-out", str(reply_file)],
                capture_output=True, timeout=30, check=False,
            )  # fmt: skip
            if done.returncode != 0:
                raise RuntimeError(done.stderr.decode(errors="replace"))
            self.replies += 1
            return reply_file.read_bytes()

    def __enter__(self) -> OpenSslTsa:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.tsa.write(self.folder, "tsa")
        (self.folder / "serial").write_text("01\n")
        (self.folder / "tsa.cnf").write_text(CONFIG.format(folder=self.folder, policy=POLICY))
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.headers.get("Content-Type", "").split(";")[0].strip() != QUERY:
                    self.send_error(415, f"send {QUERY}")
                    return
                try:
                    answer = owner.reply(body)
                except RuntimeError as error:
                    self.send_error(400, str(error)[:200])
                    return
                self.send_response(200)
                self.send_header("Content-Type", REPLY)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *_args: object) -> None:
                pass  # quiet tests

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
