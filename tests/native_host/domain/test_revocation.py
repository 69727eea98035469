"""Revocation in the host: CRLs fetched from the certificates' distribution points of the real PKI
service (uvicorn in this process, /crl/{ca}.crl), cached in the profile until nextUpdate, and
passed with the trusted (timestamp-proven) time into verification; the certificate book never
hands out a revoked certificate; a CRL that cannot be fetched is "revocation not checked"."""

from __future__ import annotations

import datetime
import json
import time
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from harness.pki_world import Person, PkiWorld, free_port

from native_host.domain import certs as certs_module
from native_host.domain.certs import CertificateBook, HttpResponse, http_fetch
from native_host.domain.crls import CrlStore
from native_host.domain.reading import open_message
from native_host.domain.sending import ComposeRequest, build_messages
from shared_pki.ca import profile
from shared_pki.keys import parse_certificate
from shared_pki.service.ca import issuance


class Fetches:
    """http_fetch, with the URLs asked kept (the real network underneath)."""

    def __init__(self) -> None:
        self.urls: list[str] = []

    def __call__(self, url: str, **options: object) -> HttpResponse:
        self.urls.append(url)
        return http_fetch(url, **options)  # type: ignore[arg-type]


def signed_message(world: PkiWorld, person: Person, text: str) -> tuple[bytes, datetime.datetime]:
    """A signed-only message of person's with a real RFC 3161 token: (bytes, trusted time)."""
    request = ComposeRequest(
        sender=person.address, to=("bob.rev@example.test",), subject=text, text=text + "\n",
        encrypt=False,
    )  # fmt: skip
    built = build_messages(
        request, credential=person.credential, suite="intl", sender_certificate=None,
        recipient_certificates={}, tsa_url=world.tsa_url, tsa_anchors=world.roots,
    )  # fmt: skip
    assert built.timestamp is not None
    [copy] = built.copies
    return copy.message, built.timestamp.gen_time


def revoke(world: PkiWorld, person: Person, when: float) -> None:
    issuance.revoke(world.state.store, f"{person.certificate.serial_number:x}", 1, now=when)


def test_a_signer_revoked_before_the_trusted_time_is_not_valid_after_it_valid_as_of_then(
    world: PkiWorld, tmp_path: Path
) -> None:
    early = world.issue("rita.early@example.test")
    late = world.issue("rita.late@example.test")
    early_message, early_time = signed_message(world, early, "signed after the compromise")
    late_message, late_time = signed_message(world, late, "signed before the compromise")
    # early's key was compromised an hour before its signature; late's some time after its own
    revoke(world, early, early_time.timestamp() - 3600)
    revoke(world, late, max(time.time(), late_time.timestamp()) + 2)

    fetch = Fetches()
    store = CrlStore(tmp_path / "cache", fetch)
    opened = open_message(early_message, keystore=None, trust_anchors=world.roots, crl_store=store)
    [signature] = opened.security.signatures
    assert not signature.valid and not opened.security.verified
    assert "revoked" in signature.codes
    assert signature.revocation.status == "revoked" and signature.revocation.valid_as_of is None
    assert "was revoked on" in signature.revocation.summary
    assert "before the trusted time" in signature.revocation.summary
    assert "revoked" in signature.summary
    assert fetch.urls == [
        world.hierarchy.crl_url("intl-issuing"),
        world.hierarchy.crl_url("intl-root"),
    ]

    opened = open_message(late_message, keystore=None, trust_anchors=world.roots, crl_store=store)
    [signature] = opened.security.signatures
    assert signature.valid and opened.security.verified and signature.reasons == ()
    assert signature.revocation.status == "revoked"
    assert signature.revocation.valid_as_of == late_time
    assert "valid as of that time" in signature.revocation.summary
    # both CRLs came from the profile's cache: nothing was fetched for the second message
    assert len(fetch.urls) == 2

    # without a CRL source the same message says revocation was not checked, never "good"
    unchecked = open_message(late_message, keystore=None, trust_anchors=world.roots)
    [signature] = unchecked.security.signatures
    assert signature.valid and signature.revocation.status == "not_checked"
    assert signature.revocation.summary.startswith("Revocation not checked")


def test_crls_are_cached_in_the_profile_until_their_next_update(
    world: PkiWorld, tmp_path: Path
) -> None:
    person = world.issue("carla.cache@example.test")
    message, _ = signed_message(world, person, "cached")
    clock = [time.time()]
    fetch = Fetches()
    store = CrlStore(tmp_path / "cache", fetch, now=lambda: clock[0])
    for _ in range(2):
        opened = open_message(message, keystore=None, trust_anchors=world.roots, crl_store=store)
        assert opened.security.signatures[0].revocation.status == "good"
    assert len(fetch.urls) == 2  # the issuing CA's CRL and the root's, once
    entries = [json.loads(p.read_text()) for p in (tmp_path / "cache" / "crls").glob("*.json")]
    keep = {entry["url"]: entry["keepUntil"] for entry in entries}
    assert set(keep) == set(fetch.urls)
    hours = world.state.config.crl_hours
    assert all(0 < until - clock[0] <= hours * 3600 + 5 for until in keep.values())
    clock[0] = max(keep.values()) + 1  # past nextUpdate: asked again
    open_message(message, keystore=None, trust_anchors=world.roots, crl_store=store)
    assert len(fetch.urls) == 4


