"""The PKI service under abuse: every limit of RFC 8555 section 6.6 (rateLimited, 429,
Retry-After) as pki.toml sets it, counted in the database (SQLite and PostgreSQL, and across two
server processes); request bodies refused before they are read, chunked ones included; TSA
signing off the event loop; DKIM on challenge replies by default when the service has DNS."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from harness.acme_client import AcmeClient, ServerProcess, assert_problem, new_key
from harness.pki_world import PkiWorld
from harness.short_circuit import ShortCircuitValidator
from starlette.testclient import TestClient

from shared_pki.service import config as service_config
from shared_pki.service.app import create_app
from shared_pki.service.ca import material as ca_state
from shared_pki.service.mail_validation import dkim
from shared_pki.service.storage import limits
from shared_pki.service.storage.store import Store


def service(db_url: str, folder: Path, **settings: Any) -> TestClient:
    config = service_config.load(folder, {"db_url": db_url, **settings})
    return TestClient(create_app(config, validator=ShortCircuitValidator()))


def acme_client(http: Any, url: str) -> AcmeClient:
    return AcmeClient(http, f"{url}/acme/directory", new_key("p256"))


def rate_limited(response: httpx.Response, what: str) -> int:
    """A rateLimited problem naming `what`, with its Retry-After in seconds."""
    doc = assert_problem(response, "rateLimited", 429)
    assert what in doc["detail"], doc
    retry = int(response.headers["Retry-After"])
    assert 0 < retry <= 86400
    return retry


def publish(http: TestClient, address: str) -> None:
    """A real certificate for address from the service's own CA, recorded as issuance does."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from shared_pki.ca import profile
    from shared_pki.service.ca import issuance

    state = http.app.state.service
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .add_extension(x509.SubjectAlternativeName([x509.RFC822Name(address)]), False)
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.DER)
    )
    issuance.issue(
        state.store, state.hierarchy, profile.check_csr(csr, address), account=None, days=30,
        now=time.time() - 60,
    )  # fmt: skip


# ---- ACME ---------------------------------------------------------------------------------------


def test_new_accounts_per_client_address(db_url: str, tmp_path: Path) -> None:
    with service(db_url, tmp_path, new_accounts_per_ip_per_hour=2) as http:
        url = http.app.state.service.config.public_url
        first = acme_client(http, url)
        first.register()
        acme_client(http, url).register()
        third = acme_client(http, url)
        refused = third.post(
            third.directory["newAccount"], {"termsOfServiceAgreed": True}, kid=False
        )
        assert rate_limited(refused, "new accounts from one address per hour") <= 3600
        # an existing account is found again, not made: no new account, no refusal
        again = first.post(first.directory["newAccount"], {"termsOfServiceAgreed": True}, kid=False)
        assert again.status_code == 200, again.text


def test_orders_and_pending_authorizations_per_account(db_url: str, tmp_path: Path) -> None:
    with service(
        db_url, tmp_path, new_orders_per_account_per_hour=4, pending_authorizations_per_account=2
    ) as http:
        acme = acme_client(http, http.app.state.service.config.public_url)
        acme.register()
        new_order = acme.directory["newOrder"]

        def order(address: str) -> httpx.Response:
            return acme.post(new_order, {"identifiers": [{"type": "email", "value": address}]})

        assert order("a@example.test").status_code == 201
        assert order("b@example.test").status_code == 201
        # a third pending authorization (a third challenge mail) is refused, for that address
        refused = order("c@example.test")
        rate_limited(refused, "pending authorizations of one account")
        assert refused.json()["identifier"] == {"type": "email", "value": "c@example.test"}
        # an order that reuses a pending authorization sends no mail: allowed
        assert order("a@example.test").status_code == 201
        assert order("b@example.test").status_code == 201  # the 4th order of the hour
        rate_limited(order("a@example.test"), "new orders of one account per hour")


def test_challenge_mails_per_address_whichever_accounts_ask(db_url: str, tmp_path: Path) -> None:
    """Any fresh account could have the CA mail a challenge to any address at once: three
    accounts ordering for the same victim get two mails out of the CA, not three."""
    with service(db_url, tmp_path, challenge_mails_per_address_per_hour=2) as http:
        url = http.app.state.service.config.public_url
        statuses = []
        for _ in range(3):
            acme = acme_client(http, url)
            acme.register()
            response = acme.post(
                acme.directory["newOrder"],
                {"identifiers": [{"type": "email", "value": "victim@example.test"}]},
            )
            statuses.append(response.status_code)
        assert statuses == [201, 201, 429]
        rate_limited(response, "challenge mails to one address per hour")
        other = acme.post(
            acme.directory["newOrder"],
            {"identifiers": [{"type": "email", "value": "someone.else@example.test"}]},
        )
        assert other.status_code == 201


