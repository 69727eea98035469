"""`compose.send` (issue 6, point 6): from a webmail compose to signed, timestamped, encrypted
mail in the recipients' mailboxes and the sender's Sent folder.

The order, and why:
1. Check the request (addresses, 25 MB of attachments at most) and look up every recipient's
   certificate before anything else: one missing makes the call fail with the list of them
   (MissingCertificates), and nothing is sent.
2. Build the MIME entity (mime.build_entity), carry the header fields inside it (RFC 9788:
   hp="clear" signed only, hp="cipher" encrypted, where the outer Subject is "[...]" unless
   the account said otherwise, see _protect) and make it safe to sign (prepare_for_signing).
3. Sign at the CMS level (cms.signed.sign over exactly those bytes), ask the TSA for a token
   over the signature value and attach it as an unsigned attribute, THEN wrap in
   multipart/signed: the bytes that travel are the bytes that were signed, and the token is
   inside the detached SignedData. A TSA that fails leaves the signature without a token and
   the result says "Timestamp missing" (sending goes on).
4. Encrypt: one copy for To + Cc + the sender; each Bcc recipient gets a copy of its own,
   encrypted to that recipient and the sender only, without a Bcc field: no copy names (in its
   headers or its RecipientInfos) a Bcc recipient other than its own.
5. Submit every copy through the mailbox's outbox (nothing lost, nothing sent twice); the
   To/Cc copy (or the first Bcc copy if there is none) is filed in Sent unless the provider
   does that itself. If the server cannot be reached, the copies stay in the outbox and the
   result says "queued".
"""

from __future__ import annotations

import base64
import datetime
import email.utils
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from native_host.domain.certs import CertificateBook, CertsError, Fetch, http_fetch, normalize
from native_host.domain.keystore import Keystore
from native_host.domain.timestamping import TimestampInfo, timestamp_signature
from native_host.errors import HostError
from native_host.infrastructure.mailbox import Mailbox, MailError
from shared_pki import header_protection, mime, smime
from shared_pki.cms import digests, enveloped, signed
from shared_pki.cms import suite as _suite
from shared_pki.errors import PkiError
from shared_pki.keys import Certificate, Credential

MAX_ATTACHMENTS = 25 * 1024 * 1024
SUITE_CHOICES = ("intl", "sm", "auto")

__all__ = [
    "MAX_ATTACHMENTS",
    "Attachment",
    "ComposeError",
    "ComposeRequest",
    "InvalidRequest",
    "MissingCertificates",
    "NoSigningKey",
    "SendOutcome",
    "TooLarge",
    "build_messages",
    "compose_send",
]


# ---- errors ----------------------------------------------------------------------------------


class ComposeError(HostError):
    """The message cannot be sent as asked; `code` is stable, the message is for people."""

    code = "compose_error"


class InvalidRequest(ComposeError):
    code = "invalid_request"
    protocol_code = "bad_params"


class TooLarge(ComposeError):
    code = "too_large"
    protocol_code = "bad_params"


class NoSigningKey(ComposeError):
    """The sender has no current key (with a certificate) of the suite."""

    code = "no_signing_key"
    protocol_code = "not_configured"
    advice = " Run `autosmime enroll` or start the setup in the extension."


class MissingCertificates(ComposeError):
    """Recipients without a usable certificate: nothing was sent. `missing` maps each address
    to the reasons found (not in the directory, expired, untrusted...)."""

    code = "missing_certificates"
    protocol_code = "missing_certificates"

    def __init__(self, missing: Mapping[str, Sequence[str]], suite: str) -> None:
        self.missing = {address: tuple(reasons) for address, reasons in missing.items()}
        self.suite = suite
        names = ", ".join(self.missing)
        kind = "an SM2" if suite == "sm" else "a usable"
        super().__init__(
            f"Not sent: no {kind} certificate for {names}. They need to set up S/MIME (or "
            "send you a signed message) before you can write to them encrypted."
        )


# ---- the request -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Attachment:
    name: str
    content_type: str
    data: bytes

    @classmethod
    def from_json(cls, item: Mapping[str, Any]) -> Attachment:
        try:
            data = item["data"]
            raw = data if isinstance(data, bytes) else base64.b64decode(data, validate=True)
            return cls(str(item["name"]), str(item.get("contentType") or item["content_type"]), raw)
        except (KeyError, TypeError, ValueError) as error:
            raise InvalidRequest(f"An attachment is not name/contentType/data: {error}") from None


