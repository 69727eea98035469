"""RFC 8823 challenge mail over the real mail stack: the CA (carol@example.test) mails a signed
challenge by SMTP, alice@example.test reads it by IMAP and replies by SMTP, and the reply
watcher (IMAP IDLE or polling) records the result once. Rows are inserted directly: the ACME
HTTP server that creates them is not what these tests are about."""

from __future__ import annotations

import base64
import contextlib
import datetime
import hashlib
import itertools
import json
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Any

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from harness.mail import MailStack
from imapclient import IMAPClient
from sqlalchemy import insert, select, update

from shared_pki import smime
from shared_pki.acme import email_reply
from shared_pki.acme.jws import b64url_encode
from shared_pki.ca import hierarchy as ca_hierarchy
from shared_pki.service.acme import transitions as acme_state
from shared_pki.service.config import ServiceConfig
from shared_pki.service.mail_validation.challenges import MailSettings
from shared_pki.service.mail_validation.dkim import zone_resolver
from shared_pki.service.mail_validation.install import install
from shared_pki.service.mail_validation.sender import MailValidator
from shared_pki.service.mail_validation.watcher import (
    KEYWORD,
    PROCESSED_FOLDER,
    ReplyWatcher,
    Verdict,
    sweep_expired,
)
from shared_pki.service.state import ServiceState
from shared_pki.service.storage.store import (
    Store,
    accounts,
    authorizations,
    challenges,
    order_authorizations,
    orders,
)

pytestmark = pytest.mark.mail

CA = "carol@example.test"
ALICE = "alice@example.test"
BOB = "bob@example.test"
DEADLINE = 20.0
SELECTOR = "acme-test"
_ids = itertools.count(1)


# ---------------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture(scope="module")
def hierarchy() -> ca_hierarchy.Hierarchy:
    return ca_hierarchy.create_hierarchy(
        "Autosmime Mail Test",
        crl_base_url="http://pki.example.test/crl",
        aia_base_url="http://pki.example.test/ca",
        mail_address=CA,
        now=datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=1),
    )


