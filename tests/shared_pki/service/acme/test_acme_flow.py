"""The ACME server end to end through the ASGI app, on SQLite and on PostgreSQL: directory and
nonces, the whole enrollment of an `email` identifier (validation short-circuited: mail is
not what these tests are about), the dual pair sharing one authorization, accounts, key
change, orders list and revocation. The refusals are in test_acme_refusals.py."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from harness.acme_client import AcmeClient, assert_problem, csr_for, new_key
from harness.short_circuit import ShortCircuitValidator
from sqlalchemy import select
from starlette.testclient import TestClient

from shared_pki.acme import jws
from shared_pki.ca.crl import crl_entries
from shared_pki.service import config as service_config
from shared_pki.service.app import create_app
from shared_pki.service.storage.store import certificates, challenges


@pytest.fixture(scope="module")
def acme_http(db_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    config = service_config.load(tmp_path_factory.mktemp("acme"), {"db_url": db_url})
    app = create_app(config, validator=ShortCircuitValidator(), orders_page_size=2)
    with TestClient(app) as http:
        yield http


def directory_url(http: TestClient) -> str:
    return f"{http.app.state.service.config.public_url}/acme/directory"


@pytest.fixture
def acme(acme_http: TestClient) -> AcmeClient:
    client = AcmeClient(acme_http, directory_url(acme_http))
    client.register("mailto:owner@example.test")
    return client


def openssl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["openssl", *args], capture_output=True, text=True, check=False)


def split_pem(chain: str) -> list[str]:
    end = "-----END CERTIFICATE-----\n"
    return [part + end for part in chain.split(end) if part.strip()]


def verify_chain(http: TestClient, chain: str, tmp_path: Path, *extra: str) -> None:
    """openssl verify -purpose smimesign of the leaf against /ca/roots.pem, the rest of the
    served chain as untrusted intermediates."""
    roots = tmp_path / "roots.pem"
    roots.write_bytes(http.get("/ca/roots.pem").content)
    leaf, *rest = split_pem(chain)
    (tmp_path / "leaf.pem").write_text(leaf)
    (tmp_path / "untrusted.pem").write_text("".join(rest))
    untrusted, leaf_path = str(tmp_path / "untrusted.pem"), str(tmp_path / "leaf.pem")
    result = openssl("verify", *extra, "-purpose", "smimesign", "-CAfile", str(roots),
                     "-untrusted", untrusted, leaf_path)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def test_directory_and_nonces(acme_http: TestClient) -> None:
    response = acme_http.get("/acme/directory")
    assert response.status_code == 200
    doc = response.json()
    base = acme_http.app.state.service.config.public_url
    assert doc["newNonce"] == f"{base}/acme/new-nonce"
    for name in ("newAccount", "newOrder", "revokeCert", "keyChange"):
        assert doc[name].startswith(f"{base}/acme/")
    assert doc["meta"]["externalAccountRequired"] is False
    assert "Replay-Nonce" in response.headers
    assert response.headers["Link"] == f'<{base}/acme/directory>;rel="index"'
    head = acme_http.head("/acme/new-nonce")
    get = acme_http.get("/acme/new-nonce")
    assert (head.status_code, get.status_code) == (200, 204)
    for reply in (head, get):
        assert reply.headers["Cache-Control"] == "no-store"
        assert 'rel="index"' in reply.headers["Link"]
    nonces = {head.headers["Replay-Nonce"], get.headers["Replay-Nonce"]}
    assert len(nonces) == 2 and all(len(n) >= 22 for n in nonces)
    jws.b64url_decode(head.headers["Replay-Nonce"])


def test_whole_enrollment_to_a_published_verified_certificate(
    acme: AcmeClient, acme_http: TestClient, tmp_path: Path
) -> None:
    address = "alice@Example.TEST"
    order_url, order = acme.order(address)
    assert order["status"] == "pending"
    assert order["identifiers"] == [{"type": "email", "value": "alice@example.test"}]
    (authz_url,) = order["authorizations"]
    authz = acme.get(authz_url)
    assert authz["status"] == "pending" and authz["identifier"]["value"] == "alice@example.test"
    (challenge,) = authz["challenges"]
    assert challenge["type"] == "email-reply-00" and challenge["status"] == "pending"
    hierarchy = acme_http.app.state.service.hierarchy
    assert challenge["from"] == hierarchy.mail_address
    assert len(jws.b64url_decode(challenge["token"])) == 24  # token-part2: 192 bits
    store = acme_http.app.state.service.store
    with store.transaction() as db:
        row = db.execute(
            select(challenges).where(challenges.c.token_part2 == challenge["token"])
        ).one()
    assert len(jws.b64url_decode(row.token_part1)) == 24 and row.token_part1 != row.token_part2
    assert row.token_part1 not in json.dumps(authz)  # token-part1 travels only by mail
    # Answer the challenge: the short-circuit validator decides at once.
    answered = acme.ok(challenge["url"], {})
    assert answered.json()["status"] in ("processing", "valid")
    assert f'<{authz_url}>;rel="up"' in answered.headers["Link"]
    assert acme.poll(authz_url, "valid")["challenges"][0]["status"] == "valid"
    order = acme.poll(order_url, "ready")
    key = new_key("p256")
    finalized = acme.finalize(order, csr_for("alice@example.test", key))
    assert finalized.status_code == 200, finalized.text
    assert finalized.headers["Location"] == order_url
    order = acme.poll(order_url, "valid")
    chain = acme.certificate(order["certificate"])
    leaf, issuing = split_pem(chain)  # leaf + issuing CA, no root
    assert issuing.encode() == hierarchy.intl_issuing.pem
    certificate = x509.load_pem_x509_certificate(leaf.encode())
    san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.value.get_values_for_type(x509.RFC822Name) == ["alice@example.test"]
    verify_chain(acme_http, chain, tmp_path)
    # Published in the directory at once.
    found = acme_http.get("/certs/alice@example.test").json()["certificates"]
    assert f"{certificate.serial_number:x}" in {c["serial"] for c in found}
    # The certificate is the ordering account's to download.
    stranger = AcmeClient(acme_http, acme.directory_url)
    stranger.register()
    assert_problem(stranger.post(order["certificate"], None), "unauthorized", 403)


def test_dual_pair_shares_one_validated_authorization(
    acme: AcmeClient, acme_http: TestClient, tmp_path: Path
) -> None:
    address = "bob@example.test"
    first_url, first = acme.order(address)
    second_url, second = acme.order(address)  # ordered together, before validation
    assert first["authorizations"] == second["authorizations"]
    acme.validate(first)  # one validation for both
    first, second = acme.poll(first_url, "ready"), acme.poll(second_url, "ready")
    assert acme.finalize(first, csr_for(address, new_key("rsa2048"))).status_code == 200
    assert acme.finalize(second, csr_for(address, new_key("sm2"))).status_code == 200
    intl_chain = acme.certificate(acme.poll(first_url, "valid")["certificate"])
    sm2_chain = acme.certificate(acme.poll(second_url, "valid")["certificate"])
    hierarchy = acme_http.app.state.service.hierarchy
    assert split_pem(sm2_chain)[1].encode() == hierarchy.sm2_issuing.pem
    verify_chain(acme_http, intl_chain, tmp_path)
    verify_chain(acme_http, sm2_chain, tmp_path, "-vfyopt", "distid:1234567812345678")
    # A later order for the same address reuses the valid authorization: ready at once.
    _url, third = acme.order(address)
    assert third["authorizations"] == first["authorizations"] and third["status"] == "ready"
    published = acme_http.get(f"/certs/{address}").json()["certificates"]
    assert {c["algorithm"] for c in published} == {"rsa", "sm2"}
    store = acme_http.app.state.service.store
    with store.transaction() as db:
        rows = db.execute(select(certificates).where(certificates.c.address == address)).all()
    assert {(r.issuer, r.algorithm) for r in rows} == {("intl", "rsa"), ("sm2", "sm2")}
    assert {r.account for r in rows} == {acme.account_url.rpartition("/")[2]}


def test_no_reuse_of_valid_authorizations_when_switched_off(
    db_url: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    config = service_config.load(
        tmp_path_factory.mktemp("noreuse"),
        {"db_url": db_url, "reuse_valid_authorizations": False},
    )
    app = create_app(config, validator=ShortCircuitValidator())
    with TestClient(app) as http:
        client = AcmeClient(http, directory_url(http))
        client.register()
        url, order = client.order("carol@example.test")
        client.validate(order)
        client.poll(url, "ready")
        _url, again = client.order("carol@example.test")
        assert again["status"] == "pending"
        assert again["authorizations"] != order["authorizations"]


def test_existing_account_contact_update_and_deactivation(
    acme: AcmeClient, acme_http: TestClient
) -> None:
    again = acme.post(acme.directory["newAccount"], {}, kid=False)
    assert again.status_code == 200 and again.headers["Location"] == acme.account_url
    only = acme.post(acme.directory["newAccount"], {"onlyReturnExisting": True}, kid=False)
    assert only.status_code == 200 and only.headers["Location"] == acme.account_url
    unknown = AcmeClient(acme_http, acme.directory_url, new_key("rsa2048"))  # RS256
    refused = unknown.post(acme.directory["newAccount"], {"onlyReturnExisting": True}, kid=False)
    assert_problem(refused, "accountDoesNotExist", 400)
    account = acme.get(acme.account_url)
    assert account["status"] == "valid" and account["contact"] == ["mailto:owner@example.test"]
    updated = acme.ok(acme.account_url, {"contact": ["mailto:new@Example.test"]}).json()
    assert updated["contact"] == ["mailto:new@example.test"]
    assert_problem(acme.post(acme.account_url, {"contact": ["tel:+1"]}), "unsupportedContact", 400)
    url, _order = acme.order("dave@example.test")
    gone = acme.ok(acme.account_url, {"status": "deactivated"}).json()
    assert gone["status"] == "deactivated"
    assert_problem(acme.post(url, None), "unauthorized", 403)
    assert_problem(acme.post(acme.directory["newAccount"], {}, kid=False), "unauthorized", 403)


def test_orders_list_is_paginated(acme: AcmeClient) -> None:
    urls = [acme.order(f"erin{i}@example.test")[0] for i in range(3)]
    first = acme.ok(acme.get(acme.account_url)["orders"], None)
    assert first.json()["orders"] == urls[:2]
    links = first.headers["Link"]
    assert 'rel="next"' in links
    next_url = next(
        part.split(";")[0].strip(" <>") for part in links.split(",") if 'rel="next"' in part
    )
    second = acme.ok(next_url, None)
    assert second.json()["orders"] == urls[2:]
    assert 'rel="next"' not in second.headers["Link"]


def test_key_change(acme: AcmeClient, acme_http: TestClient) -> None:
    old_key, new = acme.key, new_key("p256")
    url = acme.directory["keyChange"]
    body = jws.serialize(
        jws.sign_key_change(
            account_url=acme.account_url, old_key=old_key, new_key=new, url=url,
            nonce=acme.nonce(),
        )
    )  # fmt: skip
    assert acme.send(url, body).status_code == 200
    assert_problem(acme.post(acme.account_url, None), "malformed", 400)  # old key: no longer
    acme.key = new
    assert acme.get(acme.account_url)["status"] == "valid"
    # A key that is already another account's: 409 Conflict naming that account.
    other = AcmeClient(acme_http, acme.directory_url)
    other_url = other.register()
    body = jws.serialize(
        jws.sign_key_change(
            account_url=acme.account_url, old_key=new, new_key=other.key, url=url,
            nonce=acme.nonce(),
        )
    )  # fmt: skip
    conflict = acme.send(url, body)
    assert_problem(conflict, "malformed", 409)
    assert conflict.headers["Location"] == other_url


def test_revocation_by_owner_certificate_key_and_refusals(
    acme: AcmeClient, acme_http: TestClient
) -> None:
    key = new_key("p256")
    _order, chain = acme.issue("frank@example.test", key)
    leaf = x509.load_pem_x509_certificate(chain.encode())
    der = leaf.public_bytes(Encoding.DER)
    payload = {"certificate": jws.b64url_encode(der), "reason": 1}
    revoke = acme.directory["revokeCert"]
    stranger = AcmeClient(acme_http, acme.directory_url, new_key("ed25519"))  # EdDSA account
    stranger.register()
    assert_problem(stranger.post(revoke, payload), "unauthorized", 403)
    assert_problem(acme.post(revoke, {**payload, "reason": 7}), "badRevocationReason", 400)
    assert acme_http.get("/certs/frank@example.test").status_code == 200
    response = acme.post(revoke, payload)
    assert response.status_code == 200, response.text
    assert acme_http.get("/certs/frank@example.test").status_code == 404  # withdrawn at once
    entries = {e.serial: e for e in crl_entries(acme_http.get("/crl/intl-issuing.crl").content)}
    assert leaf.serial_number in entries
    assert_problem(acme.post(revoke, payload), "alreadyRevoked", 400)
    # Signed by the certificate's own key (jwk form), no account at all.
    key2 = new_key("p256")
    _order, chain2 = acme.issue("frank@example.test", key2)
    der2 = x509.load_pem_x509_certificate(chain2.encode()).public_bytes(Encoding.DER)
    wrong_key = acme.post(revoke, {"certificate": jws.b64url_encode(der2)}, key=key, kid=False)
    assert_problem(wrong_key, "unauthorized", 403)
    by_key = acme.post(revoke, {"certificate": jws.b64url_encode(der2)}, key=key2, kid=False)
    assert by_key.status_code == 200, by_key.text
    foreign = csr_for("x@example.test", new_key("p256"))  # not a certificate at all
    assert_problem(acme.post(revoke, {"certificate": jws.b64url_encode(foreign)}), "malformed", 400)
