"""Every refusal of the ACME server as the RFC 8555 problem it must be (type, HTTP status,
problem+json, a fresh nonce), on SQLite and PostgreSQL; and no input, however bad, gets a 500."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
from harness.acme_client import AcmeClient, assert_problem, csr_for, new_key, problem_type
from harness.short_circuit import ShortCircuitValidator
from sqlalchemy import update
from starlette.testclient import TestClient

from shared_pki.acme import jws
from shared_pki.service import config as service_config
from shared_pki.service.app import create_app
from shared_pki.service.storage.store import authorizations, challenges


def make_app(
    db_url: str,
    tmp_path_factory: pytest.TempPathFactory,
    *,
    validator: bool = True,
    **settings: object,
) -> TestClient:
    config = service_config.load(tmp_path_factory.mktemp("acme"), {"db_url": db_url, **settings})
    return TestClient(create_app(config, validator=ShortCircuitValidator() if validator else None))


@pytest.fixture(scope="module")
def acme_http(db_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    with make_app(db_url, tmp_path_factory) as http:
        yield http


def client_for(http: TestClient, key_kind: str = "p256") -> AcmeClient:
    url = f"{http.app.state.service.config.public_url}/acme/directory"
    client = AcmeClient(http, url, new_key(key_kind))
    client.register()
    return client


@pytest.fixture
def acme(acme_http: TestClient) -> AcmeClient:
    return client_for(acme_http)


def test_jws_refusals(acme: AcmeClient) -> None:
    url = acme.directory["newOrder"]
    payload = {"identifiers": [{"type": "email", "value": "a@example.test"}]}
    # A tampered signature.
    body = json.loads(acme.sign(url, payload))
    body["signature"] = body["signature"][:-4] + (
        "AAAA" if body["signature"][-4:] != "AAAA" else "BBBB"
    )
    assert_problem(acme.send(url, json.dumps(body).encode()), "malformed", 400)
    # A payload swapped under a valid signature.
    body = json.loads(acme.sign(url, payload))
    body["payload"] = jws.b64url_encode(b'{"identifiers":[]}')
    assert_problem(acme.send(url, json.dumps(body).encode()), "malformed", 400)
    # A replayed nonce: accepted once, refused the second time.
    nonce = acme.fresh_nonce()
    assert acme.post(url, payload, nonce=nonce).status_code == 201
    replay = acme.post(url, payload, nonce=nonce)
    assert_problem(replay, "badNonce", 400)
    assert replay.headers["Replay-Nonce"] != nonce
    # A nonce this server never issued.
    assert_problem(acme.post(url, payload, nonce=jws.b64url_encode(b"x" * 16)), "badNonce", 400)
    # The url signed is not the url posted to.
    wrong = acme.post(url, payload, signed_url=acme.directory["newAccount"])
    assert_problem(wrong, "unauthorized", 403)
    # An unknown kid, and a kid that is not even one of our URLs.
    unknown = acme.post(url, payload, kid=acme.account_url + "x")
    assert_problem(unknown, "accountDoesNotExist", 400)
    assert_problem(acme.post(url, payload, kid="https://elsewhere.test/acct/1"),
                   "accountDoesNotExist", 400)  # fmt: skip
    # newAccount must carry its key as jwk; other requests must use kid.
    assert_problem(acme.post(acme.directory["newAccount"], {}), "malformed", 400)
    assert_problem(acme.post(url, payload, kid=False), "malformed", 400)
    # Media type, non-JSON bodies, a body over the limit.
    plain = acme.send(url, acme.sign(url, payload), content_type="application/json")
    assert_problem(plain, "malformed", 415)
    assert_problem(acme.send(url, b"not json"), "malformed", 400)
    assert_problem(acme.send(url, b"{" * 5000), "malformed", 400)
    # over the service's size limit: refused before it is read (413), still a problem + nonce
    assert_problem(acme.send(url, b"x" * (jws.MAX_BODY_BYTES + 10)), "malformed", 413)
    # GET where RFC 8555 wants POST(-as-GET): 405 with a problem, not a bare framework page.
    got = acme.http.get(acme.account_url)
    assert_problem(got, "malformed", 405)
    assert got.headers["Allow"] == "POST"


def test_identifier_refusals(acme: AcmeClient) -> None:
    url = acme.directory["newOrder"]

    def order(*identifiers: dict[str, str], **extra: object) -> object:
        return acme.post(url, {"identifiers": list(identifiers), **extra})

    dns = assert_problem(
        order({"type": "dns", "value": "example.test"}), "unsupportedIdentifier", 400
    )
    assert dns["identifier"] == {"type": "dns", "value": "example.test"}
    assert_problem(order({"type": "email", "value": "not-an-address"}), "rejectedIdentifier", 400)
    assert_problem(order({"type": "email", "value": "a@example.test"},
                         {"type": "email", "value": "b@example.test"}),
                   "rejectedIdentifier", 400)  # fmt: skip
    assert_problem(acme.post(url, {"identifiers": []}), "malformed", 400)
    assert_problem(acme.post(url, None), "malformed", 400)
    assert_problem(order({"type": "email", "value": "a@example.test"},
                         notAfter="2030-01-01T00:00:00Z"), "malformed", 400)  # fmt: skip


def test_other_accounts_resources_are_refused(acme: AcmeClient, acme_http: TestClient) -> None:
    order_url, order = acme.order("owner@example.test")
    (authz_url,) = order["authorizations"]
    challenge_url = acme.get(authz_url)["challenges"][0]["url"]
    thief = client_for(acme_http, "p384")
    for url, payload in (
        (order_url, None),
        (authz_url, None),
        (challenge_url, {}),
        (order["finalize"], {"csr": jws.b64url_encode(csr_for("owner@example.test", thief.key))}),
        (acme.account_url, None),
        (acme.get(acme.account_url)["orders"], None),
        (authz_url, {"status": "deactivated"}),
    ):
        assert_problem(thief.post(url, payload), "unauthorized", 403)
    # Nothing changed for the owner.
    assert acme.get(challenge_url)["status"] == "pending"
    assert acme.get(order_url)["status"] == "pending"
    missing = acme.post(order_url + "x", None)
    assert_problem(missing, "malformed", 404)


def test_finalize_refusals(acme: AcmeClient) -> None:
    address = "gina@example.test"
    order_url, order = acme.order(address)
    good = csr_for(address, new_key("p256"))
    early = acme.post(order["finalize"], {"csr": jws.b64url_encode(good)})
    assert_problem(early, "orderNotReady", 403)
    acme.validate(order)
    order = acme.poll(order_url, "ready")
    other = acme.finalize(order, csr_for("someone.else@example.test", new_key("p256")))
    assert_problem(other, "rejectedIdentifier", 400)
    extra_name = acme.finalize(order, csr_for(address, new_key("p256"), address, "x@example.test"))
    assert_problem(extra_name, "rejectedIdentifier", 400)
    assert_problem(acme.finalize(order, csr_for(address, new_key("rsa1024"))), "badCSR", 400)
    assert_problem(acme.finalize(order, b"\x30\x03\x02\x01\x00"), "badCSR", 400)
    assert_problem(acme.post(order["finalize"], {"csr": "***"}), "badCSR", 400)
    assert_problem(acme.post(order["finalize"], {}), "badCSR", 400)
    # Refused CSRs leave the order ready: a good one is then issued, once.
    assert acme.get(order_url)["status"] == "ready"
    assert acme.finalize(order, good).status_code == 200
    assert acme.get(order_url)["status"] == "valid"
    assert_problem(acme.finalize(order, good), "orderNotReady", 403)


def test_expired_challenge_fails_the_authorization_and_order(
    acme: AcmeClient, acme_http: TestClient
) -> None:
    order_url, order = acme.order("hank@example.test")
    (authz_url,) = order["authorizations"]
    challenge = acme.get(authz_url)["challenges"][0]
    store = acme_http.app.state.service.store
    past = time.time() - 1
    with store.transaction() as db:
        authz_id = authz_url.rpartition("/")[2]
        db.execute(update(authorizations).where(authorizations.c.id == authz_id)
                   .values(expires=past))  # fmt: skip
        db.execute(update(challenges).where(challenges.c.authorization == authz_id)
                   .values(expires=past))  # fmt: skip
    assert_problem(acme.post(challenge["url"], {}), "unauthorized", 403)
    assert acme.get(challenge["url"])["status"] == "invalid"
    assert acme.get(authz_url)["status"] in ("expired", "invalid")
    assert acme.get(order_url)["status"] == "invalid"
    # A new order for the address gets a new authorization, not the dead one.
    _url, again = acme.order("hank@example.test")
    assert again["authorizations"] != order["authorizations"]


def test_deactivated_authorization_invalidates_its_order(acme: AcmeClient) -> None:
    order_url, order = acme.order("ivy@example.test")
    (authz_url,) = order["authorizations"]
    assert acme.ok(authz_url, {"status": "deactivated"}).json()["status"] == "deactivated"
    assert acme.get(order_url)["status"] == "invalid"
    assert_problem(acme.post(authz_url, {"status": "deactivated"}), "malformed", 400)
    assert_problem(acme.post(authz_url, {"status": "valid"}), "malformed", 400)


def test_no_validator_means_no_validation(
    db_url: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    with make_app(db_url, tmp_path_factory, validator=False) as http:
        acme = client_for(http)
        _url, order = acme.order("jack@example.test")
        challenge = acme.get(order["authorizations"][0])["challenges"][0]
        doc = assert_problem(acme.post(challenge["url"], {}), "serverInternal", 503)
        assert "not configured" in doc["detail"]
        assert acme.get(challenge["url"])["status"] == "pending"


def test_pebble_checks_nonce_share_and_validation_delay(
    db_url: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    with make_app(
        db_url, tmp_path_factory, reject_nonce_share=0.5, validation_delay_seconds=0.3
    ) as http:
        acme = AcmeClient(http, f"{http.app.state.service.config.public_url}/acme/directory")
        acme.retry_bad_nonce = True
        acme.register()
        refusals = 0
        for _ in range(20):
            response = acme.send(acme.account_url, acme.sign(acme.account_url, None))
            refusals += problem_type(response) == "badNonce"
        assert 0 < refusals < 20
        url, order = acme.order("kim@example.test")
        challenge = acme.get(order["authorizations"][0])["challenges"][0]
        assert acme.ok(challenge["url"], {}).json()["status"] == "processing"
        assert acme.poll(url, "ready", deadline=10)["status"] == "ready"


def test_no_bad_input_gets_a_500(acme: AcmeClient) -> None:
    order_url, order = acme.order("lee@example.test")
    targets = [
        acme.directory["newAccount"], acme.directory["newOrder"], acme.directory["revokeCert"],
        acme.directory["keyChange"], acme.account_url, order_url, order["finalize"],
        order["authorizations"][0],
    ]  # fmt: skip
    junk_payloads: list[object] = [
        {"identifiers": "x"}, {"identifiers": [{"type": 1, "value": None}]}, {"csr": 5},
        {"certificate": "AAAA", "reason": "x"}, {"contact": [1]}, {"status": 3},
        {"account": None, "oldKey": {}}, {"status": "deactivated", "x": 1}, {"protected": 1},
        {"onlyReturnExisting": "yes"}, {"identifiers": [{"type": "email", "value": "a@[1.2.3.4]"}]},
    ]  # fmt: skip
    bodies = [b"", b"[]", b"null", b'{"protected":"","payload":"","signature":""}', b"\xff\xfe"]
    for url in targets:
        for payload in junk_payloads:
            for kid in (True, False):
                response = acme.post(url, payload, kid=kid)  # type: ignore[arg-type]
                assert response.status_code < 500, (url, payload, response.text)
                assert problem_type(response) or response.status_code < 300
        for body in bodies:
            assert acme.send(url, body).status_code in (400, 415)