@pytest.fixture(scope="module")
def dkim_key() -> tuple[bytes, str]:
    """(private key PEM, DNS TXT record) for SELECTOR._domainkey.example.test."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    spki = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return pem, f"v=DKIM1; k=rsa; p={base64.b64encode(spki).decode()}"


def _quoted(text: str) -> str:
    return text.replace("%", "%25").replace("@", "%40").replace(":", "%3A").replace("/", "%2F")


def mail_urls(stack: MailStack, *, imap_tls: bool = True) -> dict[str, str]:
    login = f"{_quoted(CA)}:{_quoted(stack.users[CA])}@{stack.host}"
    imap = (
        f"imaps://{login}:{stack.imaps_port}" if imap_tls else f"imap://{login}:{stack.imap_port}"
    )
    return {
        "mail_from": CA,
        "smtp_url": f"smtp://{login}:{stack.smtp_port}",
        "imap_url": imap,
        "mail_ca_file": str(stack.ca_cert_path),
    }


@dataclass
class Rig:
    """One CA service state over a fresh SQLite store, its validator and (once started) its
    watcher, plus the user's side."""

    stack: MailStack
    state: ServiceState
    settings: MailSettings
    validator: MailValidator
    watchers: list[ReplyWatcher] = field(default_factory=list)

    # -- the CA side ---------------------------------------------------------------------------

    def watch(self, **options: Any) -> ReplyWatcher:
        watcher = ReplyWatcher(self.state, self.settings, **options)
        self.validator.listeners.append(watcher.wake)
        self.watchers.append(watcher)
        assert watcher.start()
        wait_for(watcher.connected.is_set, "the watcher to log in", lambda: watcher.last_error)
        return watcher

    def new_challenge(self, *, address: str = ALICE, expires_in: float = 3600) -> Challenge:
        n = next(_ids)
        now = time.time()
        thumbprint = b64url_encode(hashlib.sha256(secrets.token_bytes(32)).digest())
        challenge = Challenge(
            id=f"chall-{n}",
            authorization=f"authz-{n}",
            order=f"order-{n}",
            token_part2=email_reply.new_token(),
            thumbprint=thumbprint,
            address=address,
        )
        with self.state.store.transaction() as db:
            db.execute(
                insert(accounts).values(
                    id=f"acct-{n}", thumbprint=thumbprint, jwk="{}", status="valid", created=now
                )
            )
            db.execute(
                insert(orders).values(
                    id=challenge.order,
                    account=f"acct-{n}",
                    status="pending",
                    identifiers=json.dumps([{"type": "email", "value": address}]),
                    expires=now + 7200,
                    created=now,
                )
            )
            db.execute(
                insert(authorizations).values(
                    id=challenge.authorization,
                    account=f"acct-{n}",
                    address=address,
                    status="pending",
                    expires=now + 7200,
                    created=now,
                )
            )
            db.execute(
                insert(order_authorizations).values(
                    order_id=challenge.order, authorization_id=challenge.authorization
                )
            )
            db.execute(
                insert(challenges).values(
                    id=challenge.id,
                    authorization=challenge.authorization,
                    type="email-reply-00",
                    status="pending",
                    token_part1=email_reply.new_token(),
                    token_part2=challenge.token_part2,
                    from_address=CA,
                    expires=now + expires_in,
                )
            )
        return challenge

    def row(self, table: Any, key: str) -> Any:
        with self.state.store.transaction() as db:
            return db.execute(select(table).where(table.c.id == key)).first()

    def send(self, challenge: Challenge) -> Any:
        """challenge_created, as the ACME server calls it; the row once the mail is out."""
        assert self.validator.challenge_created(self.state, challenge.id).result(DEADLINE)
        return self.row(challenges, challenge.id)

    def post(self, challenge: Challenge) -> None:
        """What the ACME server does on the client's POST: processing, then validator.start."""
        with self.state.store.transaction() as db:
            db.execute(
                update(challenges)
                .where(challenges.c.id == challenge.id, challenges.c.status == "pending")
                .values(status="processing")
            )
        self.validator.start(self.state, challenge.id).result(DEADLINE)

    def wait_status(self, challenge: Challenge, status: str) -> Any:
        wait_for(
            lambda: self.row(challenges, challenge.id).status == status,
            f"challenge {challenge.id} to become {status}",
            lambda: f"it is {self.row(challenges, challenge.id).status}",
        )
        return self.row(challenges, challenge.id)

    def wait_judged(self, watcher: ReplyWatcher, reply_id: str, verdict: Verdict) -> None:
        wait_for(
            lambda: any(
                j.reply_id == reply_id and j.verdict is verdict for j in list(watcher.history)
            ),
            f"the watcher to judge {reply_id} {verdict}",
            lambda: repr(list(watcher.history)[-5:]),
        )

    # -- the user's side -----------------------------------------------------------------------

    def challenge_mail(self, challenge: Challenge, *, user: str = ALICE) -> bytes:
        """The challenge mail in the user's INBOX, found by the Message-ID the CA stored."""
        message_id = self.row(challenges, challenge.id).message_id
        with imap(self.stack, user) as client:
            client.select_folder("INBOX", readonly=True)
            uids = client.search(["HEADER", "Message-ID", message_id])
            assert len(uids) == 1, f"{len(uids)} challenge mails with {message_id}"
            return client.fetch(uids, ["BODY.PEEK[]"])[uids[0]][b"BODY[]"]

    def reply(
        self,
        challenge: Challenge,
        *,
        sender: str = ALICE,
        digest: str | None = None,
        subject: str | None = None,
        in_reply_to: str | None = None,
        dkim_sign: tuple[bytes, bytes] | None = None,
    ) -> str:
        """Answer the challenge mail as a mail client would (by default correctly); the
        reply's Message-ID."""
        raw = self.challenge_mail(challenge)
        parsed = _headers(raw)
        mail = email_reply.check_challenge_mail(parsed, challenge_from=CA, address=ALICE)
        reply = EmailMessage()
        for name, value in email_reply.build_reply_headers(mail, address=ALICE).items():
            reply[name] = value
        if sender != ALICE:
            reply.replace_header("From", sender)
        if subject is not None:
            reply.replace_header("Subject", subject)
        if in_reply_to is not None:
            reply.replace_header("In-Reply-To", in_reply_to)
        reply_id = make_msgid(domain=sender.rpartition("@")[2])
        reply["Message-ID"] = reply_id
        reply["Date"] = format_datetime(datetime.datetime.now(datetime.UTC))
        if digest is None:
            digest = email_reply.response_digest(
                mail.token_part1, challenge.token_part2, challenge.thumbprint
            )
        quoted = "> " + email_reply.challenge_text(ALICE).replace("\r\n", "\n> ")
        reply.set_content(
            "Hello CA,\n\n"
            + email_reply.build_response_body(digest).replace("\r\n", "\n")
            + "\n"
            + quoted
        )
        data = reply.as_bytes(policy=reply.policy.clone(linesep="\r\n"))
        if dkim_sign is not None:
            private_pem, domain = dkim_sign
            signature = dkim.sign(
                data,
                SELECTOR.encode(),
                domain,
                private_pem,
                include_headers=[b"from", b"to", b"subject", b"in-reply-to", b"message-id"],
            )
            data = signature + data
        with self.stack.smtp_client(sender) as smtp:
            smtp.sendmail(sender, [CA], data)
        return reply_id


