"""infrastructure.acme_client: the RFC 8555 protocol against the real PKI service under uvicorn (the
short-circuit validator: mail is not what these tests are about; test_enrollment.py runs the
real RFC 8823 validation), and its transport rules (Retry-After, badNonce, TLS trust, errors in
words) against a scripted HTTP server."""

from __future__ import annotations

import email.utils
import http.server
import json
import ssl
import stat
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from harness.acme_client import ServerProcess, free_port
from harness.tls import self_signed

from native_host.domain.enrollment import build_csr
from native_host.infrastructure.acme_client import (
    AccountKeyStore,
    AcmeBadResponse,
    AcmeClient,
    AcmeConnectionError,
    AcmeServerError,
    AcmeTimeout,
    AcmeTlsError,
    PkiSettings,
    parse_retry_after,
)
from native_host.infrastructure.profile import open_profile
from shared_pki import sm2
from shared_pki.acme.problems import ProblemType

ADDRESS = "dave@example.test"


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with ServerProcess(tmp_path_factory.mktemp("pki")) as server:
        yield server


@pytest.fixture(scope="module")
def picky_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """Pebble's trick: half of all valid nonces are refused with badNonce."""
    with ServerProcess(tmp_path_factory.mktemp("pki"), reject_nonce_share=0.5) as server:
        yield server


def client_for(server: ServerProcess, **options: Any) -> AcmeClient:
    key = ec.generate_private_key(ec.SECP256R1())
    return AcmeClient(f"{server.url}/acme/directory", key, **options)


def issue(client: AcmeClient, key: Any) -> list[bytes]:
    client.register()
    url, order = client.new_order(ADDRESS)
    assert order.status.value == "pending"
    (authz_url,) = order.authorizations
    authz = client.authorization(authz_url)
    (challenge,) = authz.challenges
    assert challenge.type == "email-reply-00" and challenge.token and challenge.from_address
    client.respond(challenge.url)
    assert client.poll_challenge(challenge.url, timeout=20).status.value == "valid"
    order = client.poll_order(url, {"ready"}, timeout=20)
    order = client.finalize(order, build_csr(ADDRESS, key))
    if order.status.value != "valid":
        order = client.poll_order(url, {"valid"}, timeout=20)
    assert order.certificate
    return client.certificate_chain(order.certificate)


def test_account_order_validation_finalize_and_chain(service: ServerProcess) -> None:
    with client_for(service) as client:
        account_url, account = client.register()
        assert account.status.value == "valid"
        again_url, _ = client.register()  # the same key finds the same account
        assert again_url == account_url
        found_url, _ = client.register(only_existing=True)
        assert found_url == account_url
        key = ec.generate_private_key(ec.SECP256R1())
        chain = issue(client, key)
        assert len(chain) == 2  # leaf and issuing CA
        leaf = x509.load_der_x509_certificate(chain[0])
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        assert san.value.get_values_for_type(x509.RFC822Name) == [ADDRESS]
        assert leaf.public_key().public_numbers() == key.public_key().public_numbers()
        # The dual pair: an SM2 order now reuses the valid authorization and is ready at once.
        _url, order = client.new_order(ADDRESS)
        assert order.status.value == "ready"
        order = client.finalize(order, build_csr(ADDRESS, sm2.generate_private_key()))
        assert order.status.value == "valid" and order.certificate
        assert len(client.certificate_chain(order.certificate)) == 2


def test_an_unknown_account_and_a_refused_identifier_are_problems_in_words(
    service: ServerProcess,
) -> None:
    with client_for(service) as client:
        with pytest.raises(AcmeServerError) as unknown:
            client.register(only_existing=True)
        assert unknown.value.type is ProblemType.ACCOUNT_DOES_NOT_EXIST
        assert unknown.value.problem.status == 400
        assert str(unknown.value).startswith("The certificate authority does not know this")
        client.register()
        with pytest.raises(AcmeServerError) as refused:
            client.new_order("not an address")
        assert refused.value.type in (ProblemType.REJECTED_IDENTIFIER, ProblemType.MALFORMED)
        assert "It said:" in str(refused.value) and refused.value.problem.detail in str(
            refused.value
        )


def test_bad_nonces_are_retried_with_the_nonce_that_came_with_them(
    picky_service: ServerProcess,
) -> None:
    with client_for(picky_service) as client:
        chain = issue(client, ec.generate_private_key(ec.SECP256R1()))
        assert len(chain) == 2
        assert client.account_url is not None
        strict = AcmeClient(
            client.directory_url, client.account_key, client.account_url, bad_nonce_retries=0
        )
    refusals = 0
    for _ in range(40):  # each passes with probability 1/2: 40 in a row, 1 in 10^12
        try:
            strict.post(client.account_url, None)
        except AcmeServerError as error:
            assert error.type is ProblemType.BAD_NONCE
            refusals += 1
    strict.close()
    assert refusals > 0


