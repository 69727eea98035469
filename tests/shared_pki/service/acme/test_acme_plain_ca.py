"""The service's knobs that make it behave like another RFC 8823 CA (shared_pki/service/config.py:
acme_path, certs_path, tsa_path, require_contact, authorization_per_order,
order_processing_seconds, offer_sm2), through the ASGI app. The host is tested against a
service configured this way (tests/native_host/domain/test_enrollment_plain_ca.py); here each
knob is shown to do what it says. Validation is short-circuited: mail is not what these tests
are about (the mail knobs are in mail_validation/test_plain_ca_mail.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness.acme_client import AcmeClient, assert_problem, csr_for, new_key
from harness.short_circuit import ShortCircuitValidator
from starlette.testclient import TestClient

from shared_pki import tsp
from shared_pki.service import config as service_config
from shared_pki.service.app import create_app

ALICE = "alice@example.test"


@pytest.fixture
def make_service(tmp_path: Path) -> Iterator[Any]:
    opened: list[TestClient] = []

    def make(**overrides: Any) -> TestClient:
        folder = tmp_path / f"pki-{len(opened)}"
        config = service_config.load(folder, overrides)
        http = TestClient(create_app(config, validator=ShortCircuitValidator()))
        http.__enter__()
        opened.append(http)
        return http

    yield make
    for http in opened:
        http.__exit__(None, None, None)


def client_for(http: TestClient, path: str = "/acme") -> AcmeClient:
    return AcmeClient(http, f"{http.app.state.service.config.public_url}{path}/directory")


def test_the_acme_server_the_directory_and_the_tsa_at_other_paths(make_service: Any) -> None:
    http = make_service(acme_path="/rfc8823/v2/", certs_path="/pubkeys", tsa_path="/ts/rfc3161")
    base = http.app.state.service.config.public_url
    assert http.get("/acme/directory").status_code == 404
    acme = client_for(http, "/rfc8823/v2")
    assert all(
        url.startswith(f"{base}/rfc8823/v2/")
        for key, url in acme.directory.items()
        if key != "meta"
    )
    acme.register("mailto:alice@example.test")
    order, chain = acme.issue(ALICE, new_key())
    assert order["status"] == "valid" and "BEGIN CERTIFICATE" in chain
    assert http.get(f"/certs/{ALICE}").status_code == 404
    assert http.get(f"/pubkeys/{ALICE}").status_code == 200
    query, _nonce = tsp.make_request(b"\x01" * 32)
    for path, status in (("/tsa", 404), ("/ts/rfc3161", 200)):
        answer = http.post(
            path, content=query, headers={"content-type": "application/timestamp-query"}
        )
        assert answer.status_code == status, path


@pytest.mark.parametrize("bad", ["acme", "/a b", "/{x}"])
def test_a_path_that_is_no_path_is_refused_at_start(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ValueError, match="acme_path"):
        service_config.load(tmp_path, {"acme_path": bad})
    with pytest.raises(ValueError, match="must differ"):
        service_config.load(tmp_path, {"certs_path": "/tsa"})


def test_require_contact_refuses_an_account_without_one(make_service: Any) -> None:
    http = make_service(require_contact=True)
    acme = client_for(http)
    refused = acme.post(acme.directory["newAccount"], {"termsOfServiceAgreed": True}, kid=False)
    problem = assert_problem(refused, "invalidContact", 400)
    assert problem["detail"] == "Contact information is missing"
    assert acme.register(f"mailto:{ALICE}")


def test_authorization_per_order_gives_every_order_its_own_challenge(make_service: Any) -> None:
    default = client_for(make_service())
    default.register()
    _url, first = default.order(ALICE)
    _url, second = default.order(ALICE)
    assert first["authorizations"] == second["authorizations"]  # one validation for the pair

    acme = client_for(make_service(authorization_per_order=True))
    acme.register()
    first_url, first = acme.order(ALICE)
    acme.validate(first)
    acme.poll(first_url, "ready")
    second_url, second = acme.order(ALICE)
    assert first["authorizations"] != second["authorizations"]
    (authz_url,) = second["authorizations"]
    assert acme.get(authz_url)["status"] == "pending"  # the valid one is not reused either
    assert acme.get(second_url)["status"] == "pending"


def test_an_order_stays_processing_after_finalize(make_service: Any) -> None:
    acme = client_for(make_service(order_processing_seconds=1.0))
    acme.register()
    url, order = acme.order(ALICE)
    acme.validate(order)
    order = acme.poll(url, "ready")
    finalized = acme.finalize(order, csr_for(ALICE, new_key()))
    assert finalized.status_code == 200
    assert finalized.json()["status"] == "processing"
    assert "certificate" not in finalized.json()
    seen = acme.post(url, None)
    assert seen.json()["status"] == "processing" and seen.headers["Retry-After"] == "1"
    valid = acme.poll(url, "valid")
    assert "BEGIN CERTIFICATE" in acme.certificate(valid["certificate"])


def test_a_ca_without_sm2_says_so_and_refuses_sm2_requests(make_service: Any) -> None:
    assert client_for(make_service()).directory["meta"]["smimeSuites"] == ["intl", "sm"]
    acme = client_for(make_service(offer_sm2=False))
    assert acme.directory["meta"]["smimeSuites"] == ["intl"]
    acme.register()
    url, order = acme.order(ALICE)
    acme.validate(order)
    order = acme.poll(url, "ready")
    refused = acme.finalize(order, csr_for(ALICE, new_key("sm2")))
    assert "SM2" in assert_problem(refused, "badCSR", 400)["detail"]
    assert acme.finalize(order, csr_for(ALICE, new_key())).status_code == 200
