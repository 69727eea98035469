"""RFC 8823 `email-reply-00`: tokens, key authorization, the challenge and response mail parts,
and the checks each side applies to the other's mail. Pure: no mail is sent or read here.

The CA mails Subject `ACME: <token-part1>` from the challenge's `from` address; the client
replies with Subject `Re: ACME: <token-part1>`, In-Reply-To the challenge's Message-ID, To the
challenge's Reply-To (or From), and a text/plain body holding

    -----BEGIN ACME RESPONSE-----
    base64url(SHA-256(token-part1 || token-part2 "." thumbprint))
    -----END ACME RESPONSE-----

The two token parts are concatenated as the base64url strings they are (as acme4j does, so a
padded token-part1 keeps its '=' inside the key authorization), never as decoded bytes.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.header import decode_header, make_header
from email.utils import format_datetime, getaddresses

from shared_pki.acme.jws import b64url_encode
from shared_pki.acme.objects import normalize_email
from shared_pki.acme.problems import AcmeProblem, ProblemType, malformed

SUBJECT_PREFIX = "ACME:"
AUTO_SUBMITTED = "auto-generated; type=acme"
BEGIN = "-----BEGIN ACME RESPONSE-----"
END = "-----END ACME RESPONSE-----"
#: Random bytes per token part: 192 bits, 32 base64url characters, never padded.
TOKEN_BYTES = 24
MIN_TOKEN_BYTES = 16  # RFC 8823: at least 128 bits in each part
#: CA/B Forum S/MIME BR 3.2.2.4: a random value is valid for at most 24 hours.
MAX_LIFETIME = timedelta(hours=24)
#: Largest reply text searched for the response block.
MAX_REPLY_TEXT = 256 * 1024

_TOKEN = re.compile(r"[A-Za-z0-9_-]+={0,2}")
_DIGEST_CHARS = 43  # SHA-256 in unpadded base64url
_RE_PREFIX = re.compile(r"re\s*:\s*", re.IGNORECASE)
_MSG_ID = re.compile(r"<[^<>\s]+>")


# ---------------------------------------------------------------------------------------------
# Tokens and digest


def new_token(nbytes: int = TOKEN_BYTES) -> str:
    """A fresh token part from the OS CSPRNG, base64url without padding."""
    if nbytes < MIN_TOKEN_BYTES:
        raise ValueError(f"a token part needs at least {MIN_TOKEN_BYTES * 8} bits")
    return b64url_encode(secrets.token_bytes(nbytes))


def _check_token(token: str, what: str) -> str:
    # Padding is tolerated because other CAs send it (acme4j's own test vector has a padded
    # token-part1); the string is used exactly as received.
    if not isinstance(token, str) or not _TOKEN.fullmatch(token):
        raise malformed(f"{what} is not a base64url token")
    return token


def key_authorization(token_part1: str, token_part2: str, account_thumbprint: str) -> str:
    """token-part1 || token-part2 "." thumbprint, joining the base64url strings."""
    _check_token(token_part1, "token-part1")
    _check_token(token_part2, "token-part2")
    _check_token(account_thumbprint, "thumbprint")
    return f"{token_part1}{token_part2}.{account_thumbprint}"


def response_digest(token_part1: str, token_part2: str, account_thumbprint: str) -> str:
    """base64url(SHA-256(key authorization)), unpadded: the content of the response block."""
    ka = key_authorization(token_part1, token_part2, account_thumbprint)
    return b64url_encode(hashlib.sha256(ka.encode("ascii")).digest())


# ---------------------------------------------------------------------------------------------
# Header helpers


def _header(headers: Mapping[str, str], name: str) -> str | None:
    """A header by case-insensitive name, unfolded and RFC 2047-decoded; None when absent."""
    found = [v for k, v in headers.items() if k.lower() == name.lower()]
    if not found:
        return None
    if len(found) > 1:
        raise _incorrect(f"more than one {name} header")
    value = re.sub(r"\r?\n[ \t]", " ", str(found[0]))
    if "=?" in value:
        try:
            value = str(make_header(decode_header(value)))
        except (ValueError, LookupError, UnicodeError) as exc:
            raise _incorrect(f"the {name} header is not decodable") from exc
    return value.strip()


def _incorrect(detail: str) -> AcmeProblem:
    return AcmeProblem(ProblemType.INCORRECT_RESPONSE, detail)


def _single_address(headers: Mapping[str, str], name: str) -> str:
    value = _header(headers, name)
    if not value:
        raise _incorrect(f"no {name} header")
    addresses = [addr for _name, addr in getaddresses([value]) if addr]
    if len(addresses) != 1:
        raise _incorrect(f"the {name} header must name exactly one address")
    try:
        return normalize_email(addresses[0])
    except AcmeProblem as exc:
        raise _incorrect(f"the {name} address is not acceptable: {exc.detail}") from exc


def _same_address(a: str, b: str) -> bool:
    try:
        return normalize_email(a) == normalize_email(b)
    except AcmeProblem:
        return False


def challenge_subject(token_part1: str) -> str:
    """The Subject of the challenge mail: `ACME: <token-part1>`."""
    return f"{SUBJECT_PREFIX} {_check_token(token_part1, 'token-part1')}"


def token_part1_from_subject(subject: str, *, allow_reply_prefix: bool = False) -> str:
    """token-part1 out of a Subject `ACME: <token-part1>` (optionally `Re: ` before it when
    `allow_reply_prefix`). Whitespace inside the token is removed, as a folded or re-encoded
    Subject may carry it. Anything else is incorrectResponse."""
    text = subject.strip()
    prefix = _RE_PREFIX.match(text) if allow_reply_prefix else None
    if prefix:
        text = text[prefix.end() :]
    if not text.startswith(SUBJECT_PREFIX):
        raise _incorrect("the Subject is not 'ACME: <token-part1>'")
    token = re.sub(r"\s+", "", text[len(SUBJECT_PREFIX) :])
    if not _TOKEN.fullmatch(token):
        raise _incorrect("the Subject does not end in a base64url token")
    return token


def new_message_id(domain: str) -> str:
    """A unique Message-ID for a challenge mail: <random@domain>."""
    return f"<{b64url_encode(secrets.token_bytes(18))}@{domain}>"


# ---------------------------------------------------------------------------------------------
# The CA's side


@dataclass(frozen=True)
class EmailChallenge:
    """What the CA remembers of one challenge mail. `address` is the normalised identifier,
    `from_address` the challenge's `from`, `reply_to` an optional Reply-To the reply must go to
    instead, `account_thumbprint` the RFC 7638 thumbprint of the ordering account's key."""

    address: str
    token_part1: str
    token_part2: str
    from_address: str
    message_id: str
    account_thumbprint: str
    created: datetime
    expires: datetime
    reply_to: str | None = None
    #: False when the challenge mail went out without its Message-ID (a minimal CA): replies
    #: cannot refer to it, so In-Reply-To is not checked.
    threaded: bool = True

    def __post_init__(self) -> None:
        if self.expires - self.created > MAX_LIFETIME:
            raise ValueError("a challenge lives at most 24 hours")
        if self.expires <= self.created:
            raise ValueError("a challenge must expire after it is created")
        _check_token(self.token_part1, "token-part1")
        _check_token(self.token_part2, "token-part2")
        if not _MSG_ID.fullmatch(self.message_id):
            raise ValueError("message_id must be <id-left@id-right>")

    @property
    def reply_address(self) -> str:
        """Where the reply must be addressed: Reply-To if set, else From."""
        return self.reply_to or self.from_address

    @property
    def expected_digest(self) -> str:
        return response_digest(self.token_part1, self.token_part2, self.account_thumbprint)

    def is_expired(self, now: datetime) -> bool:
        return now >= self.expires