def test_a_crl_that_cannot_be_fetched_is_revocation_not_checked(
    world: PkiWorld, tmp_path: Path
) -> None:
    """A certificate of the real CA whose distribution point is a loopback port nobody listens
    on: the signature stands, and says revocation was not checked and why."""
    dead = f"http://127.0.0.1:{free_port()}/crl/intl-issuing.crl"
    person = _issued_with_crl_url(world, "dora.dead@example.test", dead)
    message, _ = signed_message(world, person, "nobody answers")
    store = CrlStore(tmp_path / "cache", http_fetch)
    opened = open_message(message, keystore=None, trust_anchors=world.roots, crl_store=store)
    [signature] = opened.security.signatures
    assert signature.valid
    assert signature.revocation.status == "not_checked"
    assert signature.revocation.summary.startswith("Revocation not checked: ")
    assert (
        dead in signature.revocation.summary
        and "could not be fetched" in signature.revocation.summary
    )


def test_the_book_never_encrypts_to_a_revoked_certificate(world: PkiWorld, tmp_path: Path) -> None:
    """From the directory (an answer cached before the revocation) and harvested from mail:
    once the CRL lists the certificate, the book leaves it out and says why."""
    listed = world.issue("vera.dir@example.test")
    harvested = world.issue("hugo.harvest@example.test")  # looked up with no directory below
    # books without CRLs (as before) fill the cache: a directory answer and a harvest
    plain = CertificateBook(tmp_path / "cache", world.roots, world.url)
    assert plain.lookup([listed.address])[listed.address].found
    mail_only = CertificateBook(tmp_path / "cache", world.roots, None)
    message, _ = signed_message(world, harvested, "harvest me")
    open_message(message, keystore=None, trust_anchors=world.roots, book=mail_only)
    assert mail_only.lookup([harvested.address])[harvested.address].source == "harvested"

    def books(crl_folder: Path) -> dict[str, CertificateBook]:
        crls = CrlStore(crl_folder, http_fetch)
        return {
            listed.address: CertificateBook(
                tmp_path / "cache", world.roots, world.url, crl_store=crls
            ),
            harvested.address: CertificateBook(
                tmp_path / "cache", world.roots, None, crl_store=crls
            ),
        }

    for address, book in books(tmp_path / "crls-before").items():
        [usable] = book.lookup([address])[address].certificates
        assert usable.revocation == "good" and "is not revoked" in usable.revocation_summary
        assert usable.to_json()["revocation"]["status"] == "good"

    for person in (listed, harvested):
        revoke(world, person, time.time())
    for address, book in books(tmp_path / "crls-after").items():
        found = book.lookup([address])[address]
        assert found.source in ("cache", "harvested") or found.source is None
        assert not found.found, address
        assert [p.code for p in found.problems] == ["revoked"]
        assert "was revoked on" in found.problems[0].message


def test_a_recipient_whose_crl_cannot_be_fetched_is_usable_and_says_so(
    world: PkiWorld, tmp_path: Path
) -> None:
    dead = f"http://127.0.0.1:{free_port()}/crl/intl-issuing.crl"
    person = _issued_with_crl_url(world, "nora.nocrl@example.test", dead)
    book = CertificateBook(
        tmp_path / "cache", world.roots, None, crl_store=CrlStore(tmp_path / "cache", http_fetch)
    )
    checked = book.check(person.certificate, person.address, "harvested", person.chain)
    assert isinstance(checked, certs_module.UsableCertificate)
    assert checked.revocation == "not_checked"
    assert checked.revocation_summary.startswith("Revocation not checked: ")
    assert dead in checked.revocation_summary


def _issued_with_crl_url(world: PkiWorld, address: str, crl_url: str) -> Person:
    """A certificate from the world's real issuing CA, naming crl_url as its distribution
    point (as a CA whose CRL server is down would)."""
    template = world.issue(address, publish=False)  # its key; the certificate is made anew
    issuing = world.hierarchy.issuing("intl")
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .add_extension(x509.SubjectAlternativeName([x509.RFC822Name(address)]), False)
        .sign(template.key, hashes.SHA256())  # type: ignore[arg-type]
        .public_bytes(serialization.Encoding.DER)
    )
    der = profile.issue(
        profile.check_csr(csr, address), issuing, serial=profile.random_serial(),
        not_before=datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=5), days=30,
        crl_url=crl_url, aia_url=world.hierarchy.aia_url("intl-issuing"),
    )  # fmt: skip
    return Person(address, template.key, parse_certificate(der), template.chain)
