"""The service's mail knobs that make it behave like another RFC 8823 CA, over the real mail
stack and the ACME HTTP app with real mail validation (no short circuit): challenge mail
DKIM-signed for another domain than the CA mailbox's, with a Reply-To (challenge_signing,
challenge_reply_to), bare challenge mail without Auto-Submitted, Message-ID or Date
(challenge_headers), and validation that starts on any POST to the challenge and fails unless
the reply is already there (challenge_post_validates_at_once)."""

from __future__ import annotations

import datetime
import email
import email.policy
import time
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Any

import pytest
from harness.acme_client import AcmeClient
from harness.mail import MailStack
from harness.pki_service import TEST_STACK_KNOBS
from sqlalchemy import select
from starlette.testclient import TestClient

from shared_pki.acme import email_reply, jws
from shared_pki.acme.problems import AcmeProblem
from shared_pki.net.dkim import verify_dkim, zone_resolver
from shared_pki.service import config as service_config
from shared_pki.service.app import create_app
from shared_pki.service.storage.store import challenges

pytestmark = pytest.mark.mail

CA = "carol@example.test"
ALICE = "alice@example.test"
OTHER_SENDER = "acme-challenge@ca.example.net"
DEADLINE = 20.0


def _quoted(text: str) -> str:
    return text.replace("%", "%25").replace("@", "%40").replace(":", "%3A").replace("/", "%2F")


def wait_for(check: Callable[[], Any], what: str) -> Any:
    end = time.monotonic() + DEADLINE
    while not (found := check()):
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)  # polling a condition, bounded by the deadline
    return found


@pytest.fixture
def make_ca(mail_stack: MailStack, tmp_path: Path) -> Iterator[Callable[..., TestClient]]:
    opened: list[TestClient] = []

    def make(**overrides: Any) -> TestClient:
        login = f"{_quoted(CA)}:{_quoted(mail_stack.users[CA])}@{mail_stack.host}"
        config = service_config.load(
            tmp_path / f"pki-{len(opened)}",
            {
                "mail_from": CA,
                "smtp_url": f"smtp://{login}:{mail_stack.smtp_port}",
                "imap_url": f"imaps://{login}:{mail_stack.imaps_port}",
                "mail_ca_file": str(mail_stack.ca_cert_path),
                **TEST_STACK_KNOBS,  # the loopback stack: limits per address lifted, no DKIM
                **overrides,
            },
        )
        http = TestClient(create_app(config))
        http.__enter__()  # the lifespan starts the reply watcher
        opened.append(http)
        return http

    yield make
    for http in opened:
        http.__exit__(None, None, None)


class Alice:
    """alice's side of one order, done by hand as a mail program would."""

    def __init__(self, stack: MailStack, http: TestClient) -> None:
        self.stack = stack
        self.http = http
        config = http.app.state.service.config
        self.acme = AcmeClient(http, f"{config.public_url}/acme/directory")
        self.acme.register(f"mailto:{ALICE}")

    def order(self) -> dict[str, Any]:
        """A new order's challenge (its JSON) once its mail was sent."""
        _url, order = self.acme.order(ALICE)
        (authz_url,) = order["authorizations"]
        (challenge,) = self.acme.get(authz_url)["challenges"]
        challenge_id = challenge["url"].rpartition("/")[2]
        wait_for(lambda: self.row(challenge_id).sent, "the challenge mail to be sent")
        return challenge

    def row(self, challenge_id: str) -> Any:
        with self.http.app.state.service.store.transaction() as db:
            return db.execute(select(challenges).where(challenges.c.id == challenge_id)).one()

    def mail(self, challenge: dict[str, Any]) -> bytes:
        token = self.row(challenge["url"].rpartition("/")[2]).token_part1
        client = self.stack.imap_client(ALICE)
        try:
            client.select_folder("INBOX", readonly=True)
            uids = wait_for(lambda: client.search(["SUBJECT", token]), "the challenge mail")
            return client.fetch(uids, ["BODY.PEEK[]"])[uids[0]][b"BODY[]"]
        finally:
            client.logout()

    def reply(self, challenge: dict[str, Any], raw: bytes) -> None:
        headers = email.message_from_bytes(raw, policy=email.policy.default)
        mail = email_reply.check_challenge_mail(
            {k: str(v) for k, v in headers.items()},
            challenge_from=challenge["from"],
            address=ALICE,
            relaxed=True,
        )
        reply = EmailMessage()
        for name, value in email_reply.build_reply_headers(mail, address=ALICE).items():
            reply[name] = value
        reply["Message-ID"] = make_msgid(domain="example.test")
        reply["Date"] = format_datetime(datetime.datetime.now(datetime.UTC))
        digest = email_reply.response_digest(
            mail.token_part1, challenge["token"], jws.thumbprint(self.acme.key)
        )
        reply.set_content(email_reply.build_response_body(digest).replace("\r\n", "\n"))
        with self.stack.smtp_client(ALICE) as smtp:
            smtp.sendmail(ALICE, [mail.reply_address], reply.as_bytes())

    def status(self, challenge: dict[str, Any], *wanted: str) -> dict[str, Any]:
        return wait_for(
            lambda: (doc := self._read(challenge))["status"] in wanted and doc,
            f"the challenge to become {wanted}",
        )

    def _read(self, challenge: dict[str, Any]) -> dict[str, Any]:
        with self.http.app.state.service.store.transaction() as db:
            row = db.execute(
                select(challenges).where(challenges.c.id == challenge["url"].rpartition("/")[2])
            ).one()
        return {"status": row.status, "error": row.error}