def new_challenge(
    *,
    address: str,
    from_address: str,
    account_thumbprint: str,
    now: datetime,
    lifetime: timedelta = MAX_LIFETIME,
    reply_to: str | None = None,
) -> EmailChallenge:
    """A fresh challenge for `address`: two new token parts, a new Message-ID in the domain of
    `from_address`, expiring after `lifetime` (at most 24 hours)."""
    if lifetime > MAX_LIFETIME or lifetime <= timedelta(0):
        raise ValueError("a challenge lives more than 0 and at most 24 hours")
    sender = normalize_email(from_address)
    return EmailChallenge(
        address=normalize_email(address),
        token_part1=new_token(),
        token_part2=new_token(),
        from_address=sender,
        message_id=new_message_id(sender.rpartition("@")[2]),
        account_thumbprint=account_thumbprint,
        created=now,
        expires=now + lifetime,
        reply_to=normalize_email(reply_to) if reply_to else None,
    )


def build_challenge_headers(
    challenge: EmailChallenge, *, date: datetime | None = None
) -> dict[str, str]:
    """The headers of the challenge mail (RFC 8823 section 3): Subject, From, To, Message-ID,
    Auto-Submitted, and Reply-To and Date when given. The caller builds, signs and sends it.
    An unthreaded challenge (challenge.threaded False) gets neither Message-ID nor
    Auto-Submitted: what a minimal CA sends, which clients must be able to judge."""
    headers = {
        "From": challenge.from_address,
        "To": challenge.address,
        "Subject": challenge_subject(challenge.token_part1),
    }
    if challenge.threaded:
        headers["Message-ID"] = challenge.message_id
        headers["Auto-Submitted"] = AUTO_SUBMITTED
    if challenge.reply_to:
        headers["Reply-To"] = challenge.reply_to
    if date is not None:
        headers["Date"] = format_datetime(date)
    return headers