@dataclass(frozen=True)
class ComposeRequest:
    sender: str
    to: tuple[str, ...] = ()
    cc: tuple[str, ...] = ()
    bcc: tuple[str, ...] = ()
    subject: str = ""
    text: str | None = None
    html: str | None = None
    attachments: tuple[Attachment, ...] = ()
    in_reply_to: str | None = None
    references: tuple[str, ...] = ()
    sign: bool = True
    encrypt: bool = True
    suite: str = "auto"
    # Encrypted mail: the outer Subject is "[...]" (RFC 9788 hcp_baseline); False keeps it
    # outside as written (hcp_no_confidentiality: still protected, not hidden).
    hide_subject: bool = True

    @classmethod
    def from_json(cls, params: Mapping[str, Any]) -> ComposeRequest:
        """The protocol's compose.send parameters (attachments' data in base64)."""

        def addresses(name: str) -> tuple[str, ...]:
            value = params.get(name) or ()
            return (value,) if isinstance(value, str) else tuple(str(v) for v in value)

        references = params.get("references") or ()
        return cls(
            sender=str(params.get("from") or ""),
            to=addresses("to"),
            cc=addresses("cc"),
            bcc=addresses("bcc"),
            subject=str(params.get("subject") or ""),
            text=params.get("text"),
            html=params.get("html"),
            attachments=tuple(Attachment.from_json(a) for a in params.get("attachments") or ()),
            in_reply_to=params.get("inReplyTo"),
            references=(references,) if isinstance(references, str) else tuple(references),
            sign=bool(params.get("sign", True)),
            encrypt=bool(params.get("encrypt", True)),
            suite=str(params.get("suite") or "auto"),
            hide_subject=bool(params.get("hideSubject", True)),
        )


@dataclass(frozen=True)
class Copy:
    """One message to submit: its bytes, its envelope, whether it is the one filed in Sent."""

    message: bytes
    recipients: tuple[str, ...]
    file_sent: bool
    kind: str  # "main" | "bcc"


@dataclass(frozen=True)
class Built:
    message_id: str
    suite: str
    cipher: str | None
    copies: tuple[Copy, ...]
    timestamp: TimestampInfo | None
    timestamp_problem: str | None
    header_protection: str | None = None  # "clear" | "cipher" | None (a plain message)
    subject_hidden: bool = False


@dataclass(frozen=True)
class SendOutcome:
    message_id: str
    status: str  # "sent" | "queued" (in the outbox, retried later)
    to: tuple[str, ...]
    cc: tuple[str, ...]
    bcc: tuple[str, ...]
    signed: bool
    encrypted: bool
    suite: str
    cipher: str | None
    timestamped: bool
    timestamp: TimestampInfo | None
    timestamp_problem: str | None
    sent_copy: tuple[str, int | None] | None = None
    refused: dict[str, str] = field(default_factory=dict)
    problem: str | None = None
    header_protection: str | None = None
    subject_hidden: bool = False

    def to_json(self) -> dict[str, object]:
        return {
            "messageId": self.message_id,
            "status": self.status,
            "to": list(self.to),
            "cc": list(self.cc),
            "bcc": list(self.bcc),
            "signed": self.signed,
            "encrypted": self.encrypted,
            "suite": self.suite,
            "cipher": self.cipher,
            "timestamped": self.timestamped,
            "timestamp": self.timestamp.to_json() if self.timestamp else None,
            "timestampProblem": self.timestamp_problem,
            "sentCopy": list(self.sent_copy) if self.sent_copy else None,
            "refused": self.refused,
            "problem": self.problem,
            "headerProtection": self.header_protection,
            "subjectHidden": self.subject_hidden,
        }


# ---- pure building ---------------------------------------------------------------------------


def _check(request: ComposeRequest) -> None:
    try:
        normalize(request.sender)
        for address in (*request.to, *request.cc, *request.bcc):
            normalize(address)
    except CertsError as error:
        raise InvalidRequest(error.message) from None
    if not (request.to or request.cc or request.bcc):
        raise InvalidRequest("The message has no recipient.")
    if request.suite not in SUITE_CHOICES:
        raise InvalidRequest(f"Unknown suite {request.suite!r} (intl, sm or auto).")
    total = sum(len(a.data) for a in request.attachments)
    if total > MAX_ATTACHMENTS:
        raise TooLarge(
            f"The attachments come to {total / 1048576:.1f} MB; at most "
            f"{MAX_ATTACHMENTS // 1048576} MB can be sent. Share large files another way."
        )


def _unique(addresses: Iterable[str]) -> list[str]:
    seen: dict[str, str] = {}
    for address in addresses:
        seen.setdefault(normalize(address).casefold(), address)
    return list(seen.values())