@dataclass
class Challenge:
    id: str
    authorization: str
    order: str
    token_part2: str
    thumbprint: str
    address: str


def _headers(raw: bytes) -> dict[str, str]:
    from email import message_from_bytes
    from email.policy import compat32

    message = message_from_bytes(raw, policy=compat32)
    return {name: str(value) for name, value in message.items()}


def wait_for(check: Callable[[], bool], what: str, explain: Callable[[], str] = str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}: {explain()}")
        time.sleep(0.05)


@contextlib.contextmanager
def imap(stack: MailStack, user: str) -> Iterator[IMAPClient]:
    client = stack.imap_client(user)
    try:
        yield client
    finally:
        client.logout()


def flags_in(stack: MailStack, folder: str, message_id: str) -> list[set[bytes]]:
    """The flags of every message with that Message-ID in the CA's folder."""
    with imap(stack, CA) as client:
        if not client.folder_exists(folder):
            return []
        client.select_folder(folder, readonly=True)
        uids = client.search(["HEADER", "Message-ID", message_id])
        fetched = client.fetch(uids, ["FLAGS"]) if uids else {}
        return [set(item[b"FLAGS"]) for item in fetched.values()]


@pytest.fixture
def rig_factory(
    mail_stack: MailStack, hierarchy: ca_hierarchy.Hierarchy, tmp_path: Path, dkim_key: Any
) -> Iterator[Callable[..., Rig]]:
    rigs: list[Rig] = []

    def make(*, imap_tls: bool = True, **config: Any) -> Rig:
        folder = tmp_path / f"rig{len(rigs)}"
        folder.mkdir()
        # The loopback mail stack signs nothing with DKIM: tests that sign turn it on.
        settings = mail_urls(mail_stack, imap_tls=imap_tls) | {"dkim_required": "off"} | config
        service_config = ServiceConfig(
            data_dir=folder, db_url=f"sqlite:///{folder / 'pki.sqlite3'}", **settings
        )
        state = ServiceState(service_config, Store(service_config.db_url), hierarchy)
        state.dkim_dns = zone_resolver({f"{SELECTOR}._domainkey.example.test": dkim_key[1]})
        settings = MailSettings.from_config(service_config)
        rig = Rig(mail_stack, state, settings, MailValidator(settings, retry_seconds=0.1))
        rigs.append(rig)
        return rig

    yield make
    for rig in rigs:
        for watcher in rig.watchers:
            watcher.stop()
            assert not watcher.alive, "the watcher did not stop"
        rig.validator.close()
        rig.state.store.close()


@pytest.fixture
def rig(rig_factory: Callable[..., Rig]) -> Rig:
    return rig_factory()


def problem_of(row: Any) -> dict[str, Any]:
    assert row.error, "no problem recorded"
    return json.loads(row.error)


# ---------------------------------------------------------------------------------------------
# The challenge mail


