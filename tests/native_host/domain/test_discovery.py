"""Discovery of an organisation's PKI from a mail address: the well-known document of the mail
domain over real HTTPS (harness.well_known: a server for example.test under a test CA, reached
through a CONNECT proxy, as the standard library does with https_proxy and SSL_CERT_FILE), its
roots pinned by fingerprint and fetched from the real PKI service. The last test asks the real
host process (pki.discover) and sets the account up with what it found."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness.devices import Device, quoted
from harness.mail import MailStack
from harness.pki_world import PkiWorld
from harness.well_known import WellKnownSite

from native_host.domain import discovery
from native_host.ops.account_pki import AccountPki

ALICE = "alice@example.test"


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[WellKnownSite]:
    with WellKnownSite(tmp_path / "site") as served:
        for name, value in served.env().items():
            monkeypatch.setenv(name, value)
        yield served


def fingerprints(world: PkiWorld) -> list[str]:
    return [hashlib.sha256(root.dump()).hexdigest() for root in world.roots]


def document(world: PkiWorld, **extra: Any) -> dict[str, Any]:
    return {
        "version": 1,
        "pki": world.url,
        "roots": {"url": f"{world.url}/ca/roots.pem", "sha256": fingerprints(world)},
        **extra,
    }


def test_the_well_known_document_gives_the_settings_with_pinned_roots(
    site: WellKnownSite, world: PkiWorld
) -> None:
    site.document = document(
        world,
        tsa="https://tsa.example.test/rfc3161",
        acmeContact=False,
        unauthenticatedChallengeFrom=["acme@example.test"],
    )
    found = discovery.discover(ALICE)
    assert found.found and found.source == "well-known"
    assert found.url == "https://example.test/.well-known/autosmime.json"
    assert site.requests == ["/.well-known/autosmime.json"]
    settings = found.settings
    assert settings["pkiUrl"] == world.url and settings["tsaUrl"].startswith("https://tsa.")
    assert settings["acmeContact"] is False
    assert settings["unauthenticatedChallengeFrom"] == ["acme@example.test"]
    assert {r["sha256"] for r in found.roots} == set(fingerprints(world))
    pki = AccountPki(
        settings["pkiUrl"], settings["pkiRoots"].encode(), tsa=settings["tsaUrl"]
    )  # what account.configure makes of them
    assert [c.dump() for c in pki.roots()] == [c.dump() for c in world.roots]


def test_roots_that_do_not_match_the_pins_are_refused(site: WellKnownSite, world: PkiWorld) -> None:
    pins = fingerprints(world)
    site.document = document(world)
    site.document["roots"]["sha256"] = [pins[0], "ab" * 32]
    with pytest.raises(discovery.DiscoveryError, match="do not match the fingerprints"):
        discovery.discover(ALICE)
    # Only the pinned one of the offered roots is kept.
    site.document["roots"]["sha256"] = [pins[0]]
    found = discovery.discover(ALICE)
    assert [r["sha256"] for r in found.roots] == [pins[0]]


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"version": 2}, "version 2"),
        ({"pki": None}, "neither 'pki' nor 'acmeDirectory'"),
        ({"pki": "ftp://pki.example.test"}, "not an http(s) URL"),
        ({"roots": {"url": "https://x"}}, "must list the roots' fingerprints"),
        ({"acmeContact": "yes"}, "acmeContact must be true or false"),
    ],
)
def test_a_wrong_document_says_what_is_wrong(
    site: WellKnownSite, world: PkiWorld, change: dict[str, Any], words: str
) -> None:
    site.document = {k: v for k, v in {**document(world), **change}.items() if v is not None}
    with pytest.raises(discovery.DiscoveryError, match=re.escape(words)):
        discovery.discover(ALICE)


def test_no_document_tells_what_to_ask_the_administrator_for(site: WellKnownSite) -> None:
    site.document = None
    found = discovery.discover(ALICE)
    assert not found.found and found.settings == {}
    assert found.advice is not None and "Ask your administrator for" in found.advice
    assert "root certificates" in found.advice and "example.test" in found.advice
    assert found.detail is not None and "404" in found.detail
    # A domain the network cannot reach (the proxy refuses it) is "not found" too.
    elsewhere = discovery.discover("bob@elsewhere.test")
    assert not elsewhere.found and "elsewhere.test" in (elsewhere.advice or "")


@pytest.mark.mail
def test_the_host_discovers_and_sets_up_the_account(
    site: WellKnownSite, world: PkiWorld, mail_stack: MailStack, tmp_path: Path
) -> None:
    site.document = document(world, certificateDirectory=f"{world.url}/certs")
    device = Device("alice", ALICE, tmp_path / "alice", extra_env=site.env())
    device.folder.mkdir(parents=True)
    device.start()
    try:
        found = device.ok("pki.discover", {"address": ALICE})
        assert found["found"] and found["settings"]["certsUrl"] == f"{world.url}/certs"
        account = device.ok(
            "account.configure",
            {
                "address": ALICE,
                "password": mail_stack.users[ALICE],
                "imapUrl": f"imaps://{quoted(ALICE)}@127.0.0.1:{mail_stack.imaps_port}",
                "smtpUrl": f"smtp://{quoted(ALICE)}@127.0.0.1:{mail_stack.smtp_port}",
                "caFile": str(mail_stack.ca_cert_path),
                **found["settings"],
            },
        )
        assert account["pki"]["url"] == world.url
        assert account["pki"]["certs"] == f"{world.url}/certs"
        site.document = None
        missing = device.ok("pki.discover", {"address": ALICE})
        assert not missing["found"] and "Ask your administrator" in missing["advice"]
    finally:
        assert device.host is not None and device.host.close() == 0