def _outer_headers(
    request: ComposeRequest, message_id: str, when: datetime.datetime, bcc: str | None = None
) -> list[tuple[str, str]]:
    headers = [("From", request.sender), ("Date", email.utils.format_datetime(when))]
    if request.to:
        headers.append(("To", ", ".join(request.to)))
    if request.cc:
        headers.append(("Cc", ", ".join(request.cc)))
    if not request.to and not request.cc:
        headers.append(("To", "undisclosed-recipients:;"))
    headers += [("Subject", request.subject), ("Message-ID", message_id)]
    if request.in_reply_to:
        headers.append(("In-Reply-To", request.in_reply_to))
    if request.references:
        # One id per folded line: a long thread stays within the 998-octet line limit.
        headers.append(("References", "\r\n ".join(request.references)))
    return headers


def build_messages(
    request: ComposeRequest,
    *,
    credential: Credential | None,
    suite: str,
    sender_certificate: Certificate | None,
    recipient_certificates: Mapping[str, Certificate],
    tsa_url: str | None,
    fetch: Fetch = http_fetch,
    tsa_anchors: Sequence[Certificate] = (),
    now: datetime.datetime | None = None,
) -> Built:
    """Every copy to submit, signed (with a token when the TSA gives one) and encrypted as
    asked. Pure apart from the TSA request. recipient_certificates: address -> certificate of
    the suite for every recipient (when encrypting)."""
    when = now or datetime.datetime.now(datetime.UTC)
    domain = request.sender.rpartition("@")[2].strip(">") or "autosmime.invalid"
    message_id = email.utils.make_msgid(domain=domain)
    headers = _outer_headers(request, message_id, when)
    entity = mime.build_entity(
        request.text,
        request.html,
        [(a.name, a.content_type, a.data) for a in request.attachments],
    )
    outer: Sequence[tuple[str, str]] = headers
    hp: tuple[str | None, bool] = (None, False)
    if request.sign or request.encrypt:
        entity, outer, hp = _protect(request, headers, entity)
    entity = mime.prepare_for_signing(entity)
    timestamp = None
    timestamp_problem = None
    chosen = _suite.by_name(suite)
    if request.sign:
        assert credential is not None
        der = signed.sign(
            entity,
            credential,
            digest=chosen.digest,
            detached=True,
            capabilities=chosen.advertised,
        )
        der, timestamp, timestamp_problem = timestamp_signature(
            der, tsa_url, fetch, trust_anchors=tsa_anchors
        )
        entity = mime.wrap_multipart_signed(entity, der, digests.by_name(chosen.digest).micalg)
    main_rcpts = _unique([*request.to, *request.cc])
    bcc_rcpts = [a for a in _unique(request.bcc) if a not in main_rcpts]
    copies: list[Copy] = []
    cipher = None

    def seal(recipients: Sequence[str]) -> bytes:
        nonlocal cipher
        if not request.encrypt:
            return entity
        certs = [recipient_certificates[normalize(a)] for a in recipients]
        # encrypt_entity, not encrypt_message: a protected payload carries its header fields,
        # which encrypt_message would lift back out into the clear.
        body = smime.encrypt_entity(entity, certs, sender=sender_certificate, suite=chosen)
        layer = mime.unwrap(body)
        assert layer.der is not None
        cipher = enveloped.inspect(layer.der).cipher
        return body

    if main_rcpts:
        body = seal(main_rcpts)
        copies.append(Copy(mime.with_outer_headers(body, outer), tuple(main_rcpts), True, "main"))
    for index, address in enumerate(bcc_rcpts):
        body = seal([address])
        first = not main_rcpts and index == 0
        copies.append(Copy(mime.with_outer_headers(body, outer), (address,), first, "bcc"))
    built = (message_id, chosen.name, cipher, tuple(copies), timestamp, timestamp_problem)
    return Built(*built, *hp)


def _protect(
    request: ComposeRequest, headers: list[tuple[str, str]], entity: bytes
) -> tuple[bytes, Sequence[tuple[str, str]], tuple[str, bool]]:
    """RFC 9788 for mail that is signed and/or encrypted: (the Cryptographic Payload, the outer
    fields, (its hp, whether the Subject went inside only)). Hiding it, the real Subject also
    heads the text as a Legacy Display Element: clients without header protection (Outlook,
    Thunderbird 115) show only "[...]" otherwise; readers that know RFC 9788 hide it."""
    hide = request.encrypt and request.hide_subject and bool(request.subject)
    if hide:
        entity = header_protection.add_legacy_display(entity, [("Subject", request.subject)])
    policy = header_protection.hcp_baseline if hide else header_protection.hcp_no_confidentiality
    protected = header_protection.protect(headers, entity, encrypted=request.encrypt, policy=policy)
    return protected.entity, protected.outer_headers, (protected.hp, hide)