def test_windows_and_retry_after_are_counted_in_the_store(db_url: str) -> None:
    """The per-day limit of challenge mails (a window too long to wait for): events of two
    hours ago count for the day, not the hour; Retry-After is when the event that matters ages
    out."""
    store = Store(db_url)
    hour = limits.Limit("t_mail", 2, limits.HOUR, "mails per hour")
    day = limits.Limit("t_mail", 3, limits.DAY, "mails per day")
    now = time.time()
    key = f"k{now}"
    with store.transaction() as db:
        for at in (now - 7200, now - 7100, now - 7000):
            limits.record(db, "t_mail", key, now=at)
    with pytest.raises(limits.Exceeded) as exceeded:
        limits.hit(store, key, hour, day, now=now)
    assert exceeded.value.limit is day
    assert exceeded.value.retry_after == 86400 - 7200  # the oldest leaves the day window
    with store.transaction() as db:
        limits.check(db, hour, key, now=now)  # none in the last hour
    limits.hit(store, f"{key}-other", hour, day, now=now)  # another key is not concerned
    off = limits.Limit("t_mail", 0, limits.HOUR, "off")
    for _ in range(5):
        limits.hit(store, key, off, now=now)  # a limit of 0 is no limit
    store.close()


def test_limits_hold_across_two_server_processes(postgres: Any, tmp_path: Path) -> None:
    """Counted in the shared database, not in a process: two workers behind one address."""
    postgres.psql("CREATE DATABASE abuse_two_processes")
    settings = {
        "db_url": postgres.url_for("abuse_two_processes"),
        "new_accounts_per_ip_per_hour": 2,
        "directory_misses_per_client_per_hour": 3,
    }
    ca_state.load_or_create(service_config.load(tmp_path, settings))
    with (
        ServerProcess(tmp_path, **settings) as first,
        ServerProcess(tmp_path, **settings) as second,
        httpx.Client(timeout=30) as http,
    ):
        acme_client(http, first.url).register()
        acme_client(http, second.url).register()
        third = acme_client(http, first.url)
        refused = third.post(
            third.directory["newAccount"], {"termsOfServiceAgreed": True}, kid=False
        )
        rate_limited(refused, "new accounts from one address per hour")
        # existence probing spread over both: the misses at one count at the other
        probes = [http.get(f"{first.url}/certs/p{n}@example.test") for n in range(3)]
        assert [probe.status_code for probe in probes] == [404, 404, 404]
        assert http.get(f"{second.url}/certs/p9@example.test").status_code == 429


# ---- the directory ------------------------------------------------------------------------------


def test_directory_misses_per_client_stop_every_lookup(db_url: str, tmp_path: Path) -> None:
    """Probing which addresses exist: past the misses, a lookup that would succeed is refused
    too, so the refusal tells nothing."""
    with service(db_url, tmp_path, directory_misses_per_client_per_hour=3) as http:
        publish(http, "listed@example.test")
        assert http.get("/certs/listed@example.test").status_code == 200  # hits do not count
        statuses = [http.get(f"/certs/probe{n}@example.test").status_code for n in range(3)]
        assert statuses == [404, 404, 404]
        for address in ("probe9@example.test", "listed@example.test"):
            refused = http.get(f"/certs/{address}")
            assert refused.status_code == 429
            assert refused.json()["status"] == 429 and "found nothing" in refused.json()["detail"]
            assert 0 < int(refused.headers["Retry-After"]) <= 3600


# ---- request size -------------------------------------------------------------------------------


