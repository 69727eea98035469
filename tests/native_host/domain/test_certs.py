"""domain.certs and domain.timestamping against the real PKI service (uvicorn in a
thread on a free loopback port: directory, CA files and TSA over real HTTP).
The `world` (harness.pki_world.PkiWorld) comes from tests/conftest.py."""

from __future__ import annotations

import datetime
import stat
import time
from pathlib import Path

import pytest
from harness import pki as test_pki
from harness.pki_world import PkiWorld, free_port, run

from native_host.domain import certs as certs_module
from native_host.domain.certs import CertificateBook, HttpResponse, http_fetch
from native_host.domain.timestamping import timestamp_signature
from shared_pki import mime, smime, tsp
from shared_pki.cms import signed


class CountingFetch:
    """http_fetch, counted; `down` makes every request fail as an unreachable server does."""

    def __init__(self) -> None:
        self.urls: list[str] = []
        self.statuses: list[int] = []
        self.down = False

    def __call__(self, url: str, **options: object) -> HttpResponse:
        self.urls.append(url)
        if self.down:
            raise certs_module.FetchError("127.0.0.1 could not be reached: connection refused.")
        answer = http_fetch(url, **options)  # type: ignore[arg-type]
        self.statuses.append(answer.status)
        return answer


# ---- lookups ---------------------------------------------------------------------------------


def test_directory_hit_is_validated_cached_and_served_without_the_network(
    world: PkiWorld, tmp_path: Path
) -> None:
    bob = world.issue("bob.dir@example.test")
    fetch = CountingFetch()
    book = CertificateBook(tmp_path / "cache", world.roots, world.url, fetch=fetch)
    found = book.lookup(["bob.dir@EXAMPLE.test"])["bob.dir@EXAMPLE.test"]
    assert found.source == "directory" and found.problems == ()
    [usable] = found.certificates
    assert usable.certificate.dump() == bob.certificate.dump()
    assert (usable.suite, usable.algorithm, usable.origin) == ("intl", "ec", "directory")
    assert found.certificate("intl") is usable and found.certificate("sm") is None
    assert len(usable.path) == 3  # leaf, issuing CA (from /ca/intermediates.pem), root
    assert any(url.endswith("/ca/intermediates.pem") for url in fetch.urls)

    cache_file = tmp_path / "cache" / "certificates.json"
    assert stat.S_IMODE(cache_file.stat().st_mode) == 0o600
    fetch.down = True
    asked = len(fetch.urls)
    again = CertificateBook(tmp_path / "cache", world.roots, world.url, fetch=fetch)
    cached = again.lookup(["bob.dir@example.test"])["bob.dir@example.test"]
    assert cached.source == "cache" and len(fetch.urls) == asked  # no request at all
    assert cached.certificates[0].certificate.dump() == bob.certificate.dump()


def test_expired_cache_entry_asks_again_and_falls_back_when_the_directory_is_down(
    world: PkiWorld, tmp_path: Path
) -> None:
    world.issue("erin@example.test")
    clock = [time.time()]
    fetch = CountingFetch()
    book = CertificateBook(
        tmp_path / "cache", world.roots, world.url, fetch=fetch, now=lambda: clock[0]
    )
    assert book.lookup(["erin@example.test"])["erin@example.test"].source == "directory"
    clock[0] += certs_module.DIRECTORY_TTL + 1
    fetch.down = True
    stale = book.lookup(["erin@example.test"])["erin@example.test"]
    assert stale.found and stale.source == "cache"
    assert [p.code for p in stale.problems] == ["directory_unreachable"]
    assert "could not be reached" in stale.problems[0].message


def test_a_renewed_certificate_is_used_once_the_directorys_max_age_runs_out(
    world: PkiWorld, tmp_path: Path
) -> None:
    """rita renews: the directory publishes her new certificate. alice's book keeps using the
    answer it has for the directory's max-age (60 s here, the service's default), then
    revalidates it with its ETag and uses the new certificate; while nothing changes, each
    revalidation is a 304 without a body. (Before: an hour of encrypting to the old one.)"""
    address = "rita@example.test"
    old = world.issue(address, days=30)
    announced = http_fetch(f"{world.url}/certs/{address}").max_age()
    assert announced is not None and 0 < announced <= 60, announced
    clock = [time.time()]
    fetch = CountingFetch()
    book = CertificateBook(
        tmp_path / "cache", world.roots, world.url, fetch=fetch, now=lambda: clock[0]
    )
    first = book.lookup([address])[address]
    assert first.certificate("intl").certificate.dump() == old.certificate.dump()

    renewed = world.issue(address, days=60)  # the renewal: valid longer than the old one
    clock[0] += announced - 1
    cached = book.lookup([address])[address]
    assert cached.source == "cache"
    assert cached.certificate("intl").certificate.dump() == old.certificate.dump()

    clock[0] += 2  # the max-age has run out
    after = book.lookup([address])[address]
    assert after.source == "directory" and fetch.statuses[-1] == 200
    assert after.certificate("intl").certificate.dump() == renewed.certificate.dump()

    clock[0] += announced + 1
    asked = len(fetch.urls)
    unchanged = book.lookup([address])[address]
    assert fetch.urls[asked:] == [f"{world.url}/certs/{address}"] and fetch.statuses[-1] == 304
    assert unchanged.source == "directory"
    assert unchanged.certificate("intl").certificate.dump() == renewed.certificate.dump()