# ---- the whole operation ---------------------------------------------------------------------


def _choose_suite(
    request: ComposeRequest, keystore: Keystore, found: Mapping[str, Any], recipients: list[str]
) -> str:
    """intl or sm as asked; auto: intl when the sender and every recipient have what it needs
    (the widest interoperability), else sm when they all have that, else intl (and the
    missing certificates are reported for it)."""
    if request.suite != "auto":
        return request.suite
    for suite in ("intl", "sm"):
        if request.sign or request.encrypt:
            held = keystore.current(request.sender, suite)
            if held is None or held.certificate is None:
                continue
        if not request.encrypt or all(found[a].certificate(suite) for a in recipients):
            return suite
    return "intl"


def compose_send(
    request: ComposeRequest,
    *,
    keystore: Keystore,
    book: CertificateBook | None,
    mailbox: Mailbox,
    tsa_url: str | None,
    fetch: Fetch = http_fetch,
    tsa_anchors: Sequence[Certificate] = (),
) -> SendOutcome:
    """Send one message as the module docstring describes. Raises InvalidRequest, TooLarge,
    NoSigningKey or MissingCertificates before anything is sent; a server that cannot take
    the message now leaves it in the outbox (status "queued", `problem` says why)."""
    _check(request)
    recipients = _unique([*request.to, *request.cc, *request.bcc])
    found: dict[str, Any] = {}
    if request.encrypt:
        if book is None:
            raise InvalidRequest("Encrypting needs the certificate book.")
        looked = book.lookup(recipients)
        found = {normalize(a): looked[a] for a in recipients}
    suite = _choose_suite(request, keystore, found, [normalize(a) for a in recipients])

    held = keystore.current(request.sender, suite) if (request.sign or request.encrypt) else None
    if (request.sign or request.encrypt) and (held is None or held.certificate is None):
        raise NoSigningKey(
            f"{request.sender} has no current {suite} key with a certificate: enroll first."
        )
    certificates: dict[str, Certificate] = {}
    if request.encrypt:
        missing: dict[str, list[str]] = {}
        for address in recipients:
            result = found[normalize(address)]
            usable = result.certificate(suite)
            if usable is None:
                reasons = [p.message for p in result.problems] or [
                    f"No {suite} certificate is known for {address}."
                ]
                missing[address] = reasons
            else:
                certificates[normalize(address)] = usable.certificate
        if missing:
            raise MissingCertificates(missing, suite)
    credential = None
    if request.sign and held is not None and held.certificate is not None:
        credential = Credential(held.key, held.certificate, held.chain)
    try:
        built = build_messages(
            request,
            credential=credential,
            suite=suite,
            sender_certificate=held.certificate if held else None,
            recipient_certificates=certificates,
            tsa_url=tsa_url if request.sign else None,
            fetch=fetch,
            tsa_anchors=tsa_anchors,
        )
    except PkiError as error:
        raise ComposeError(f"The message could not be built: {error.message}") from None
    return _submit(request, built, mailbox)


def _submit(request: ComposeRequest, built: Built, mailbox: Mailbox) -> SendOutcome:
    if mailbox.outbox is None:
        raise InvalidRequest("The mailbox has no outbox: messages could be lost.")
    status, problem = "sent", None
    sent_copy = None
    refused: dict[str, str] = {}
    for index, copy in enumerate(built.copies):
        try:
            result = mailbox.submit(
                copy.message, request.sender, copy.recipients, file_sent=copy.file_sent
            )
        except MailError as error:
            # submit() left this copy in the outbox; the ones not tried yet go there too, so
            # flush_outbox() sends them all, once.
            for later in built.copies[index + 1 :]:
                mailbox.outbox.put(
                    later.message, request.sender, later.recipients, file_sent=later.file_sent
                )
            status, problem = "queued", f"Kept in the outbox, to be sent later: {error}"
            break
        refused.update({a: f"{r.smtp_code} {r.reply}" for a, r in result.refused.items()})
        if copy.file_sent:
            sent_copy = result.sent_copy
    return SendOutcome(
        message_id=built.message_id,
        status=status,
        to=request.to,
        cc=request.cc,
        bcc=request.bcc,
        signed=request.sign,
        encrypted=request.encrypt,
        suite=built.suite,
        cipher=built.cipher,
        timestamped=built.timestamp is not None,
        timestamp=built.timestamp,
        timestamp_problem=built.timestamp_problem,
        sent_copy=sent_copy,
        refused=refused,
        problem=problem,
        header_protection=built.header_protection,
        subject_hidden=built.subject_hidden,
    )
