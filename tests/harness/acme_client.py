"""A small RFC 8555 client for tests of our ACME server, over any httpx-style client (Starlette's
TestClient or httpx.Client against a real server), plus CSR builders and a server process.

The client signs with shared_pki.acme.jws but keeps every request visible: tests can send a
JWS with a stale nonce, a wrong url, a tampered signature or another account's kid. It never
retries a badNonce on its own unless asked (`retry_bad_nonce`), so nonce tests see the refusal.

`ServerProcess` runs the ACME application under uvicorn in a subprocess, with the
ShortCircuitValidator (validation without mail, tests only) through `short_circuit_app`."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from shared_pki import sm2
from shared_pki.acme import jws
from shared_pki.x509 import sm2_certs

PROBLEM = "application/problem+json"
JOSE = "application/jose+json"


# ---- CSRs -------------------------------------------------------------------------------------


def new_key(kind: str = "p256") -> Any:
    if kind.startswith("rsa"):
        return rsa.generate_private_key(65537, int(kind[3:] or 2048))
    if kind == "sm2":
        return sm2.generate_private_key()
    if kind == "ed25519":
        from cryptography.hazmat.primitives.asymmetric import ed25519

        return ed25519.Ed25519PrivateKey.generate()
    return ec.generate_private_key({"p256": ec.SECP256R1(), "p384": ec.SECP384R1()}[kind])


def csr_for(address: str, key: Any, *names: str) -> bytes:
    """A DER CSR with subjectAltName rfc822Name address (or `names` instead) for key."""
    emails = names or (address,)
    if isinstance(key, sm2.SM2PrivateKey):
        return sm2_certs.build_csr(key, emails=emails)
    return (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .add_extension(x509.SubjectAlternativeName([x509.RFC822Name(e) for e in emails]), False)
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.DER)
    )


# ---- the client -------------------------------------------------------------------------------


class AcmeError(AssertionError):
    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        super().__init__(f"{response.status_code} {response.text[:500]}")


@dataclass
class AcmeClient:
    http: Any  # httpx.Client or starlette TestClient
    directory_url: str
    key: Any = field(default_factory=new_key)
    account_url: str | None = None
    retry_bad_nonce: bool = False
    _nonce: str | None = None
    _directory: dict[str, Any] | None = None

    @property
    def directory(self) -> dict[str, Any]:
        if self._directory is None:
            response = self.http.get(self.directory_url)
            assert response.status_code == 200, response.text
            self._directory = response.json()
        return self._directory

    def fresh_nonce(self) -> str:
        response = self.http.head(self.directory["newNonce"])
        assert response.status_code == 200, response.text
        return response.headers["Replay-Nonce"]

    def nonce(self) -> str:
        value, self._nonce = self._nonce, None
        return value or self.fresh_nonce()

    def sign(
        self,
        url: str,
        payload: dict[str, Any] | None,
        *,
        key: Any = None,
        kid: str | bool | None = True,
        nonce: str | None = None,
        signed_url: str | None = None,
    ) -> bytes:
        """The body of a request; kid=True uses this client's account, False/None the jwk."""
        if kid is True:
            kid = self.account_url
        return jws.serialize(
            jws.sign(
                payload,
                key=key or self.key,
                url=signed_url or url,
                nonce=nonce or self.nonce(),
                kid=kid or None,
            )
        )

    def send(self, url: str, body: bytes, *, content_type: str = JOSE) -> httpx.Response:
        response = self.http.post(url, content=body, headers={"content-type": content_type})
        if "Replay-Nonce" in response.headers:
            self._nonce = response.headers["Replay-Nonce"]
        return response

    def post(self, url: str, payload: dict[str, Any] | None, **sign: Any) -> httpx.Response:
        for _attempt in range(40 if self.retry_bad_nonce else 1):
            response = self.send(url, self.sign(url, payload, **sign))
            if not (self.retry_bad_nonce and problem_type(response) == "badNonce"):
                break
        return response

    def ok(self, url: str, payload: dict[str, Any] | None, **sign: Any) -> httpx.Response:
        response = self.post(url, payload, **sign)
        if response.status_code >= 300:
            raise AcmeError(response)
        return response

    # ---- the flow ----------------------------------------------------------------------------

    def register(self, *contact: str) -> str:
        payload: dict[str, Any] = {"termsOfServiceAgreed": True}
        if contact:
            payload["contact"] = list(contact)
        response = self.ok(self.directory["newAccount"], payload, kid=False)
        self.account_url = response.headers["Location"]
        return self.account_url

    def order(self, *addresses: str, kind: str = "email") -> tuple[str, dict[str, Any]]:
        identifiers = [{"type": kind, "value": a} for a in addresses]
        response = self.ok(self.directory["newOrder"], {"identifiers": identifiers})
        assert response.status_code == 201
        return response.headers["Location"], response.json()

    def get(self, url: str) -> dict[str, Any]:
        return self.ok(url, None).json()

    def validate(self, order: dict[str, Any]) -> None:
        """Answer every pending challenge of the order (the server's validator decides)."""
        for authz_url in order["authorizations"]:
            authz = self.get(authz_url)
            for challenge in authz["challenges"]:
                if challenge["status"] == "pending":
                    self.ok(challenge["url"], {})

    def poll(self, url: str, *statuses: str, deadline: float = 20) -> dict[str, Any]:
        end = time.monotonic() + deadline
        while True:
            doc = self.get(url)
            if doc["status"] in statuses:
                return doc
            if time.monotonic() > end:
                raise AssertionError(f"{url} still {doc['status']}, wanted {statuses}")
            time.sleep(0.05)

    def finalize(self, order: dict[str, Any], csr_der: bytes) -> httpx.Response:
        return self.post(order["finalize"], {"csr": jws.b64url_encode(csr_der)})

    def certificate(self, url: str) -> str:
        response = self.ok(url, None)
        assert response.headers["content-type"].startswith("application/pem-certificate-chain")
        return response.text

    def issue(self, address: str, key: Any) -> tuple[dict[str, Any], str]:
        """Order, validate, finalize: (the valid order, the PEM chain)."""
        url, order = self.order(address)
        self.validate(order)
        order = self.poll(url, "ready")
        finalized = self.finalize(order, csr_for(address, key))
        if finalized.status_code != 200:
            raise AcmeError(finalized)
        order = self.poll(url, "valid")
        return order, self.certificate(order["certificate"])


