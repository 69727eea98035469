"""RFC 8823 challenge mail: the CA's side of `email-reply-00` over real SMTP and IMAP.

`MailValidator` is the ACME server's validator (validation.Validator, registered as
`state.extras["validator"]` by `install`):

- `challenge_created(state, id)` (the server's hook after committing a challenge) sends the
  challenge mail on a worker thread: From the challenge's `from`, To the address, Subject
  `ACME: <token-part1>`, a fresh Message-ID stored in challenges.message_id, Auto-Submitted
  `auto-generated; type=acme`, Date, a human explanation, S/MIME-signed with the CA's mail
  identity, submitted with AUTH to config.smtp_url; `sent` records when.
- `start(state, id)` (the client POSTed: the challenge is `processing`) sends the mail if no
  process has yet, and wakes this process's reply watcher so the answer is recorded at once.

Sending is claimed in the database (message_id set where it is NULL), so of several processes
and repeated calls exactly one mails a challenge. The reply side is mail_watcher.ReplyWatcher.
"""

from __future__ import annotations

import concurrent.futures
import datetime
import logging
import smtplib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, select, update

from shared_pki import smime
from shared_pki.acme import email_reply
from shared_pki.acme.objects import EMAIL_REPLY_00, ChallengeStatus, normalize_email
from shared_pki.acme.problems import AcmeProblem, ProblemType
from shared_pki.keys import Credential
from shared_pki.net.mail import (
    MailConnectionError,
    MailUrl,
    open_smtp,
    parse_mail_url,
)
from shared_pki.service.acme import transitions as acme_state
from shared_pki.service.storage.store import Store, accounts, authorizations, challenges

if TYPE_CHECKING:
    from shared_pki.service.app import ServiceState

log = logging.getLogger(__name__)

#: Statuses in which a challenge still waits for its reply.
OPEN_STATUSES = (ChallengeStatus.PENDING.value, ChallengeStatus.PROCESSING.value)
#: SMTP attempts per challenge mail, and the pause before the second, doubled each time.
SEND_ATTEMPTS = 3
SEND_RETRY_SECONDS = 2.0


# ---------------------------------------------------------------------------------------------
# Settings


@dataclass(frozen=True)
class MailSettings:
    """The mail part of ServiceConfig, parsed and checked once."""

    mail_from: str
    smtp: MailUrl
    imap: MailUrl
    dkim_required: bool
    poll_seconds: float

    @classmethod
    def from_config(cls, config: Any) -> MailSettings:
        """MailUrlError (a ValueError) when a URL is unusable; the message hides passwords."""
        if not config.mail_from:
            raise ValueError("mail_from (the CA's challenge sender address) is not configured")
        ca_file = config.mail_ca_file or None
        return cls(
            mail_from=normalize_email(config.mail_from),
            smtp=parse_mail_url(config.smtp_url, protocol="smtp", ca_file=ca_file),
            imap=parse_mail_url(config.imap_url, protocol="imap", ca_file=ca_file),
            dkim_required=bool(config.dkim_required),
            poll_seconds=max(0.1, float(config.imap_poll_seconds)),
        )


def configured(config: Any) -> bool:
    """True when the CA mailbox is configured (all of mail_from, smtp_url and imap_url)."""
    return bool(config.mail_from and config.smtp_url and config.imap_url)


def settings_of(state: ServiceState) -> MailSettings:
    """The state's MailSettings, parsed on first use and kept in state.extras."""
    found = state.extras.get("mail_settings")
    if found is None:
        found = state.extras["mail_settings"] = MailSettings.from_config(state.config)
    return found


# ---------------------------------------------------------------------------------------------
# Challenges as the mail side sees them


@dataclass(frozen=True)
class ChallengeInfo:
    """One email-reply-00 challenge row with its address and its account's thumbprint."""

    id: str
    status: str
    address: str
    thumbprint: str
    token_part1: str
    token_part2: str
    from_address: str
    message_id: str | None
    sent: float | None
    expires: float

    def email_challenge(self, lifetime_hours: float) -> email_reply.EmailChallenge:
        """The pure layer's view (needs message_id: the mail must have been claimed)."""
        if not self.message_id:
            raise ValueError(f"challenge {self.id} has no challenge mail yet")
        expires = datetime.datetime.fromtimestamp(self.expires, datetime.UTC)
        lifetime = min(datetime.timedelta(hours=lifetime_hours), email_reply.MAX_LIFETIME)
        return email_reply.EmailChallenge(
            address=self.address,
            token_part1=self.token_part1,
            token_part2=self.token_part2,
            from_address=self.from_address,
            message_id=self.message_id,
            account_thumbprint=self.thumbprint,
            created=expires - lifetime,
            expires=expires,
        )


def _challenge_query() -> Any:
    return (
        select(
            challenges,
            authorizations.c.address.label("address"),
            accounts.c.thumbprint.label("thumbprint"),
        )
        .select_from(
            challenges.join(authorizations, authorizations.c.id == challenges.c.authorization).join(
                accounts, accounts.c.id == authorizations.c.account
            )
        )
        .where(challenges.c.type == EMAIL_REPLY_00)
    )


