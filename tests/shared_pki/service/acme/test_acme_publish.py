"""Publishing a certificate from another CA: only with proof of mailbox control (a valid
authorization of the signing account for that address); withdrawal; refusals."""

from __future__ import annotations

import datetime
from collections.abc import Iterator

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from harness.acme_client import AcmeClient, assert_problem
from harness.short_circuit import ShortCircuitValidator
from starlette.testclient import TestClient

from shared_pki.acme import jws
from shared_pki.service import config as service_config
from shared_pki.service.app import create_app


@pytest.fixture(scope="module")
def http(db_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    config = service_config.load(
        tmp_path_factory.mktemp("pki"),
        {"db_url": db_url, "public_url": "http://testserver"},
    )
    app = create_app(config, validator=ShortCircuitValidator())
    with TestClient(app) as client:
        yield client


def foreign_certificate(address: str, *, email_protection: bool = True) -> bytes:
    """A certificate for address from a CA that is not ours."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Elsewhere CA")])
    now = datetime.datetime.now(datetime.UTC)
    usage = (
        ExtendedKeyUsageOID.EMAIL_PROTECTION
        if email_protection
        else ExtendedKeyUsageOID.CODE_SIGNING
    )
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([]))
        .issuer_name(name)
        .public_key(ec.generate_private_key(ec.SECP256R1()).public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.RFC822Name(address)]), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.DER)
    )


def publish(acme: AcmeClient, der: bytes, **extra: object):
    return acme.post(
        acme.directory["publishCert"], {"certificate": jws.b64url_encode(der), **extra}
    )


def test_publishing_needs_a_proved_mailbox(http: TestClient) -> None:
    acme = AcmeClient(http, "http://testserver/acme/directory")
    acme.register()
    der = foreign_certificate("gina@example.test")
    assert_problem(publish(acme, der), "unauthorized", 403)
    assert http.get("/certs/gina@example.test").status_code == 404

    url, order = acme.order("gina@example.test")
    acme.validate(order)
    acme.poll(url, "ready")
    published = publish(acme, der)
    assert published.status_code == 201, published.text
    listed = http.get("/certs/gina@example.test").json()["certificates"]
    assert [c["algorithm"] for c in listed] == ["ecdsa"]

    stranger = AcmeClient(http, "http://testserver/acme/directory")
    stranger.register()
    assert_problem(publish(stranger, der, withdraw=True), "unauthorized", 403)
    assert publish(acme, der, withdraw=True).status_code == 200
    assert http.get("/certs/gina@example.test").status_code == 404


def test_unusable_or_malformed_certificates_are_refused(http: TestClient) -> None:
    acme = AcmeClient(http, "http://testserver/acme/directory")
    acme.register()
    url, order = acme.order("hank@example.test")
    acme.validate(order)
    acme.poll(url, "ready")
    assert_problem(
        publish(acme, foreign_certificate("hank@example.test", email_protection=False)),
        "malformed", 400,
    )  # fmt: skip
    assert_problem(publish(acme, b"not a certificate"), "malformed", 400)
    assert_problem(publish(acme, foreign_certificate("ivy@example.test")), "unauthorized", 403)
