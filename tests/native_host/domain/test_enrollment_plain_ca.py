"""Enrollment against an RFC 8823 CA that is not built like ours: our own service configured to
behave as such a CA (shared_pki/service/config.py), in a subprocess as `autosmime pki serve`
runs it, with the real mail stack. Each test fails on the host as it was before this change:

- directories at other paths, orders `processing` for a while, challenge mail from another
  address than the CA mailbox (with a Reply-To), signed only with DKIM (the host checks it
  with dkimpy; the TXT record is the one the service wrote, answered by an injected resolver);
- a CA that makes one authorization, and mails one challenge, per order of the same address
  (finding a): the host answers each;
- a CA that refuses an account without contact (finding b);
- a CA that starts validating on any POST to the challenge (finding c);
- challenge mail without Auto-Submitted, Message-ID, Date or any signature (finding d): named
  in words at once, and accepted once the organisation allows its CA's address;
- a CA without SM2: the SM2 certificate is not requested, and the result says why.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from harness.mail import MailStack
from harness.pki_service import ConfiguredPki, challenge_replies, forget_backups, quoted

from native_host.domain import enrollment as enr
from native_host.domain.certs import CertificateBook
from native_host.infrastructure.acme_client import PkiSettings
from native_host.infrastructure.mail_settings import resolve
from native_host.infrastructure.mailbox import Credentials, Mailbox
from native_host.infrastructure.profile import open_profile
from shared_pki.keys import parse_certificate
from shared_pki.net.dkim import zone_resolver
from shared_pki.x509.validate import certificate_addresses

pytestmark = pytest.mark.mail

ALICE = "alice@example.test"
CA = "carol@example.test"
OTHER_SENDER = "acme-challenge@ca.example.net"
DEADLINE = 30.0
KEYRING = "keyrings.alt.file.PlaintextKeyring"


@pytest.fixture(autouse=True)
def keyring_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "xdg-data"
    data.mkdir()
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", KEYRING)
    monkeypatch.setenv("XDG_DATA_HOME", str(data))


@pytest.fixture(autouse=True)
def fresh_backups(mail_stack: MailStack) -> None:
    """Every test enrolls alice as for the first time (the mail stack is the session's)."""
    forget_backups(mail_stack, ALICE)


@pytest.fixture
def ca(mail_stack: MailStack, tmp_path: Path) -> Iterator[Callable[..., ConfiguredPki]]:
    started: list[ConfiguredPki] = []

    def start(**knobs: Any) -> ConfiguredPki:
        service = ConfiguredPki(mail_stack, tmp_path / f"pki-{len(started)}", **knobs)
        started.append(service.__enter__())
        return service

    yield start
    for service in started:
        service.__exit__(None)


@pytest.fixture
def enrollment(mail_stack: MailStack, tmp_path: Path) -> Iterator[Callable[..., enr.Enrollment]]:
    mailboxes: list[Mailbox] = []

    def make(pki: PkiSettings, **options: Any) -> enr.Enrollment:
        settings = resolve(
            ALICE,
            imap_url=f"imaps://{quoted(ALICE)}@127.0.0.1:{mail_stack.imaps_port}",
            smtp_url=f"smtp://{quoted(ALICE)}@127.0.0.1:{mail_stack.smtp_port}",
        )
        mailbox = Mailbox(
            settings,
            Credentials(password=mail_stack.users[ALICE]),
            ca_file=mail_stack.ca_cert_path,
            timeout=10,
        )
        mailboxes.append(mailbox)
        options.setdefault("mail_timeout", DEADLINE)
        options.setdefault("validation_timeout", DEADLINE)
        return enr.Enrollment(
            profile=open_profile(tmp_path / "device"), mailbox=mailbox, pki=pki, **options
        )

    yield make
    for mailbox in mailboxes:
        mailbox.close()


def account_contacts(service: ConfiguredPki) -> list[str]:
    with sqlite3.connect(service.database()) as db:
        return [row[0] for row in db.execute("SELECT contact FROM accounts")]


# ---------------------------------------------------------------------------------------------


def test_a_plain_rfc8823_ca_with_dkim_signed_challenges_from_another_address(
    ca: Callable[..., ConfiguredPki],
    enrollment: Callable[..., enr.Enrollment],
    tmp_path: Path,
) -> None:
    service = ca(
        acme_path="/rfc8823/v2",
        certs_path="/directory/smime",
        tsa_path="/timestamping",
        order_processing_seconds=1.0,
        require_contact=True,
        offer_sm2=False,
        challenge_signing="dkim",
        mail_from=OTHER_SENDER,
        challenge_reply_to=CA,
        challenge_post_validates_at_once=True,
    )
    pki = PkiSettings(service.acme_directory_url, service.roots_pem)
    zone = zone_resolver(dict([service.dkim_record()]))
    result = enrollment(pki, dkim_dns=zone).enroll(ALICE)

    assert set(result.certificates) == {"intl"}
    assert "does not issue SM2" in result.unavailable["sm"]
    leaf = parse_certificate(result.certificates["intl"])
    assert certificate_addresses(leaf) == (ALICE,)
    assert account_contacts(service) == [f'["mailto:{ALICE}"]']
    (confirmation,) = result.confirmations
    assert confirmation[0].endswith("@ca.example.net>")  # the mail came from the other domain
    # The certificate directory at its own path has it, and the host finds it there.
    book = CertificateBook(
        tmp_path / "cache",
        pki.roots(),
        None,
        certs_url=service.certs_url,
        intermediates_url=f"{service.url}/ca/intermediates.pem",
    )
    (found,) = book.lookup([ALICE])[ALICE].certificates
    assert found.certificate.dump() == result.certificates["intl"]


def test_without_dkim_that_verifies_the_challenge_mail_is_refused_in_words(
    ca: Callable[..., ConfiguredPki],
    enrollment: Callable[..., enr.Enrollment],
    mail_stack: MailStack,
) -> None:
    service = ca(challenge_signing="dkim", mail_from=OTHER_SENDER, challenge_reply_to=CA)
    pki = PkiSettings(service.acme_directory_url, service.roots_pem)
    name, _record = service.dkim_record()
    forged = zone_resolver({name: _forged_dkim_record(service.data.parent / "other-dkim")})
    with pytest.raises(enr.ChallengeMailRefused) as refused:
        enrollment(pki, dkim_dns=forged).enroll(ALICE)
    message = str(refused.value)
    assert "not authenticated" in message and "DKIM signature of ca.example.net" in message
    assert "does not verify" in message


def _forged_dkim_record(folder: Path) -> str:
    """The TXT value of another DKIM key than the service's."""
    from shared_pki.service.mail_validation.dkim import load_or_create_signing_key

    key = load_or_create_signing_key(folder / "x.key", domain="ca.example.net", selector="x")
    return key.txt_record


def test_a_ca_with_one_authorization_and_challenge_mail_per_order(
    ca: Callable[..., ConfiguredPki],
    enrollment: Callable[..., enr.Enrollment],
    mail_stack: MailStack,
) -> None:
    service = ca(authorization_per_order=True)
    progress: list[tuple[int, int, str]] = []
    result = enrollment(PkiSettings(service.acme_directory_url, service.roots_pem)).enroll(
        ALICE, progress=lambda *event: progress.append(event)
    )
    assert set(result.certificates) == {"intl", "sm"}
    assert len(result.confirmations) == 2
    assert len({mail for mail, _reply in result.confirmations}) == 2
    for mail, _reply in result.confirmations:
        assert challenge_replies(mail_stack, mail) == 1  # each answered, once
    fractions = [done / total for done, total, _stage in progress]
    assert fractions == sorted(fractions) and progress[-1][2] == "Done"
    stages = [stage for _done, _total, stage in progress]
    assert stages.count("Waiting for the confirmation email") == 2


def test_the_account_is_registered_with_a_contact_unless_told_not_to(
    ca: Callable[..., ConfiguredPki], enrollment: Callable[..., enr.Enrollment]
) -> None:
    service = ca(require_contact=True)
    quiet = PkiSettings(service.acme_directory_url, service.roots_pem, contact=False)
    with pytest.raises(enr.EnrollmentRefused, match="Contact information is missing"):
        enrollment(quiet).enroll(ALICE)
    assert account_contacts(service) == []
    result = enrollment(PkiSettings(service.acme_directory_url, service.roots_pem)).enroll(ALICE)
    assert result.resumed and set(result.certificates) == {"intl", "sm"}
    assert account_contacts(service) == [f'["mailto:{ALICE}"]']


def test_the_challenge_is_read_only_after_the_reply_went_out(
    ca: Callable[..., ConfiguredPki],
    enrollment: Callable[..., enr.Enrollment],
    mail_stack: MailStack,
) -> None:
    service = ca(challenge_post_validates_at_once=True, reuse_valid_authorizations=False)
    result = enrollment(PkiSettings(service.acme_directory_url, service.roots_pem)).enroll(ALICE)
    assert set(result.certificates) == {"intl", "sm"}
    assert len(result.confirmations) == 2  # two validations, neither started early


def test_bare_unsigned_challenge_mail_is_named_at_once_and_taken_when_allowed(
    ca: Callable[..., ConfiguredPki],
    enrollment: Callable[..., enr.Enrollment],
    mail_stack: MailStack,
) -> None:
    service = ca(challenge_headers="bare", challenge_signing="none")
    pki = PkiSettings(service.acme_directory_url, service.roots_pem)
    # A long wait: a host that passed over the mail in silence would end in
    # ChallengeMailMissing after it, not in ChallengeMailRefused.
    with pytest.raises(enr.ChallengeMailRefused) as refused:
        enrollment(pki, mail_timeout=300).enroll(ALICE)
    message = str(refused.value)
    assert f"arrived from {CA}" in message
    assert "Auto-Submitted: auto-generated; type=acme" in message
    assert f"unauthenticatedChallengeFrom: {CA}" in message
    journal = enr.unfinished(enrollment(pki).profile, ALICE)
    assert journal is not None and journal["step"] == "challenge_mail"
    assert any(key.startswith("token:") for key in journal["rejected_mail_ids"])

    # Without the organisation's word the same mail is never taken: the run waits on.
    with pytest.raises(enr.ChallengeMailMissing):
        enrollment(pki, mail_timeout=2).enroll(ALICE)

    # The organisation allows its CA's address: the mail refused before is judged again.
    allowed = PkiSettings(
        service.acme_directory_url, service.roots_pem, unauthenticated_from=(CA.upper(),)
    )
    result = enrollment(allowed).enroll(ALICE)
    assert result.resumed and set(result.certificates) == {"intl", "sm"}
    ((mail, reply),) = result.confirmations
    assert mail == "" and reply  # no Message-ID to refer to; the reply went out


def test_unauthenticated_challenge_mail_with_every_header_is_refused(
    ca: Callable[..., ConfiguredPki], enrollment: Callable[..., enr.Enrollment]
) -> None:
    service = ca(challenge_signing="none")
    with pytest.raises(enr.ChallengeMailRefused, match="no valid S/MIME signature"):
        enrollment(PkiSettings(service.acme_directory_url, service.roots_pem)).enroll(ALICE)


def test_an_sm2_only_enrollment_from_a_ca_without_sm2_is_refused_before_any_key(
    ca: Callable[..., ConfiguredPki], enrollment: Callable[..., enr.Enrollment]
) -> None:
    service = ca(offer_sm2=False)
    host = enrollment(PkiSettings(service.acme_directory_url, service.roots_pem))
    with pytest.raises(enr.EnrollmentRefused, match="does not issue SM2"):
        host.enroll(ALICE, suites=("sm",))
    assert host.keystore.records(ALICE) == []