def problem_type(response: httpx.Response) -> str | None:
    if not response.headers.get("content-type", "").startswith(PROBLEM):
        return None
    return response.json().get("type", "").rpartition(":")[2]


def assert_problem(response: httpx.Response, kind: str, status: int) -> dict[str, Any]:
    """The response is an RFC 8555 problem of that type and HTTP status, with a fresh nonce."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith(PROBLEM), response.headers
    doc = response.json()
    assert doc["type"] == f"urn:ietf:params:acme:error:{kind}", doc
    assert doc["status"] == status
    assert response.headers.get("Replay-Nonce")
    return doc


# ---- a server process -------------------------------------------------------------------------


def short_circuit_app() -> Any:
    """uvicorn factory: the service app of AUTOSMIME_PKI_DATA with the ShortCircuitValidator."""
    from harness.short_circuit import ShortCircuitValidator
    from shared_pki.service import app as service_app
    from shared_pki.service import config as service_config

    overrides = json.loads(os.environ.get(service_app.OVERRIDES_ENV, "{}"))
    config = service_config.load(Path(os.environ[service_app.DATA_ENV]), overrides)
    return service_app.create_app(config, validator=ShortCircuitValidator())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    """`python -m uvicorn harness.acme_client:short_circuit_app` on a loopback port."""

    def __init__(self, data: Path, *, port: int | None = None, **overrides: Any) -> None:
        self.data = data
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.overrides = {"listen_port": self.port, **overrides}
        self.process: subprocess.Popen[str] | None = None

    def __enter__(self) -> ServerProcess:
        tests = Path(__file__).resolve().parents[1]
        env = {
            **os.environ,
            "AUTOSMIME_PKI_DATA": str(self.data),
            "AUTOSMIME_PKI_OVERRIDES": json.dumps(self.overrides),
            "PYTHONPATH": os.pathsep.join([str(tests), os.environ.get("PYTHONPATH", "")]),
        }
        self.process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--factory", "harness.acme_client:short_circuit_app",
             "--host", "127.0.0.1", "--port", str(self.port), "--log-level", "warning"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            self.wait_until_up()
        except BaseException:
            self.stop()
            raise
        return self

    def wait_until_up(self, deadline: float = 30) -> None:
        assert self.process is not None
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            if self.process.poll() is not None:
                raise AssertionError(f"the server exited: {self.process.communicate()[1]}")
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.05)  # not listening yet: poll again until the deadline
        raise AssertionError(f"the server on port {self.port} did not come up in {deadline} s")

    def stop(self) -> str:
        if self.process is None or self.process.poll() is not None:
            return ""
        self.process.send_signal(signal.SIGTERM)
        try:
            _out, err = self.process.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            _out, err = self.process.communicate()
        return err

    def __exit__(self, *_exc: object) -> None:
        self.stop_errors = self.stop()
