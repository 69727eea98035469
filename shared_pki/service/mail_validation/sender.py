"""RFC 8823 challenge mail: the CA's side of `email-reply-00` over real SMTP and IMAP.

`MailValidator` is the ACME server's validator (state.Validator, set as `state.validator` by
`install`):

- `challenge_created(state, id)` (the server's hook after committing a challenge) sends the
  challenge mail on a worker thread: From the challenge's `from`, To the address, Subject
  `ACME: <token-part1>`, a fresh Message-ID stored in challenges.message_id, Auto-Submitted
  `auto-generated; type=acme`, Date, a human explanation, S/MIME-signed with the CA's mail
  identity, submitted with AUTH to config.smtp_url; `sent` records when. Like other CAs it can
  instead DKIM-sign it for mail_from's domain or not sign it (challenge_signing), give it a
  Reply-To (challenge_reply_to), and leave out Message-ID, Auto-Submitted and Date
  (challenge_headers = "bare"; the Message-ID is still stored, as the claim).
- `start(state, id)` (the client POSTed: the challenge is `processing`) sends the mail if no
  process has yet, and wakes this process's reply watcher so the answer is recorded at once.
  With challenge_post_validates_at_once a challenge whose reply is not in the CA mailbox yet
  fails right there, as at servers that validate once, when POSTed.

Sending is claimed in the database (message_id set where it is NULL), so of several processes
and repeated calls exactly one mails a challenge. The reply side is watcher.ReplyWatcher.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import datetime
import logging
import smtplib
import threading
import time
from collections.abc import Callable
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from typing import Any

from imapclient.exceptions import IMAPClientError
from sqlalchemy import update

from shared_pki import smime
from shared_pki.acme import email_reply
from shared_pki.acme.objects import EMAIL_REPLY_00
from shared_pki.acme.problems import AcmeProblem, ProblemType
from shared_pki.keys import Credential
from shared_pki.net.mail import MailConnectionError, open_imap, open_smtp
from shared_pki.service.acme import transitions as acme_state
from shared_pki.service.mail_validation.challenges import (
    PROCESSED_FOLDER,
    ChallengeInfo,
    MailSettings,
    claim_challenge_mail,
    load_challenge,
)
from shared_pki.service.mail_validation.dkim import sign_message as dkim_sign
from shared_pki.service.state import ServiceState
from shared_pki.service.storage.store import challenges

log = logging.getLogger(__name__)

#: SMTP attempts per challenge mail, and the pause before the second, doubled each time.
SEND_ATTEMPTS = 3
SEND_RETRY_SECONDS = 2.0


# ---------------------------------------------------------------------------------------------
# The challenge mail


def build_challenge_message(
    challenge: email_reply.EmailChallenge, *, date: datetime.datetime | None
) -> bytes:
    """The unsigned challenge mail (CRLF): RFC 8823 headers, Date (unless None), a text/plain
    explanation."""
    message = EmailMessage(policy=SMTP_POLICY)
    for name, value in email_reply.build_challenge_headers(challenge, date=date).items():
        message[name] = value
    message.set_content(email_reply.challenge_text(challenge.address).replace("\r\n", "\n"))
    return message.as_bytes()


def _utc(epoch: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(epoch, datetime.UTC)


def sign_challenge_message(message: bytes, hierarchy: Any) -> bytes:
    """S/MIME multipart/signed by the CA mail identity, with its issuing chain."""
    identity = hierarchy.mail_identity
    credential = Credential(identity.key, identity.certificate, tuple(hierarchy.chain("intl")))
    return smime.sign_message(message, credential)


def authenticate(message: bytes, settings: MailSettings, hierarchy: Any) -> bytes:
    """The challenge mail as sent: S/MIME-signed, DKIM-signed or as it is (settings.signing)."""
    if settings.signing == "smime":
        return sign_challenge_message(message, hierarchy)
    if settings.signing == "dkim":
        assert settings.dkim_key is not None
        return dkim_sign(message, settings.dkim_key)
    return message


class MailValidator:
    """The RFC 8823 validator (see the module docstring). One per process; thread-safe."""

    challenge_type = EMAIL_REPLY_00

    def __init__(
        self,
        settings: MailSettings,
        *,
        max_workers: int = 4,
        clock: Callable[[], float] = time.time,
        send_attempts: int = SEND_ATTEMPTS,
        retry_seconds: float = SEND_RETRY_SECONDS,
    ) -> None:
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=max_workers, thread_name_prefix="acme-mail-send"
        )
        self.settings = settings
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
        re-check replies that waited for this POST. With challenge_post_validates_at_once, a
        challenge whose reply is not in the CA mailbox yet fails here and now."""
        if state.config.challenge_post_validates_at_once:
            self._fail_without_reply(state, challenge_id)
        for listener in list(self.listeners):
            try:
                listener(challenge_id)
            except Exception:  # a listener must not break the POST
                log.exception("challenge listener failed")
        return self._pool.submit(self.send, state, challenge_id)

    def _fail_without_reply(self, state: ServiceState, challenge_id: str) -> None:
        """Fail the challenge unless a mail whose Subject holds its token-part1 is in the CA
        mailbox (INBOX, then the folder the watcher files replies in: a MOVE between the two
        searches cannot hide it)."""
        with state.store.transaction() as db:
            info = load_challenge(db, challenge_id=challenge_id)
        if info is None:
            return
        try:
            client = open_imap(self.settings.imap)
            try:
                found = False
                for folder in (self.settings.imap.mailbox, PROCESSED_FOLDER):
                    if found or not client.folder_exists(folder):
                        continue
                    client.select_folder(folder, readonly=True)
                    found = bool(client.search(["SUBJECT", info.token_part1]))
            finally:
                with contextlib.suppress(Exception):
                    client.logout()
        except (MailConnectionError, OSError, IMAPClientError) as exc:
            log.warning("challenge %s: the CA mailbox could not be searched: %s", info.id, exc)
            found = False
        if not found:
            self._fail(
                state,
                info,
                ProblemType.INCORRECT_RESPONSE,
                "the challenge was POSTed before its reply reached the CA mailbox",
            )

    def close(self) -> None:
        """Stop taking work; mails in flight finish, retries waiting are abandoned."""
        self._closing.set()
        self._pool.shutdown(wait=True, cancel_futures=True)

    # -- sending -------------------------------------------------------------------------------

    def send(self, state: ServiceState, challenge_id: str) -> bool:
        """Claim, build, sign and submit the challenge mail now; True if this call sent it.
        A mail that cannot be sent fails the challenge (problem `connection`), so the client
        learns it instead of waiting for the expiry."""
        settings = self.settings
        info = claim_challenge_mail(state.store, challenge_id)
        if info is None:
            return False
        now = self._clock()
        if now >= info.expires:
            self._fail(state, info, ProblemType.UNAUTHORIZED, "the challenge expired unsent")
            return False
        hierarchy = state.hierarchy
        other_sender = hierarchy.mail_address.lower() != info.from_address.lower()
        if settings.signing == "smime" and other_sender:
            log.warning(
                "challenge %s: From %s differs from the CA mail identity's %s; S/MIME "
                "verifiers will flag the signature",
                info.id,
                info.from_address,
                hierarchy.mail_address,
            )
        try:
            challenge = info.email_challenge(
                state.config.challenge_hours,
                reply_to=settings.reply_to,
                threaded=settings.threaded,
            )
            unsigned = build_challenge_message(
                challenge, date=_utc(now) if settings.threaded else None
            )
            signed = authenticate(unsigned, settings, hierarchy)
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


__all__ = ["MailValidator", "build_challenge_message", "sign_challenge_message"]