def raw_exchange(port: int, head: bytes, body_parts: list[bytes]) -> bytes:
    """Send a request head and some body parts, never the rest, and read what the server says
    (it must answer without waiting for a body it will not take)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head)
        for part in body_parts:
            sock.sendall(part)
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
        return answer


@pytest.mark.parametrize("path", ["/tsa", "/acme/new-account", "/certs/x@example.test"])
def test_a_body_over_the_limit_is_refused_before_it_is_read(world: PkiWorld, path: str) -> None:
    """Content-Length says 10 MB and 100 KB are sent: 413 at once (the TSA used to read the
    whole body first); the same without Content-Length, chunked: 413 once 64 KiB have come."""
    port = world.port
    limit = world.state.config.max_request_bytes
    declared = raw_exchange(
        port,
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/timestamp-query\r\n"
        f"Content-Length: {10 * 1024 * 1024}\r\n\r\n".encode(),
        [b"\0" * 100_000],
    )
    assert declared.startswith(b"HTTP/1.1 413"), declared[:200]
    if path.startswith("/certs/"):
        return  # a GET route reads no body at all (405 to a chunked POST)
    chunk = b"\0" * 16384
    chunked = raw_exchange(
        port,
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/timestamp-query\r\n"
        "Transfer-Encoding: chunked\r\n\r\n".encode(),
        [b"4000\r\n" + chunk + b"\r\n"] * (limit // len(chunk) + 2),  # never the last chunk
    )
    assert chunked.startswith(b"HTTP/1.1 413"), chunked[:200]
    if path.startswith("/acme/"):
        assert b"urn:ietf:params:acme:error:malformed" in chunked
        assert b"replay-nonce" in declared.lower()
    # within the limit, a chunked query is served as before
    if path == "/tsa":
        answer = httpx.post(
            f"{world.url}/tsa",
            content=iter([b"\x30\x03", b"\x02\x01\x01"]),
            headers={"content-type": "application/timestamp-query"},
        )
        assert answer.status_code == 200
        assert answer.headers["content-type"] == "application/timestamp-reply"


# ---- the event loop -----------------------------------------------------------------------------


def test_tsa_signing_leaves_the_event_loop_free(
    world: PkiWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While one token is being made (held inside make_response), the same server still answers
    other requests: signing runs in the thread pool, not on the event loop."""
    from shared_pki import tsp

    signing, release = threading.Event(), threading.Event()
    original = tsp.make_response

    def held(*args: Any, **kwargs: Any) -> bytes:
        signing.set()
        release.wait(20)
        return original(*args, **kwargs)

    monkeypatch.setattr(tsp, "make_response", held)
    query = _tsa_query()
    answers: list[httpx.Response] = []
    thread = threading.Thread(
        target=lambda: answers.append(
            httpx.post(
                f"{world.url}/tsa",
                content=query,
                headers={"content-type": "application/timestamp-query"},
                timeout=30,
            )
        )
    )
    thread.start()
    try:
        assert signing.wait(20), "the TSA never started signing"
        health = httpx.get(f"{world.url}/health", timeout=5)  # on the loop: would wait for it
        assert health.status_code == 200
    finally:
        release.set()
        thread.join(30)
    assert answers and answers[0].status_code == 200


def _tsa_query() -> bytes:
    import hashlib

    from asn1crypto import algos, core
    from asn1crypto import tsp as asn1_tsp

    return asn1_tsp.TimeStampReq(
        {
            "version": 1,
            "message_imprint": {
                "hash_algorithm": algos.DigestAlgorithm({"algorithm": "sha256"}),
                "hashed_message": hashlib.sha256(b"held").digest(),
            },
            "cert_req": core.Boolean(True),
        }
    ).dump()


# ---- DKIM ---------------------------------------------------------------------------------------


def test_dkim_is_on_by_default_when_the_service_has_dns_and_pki_toml_says_what_off_means(
    tmp_path: Path,
) -> None:
    config = service_config.load(tmp_path)
    assert config.dkim_required == "auto"
    zone = dkim.zone_resolver({})
    assert dkim.enforced("auto", zone) is True  # a zone given to the service: DNS
    assert dkim.enforced("auto", None) is dkim.system_has_dns()
    assert dkim.enforced("off", zone) is False and dkim.enforced("on", None) is True
    assert service_config.load(tmp_path, {"dkim_required": False}).dkim_required == "off"
    with pytest.raises(ValueError, match="auto, on or off"):
        service_config.load(tmp_path, {"dkim_required": "sometimes"})
    text = service_config.write_default(config).read_text()
    assert 'dkim_required = "auto"' in text
    comments = " ".join(line[2:] for line in text.splitlines() if line.startswith("# "))
    assert "Off means a reply is accepted on its RFC 8823 response alone" in comments
    for knob in service_config.LIMITS:
        assert f"\n{knob} = " in text  # every limit a documented setting
