"""The PKI service over HTTP with real peers: CA bundles and CRLs read by OpenSSL, TSA tokens
verified by `openssl ts`, and the certificate directory's lookups, withdrawals and limits; the
same tests on SQLite and on PostgreSQL."""

from __future__ import annotations

import datetime
import subprocess
import time
from pathlib import Path

import pytest
from asn1crypto import pem as asn1_pem
from sqlalchemy import insert, update
from starlette.testclient import TestClient

from shared_pki import sm2
from shared_pki.ca import profile
from shared_pki.service.storage.store import certificates
from shared_pki.x509 import sm2_certs


def openssl(*args: str, data: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["openssl", *args], input=data, capture_output=True, check=False)


def test_bundles_hold_both_roots_and_both_issuing_cas(client: TestClient) -> None:
    roots = client.get("/ca/roots.pem")
    intermediates = client.get("/ca/intermediates.pem")
    assert roots.status_code == intermediates.status_code == 200
    assert roots.headers["content-type"] == "application/pem-certificate-chain"
    assert len(list(asn1_pem.unarmor(roots.content, multiple=True))) == 2
    assert len(list(asn1_pem.unarmor(intermediates.content, multiple=True))) == 2
    assert client.get("/ca/nonsense.cer").status_code == 404


@pytest.mark.parametrize("label", ["intl-issuing", "intl-root"])
def test_crls_verify_with_openssl(client: TestClient, tmp_path: Path, label: str) -> None:
    (tmp_path / "ca.der").write_bytes(client.get(f"/ca/{label}.cer").content)
    (tmp_path / "crl.der").write_bytes(client.get(f"/crl/{label}.crl").content)
    openssl("x509", "-inform", "DER", "-in", str(tmp_path / "ca.der"),
            "-out", str(tmp_path / "ca.pem"))  # fmt: skip
    done = openssl("crl", "-inform", "DER", "-in", str(tmp_path / "crl.der"),
                   "-CAfile", str(tmp_path / "ca.pem"), "-noout")  # fmt: skip
    assert done.returncode == 0 and b"verify OK" in done.stderr, done.stderr


def test_tsa_tokens_verify_with_openssl_and_bad_queries_get_rejections(
    client: TestClient, tmp_path: Path
) -> None:
    (tmp_path / "data").write_bytes(b"what was signed")
    (tmp_path / "roots.pem").write_bytes(client.get("/ca/roots.pem").content)
    (tmp_path / "inter.pem").write_bytes(client.get("/ca/intermediates.pem").content)
    query = openssl("ts", "-query", "-data", str(tmp_path / "data"), "-sha384", "-cert").stdout
    reply = client.post(
        "/tsa", content=query, headers={"content-type": "application/timestamp-query"}
    )
    assert reply.headers["content-type"] == "application/timestamp-reply"
    (tmp_path / "q.tsq").write_bytes(query)
    (tmp_path / "r.tsr").write_bytes(reply.content)
    done = openssl("ts", "-verify", "-in", str(tmp_path / "r.tsr"), "-queryfile",
                   str(tmp_path / "q.tsq"), "-CAfile", str(tmp_path / "roots.pem"),
                   "-untrusted", str(tmp_path / "inter.pem"))  # fmt: skip
    assert done.returncode == 0 and b"Verification: OK" in done.stdout, done.stderr
    serials = set()
    for _ in range(5):
        again = client.post(
            "/tsa", content=query, headers={"content-type": "application/timestamp-query"}
        )
        (tmp_path / "again.tsr").write_bytes(again.content)
        text = openssl("ts", "-reply", "-in", str(tmp_path / "again.tsr"), "-text").stdout
        serials.add(next(line for line in text.splitlines() if line.startswith(b"Serial")))
    assert len(serials) == 5
    for body, content_type in ((b"garbage", "application/timestamp-query"),
                               (query, "text/plain")):  # fmt: skip
        bad = client.post("/tsa", content=body, headers={"content-type": content_type})
        (tmp_path / "bad.tsr").write_bytes(bad.content)
        text = openssl("ts", "-reply", "-in", str(tmp_path / "bad.tsr"), "-text").stdout
        assert b"Status: Rejected" in text, text


def _publish(client: TestClient, address: str, family: str = "intl", **times: float) -> str:
    """Issue a real certificate for address from the service's own CA and record it as the
    ACME finalize step does (the directory reads what issuance wrote)."""
    state = client.app.state.service
    hierarchy = state.hierarchy
    if family == "sm2":
        key = sm2.generate_private_key()
        csr = sm2_certs.build_csr(key, emails=(address,))
    else:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec

        key = ec.generate_private_key(ec.SECP256R1())
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([]))
            .add_extension(x509.SubjectAlternativeName([x509.RFC822Name(address)]), False)
            .sign(key, hashes.SHA256())
            .public_bytes(serialization.Encoding.DER)
        )
    info = profile.check_csr(csr, address)
    serial = profile.random_serial()
    now = datetime.datetime.now(datetime.UTC)
    der = profile.issue(
        info, hierarchy.issuing(family), serial=serial, not_before=now, days=30,
        crl_url=hierarchy.crl_url(f"{family}-issuing"),
        aia_url=hierarchy.aia_url(f"{family}-issuing"),
    )  # fmt: skip
    with state.store.transaction() as db:
        db.execute(
            insert(certificates).values(
                serial=f"{serial:x}", issuer=family, address=address,
                algorithm="sm2" if family == "sm2" else "ecdsa",
                not_before=times.get("not_before", now.timestamp() - 60),
                not_after=times.get("not_after", now.timestamp() + 30 * 86400),
                der=der, published=True,
            )
        )  # fmt: skip
    return f"{serial:x}"


