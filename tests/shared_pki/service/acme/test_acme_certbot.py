"""certbot's `acme` package as an independent client against our server in a real uvicorn
process: account, an order for an `email` identifier, the `email-reply-00` challenge (a
challenge type we teach the package, as REFERENCE.md describes), validation (short-circuited:
no mail here), finalize, the certificate chain, revocation and account deactivation.

The package orders only dns/ip identifiers from a CSR itself, so the order is posted with its
own NewOrder message and a custom IdentifierType('email'); the rest is the package's flow."""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from pathlib import Path

import httpx
import josepy as jose
import pytest
from acme import client, errors, messages
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from harness.acme_client import ServerProcess, csr_for, new_key
from harness.certbot_email import IDENTIFIER_EMAIL, EmailReply00, EmailReply00Response


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with ServerProcess(tmp_path_factory.mktemp("pki")) as process:
        yield process


def certbot_client(server: ServerProcess) -> client.ClientV2:
    key = jose.JWKEC(key=ec.generate_private_key(ec.SECP256R1()))
    net = client.ClientNetwork(key, alg=jose.ES256, user_agent="autosmime-tests")
    directory = client.ClientV2.get_directory(f"{server.url}/acme/directory", net)
    return client.ClientV2(directory, net)


def test_certbot_acme_package_enrolls_an_email_address(server: ServerProcess) -> None:
    acme = certbot_client(server)
    regr = acme.new_account(
        messages.NewRegistration.from_data(email="maria@example.test", terms_of_service_agreed=True)
    )
    assert regr.body.status == "valid"
    assert regr.body.contact == ("mailto:maria@example.test",)
    acme.net.account = None  # register the same key again (jwk form): 200 + Location
    with pytest.raises(errors.ConflictError):  # the package's way of saying "exists already"
        acme.new_account(messages.NewRegistration.from_data(terms_of_service_agreed=True))
    acme.net.account = regr

    address = "maria@example.test"
    identifiers = [messages.Identifier(typ=IDENTIFIER_EMAIL, value=address)]
    response = acme.net.post(
        acme.directory["newOrder"],
        messages.NewOrder(identifiers=identifiers),
        new_nonce_url=acme.directory["newNonce"],
    )
    assert response.status_code == 201
    order = messages.Order.from_json(response.json())
    assert order.identifiers == tuple(identifiers)
    (authz_url,) = order.authorizations
    # POST-as-GET through the package's own helpers (private names, stable since ACME v2).
    authzr = acme._authzr_from_response(acme._post_as_get(authz_url), uri=authz_url)
    (challb,) = authzr.body.challenges
    assert isinstance(challb.chall, EmailReply00)
    assert len(jose.decode_b64jose(challb.chall.token)) >= 16
    assert "@" in challb.chall.sender
    challr = acme.answer_challenge(challb, EmailReply00Response())
    assert challr.authzr_uri == authz_url

    key = new_key("p256")
    csr_pem = x509.load_der_x509_csr(csr_for(address, key)).public_bytes(serialization.Encoding.PEM)
    orderr = messages.OrderResource(
        body=order, uri=response.headers["Location"], authorizations=[authzr], csr_pem=csr_pem
    )
    deadline = datetime.datetime.now() + datetime.timedelta(seconds=30)
    finalized = acme.poll_and_finalize(orderr, deadline)
    assert finalized.body.status == messages.STATUS_VALID
    chain = x509.load_pem_x509_certificates(finalized.fullchain_pem.encode())
    assert len(chain) == 2
    leaf, issuing = chain
    assert leaf.issuer == issuing.subject
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.RFC822Name) == [address]
    leaf.verify_directly_issued_by(issuing)
    assert httpx.get(f"{server.url}/certs/{address}").status_code == 200

    acme.revoke(leaf, 4)  # superseded
    assert httpx.get(f"{server.url}/certs/{address}").status_code == 404
    with pytest.raises(messages.Error) as again:
        acme.revoke(leaf, 4)
    assert again.value.code == "alreadyRevoked"

    deactivated = acme.deactivate_registration(regr)
    assert deactivated.body.status == "deactivated"


def test_certbot_sees_our_refusals_as_acme_errors(server: ServerProcess, tmp_path: Path) -> None:
    acme = certbot_client(server)
    acme.new_account(messages.NewRegistration.from_data(terms_of_service_agreed=True))
    with pytest.raises(messages.Error) as refused:
        acme.net.post(
            acme.directory["newOrder"],
            messages.NewOrder(
                identifiers=[messages.Identifier(typ=messages.IDENTIFIER_FQDN, value="a.test")]
            ),
            new_nonce_url=acme.directory["newNonce"],
        )
    assert refused.value.code == "unsupportedIdentifier"