def challenge_text(address: str) -> str:
    """A human-readable text/plain body for the challenge mail."""
    return (
        "This is an automatically generated ACME challenge (RFC 8823) for the address\r\n"
        f"{address}. If you did not ask for an S/MIME certificate for it, ignore this message;\r\n"
        "nothing will be issued without a reply from your mail program.\r\n"
    )


def check_reply(
    reply_headers: Mapping[str, str],
    reply_text: str,
    *,
    challenge: EmailChallenge,
    now: datetime,
) -> AcmeProblem | None:
    """Judge a reply to `challenge`: None when it proves control of the address, else the
    problem (unauthorized once the challenge has expired, incorrectResponse for a reply that
    does not match: Subject, In-Reply-To, From, To or digest). DKIM and "only once" are the
    caller's checks. The digest and token comparisons are constant-time."""
    try:
        if challenge.is_expired(now):
            return AcmeProblem(ProblemType.UNAUTHORIZED, "the challenge has expired")
        subject = _header(reply_headers, "Subject")
        if subject is None:
            raise _incorrect("the reply has no Subject")
        token = token_part1_from_subject(subject, allow_reply_prefix=True)
        if not hmac.compare_digest(token.encode(), challenge.token_part1.encode()):
            raise _incorrect("the Subject names another token")
        in_reply_to = _header(reply_headers, "In-Reply-To") or ""
        ids = _MSG_ID.findall(in_reply_to)
        if challenge.threaded and (
            ids != [challenge.message_id] or _MSG_ID.sub("", in_reply_to).strip()
        ):
            raise _incorrect("In-Reply-To is not the challenge's Message-ID")
        if _single_address(reply_headers, "From") != challenge.address:
            raise _incorrect("the reply is not from the address being validated")
        if not _same_address(_single_address(reply_headers, "To"), challenge.reply_address):
            raise _incorrect("the reply is not addressed to the challenge's Reply-To or From")
        digest = parse_response(reply_text)
        if not hmac.compare_digest(digest.encode(), challenge.expected_digest.encode()):
            raise _incorrect("the ACME response does not match the key authorization")
    except AcmeProblem as problem:
        return problem
    return None


# ---------------------------------------------------------------------------------------------
# The client's side


@dataclass(frozen=True)
class ChallengeMail:
    """What the client takes from a challenge mail it accepted. message_id is "" for a mail
    without one (accepted only where the organisation allows such mail)."""

    token_part1: str
    message_id: str
    subject: str
    reply_address: str


def looks_like_challenge_mail(headers: Mapping[str, str], *, address: str) -> bool:
    """A mail to `address` whose Subject is `ACME: <token>`: what the client must judge (and,
    when it fails a check, say why) rather than pass over in silence."""
    try:
        subject = _header(headers, "Subject") or ""
        token_part1_from_subject(subject)
        to = _header(headers, "To") or ""
    except AcmeProblem:
        return False
    return any(_same_address(a, address) for _n, a in getaddresses([to]) if a)