def _info(row: Any) -> ChallengeInfo:
    return ChallengeInfo(
        id=row.id,
        status=row.status,
        address=row.address,
        thumbprint=row.thumbprint,
        token_part1=row.token_part1,
        token_part2=row.token_part2,
        from_address=row.from_address,
        message_id=row.message_id,
        sent=row.sent,
        expires=row.expires,
    )


def load_challenge(
    db: Connection, *, challenge_id: str | None = None, token_part1: str | None = None
) -> ChallengeInfo | None:
    """The email-reply-00 challenge with that id or that token-part1 (unique), or None."""
    query = _challenge_query()
    if challenge_id is not None:
        query = query.where(challenges.c.id == challenge_id)
    elif token_part1 is not None:
        query = query.where(challenges.c.token_part1 == token_part1)
    else:
        raise ValueError("give challenge_id or token_part1")
    row = db.execute(query).first()
    return _info(row) if row is not None else None


def expired_open_challenges(db: Connection, *, now: float) -> list[str]:
    """Ids of email-reply-00 challenges still open after their expiry."""
    query = select(challenges.c.id).where(
        challenges.c.type == EMAIL_REPLY_00,
        challenges.c.status.in_(OPEN_STATUSES),
        challenges.c.expires <= now,
    )
    return [challenge_id for (challenge_id,) in db.execute(query)]


# ---------------------------------------------------------------------------------------------
# The challenge mail


def build_challenge_message(
    challenge: email_reply.EmailChallenge, *, date: datetime.datetime
) -> bytes:
    """The unsigned challenge mail (CRLF): RFC 8823 headers, Date, a text/plain explanation."""
    message = EmailMessage(policy=SMTP_POLICY)
    for name, value in email_reply.build_challenge_headers(challenge, date=date).items():
        message[name] = value
    message.set_content(email_reply.challenge_text(challenge.address).replace("\r\n", "\n"))
    return message.as_bytes()


def sign_challenge_message(message: bytes, hierarchy: Any) -> bytes:
    """S/MIME multipart/signed by the CA mail identity, with its issuing chain."""
    identity = hierarchy.mail_identity
    credential = Credential(identity.key, identity.certificate, tuple(hierarchy.chain("intl")))
    return smime.sign_message(message, credential)