def test_dkim_signed_challenge_mail_from_another_domain_with_a_reply_to(
    make_ca: Callable[..., TestClient], mail_stack: MailStack
) -> None:
    http = make_ca(
        mail_from=OTHER_SENDER, challenge_signing="dkim", challenge_reply_to=CA, dkim_selector="s1"
    )
    data = http.app.state.service.config.data_dir
    name, record = (data / "dkim" / "s1.txt").read_text().strip().split(" ", 1)
    assert name == "s1._domainkey.ca.example.net" and record.startswith("v=DKIM1; k=rsa; p=")
    alice = Alice(mail_stack, http)
    challenge = alice.order()
    assert challenge["from"] == OTHER_SENDER
    raw = alice.mail(challenge)
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert parsed.get_content_type() == "text/plain"  # no S/MIME layer
    assert str(parsed["Reply-To"]) == CA and str(parsed["From"]) == OTHER_SENDER
    zone = zone_resolver({name: record})
    assert verify_dkim(raw, from_domain="ca.example.net", dnsfunc=zone).valid
    assert not verify_dkim(raw, from_domain="example.test", dnsfunc=zone).valid
    alice.reply(challenge, raw)
    alice.acme.ok(challenge["url"], {})
    assert alice.status(challenge, "valid", "invalid")["status"] == "valid"


def test_bare_challenge_mail_and_a_reply_without_in_reply_to(
    make_ca: Callable[..., TestClient], mail_stack: MailStack
) -> None:
    alice = Alice(mail_stack, make_ca(challenge_headers="bare", challenge_signing="none"))
    challenge = alice.order()
    raw = alice.mail(challenge)
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    for name in ("Auto-Submitted", "Message-ID", "Date", "DKIM-Signature"):
        assert name not in parsed, name
    assert parsed.get_content_type() == "text/plain"
    with pytest.raises(AcmeProblem, match="Auto-Submitted"):
        email_reply.check_challenge_mail(
            {k: str(v) for k, v in parsed.items()}, challenge_from=CA, address=ALICE
        )
    alice.reply(challenge, raw)  # relaxed: no In-Reply-To to give
    alice.acme.ok(challenge["url"], {})
    assert alice.status(challenge, "valid", "invalid")["status"] == "valid"


def test_a_post_as_get_before_the_reply_fails_the_challenge_at_once(
    make_ca: Callable[..., TestClient], mail_stack: MailStack
) -> None:
    alice = Alice(mail_stack, make_ca(challenge_post_validates_at_once=True))
    early = alice.order()
    read = alice.acme.get(early["url"])  # a client that reads before it has replied
    assert read["status"] == "invalid"
    assert "before its reply" in read["error"]["detail"]

    challenge = alice.order()
    alice.reply(challenge, alice.mail(challenge))
    answered = alice.acme.ok(challenge["url"], {}).json()
    assert answered["status"] in ("processing", "valid")
    assert alice.status(challenge, "valid", "invalid")["status"] == "valid"
