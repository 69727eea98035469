"""The CA mailbox's settings and the email-reply-00 challenges as the mail side sees them
(rows of the store joined with their address and account), shared by the sender and the
reply watcher."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, select, update

from shared_pki.acme import email_reply
from shared_pki.acme.objects import EMAIL_REPLY_00, ChallengeStatus, normalize_email
from shared_pki.net.mail import MailUrl, parse_mail_url
from shared_pki.service.config import ServiceConfig
from shared_pki.service.mail_validation.dkim import SigningKey, load_or_create_signing_key
from shared_pki.service.storage.store import Store, accounts, authorizations, challenges

#: Where the reply watcher files the replies it decided on (never deleted).
PROCESSED_FOLDER = "acme-processed"
#: Statuses in which a challenge still waits for its reply.
OPEN_STATUSES = (ChallengeStatus.PENDING.value, ChallengeStatus.PROCESSING.value)

# ---------------------------------------------------------------------------------------------
# Settings


@dataclass(frozen=True)
class MailSettings:
    """The mail part of ServiceConfig, parsed and checked once. signing: how challenge mail is
    authenticated ("smime", "dkim" with dkim_key, or "none"); reply_to: the Reply-To of
    challenge mail (None: replies go to mail_from); threaded: challenge mail carries its
    Message-ID and Auto-Submitted (config challenge_headers "rfc8823", not "bare")."""

    mail_from: str
    smtp: MailUrl
    imap: MailUrl
    dkim_required: str  # auto, on or off (dkim.enforced decides)
    poll_seconds: float
    signing: str = "smime"
    dkim_key: SigningKey | None = None
    reply_to: str | None = None
    threaded: bool = True

    @classmethod
    def from_config(cls, config: ServiceConfig) -> MailSettings:
        """MailUrlError (a ValueError) when a URL is unusable; the message hides passwords.
        With challenge_signing "dkim" the DKIM key is loaded, or made with its TXT record."""
        if not config.mail_from:
            raise ValueError("mail_from (the CA's challenge sender address) is not configured")
        ca_file = config.mail_ca_file or None
        mail_from = normalize_email(config.mail_from)
        dkim_key = None
        if config.challenge_signing == "dkim":
            path = Path(config.dkim_key_file or config.data_dir / "dkim" / config.dkim_selector)
            dkim_key = load_or_create_signing_key(
                path.with_suffix(".key") if not config.dkim_key_file else path,
                domain=_domain(mail_from),
                selector=config.dkim_selector,
            )
        return cls(
            mail_from=mail_from,
            smtp=parse_mail_url(config.smtp_url, protocol="smtp", ca_file=ca_file),
            imap=parse_mail_url(config.imap_url, protocol="imap", ca_file=ca_file),
            dkim_required=config.dkim_required,
            poll_seconds=max(0.1, float(config.imap_poll_seconds)),
            signing=config.challenge_signing,
            dkim_key=dkim_key,
            reply_to=normalize_email(config.challenge_reply_to)
            if config.challenge_reply_to
            else None,
            threaded=config.challenge_headers != "bare",
        )


def configured(config: ServiceConfig) -> bool:
    """True when the CA mailbox is configured (all of mail_from, smtp_url and imap_url)."""
    return bool(config.mail_from and config.smtp_url and config.imap_url)


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

    def email_challenge(
        self, lifetime_hours: float, *, reply_to: str | None = None, threaded: bool = True
    ) -> email_reply.EmailChallenge:
        """The pure layer's view (needs message_id: the mail must have been claimed), with the
        Reply-To and threading the mail settings give challenge mail."""
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
            reply_to=reply_to,
            threaded=threaded,
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