def _utc(epoch: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(epoch, datetime.UTC)


def _domain(address: str) -> str:
    return address.rpartition("@")[2]


def claim_challenge_mail(store: Store, challenge_id: str) -> ChallengeInfo | None:
    """Give the challenge its Message-ID unless some process already did; the claimed
    challenge (message_id set) or None when there is nothing for us to send."""
    with store.transaction() as db:
        info = load_challenge(db, challenge_id=challenge_id)
        if info is None or info.message_id or info.status not in OPEN_STATUSES:
            return None
        message_id = email_reply.new_message_id(_domain(info.from_address))
        claimed = db.execute(
            update(challenges)
            .where(challenges.c.id == challenge_id, challenges.c.message_id.is_(None))
            .values(message_id=message_id)
        ).rowcount
        if claimed != 1:
            return None
        return load_challenge(db, challenge_id=challenge_id)


class MailValidator:
    """The RFC 8823 validator (see the module docstring). One per process; thread-safe."""

    challenge_type = EMAIL_REPLY_00

    def __init__(
        self,
        *,
        max_workers: int = 4,
        clock: Callable[[], float] = time.time,
        send_attempts: int = SEND_ATTEMPTS,
        retry_seconds: float = SEND_RETRY_SECONDS,
    ) -> None:
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=max_workers, thread_name_prefix="acme-mail-send"
        )
        self._closing = threading.Event()
        self._clock = clock
        self._attempts = max(1, send_attempts)
        self._retry = retry_seconds
        #: Called with the challenge id whenever a challenge is POSTed (the watcher listens).
        self.listeners: list[Callable[[str], None]] = []

    # -- the ACME server's hooks ---------------------------------------------------------------

    def challenge_created(
        self, state: ServiceState, challenge_id: str
    ) -> concurrent.futures.Future:
        """Mail the challenge on a worker thread; the Future's result says whether this call
        sent it (False: already claimed elsewhere, gone, or failed and recorded)."""
        return self._pool.submit(self.send, state, challenge_id)

    def start(self, state: ServiceState, challenge_id: str) -> concurrent.futures.Future:
        """The client POSTed the challenge: make sure its mail went out, and let the watcher
        re-check replies that waited for this POST."""
        for listener in list(self.listeners):
            try:
                listener(challenge_id)
            except Exception:  # a listener must not break the POST
                log.exception("challenge listener failed")
        return self._pool.submit(self.send, state, challenge_id)

    def close(self) -> None:
        """Stop taking work; mails in flight finish, retries waiting are abandoned."""
        self._closing.set()
        self._pool.shutdown(wait=True, cancel_futures=True)

    # -- sending -------------------------------------------------------------------------------

    def send(self, state: ServiceState, challenge_id: str) -> bool:
        """Claim, build, sign and submit the challenge mail now; True if this call sent it.
        A mail that cannot be sent fails the challenge (problem `connection`), so the client
        learns it instead of waiting for the expiry."""
        settings = settings_of(state)
        info = claim_challenge_mail(state.store, challenge_id)
        if info is None:
            return False
        now = self._clock()
        if now >= info.expires:
            self._fail(state, info, ProblemType.UNAUTHORIZED, "the challenge expired unsent")
            return False
        hierarchy = state.extras["hierarchy"]
        if hierarchy.mail_address.lower() != info.from_address.lower():
            log.warning(
                "challenge %s: From %s differs from the CA mail identity's %s; S/MIME "
                "verifiers will flag the signature",
                info.id,
                info.from_address,
                hierarchy.mail_address,
            )
        try:
            challenge = info.email_challenge(state.config.challenge_hours)
            unsigned = build_challenge_message(challenge, date=_utc(now))
            signed = sign_challenge_message(unsigned, hierarchy)
        except Exception:
            # Claimed but unsendable: fail it now rather than leave it open until it expires.
            log.exception("challenge %s: building the challenge mail failed", info.id)
            self._fail(state, info, ProblemType.SERVER_INTERNAL, "the challenge mail failed")
            return False
        error = self._submit(settings, info, signed)
        if error is not None:
            self._fail(state, info, ProblemType.CONNECTION, error)
            return False
        with state.store.transaction() as db:
            db.execute(
                update(challenges).where(challenges.c.id == info.id).values(sent=self._clock())
            )
        log.info("challenge %s mailed to %s as %s", info.id, info.address, info.message_id)
        return True

    def _submit(self, settings: MailSettings, info: ChallengeInfo, message: bytes) -> str | None:
        """Submit by SMTP with retries for temporary failures; None or why it failed."""
        pause = self._retry
        reason = "not attempted"
        for attempt in range(1, self._attempts + 1):
            try:
                client = open_smtp(settings.smtp)
                try:
                    client.sendmail(settings.mail_from, [info.address], message)
                finally:
                    try:
                        client.quit()
                    except (OSError, smtplib.SMTPException):
                        client.close()
                return None
            except smtplib.SMTPRecipientsRefused as exc:
                code, text = next(iter(exc.recipients.values()))
                reason = f"the mail server refused {info.address}: {code} {_text(text)}"
                if 400 <= code < 500 and attempt < self._attempts:
                    pass  # temporary: retry
                else:
                    return reason
            except smtplib.SMTPResponseException as exc:
                reason = f"{settings.smtp}: {exc.smtp_code} {_text(exc.smtp_error)}"
                if exc.smtp_code >= 500:
                    return reason
            except (MailConnectionError, OSError, smtplib.SMTPException) as exc:
                reason = str(exc)
            log.warning("challenge %s: attempt %d to mail failed: %s", info.id, attempt, reason)
            if attempt < self._attempts and self._closing.wait(pause):
                break
            pause *= 2
        return f"the challenge mail could not be sent: {reason}"

    def _fail(self, state: ServiceState, info: ChallengeInfo, kind: ProblemType, why: str) -> None:
        log.warning("challenge %s failed: %s", info.id, why)
        acme_state.challenge_result(
            state.store,
            info.id,
            valid=False,
            problem=AcmeProblem(kind, why, identifier={"type": "email", "value": info.address}),
            now=self._clock(),
        )


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


# ---------------------------------------------------------------------------------------------
# Registration in the service


def install(state: ServiceState) -> MailValidator | None:
    """Register RFC 8823 mail validation on a service state when the CA mailbox is configured
    and no other validator was given: the validator as state.extras["validator"], and the
    reply watcher's start and stop in state.extras["on_startup"] / ["on_shutdown"]. A mail URL
    that cannot be used fails here, at start-up, with a message naming what is wrong."""
    if not configured(state.config) or state.extras.get("validator") is not None:
        return None
    from shared_pki.service.mail_validation.watcher import ReplyWatcher

    settings = settings_of(state)
    validator = MailValidator()
    watcher = ReplyWatcher(state)
    validator.listeners.append(watcher.wake)
    state.extras["validator"] = validator
    state.extras["reply_watcher"] = watcher
    state.extras.setdefault("on_startup", []).append(watcher.start)
    state.extras.setdefault("on_shutdown", []).extend([watcher.stop, validator.close])
    log.info("RFC 8823 mail validation: sending by %s, watching %s", settings.smtp, settings.imap)
    return validator


__all__ = [
    "OPEN_STATUSES",
    "ChallengeInfo",
    "MailSettings",
    "MailValidator",
    "build_challenge_message",
    "claim_challenge_mail",
    "configured",
    "expired_open_challenges",
    "install",
    "load_challenge",
    "settings_of",
    "sign_challenge_message",
]