def test_an_unreachable_service_is_a_connection_error(tmp_path: Path) -> None:
    client = AcmeClient(f"http://127.0.0.1:{free_port()}/acme/directory", None, timeout=2)
    with pytest.raises(AcmeConnectionError) as failed:
        client.directory()
    assert "cannot be reached" in str(failed.value)


# ---------------------------------------------------------------------------------------------
# A scripted server for the transport rules


class Script:
    """What the scripted server answers, per path: a list of (status, headers, body) used in
    order (the last one repeats)."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.answers: dict[str, list[tuple[int, dict[str, str], bytes]]] = {}
        self.requests: list[tuple[str, str]] = []
        self.nonces = 0

    def directory(self) -> dict[str, str]:
        return {
            name: f"{self.base}/{path}"
            for name, path in (
                ("newNonce", "nonce"),
                ("newAccount", "account"),
                ("newOrder", "order"),
                ("revokeCert", "revoke"),
                ("keyChange", "key-change"),
            )
        }


def _handler(script: Script) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_args: Any) -> None:
            pass

        def _answer(self, status: int, headers: dict[str, str], body: bytes) -> None:
            script.nonces += 1
            self.send_response(status)
            self.send_header("Replay-Nonce", f"nonce{script.nonces}")
            self.send_header("Content-Length", str(len(body)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def do_HEAD(self) -> None:
            script.requests.append(("HEAD", self.path))
            self._answer(200, {}, b"")

        def do_GET(self) -> None:
            script.requests.append(("GET", self.path))
            if self.path == "/dir":
                body = json.dumps(script.directory()).encode()
                self._answer(200, {"Content-Type": "application/json"}, body)
            else:
                self._answer(404, {}, b"")

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            self.rfile.read(length)
            script.requests.append(("POST", self.path))
            answers = script.answers.get(self.path) or [(404, {}, b"")]
            status, headers, body = answers.pop(0) if len(answers) > 1 else answers[0]
            self._answer(status, headers, body)

    return Handler


@pytest.fixture
def scripted(tmp_path: Path) -> Callable[..., Script]:
    servers: list[http.server.ThreadingHTTPServer] = []

    def start(*, tls: bool = False) -> Script:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), None)  # type: ignore[arg-type]
        port = server.server_address[1]
        script = Script(f"{'https' if tls else 'http'}://127.0.0.1:{port}")
        server.RequestHandlerClass = _handler(script)
        if tls:
            cert, key = self_signed(tmp_path / f"tls{port}", ["127.0.0.1"])
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(cert, key)
            server.socket = context.wrap_socket(server.socket, server_side=True)
            script.ca_file = str(cert)  # type: ignore[attr-defined]
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return script

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def problem(kind: str, detail: str, status: int) -> bytes:
    return json.dumps(
        {"type": f"urn:ietf:params:acme:error:{kind}", "detail": detail, "status": status}
    ).encode()


PROBLEM = {"Content-Type": "application/problem+json"}
ORDER = {
    "status": "pending",
    "identifiers": [{"type": "email", "value": ADDRESS}],
    "authorizations": ["http://x/authz"],
    "finalize": "http://x/finalize",
}


def scripted_client(script: Script, **options: Any) -> tuple[AcmeClient, list[float]]:
    waits: list[float] = []
    client = AcmeClient(
        f"{script.base}/dir",
        ec.generate_private_key(ec.SECP256R1()),
        account_url=f"{script.base}/acct/1",
        sleep=waits.append,
        **options,
    )
    return client, waits


def test_busy_answers_are_retried_after_retry_after(scripted: Callable[..., Script]) -> None:
    script = scripted()
    busy = (503, {**PROBLEM, "Retry-After": "1"}, problem("serverInternal", "busy", 503))
    ok = (200, {"Content-Type": "application/json"}, json.dumps(ORDER).encode())
    script.answers["/o/1"] = [busy, busy, ok]
    client, waits = scripted_client(script)
    order, _retry = client.order(f"{script.base}/o/1")
    assert order.status.value == "pending" and waits == [1.0, 1.0]
    # Too long to wait for here: the error says so, with the time.
    later = email.utils.formatdate(time.time() + 3600, usegmt=True)
    script.answers["/o/2"] = [(429, {**PROBLEM, "Retry-After": later},
                               problem("rateLimited", "slow down", 429))]  # fmt: skip
    with pytest.raises(AcmeServerError) as limited:
        client.order(f"{script.base}/o/2")
    assert limited.value.type is ProblemType.RATE_LIMITED
    assert 3500 < (limited.value.retry_after or 0) <= 3600
    assert "wait" in str(limited.value) and "slow down" in str(limited.value)
    assert waits == [1.0, 1.0]


def test_polling_waits_at_least_retry_after_and_gives_up_at_the_deadline(
    scripted: Callable[..., Script],
) -> None:
    script = scripted()
    pending = (200, {"Content-Type": "application/json", "Retry-After": "2"},
               json.dumps(ORDER).encode())  # fmt: skip
    ready = (200, {"Content-Type": "application/json"},
             json.dumps({**ORDER, "status": "ready"}).encode())  # fmt: skip
    script.answers["/o/1"] = [pending, pending, ready]
    client, waits = scripted_client(script)
    order = client.poll_order(f"{script.base}/o/1", {"ready"}, timeout=60)
    assert order.status.value == "ready" and waits == [2.0, 2.0]
    script.answers["/o/2"] = [pending]
    ticks = iter(range(0, 1000, 5))
    client.clock = lambda: float(next(ticks))
    with pytest.raises(AcmeTimeout) as late:
        client.poll_order(f"{script.base}/o/2", {"ready"}, timeout=12)
    assert late.value.status == "pending"
    invalid = {
        **ORDER,
        "status": "invalid",
        "error": {"type": "urn:ietf:params:acme:error:unauthorized", "detail": "no"},
    }
    script.answers["/o/3"] = [(200, {"Content-Type": "application/json"},
                               json.dumps(invalid).encode())]  # fmt: skip
    with pytest.raises(AcmeServerError) as failed:
        client.poll_order(f"{script.base}/o/3", {"ready"}, timeout=12)
    assert failed.value.type is ProblemType.UNAUTHORIZED


def test_a_bad_nonce_is_retried_and_a_junk_answer_is_refused(
    scripted: Callable[..., Script],
) -> None:
    script = scripted()
    bad = (400, PROBLEM, problem("badNonce", "stale", 400))
    ok = (200, {"Content-Type": "application/json"}, json.dumps(ORDER).encode())
    script.answers["/o/1"] = [bad, bad, ok]
    client, waits = scripted_client(script)
    client.order(f"{script.base}/o/1")
    assert waits == []  # no waiting for a bad nonce: the refusal brought a fresh one
    assert [r for r in script.requests if r[0] == "HEAD"] == [("HEAD", "/nonce")]  # once
    script.answers["/o/2"] = [(200, {"Content-Type": "application/json"}, b"{not json")]
    with pytest.raises(AcmeBadResponse):
        client.order(f"{script.base}/o/2")
    script.answers["/o/3"] = [(500, {"Content-Type": "text/html"}, b"<h1>oops</h1>")]
    with pytest.raises(AcmeServerError) as broken:
        client.order(f"{script.base}/o/3")
    assert broken.value.type is ProblemType.SERVER_INTERNAL and "HTTP 500" in str(broken.value)


def test_https_is_verified_against_the_configured_ca_file(
    scripted: Callable[..., Script],
) -> None:
    script = scripted(tls=True)
    untrusting = AcmeClient(f"{script.base}/dir", None)
    with pytest.raises(AcmeTlsError) as refused:
        untrusting.directory()
    assert "not trusted" in str(refused.value)
    trusting = AcmeClient(f"{script.base}/dir", None, tls_ca_file=script.ca_file)  # type: ignore[attr-defined]
    assert trusting.directory().new_order == f"{script.base}/order"


def test_retry_after_values() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    when = email.utils.formatdate(1_000_060, usegmt=True)
    assert parse_retry_after(when, now=1_000_000) == 60.0
    assert parse_retry_after(when, now=2_000_000) == 0.0


# ---------------------------------------------------------------------------------------------
# The account key and the PKI settings in the profile


@pytest.fixture
def profile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyrings.alt.file.PlaintextKeyring")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    return open_profile(tmp_path / "profile")


def test_the_account_key_is_sealed_in_the_profile_per_ca(profile: Any) -> None:
    store = AccountKeyStore(profile)
    key, url = store.load_or_create("http://ca.example/acme/directory")
    assert url is None
    (path,) = (profile.root / "acme").iterdir()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    assert (
        "PRIVATE KEY" not in text
        and key.private_numbers().private_value.to_bytes(32, "big").hex() not in text
    )
    store.remember_url("http://ca.example/acme/directory", "http://ca.example/acme/account/7")
    again, again_url = AccountKeyStore(profile).load_or_create("http://ca.example/acme/directory")
    assert again.private_numbers() == key.private_numbers()
    assert again_url == "http://ca.example/acme/account/7"
    other, _ = store.load_or_create("http://other.example/acme/directory")
    assert other.private_numbers() != key.private_numbers()


def test_pki_settings_round_trip_and_refuse_what_cannot_be_trusted(
    profile: Any, service: ServerProcess, tmp_path: Path
) -> None:
    import urllib.request

    with urllib.request.urlopen(f"{service.url}/ca/roots.pem", timeout=10) as response:
        roots = response.read()
    (tmp_path / "roots.pem").write_bytes(roots)
    settings = PkiSettings.from_files(f"{service.url}/acme/directory", tmp_path / "roots.pem")
    settings.save(profile)
    assert stat.S_IMODE((profile.root / "pki.json").stat().st_mode) == 0o600
    loaded = PkiSettings.load(profile)
    assert loaded == settings and len(loaded.roots()) == 2
    with pytest.raises(ValueError, match="not certificates"):
        PkiSettings(f"{service.url}/acme/directory", b"not a certificate")
    with pytest.raises(ValueError, match="http"):
        PkiSettings("ftp://example/acme", roots)