def test_challenge_mail_is_signed_by_the_ca_and_carries_the_rfc8823_headers(
    rig: Rig, hierarchy: ca_hierarchy.Hierarchy
) -> None:
    challenge = rig.new_challenge()
    before = time.time()
    row = rig.send(challenge)
    assert row.sent is not None and before <= row.sent <= time.time()
    assert row.message_id and row.message_id.endswith("@example.test>")
    raw = rig.challenge_mail(challenge)

    opened = smime.open_message(
        raw,
        trust_anchors=[hierarchy.intl_root.certificate],
        intermediates=[hierarchy.intl_issuing.certificate],
    )
    assert opened.signed_and_valid, opened.signatures[0].summary
    signer = opened.signatures[0].signers[0]
    assert signer.certificate.dump() == hierarchy.mail_identity.certificate.dump()
    # A certificate from another CA is not accepted as this CA's signature.
    other = ca_hierarchy.create_hierarchy(
        "Other", crl_base_url="http://o/crl", aia_base_url="http://o/ca", mail_address=CA
    )
    assert not smime.open_message(raw, trust_anchors=[other.intl_root.certificate]).signed_and_valid

    headers = _headers(raw)
    mail = email_reply.check_challenge_mail(headers, challenge_from=CA, address=ALICE)
    assert mail.message_id == row.message_id
    assert mail.token_part1 == row.token_part1
    assert headers["Subject"] == f"ACME: {row.token_part1}"
    assert headers["Auto-Submitted"] == "auto-generated; type=acme"
    assert headers["From"] == CA and headers["To"] == ALICE
    date = datetime.datetime.strptime(headers["Date"], "%a, %d %b %Y %H:%M:%S %z")
    assert abs(date.timestamp() - row.sent) < 5
    text = opened.message.decode()
    assert "automatically generated ACME challenge" in text and ALICE in text
    assert len(base64.urlsafe_b64decode(row.token_part1 + "==")) >= 16


def test_a_challenge_is_mailed_once_however_often_it_is_started(rig: Rig) -> None:
    challenge = rig.new_challenge()
    futures = [rig.validator.challenge_created(rig.state, challenge.id) for _ in range(3)]
    futures.append(rig.validator.start(rig.state, challenge.id))
    assert sorted(f.result(DEADLINE) for f in futures) == [False, False, False, True]
    rig.challenge_mail(challenge)  # asserts exactly one in the INBOX


def test_start_does_not_block_the_request(rig_factory: Callable[..., Rig]) -> None:
    rig = rig_factory(validation_delay_seconds=0.5)
    challenge = rig.new_challenge()
    # An SMTP round trip is slow; the call only queues it.
    began = time.monotonic()
    future = rig.validator.challenge_created(rig.state, challenge.id)
    assert time.monotonic() - began < 0.05
    assert future.result(DEADLINE) is True


def test_an_unsendable_challenge_fails_with_a_connection_problem(
    rig_factory: Callable[..., Rig], mail_stack: MailStack
) -> None:
    wrong = "Wr0ng:pa%ss"
    rig = rig_factory(
        smtp_url=f"smtp://{_quoted(CA)}:{_quoted(wrong)}@{mail_stack.host}:{mail_stack.smtp_port}"
    )
    challenge = rig.new_challenge()
    assert rig.validator.challenge_created(rig.state, challenge.id).result(DEADLINE) is False
    row = rig.row(challenges, challenge.id)
    assert row.status == "invalid" and row.sent is None
    problem = problem_of(row)
    assert problem["type"] == "urn:ietf:params:acme:error:connection"
    assert "login refused" in problem["detail"]
    assert wrong not in row.error and _quoted(wrong) not in row.error
    assert rig.row(authorizations, challenge.authorization).status == "invalid"


# ---------------------------------------------------------------------------------------------
# Replies


