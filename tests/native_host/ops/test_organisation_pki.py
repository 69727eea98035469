"""An organisation's own PKI through the REAL host process: the ACME directory, the certificate
directory and the TSA given as separate URLs (no base URL of our layout), and timestamps from a
TSA that is not ours (`openssl ts -reply` behind a tiny HTTP wrapper) under its own roots. The
directory's intermediates come from the certificates' AIA caIssuers, as with any CA's
directory."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness.devices import Device, make_device, quoted, roots_pem
from harness.mail import MailStack
from harness.openssl_tsa import OpenSslTsa
from harness.pki_world import PkiWorld

pytestmark = pytest.mark.mail

ALICE, BOB = "alice@example.test", "bob@example.test"


def organisation_params(
    stack: MailStack, world: PkiWorld, tsa: OpenSslTsa, address: str
) -> dict[str, Any]:
    return {
        "address": address,
        "password": stack.users[address],
        "imapUrl": f"imaps://{quoted(address)}@127.0.0.1:{stack.imaps_port}",
        "smtpUrl": f"smtp://{quoted(address)}@127.0.0.1:{stack.smtp_port}",
        "caFile": str(stack.ca_cert_path),
        "acmeDirectoryUrl": f"{world.url}/acme/directory",
        "certsUrl": f"{world.url}/certs",
        "tsaUrl": tsa.url,
        "pkiRoots": roots_pem(world),
        "tsaRoots": tsa.root_pem.decode("ascii"),
        "acmeContact": False,
        "unauthenticatedChallengeFrom": ["Acme@CA.example.test"],
    }


@pytest.fixture(scope="module")
def tsa(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpenSslTsa]:
    with OpenSslTsa(tmp_path_factory.mktemp("openssl-tsa")) as server:
        yield server


@pytest.fixture(scope="module")
def devices(
    world: PkiWorld,
    mail_stack: MailStack,
    tsa: OpenSslTsa,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, Device]]:
    tmp: Path = tmp_path_factory.mktemp("organisation")
    made = {
        address: make_device(tmp, address.split("@")[0], address, world, world.issue(address))
        for address in (ALICE, BOB)
    }
    for device in made.values():
        device.start()
    try:
        yield made
    finally:
        for device in made.values():
            if device.host is not None:
                assert device.host.close() == 0


def test_separate_urls_are_kept_and_shown(
    devices: dict[str, Device], world: PkiWorld, mail_stack: MailStack, tsa: OpenSslTsa
) -> None:
    alice = devices[ALICE]
    result = alice.ok("account.configure", organisation_params(mail_stack, world, tsa, ALICE))
    pki = result["pki"]
    assert pki["url"] is None
    assert pki["acmeDirectory"] == f"{world.url}/acme/directory"
    assert pki["certs"] == f"{world.url}/certs" and pki["tsa"] == tsa.url
    assert any("OpenSSL TSA test root" in name for name in pki["tsaRoots"])
    assert not any("OpenSSL" in name for name in pki["roots"])
    assert pki["acmeContact"] is False
    assert pki["unauthenticatedChallengeFrom"] == ["acme@ca.example.test"]
    (listed,) = alice.ok("account.list", {})["accounts"]
    assert listed["pki"] == pki
    # A URL that is not http(s) is refused before any login.
    bad = {**organisation_params(mail_stack, world, tsa, ALICE), "tsaUrl": "ftp://tsa"}
    error = alice.error("account.configure", bad)
    assert error["code"] == "bad_params" and "time-stamp authority URL" in error["message"]


def test_signatures_carry_a_timestamp_from_a_tsa_that_is_not_ours(
    devices: dict[str, Device], world: PkiWorld, mail_stack: MailStack, tsa: OpenSslTsa
) -> None:
    for address, device in devices.items():
        device.ok("account.configure", organisation_params(mail_stack, world, tsa, address))
    alice, bob = devices[ALICE], devices[BOB]
    replies = tsa.replies
    outcome = alice.ok(
        "compose.send",
        {"from": ALICE, "to": [BOB], "subject": "Stamped elsewhere", "text": "Hello Bob.\n"},
    )
    assert outcome["status"] == "sent", outcome["problem"]
    assert outcome["encrypted"] and outcome["timestamped"], outcome["timestampProblem"]
    assert outcome["timestamp"]["tsa"] == "Common Name: OpenSSL test TSA (not ours)"
    assert tsa.replies == replies + 1  # the directory lookup found bob: via certsUrl and AIA

    view = bob.ok("message.open", {"messageId": outcome["messageId"], "folder": "INBOX"})
    (signature,) = view["security"]["signatures"]
    assert signature["chainValid"] and signature["fromMatches"]
    assert signature["timestamp"]["valid"] and signature["timestamp"]["trustedTime"]
    assert "OpenSSL test TSA" in signature["timestamp"]["tsa"]
    assert view["text"].strip() == "Hello Bob."