def check_challenge_mail(
    headers: Mapping[str, str], *, challenge_from: str, address: str, relaxed: bool = False
) -> ChallengeMail:
    """Accept a challenge mail for `address` from the ACME challenge's `from`: From, To,
    Subject `ACME: <token>`, Auto-Submitted `auto-generated` with `type=acme`, a Message-ID.
    relaxed (an organisation's choice for its own CA's address): Auto-Submitted and Message-ID
    may be missing. Whether the CA's S/MIME or DKIM signature is good is the caller's check.
    A refusal (incorrectResponse) says in its detail which check failed, in words."""
    sender = _single_address(headers, "From")
    if sender != normalize_email(challenge_from):
        raise _incorrect(
            f"it is from {sender}, but the certificate authority said its challenge comes from "
            f"{normalize_email(challenge_from)}"
        )
    to = _header(headers, "To") or ""
    if not any(_same_address(a, address) for _n, a in getaddresses([to]) if a):
        raise _incorrect(f"it is not addressed to {address}")
    subject = _header(headers, "Subject") or ""
    if subject.lower().startswith("re:"):
        raise _incorrect("its Subject starts with 'Re:', as a reply's does, not a challenge's")
    token = token_part1_from_subject(subject)
    auto = (_header(headers, "Auto-Submitted") or "").lower()
    value, _, params = auto.partition(";")
    if not relaxed and (
        value.strip() != "auto-generated"
        or not re.search(r"(^|;)\s*type\s*=\s*acme\s*($|;)", params)
    ):
        raise _incorrect(
            "it lacks the header 'Auto-Submitted: auto-generated; type=acme' that RFC 8823 "
            "requires of a challenge mail"
        )
    message_id = _header(headers, "Message-ID") or ""
    if not _MSG_ID.fullmatch(message_id):
        if not relaxed:
            raise _incorrect("it has no usable Message-ID, so a reply could not refer to it")
        message_id = ""
    reply_to = _header(headers, "Reply-To")
    reply_address = (
        _single_address(headers, "Reply-To") if reply_to else normalize_email(challenge_from)
    )
    return ChallengeMail(token, message_id, subject, reply_address)


def build_reply_headers(mail: ChallengeMail, *, address: str) -> dict[str, str]:
    """The reply's headers: From the validated address, To the challenge's Reply-To or From,
    Subject `Re: <challenge subject>`, In-Reply-To and References its Message-ID (when it had
    one)."""
    headers = {
        "From": normalize_email(address),
        "To": mail.reply_address,
        "Subject": f"Re: {mail.subject}",
    }
    if mail.message_id:
        headers["In-Reply-To"] = mail.message_id
        headers["References"] = mail.message_id
    return headers


def build_response_body(digest: str) -> str:
    """The text/plain body of the reply: the digest between the BEGIN/END lines, CRLF."""
    if not isinstance(digest, str) or len(digest) != _DIGEST_CHARS or not _TOKEN.fullmatch(digest):
        raise ValueError("digest must be an unpadded base64url SHA-256 (43 characters)")
    return f"{BEGIN}\r\n{digest}\r\n{END}\r\n"


def parse_response(text: str) -> str:
    """The digest in a reply's text, canonical (unpadded). Accepted: CRLF or LF, whitespace
    around the lines, other text (the quoted challenge) before and after the block, the digest
    broken over several lines, with or without '=' padding. Refused (incorrectResponse): no
    block or several, a block inside quoted ('>') lines, characters outside base64url, a value
    that is not 32 bytes."""
    if not isinstance(text, str):
        raise TypeError("reply text must be str")
    if len(text) > MAX_REPLY_TEXT:
        raise _incorrect("the reply text is too long")
    lines = [line.strip() for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    begins = [i for i, line in enumerate(lines) if line == BEGIN]
    ends = [i for i, line in enumerate(lines) if line == END]
    if any(BEGIN in line and line != BEGIN for line in lines):
        raise _incorrect("the BEGIN ACME RESPONSE line must stand alone (quoted block?)")
    if len(begins) != 1 or len(ends) != 1 or ends[0] < begins[0]:
        raise _incorrect("the reply must hold exactly one ACME RESPONSE block")
    value = "".join(lines[begins[0] + 1 : ends[0]])
    value = value.rstrip("=") if re.fullmatch(r"[A-Za-z0-9_-]{43}=", value) else value
    if not re.fullmatch(r"[A-Za-z0-9_-]{43}", value) or value[-1] not in "AEIMQUYcgkosw048":
        raise _incorrect("the ACME RESPONSE is not a base64url SHA-256 digest")
    return value


__all__ = [
    "AUTO_SUBMITTED",
    "BEGIN",
    "END",
    "MAX_LIFETIME",
    "ChallengeMail",
    "EmailChallenge",
    "build_challenge_headers",
    "build_reply_headers",
    "build_response_body",
    "challenge_subject",
    "challenge_text",
    "check_challenge_mail",
    "check_reply",
    "key_authorization",
    "looks_like_challenge_mail",
    "new_challenge",
    "new_message_id",
    "new_token",
    "parse_response",
    "response_digest",
    "token_part1_from_subject",
]