def test_a_correct_reply_validates_the_challenge_once(rig: Rig) -> None:
    watcher = rig.watch()
    assert watcher.mode == "idle"  # Dovecot has IDLE
    challenge = rig.new_challenge()
    rig.send(challenge)
    rig.post(challenge)
    reply_id = rig.reply(challenge)
    row = rig.wait_status(challenge, "valid")
    assert row.reply_id == reply_id and row.validated is not None and row.error is None
    assert rig.row(authorizations, challenge.authorization).status == "valid"
    assert rig.row(orders, challenge.order).status == "ready"
    # Filed: seen, marked, moved to acme-processed, gone from the INBOX (never deleted).
    wait_for(lambda: bool(flags_in(rig.stack, PROCESSED_FOLDER, reply_id)), "the reply filed")
    (flags,) = flags_in(rig.stack, PROCESSED_FOLDER, reply_id)
    assert b"\\Seen" in flags and KEYWORD.encode() in flags
    assert flags_in(rig.stack, "INBOX", reply_id) == []

    # A second reply, even a correct one, changes nothing and is left alone, flagged.
    second = rig.reply(challenge)
    rig.wait_judged(watcher, second, Verdict.IGNORE)
    again = rig.row(challenges, challenge.id)
    assert (again.status, again.reply_id, again.validated) == ("valid", reply_id, row.validated)
    wait_for(lambda: bool(flags_in(rig.stack, "INBOX", second)), "the second reply flagged")
    (flags,) = flags_in(rig.stack, "INBOX", second)
    assert b"\\Flagged" in flags and b"\\Seen" not in flags


def test_a_reply_before_the_post_waits_for_it(rig: Rig) -> None:
    watcher = rig.watch(recheck_seconds=30)  # only the POST's wake() can be quick
    challenge = rig.new_challenge()
    rig.send(challenge)
    reply_id = rig.reply(challenge)
    rig.wait_judged(watcher, reply_id, Verdict.WAIT)
    assert rig.row(challenges, challenge.id).status == "pending"
    assert flags_in(rig.stack, "INBOX", reply_id) == [set()]  # untouched while waiting
    rig.post(challenge)
    assert rig.wait_status(challenge, "valid").reply_id == reply_id


@pytest.mark.parametrize(
    ("change", "detail"),
    [
        ({"sender": BOB}, "not from the address"),
        ({"digest": email_reply.response_digest("A" * 32, "B" * 32, "C" * 43)}, "does not match"),
        ({"in_reply_to": "<someone-else@example.test>"}, "In-Reply-To"),
    ],
    ids=["from-bob", "wrong-digest", "wrong-in-reply-to"],
)
def test_a_wrong_reply_fails_the_challenge(rig: Rig, change: dict[str, Any], detail: str) -> None:
    rig.watch()
    challenge = rig.new_challenge()
    rig.send(challenge)
    rig.post(challenge)
    reply_id = rig.reply(challenge, **change)
    row = rig.wait_status(challenge, "invalid")
    problem = problem_of(row)
    assert problem["type"] == "urn:ietf:params:acme:error:incorrectResponse"
    assert detail in problem["detail"]
    assert problem["identifier"] == {"type": "email", "value": ALICE}
    assert row.reply_id == reply_id and row.validated is None
    assert rig.row(authorizations, challenge.authorization).status == "invalid"
    assert rig.row(orders, challenge.order).status == "invalid"
    wait_for(lambda: bool(flags_in(rig.stack, PROCESSED_FOLDER, reply_id)), "the reply filed")


def test_a_reply_naming_another_token_is_left_alone(rig: Rig) -> None:
    watcher = rig.watch()
    challenge = rig.new_challenge()
    rig.send(challenge)
    rig.post(challenge)
    stray = rig.reply(challenge, subject=f"Re: ACME: {email_reply.new_token()}")
    rig.wait_judged(watcher, stray, Verdict.IGNORE)
    assert rig.row(challenges, challenge.id).status == "processing"
    wait_for(lambda: bool(flags_in(rig.stack, "INBOX", stray)), "the stray reply flagged")
    (flags,) = flags_in(rig.stack, "INBOX", stray)
    assert b"\\Flagged" in flags and KEYWORD.encode() in flags and b"\\Seen" not in flags
    # The challenge is still open: the right reply still validates it.
    rig.reply(challenge)
    rig.wait_status(challenge, "valid")


