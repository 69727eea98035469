"""domain.certs and domain.timestamping against the real PKI service (uvicorn in a
thread on a free loopback port: directory, CA files and TSA over real HTTP).

The `PkiWorld` below (service + certificates issued by its CA + keystores) is also what
test_sending.py and test_reading.py use; they load this module by path (tests here are not a
package)."""

from __future__ import annotations

import datetime
import socket
import stat
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvicorn
from asn1crypto import pem as asn1_pem
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from harness import pki as test_pki
from sqlalchemy import insert

from native_host.domain import certs as certs_module
from native_host.domain.certs import CertificateBook, HttpResponse, http_fetch
from native_host.domain.keystore import Keystore
from native_host.domain.timestamping import timestamp_signature
from shared_pki import mime, sm2, smime, tsp
from shared_pki.ca import profile
from shared_pki.cms import signed
from shared_pki.keys import Certificate, Credential, parse_certificate
from shared_pki.service import config as service_config
from shared_pki.service.app import create_app
from shared_pki.service.storage.store import certificates as certificates_table
from shared_pki.x509 import sm2_certs

# ---- the world -------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Person:
    address: str
    key: object
    certificate: Certificate
    chain: tuple[Certificate, ...]

    @property
    def credential(self) -> Credential:
        return Credential(self.key, self.certificate, self.chain)

    def write(self, folder: Path) -> tuple[Path, Path]:
        """key.pem and cert.pem for openssl."""
        stem = self.address.split("@")[0]
        key_path, cert_path = folder / f"{stem}-{id(self)}.key", folder / f"{stem}-{id(self)}.pem"
        key_path.write_bytes(
            self.key.private_bytes(  # type: ignore[attr-defined]
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        cert_path.write_bytes(asn1_pem.armor("CERTIFICATE", self.certificate.dump()))
        return key_path, cert_path


class PkiWorld:
    """The real PKI service served by uvicorn in this process, and helpers to issue and publish
    certificates from its CA as the ACME finalize step does."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = service_config.load(
            folder / "pki",
            {
                "db_url": f"sqlite:///{folder / 'pki.sqlite3'}",
                "directory_rate_per_minute": 100000,
                "public_url": self.url,
            },
        )
        self.app = create_app(config)
        self.state = self.app.state.service
        self.hierarchy = self.state.hierarchy
        self.server = uvicorn.Server(uvicorn.Config(self.app, log_level="warning", lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]})
        self.thread.daemon = True
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise AssertionError("the PKI service did not start")
            time.sleep(0.01)  # waiting for start-up, not for an outcome
        self._sock = sock

    def close(self) -> None:
        self.server.should_exit = True
        self.thread.join(20)
        self._sock.close()

    @property
    def tsa_url(self) -> str:
        return f"{self.url}/tsa"

    @property
    def roots(self) -> list[Certificate]:
        return [self.hierarchy.intl_root.certificate, self.hierarchy.sm2_root.certificate]

    def roots_pem(self, folder: Path) -> Path:
        path = folder / "roots.pem"
        path.write_bytes(asn1_pem.armor("CERTIFICATE", self.hierarchy.intl_root.certificate.dump()))
        return path

    def issue(
        self, address: str, key_type: str = "p256", *, publish: bool = True, days: int = 30
    ) -> Person:
        family = "sm2" if key_type == "sm2" else "intl"
        if key_type == "sm2":
            key = sm2.generate_private_key()
            csr = sm2_certs.build_csr(key, emails=(address,))
        else:
            key = (
                rsa.generate_private_key(65537, 2048)
                if key_type == "rsa"
                else ec.generate_private_key(ec.SECP256R1())
            )
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
        issuing = self.hierarchy.issuing(family)
        der = profile.issue(
            info, issuing, serial=serial, not_before=now - datetime.timedelta(minutes=5),
            days=days, crl_url=self.hierarchy.crl_url(f"{family}-issuing"),
            aia_url=self.hierarchy.aia_url(f"{family}-issuing"),
        )  # fmt: skip
        cert = parse_certificate(der)
        if publish:
            with self.state.store.transaction() as db:
                db.execute(
                    insert(certificates_table).values(
                        serial=f"{serial:x}", issuer=family, address=address,
                        algorithm={"rsa": "rsa", "sm2": "sm2"}.get(key_type, "ecdsa"),
                        not_before=cert.not_valid_before.timestamp(),
                        not_after=cert.not_valid_after.timestamp(), der=der, published=True,
                    )
                )  # fmt: skip
        return Person(address, key, cert, (issuing.certificate,))

    def keystore(self, folder: Path, *people: Person, status: str = "current") -> Keystore:
        store = Keystore(folder, b"k" * 32)
        for person in people:
            self.add(store, person, status)
        return store

    @staticmethod
    def add(store: Keystore, person: Person, status: str = "current") -> str:
        suite = "sm" if isinstance(person.key, sm2.SM2PrivateKey) else "intl"
        key_id = store.add_key(person.address, suite, person.key)
        store.attach_certificate(key_id, person.certificate.dump(), person.chain)
        store.mark(key_id, "current")
        if status != "current":
            store.mark(key_id, status)
        return key_id


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PkiWorld]:
    service = PkiWorld(tmp_path_factory.mktemp("world"))
    try:
        yield service
    finally:
        service.close()


class CountingFetch:
    """http_fetch, counted; `down` makes every request fail as an unreachable server does."""

    def __init__(self) -> None:
        self.urls: list[str] = []
        self.down = False

    def __call__(self, url: str, **options: object) -> HttpResponse:
        self.urls.append(url)
        if self.down:
            raise certs_module.FetchError("127.0.0.1 could not be reached: connection refused.")
        return http_fetch(url, **options)  # type: ignore[arg-type]


def run(*args: str | Path, stdin: bytes | None = None) -> bytes:
    done = subprocess.run([str(a) for a in args], input=stdin, capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    return done.stdout


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