def test_directory_serves_both_algorithms_by_exact_address(client: TestClient) -> None:
    intl = _publish(client, "dora@example.test")
    sm = _publish(client, "dora@example.test", "sm2")
    found = client.get("/certs/dora@EXAMPLE.test")
    assert found.status_code == 200
    body = found.json()
    assert body["address"] == "dora@example.test"
    assert {c["serial"] for c in body["certificates"]} == {intl, sm}
    assert {c["algorithm"] for c in body["certificates"]} == {"ecdsa", "sm2"}
    chain = client.get(
        "/certs/dora@example.test", headers={"accept": "application/pem-certificate-chain"}
    )
    assert chain.headers["content-type"].startswith("application/pem-certificate-chain")
    assert chain.text.count("BEGIN CERTIFICATE") == 2
    assert client.get("/certs/Dora@example.test").status_code == 404  # local part is exact
    assert client.get("/certs/dora@example").status_code == 400
    assert client.get("/certs/").status_code == 404  # no listing


def test_revoked_and_expired_certificates_are_withdrawn_at_once(client: TestClient) -> None:
    serial = _publish(client, "erin@example.test")
    assert client.get("/certs/erin@example.test").status_code == 200
    state = client.app.state.service
    with state.store.transaction() as db:
        db.execute(
            update(certificates)
            .where(certificates.c.serial == serial)
            .values(revoked=time.time(), reason=1)
        )
    assert client.get("/certs/erin@example.test").status_code == 404
    crl = client.get("/crl/intl-issuing.crl").content
    from shared_pki.ca.crl import crl_revoked_serials

    assert int(serial, 16) in crl_revoked_serials(crl)
    _publish(client, "fred@example.test", not_after=time.time() - 1)
    assert client.get("/certs/fred@example.test").status_code == 404


def test_directory_answers_carry_validators_tied_to_the_newest_certificate(
    client: TestClient,
) -> None:
    """ETag names exactly the certificates served (per representation), a matching
    If-None-Match gets 304 without a body, max-age is the configured figure but never beyond
    the newest certificate's expiry; a new certificate or a revocation changes the ETag."""
    configured = client.app.state.service.config.directory_max_age_seconds
    assert configured == 60
    serial = _publish(client, "gina@example.test", not_after=time.time() + 30 * 86400)
    first = client.get("/certs/gina@example.test")
    etag = first.headers["etag"]
    assert first.headers["cache-control"] == f"max-age={configured}"
    assert first.headers["vary"] == "Accept"
    again = client.get("/certs/gina@example.test", headers={"if-none-match": etag})
    assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == etag
    pem = client.get(
        "/certs/gina@example.test", headers={"accept": "application/pem-certificate-chain"}
    )
    assert pem.status_code == 200 and pem.headers["etag"] != etag

    _publish(client, "gina@example.test", not_after=time.time() + 60 * 86400)  # renewed
    renewed = client.get("/certs/gina@example.test", headers={"if-none-match": etag})
    assert renewed.status_code == 200 and len(renewed.json()["certificates"]) == 2
    assert renewed.headers["etag"] != etag
    state = client.app.state.service
    with state.store.transaction() as db:
        db.execute(
            update(certificates)
            .where(certificates.c.serial == serial)
            .values(revoked=time.time(), reason=1)
        )
    withdrawn = client.get(
        "/certs/gina@example.test", headers={"if-none-match": renewed.headers["etag"]}
    )
    assert withdrawn.status_code == 200 and len(withdrawn.json()["certificates"]) == 1

    _publish(client, "hank@example.test", not_after=time.time() + 20)
    ending = client.get("/certs/hank@example.test")
    assert ending.headers["cache-control"] in ("max-age=19", "max-age=20")
    missing = client.get("/certs/nobody.yet@example.test")
    assert missing.status_code == 404
    assert missing.headers["cache-control"] == f"max-age={configured}"


def test_a_revocation_dated_before_the_latest_one_reaches_the_crl(client: TestClient) -> None:
    """A key compromise reported late is revoked with the (earlier) compromise time: the CRL
    cached since the latest revocation must still be rebuilt (it once kept the old one)."""
    from shared_pki.ca.crl import crl_revoked_serials
    from shared_pki.service.ca import issuance

    store = client.app.state.service.store
    first, second = _publish(client, "gus@example.test"), _publish(client, "hal@example.test")
    issuance.revoke(store, first, 1, now=time.time() + 60)
    assert int(first, 16) in crl_revoked_serials(client.get("/crl/intl-issuing.crl").content)
    issuance.revoke(store, second, 1, now=time.time() - 3600)
    listed = crl_revoked_serials(client.get("/crl/intl-issuing.crl").content)
    assert {int(first, 16), int(second, 16)} <= set(listed)


def test_directory_lookups_are_rate_limited_per_client(client: TestClient) -> None:
    statuses = [client.get("/certs/nobody@example.test").status_code for _ in range(60)]
    assert 429 in statuses
    assert statuses.index(429) <= 50


def test_nonces_are_single_use_across_connections(client: TestClient) -> None:
    store = client.app.state.service.store
    store.add_nonce("n-1")
    assert store.use_nonce("n-1") is True
    assert store.use_nonce("n-1") is False
    assert store.use_nonce("never-issued") is False