def test_a_late_reply_fails_an_expired_challenge(rig: Rig) -> None:
    rig.watch(sweep_seconds=3600)  # the sweep ran at start; the late reply must do it
    challenge = rig.new_challenge()
    rig.send(challenge)
    rig.post(challenge)
    mail = rig.challenge_mail(challenge)
    assert mail
    with rig.state.store.transaction() as db:  # the clock passes the expiry
        db.execute(
            update(challenges)
            .where(challenges.c.id == challenge.id)
            .values(expires=time.time() - 1)
        )
    reply_id = rig.reply(challenge)
    row = rig.wait_status(challenge, "invalid")
    problem = problem_of(row)
    assert problem["type"] == "urn:ietf:params:acme:error:unauthorized"
    assert "expired" in problem["detail"]
    assert row.reply_id == reply_id


def test_the_sweep_fails_expired_challenges_without_a_reply(rig: Rig) -> None:
    expired = rig.new_challenge()
    rig.send(expired)
    fresh = rig.new_challenge()
    rig.send(fresh)
    with rig.state.store.transaction() as db:
        db.execute(
            update(challenges).where(challenges.c.id == expired.id).values(expires=time.time())
        )
    rig.watch(sweep_seconds=0.2)
    row = rig.wait_status(expired, "invalid")
    assert problem_of(row)["type"] == "urn:ietf:params:acme:error:unauthorized"
    assert rig.row(challenges, fresh.id).status == "pending"
    assert sweep_expired(rig.state, now=time.time()) == []  # nothing left, nothing twice


def test_dkim_required_and_missing_fails(rig_factory: Callable[..., Rig]) -> None:
    rig = rig_factory(dkim_required=True)
    rig.watch()
    challenge = rig.new_challenge()
    rig.send(challenge)
    rig.post(challenge)
    rig.reply(challenge)
    problem = problem_of(rig.wait_status(challenge, "invalid"))
    assert problem["type"] == "urn:ietf:params:acme:error:incorrectResponse"
    assert "no DKIM signature" in problem["detail"]


def test_dkim_is_required_by_default_when_the_service_has_dns(
    rig_factory: Callable[..., Rig], dkim_key: Any
) -> None:
    """The default, auto, with DNS (the zone the rig gives the service): an unsigned reply
    fails, a reply signed by the address's domain validates."""
    rig = rig_factory(dkim_required=service_config_default("dkim_required"))
    assert rig.state.config.dkim_required == "auto"
    rig.watch()
    unsigned, signed = rig.new_challenge(), rig.new_challenge()
    for challenge in (unsigned, signed):
        rig.send(challenge)
        rig.post(challenge)
    rig.reply(unsigned)
    assert "no DKIM signature" in problem_of(rig.wait_status(unsigned, "invalid"))["detail"]
    rig.reply(signed, dkim_sign=(dkim_key[0], b"example.test"))
    rig.wait_status(signed, "valid")


def service_config_default(name: str) -> Any:
    import dataclasses

    return {f.name: f.default for f in dataclasses.fields(ServiceConfig)}[name]


def test_dkim_by_another_domain_fails(rig_factory: Callable[..., Rig], dkim_key: Any) -> None:
    rig = rig_factory(dkim_required=True)
    # The attacker's own domain, with its key really published: valid, but not aligned.
    rig.state.dkim_dns = zone_resolver({f"{SELECTOR}._domainkey.evil.test": dkim_key[1]})
    rig.watch()
    challenge = rig.new_challenge()
    rig.send(challenge)
    rig.post(challenge)
    rig.reply(challenge, dkim_sign=(dkim_key[0], b"evil.test"))
    problem = problem_of(rig.wait_status(challenge, "invalid"))
    assert "is by evil.test, not by example.test" in problem["detail"]


def test_dkim_valid_reply_validates(rig_factory: Callable[..., Rig], dkim_key: Any) -> None:
    rig = rig_factory(dkim_required=True)
    watcher = rig.watch()
    challenge = rig.new_challenge()
    rig.send(challenge)
    rig.post(challenge)
    reply_id = rig.reply(challenge, dkim_sign=(dkim_key[0], b"example.test"))
    row = rig.wait_status(challenge, "valid")
    assert row.reply_id == reply_id
    assert any(j.reply_id == reply_id and j.problem is None for j in watcher.history)