def test_unknown_address_is_not_found_and_negatively_cached(
    world: PkiWorld, tmp_path: Path
) -> None:
    fetch = CountingFetch()
    book = CertificateBook(tmp_path / "cache", world.roots, world.url, fetch=fetch)
    result = book.lookup(["nobody@example.test"])["nobody@example.test"]
    assert not result.found and result.source is None
    assert [p.code for p in result.problems] == ["not_found"]
    asked = len(fetch.urls)
    book.lookup(["nobody@example.test"])
    assert len(fetch.urls) == asked
    bad = book.lookup(["not an address"])["not an address"]
    assert [p.code for p in bad.problems] == ["bad_address"]


def test_certificate_from_a_ca_that_is_not_configured_is_refused(
    world: PkiWorld, tmp_path: Path
) -> None:
    world.issue("mallory.victim@example.test")
    other_root = test_pki.root("a root the user configured").asn1
    book = CertificateBook(tmp_path / "cache", [other_root], world.url)
    result = book.lookup(["mallory.victim@example.test"])["mallory.victim@example.test"]
    assert not result.found
    assert [p.code for p in result.problems] == ["untrusted"]
    assert "not usable" in result.problems[0].message
    with pytest.raises(certs_module.CertsError, match="trust anchors"):
        CertificateBook(tmp_path / "cache2", [], world.url)


def test_a_certificate_for_another_address_is_refused(world: PkiWorld, tmp_path: Path) -> None:
    book = CertificateBook(tmp_path / "cache", world.roots, None)
    person = world.issue("frank@example.test", publish=False)
    problems = book.check(
        person.certificate, "someone.else@example.test", "directory", person.chain
    )
    assert isinstance(problems, list) and problems[0].code == "address_mismatch"
    usable = book.check(person.certificate, "frank@example.test", "directory", person.chain)
    assert not isinstance(usable, list)


def test_harvested_from_a_verified_message(world: PkiWorld, tmp_path: Path) -> None:
    alice = world.issue("alice.h@example.test", publish=False)
    message = b"From: alice.h@example.test\r\nSubject: hi\r\n\r\nsigned hello\r\n"
    signed_message = smime.sign_message(message, alice.credential)
    opened = smime.open_message(signed_message, trust_anchors=world.roots)
    book = CertificateBook(tmp_path / "cache", world.roots, None)  # no directory at all
    assert book.lookup(["alice.h@example.test"])["alice.h@example.test"].found is False
    assert book.harvest(opened.signatures[0]) == ["alice.h@example.test"]
    found = book.lookup(["alice.h@example.test"])["alice.h@example.test"]
    assert found.source == "harvested"
    assert found.certificates[0].certificate.dump() == alice.certificate.dump()
    # A signature that does not hold harvests nothing.
    forged = signed_message.replace(b"signed hello", b"signed hellO")
    bad = smime.open_message(forged, trust_anchors=world.roots).signatures[0]
    other = CertificateBook(tmp_path / "other", world.roots, None)
    assert other.harvest(bad) == []


# ---- timestamping ----------------------------------------------------------------------------


def test_token_attached_verifiable_by_us_and_by_openssl(world: PkiWorld, tmp_path: Path) -> None:
    alice = world.issue("alice.ts@example.test", publish=False)
    entity = mime.prepare_for_signing(mime.build_entity("Timestamped.\n"))
    der = signed.sign(entity, alice.credential)
    stamped, info, problem = timestamp_signature(der, world.tsa_url, trust_anchors=world.roots)
    assert problem is None and info is not None
    assert abs(info.gen_time - datetime.datetime.now(datetime.UTC)) < datetime.timedelta(minutes=1)
    [[token]] = tsp.signature_timestamps(stamped, world.roots)
    assert token.valid and token.trusted_time == info.gen_time
    assert signed.signature_value(stamped) == signed.signature_value(der)

    message = mime.with_outer_headers(
        mime.wrap_multipart_signed(entity, stamped, "sha-256"), [("From", alice.address)]
    )
    path = tmp_path / "signed.eml"
    path.write_bytes(message)
    roots = world.roots_pem(tmp_path)
    out = run("openssl", "cms", "-verify", "-in", path, "-CAfile", roots, "-purpose", "any")
    assert b"Timestamped." in out

    # A whole signed message works too, its outer headers kept.
    plain = smime.sign_message(b"From: alice.ts@example.test\r\n\r\nx\r\n", alice.credential)
    whole, info2, problem2 = timestamp_signature(plain, world.tsa_url)
    assert problem2 is None and info2 is not None and whole.startswith(b"From: alice.ts")
    layer = mime.unwrap(whole)
    assert tsp.signature_timestamps(layer.signature, world.roots)[0][0].valid


def test_tsa_down_or_broken_leaves_the_signature_with_a_note(
    world: PkiWorld, tmp_path: Path
) -> None:
    alice = world.issue("alice.down@example.test", publish=False)
    der = signed.sign(b"Content-Type: text/plain\r\n\r\nx\r\n", alice.credential)
    down = f"http://127.0.0.1:{free_port()}/tsa"
    same, info, problem = timestamp_signature(der, down)
    assert same == der and info is None
    assert problem is not None and problem.startswith("Timestamp missing:")
    assert "could not be reached" in problem
    # A server that answers something else than a TimeStampResp.
    same, info, problem = timestamp_signature(der, f"{world.url}/ca/roots.pem")
    assert same == der and info is None and problem is not None
    # A TSA the caller does not trust.
    other = [test_pki.root("not the TSA's root").asn1]
    same, info, problem = timestamp_signature(der, world.tsa_url, trust_anchors=other)
    assert same == der and info is None and "untrusted" in problem.lower()