def test_the_poll_fallback_works_without_idle(rig_factory: Callable[..., Rig]) -> None:
    rig = rig_factory(imap_tls=False, imap_poll_seconds=0.2)  # imap:// with STARTTLS
    watcher = rig.watch(force_poll=True)
    assert watcher.mode == "poll"
    challenge = rig.new_challenge()
    rig.send(challenge)
    rig.post(challenge)
    reply_id = rig.reply(challenge)
    assert rig.wait_status(challenge, "valid").reply_id == reply_id


def test_the_validation_delay_holds_the_result_back(rig_factory: Callable[..., Rig]) -> None:
    delay = 1.5
    rig = rig_factory(validation_delay_seconds=delay)
    watcher = rig.watch()
    challenge = rig.new_challenge()
    rig.send(challenge)
    rig.post(challenge)
    replied = time.time()
    reply_id = rig.reply(challenge)
    rig.wait_judged(watcher, reply_id, Verdict.DECIDE)  # judged, then held
    row = rig.wait_status(challenge, "valid")
    assert row.validated - replied >= delay


def test_two_watchers_on_one_store_decide_once(rig: Rig) -> None:
    """Several server processes share one database and one mailbox: each has its own watcher
    (here: two in one process, the registry bypassed), and the result is recorded once."""
    rig.watch()
    challenge = rig.new_challenge()
    rig.send(challenge)
    rig.post(challenge)
    second = ReplyWatcher(rig.state, rig.settings)
    second._key = ("another process", "")  # what a second process would have
    rig.watchers.append(second)
    assert second.start()
    wait_for(second.connected.is_set, "the second watcher")
    reply_id = rig.reply(challenge)
    row = rig.wait_status(challenge, "valid")
    assert row.reply_id == reply_id
    assert (
        acme_state.challenge_result(
            rig.state.store, challenge.id, valid=False, reply_id="<late@x>", now=time.time()
        )
        is False
    )
    assert rig.row(challenges, challenge.id).reply_id == reply_id


def test_one_watcher_per_mailbox_and_store_in_a_process(rig: Rig) -> None:
    first = rig.watch()
    twin = ReplyWatcher(rig.state, rig.settings)
    assert twin.start() is False and not twin.alive
    twin.stop()
    assert first.alive  # stopping the twin does not stop the running one
    first.stop()
    assert not first.alive
    assert first.start() and first.alive  # and it can start again


# ---------------------------------------------------------------------------------------------
# Registration


def test_install_registers_validator_and_watcher_hooks(rig_factory: Callable[..., Rig]) -> None:
    rig = rig_factory()
    state = ServiceState(rig.state.config, rig.state.store, rig.state.hierarchy)
    installed = install(state)
    assert installed is not None
    validator, watcher = installed.validator, installed.watcher
    assert isinstance(validator, MailValidator) and state.validator is validator
    assert watcher.start in state.on_startup
    assert watcher.stop in state.on_shutdown
    for hook in state.on_startup:
        hook()
    try:
        wait_for(watcher.connected.is_set, "the installed watcher")
    finally:
        for hook in state.on_shutdown:
            hook()
    assert not watcher.alive
    # An explicit validator (the short circuit of tests and the benchmark) is kept.
    marker = object()
    other = ServiceState(rig.state.config, rig.state.store, rig.state.hierarchy, marker)  # type: ignore[arg-type]
    assert install(other) is None and other.validator is marker


def test_the_app_runs_the_watcher_for_its_lifespan(tmp_path: Path, mail_stack: MailStack) -> None:
    from harness.short_circuit import ShortCircuitValidator
    from starlette.testclient import TestClient

    from shared_pki.service import config as service_config
    from shared_pki.service.app import create_app
    from shared_pki.service.state import Validator

    config = service_config.load(tmp_path / "pki", mail_urls(mail_stack))
    app = create_app(config)
    installed = app.state.mail_validation
    validator, watcher = installed.validator, installed.watcher
    assert isinstance(validator, MailValidator) and isinstance(validator, Validator)
    assert not watcher.alive
    with TestClient(app) as client:
        assert client.get("/health").status_code == 200
        wait_for(watcher.connected.is_set, "the app's watcher", lambda: watcher.last_error)
    assert not watcher.alive
    # A validator given by the caller wins; no watcher then.
    injected = create_app(config, validator=ShortCircuitValidator())
    assert injected.state.mail_validation is None
    injected.state.service.store.close()
