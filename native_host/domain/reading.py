"""`message.open` (issue 6, point 7): a raw message (or one found by Message-ID through IMAP)
made into what the extension shows: decoded headers, the text, sanitized HTML, attachments, and
a security summary a person can trust.

Layers are peeled here rather than by smime.open_message, because each signature is verified
with the trusted time of its RFC 3161 timestamp: tsp.signature_timestamps checks every token
against THAT signer's signature value and the trust anchors, and verify(trusted_time=...) then
accepts a certificate that has expired since, as long as it was valid at the timestamp.
Decryption tries every key the profile ever held (keystore.decryption_pairs), so old mail
opens after a renewal. Whether a signer is the message's sender is decided once, from every
From field as the message has it, by shared_pki.x509.sender: never "unknown"; a signature by
someone else than the one sender From names is not valid, with the reason in words ("signed by
X, but the message says it is from Y"). Valid signers who are the sender have their
certificates handed to the certificate book (harvested). A message that cannot be decrypted
still opens: headers, and a summary that says the content is not readable.

Revocation (with a CrlStore): each signer's trusted path is checked against the CRLs of its
certificates' distribution points (domain.crls), with the signer's trusted time: revoked
before the time a timestamp proves, the signature is not valid; revoked after it, it stands as
of that time. A CRL that cannot be had makes the signature's revocation "not checked", in words,
never "good".

Whoever hands us the bytes may be an attacker probing for an oracle (a webmail page that serves
altered ciphertext and watches what happens): bad CBC padding, a GCM tag that fails, an RSA key
transport that does not decrypt, no matching key, a malformed envelope, and anything that goes
wrong in what a failed decryption would have produced are therefore ONE outcome, in words and
in kind (UNREADABLE, decrypted false, no cipher). `authenticated_cipher` says whether the
content cipher itself detects alteration (AES-GCM) or not (CBC), so a viewer can label
unsigned CBC mail, which anyone on the way could have altered.

RFC 9788 header protection (protected_headers.py): the protected fields are shown, and the
signer is checked against the protected From, which the signature covers.

Over 500 lines, it is one cohesive thing: peeling one message's layers and summing up what
they proved, which share the one-outcome rule above and must be read together.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import email.errors
import email.header
import email.policy
from collections.abc import Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.parser import BytesParser

from native_host.domain.certs import CertificateBook
from native_host.domain.crls import CrlStore, PathCrls
from native_host.domain.keystore import Keystore
from native_host.domain.protected_headers import (
    HeaderProtectionView,
    read_payload,
    sender_block,
    view_of,
)
from native_host.domain.sanitize import sanitize_html
from native_host.domain.signatures import (
    RevocationSummary,
    SignatureSummary,
    TimestampSummary,
    revocation_summary,
    sender_check,
    signature_summary,
)
from native_host.errors import HostError, StorageFailed
from native_host.infrastructure.mailbox import Mailbox
from shared_pki import mime, smime, tsp
from shared_pki.cms import ciphers, enveloped
from shared_pki.cms import suite as _suite
from shared_pki.cms.sm import BOTH_IDS
from shared_pki.cms.verify import VerificationResult, verify
from shared_pki.errors import MalformedInput, PkiError
from shared_pki.keys import Certificate, PrivateKey
from shared_pki.x509.sender import from_field_values
from shared_pki.x509.validate import CrlSource

MAX_LAYERS = smime.MAX_LAYERS
_PARSER = BytesParser(policy=email.policy.default)

__all__ = [
    "AttachmentView",
    "MessageNotFound",
    "OpenedView",
    "ReadError",
    "RevocationSummary",
    "SecuritySummary",
    "SignatureSummary",
    "TimestampSummary",
    "open_by_message_id",
    "open_message",
]


class ReadError(HostError):
    code = "read_error"


class MessageNotFound(ReadError):
    code = "message_not_found"


#: The one thing said about encrypted content that could not be opened, whatever the reason.
UNREADABLE = (
    "This message could not be decrypted: none of your keys opens it, or it was damaged or "
    "altered on the way."
)


# ---- the view --------------------------------------------------------------------------------


@dataclass(frozen=True)
class AttachmentView:
    name: str | None
    content_type: str
    size: int
    data: bytes
    content_id: str | None = None
    inline: bool = False


@dataclass(frozen=True)
class SecuritySummary:
    encrypted: bool
    decrypted: bool
    cipher: str | None
    suite: str | None
    signed: bool
    signatures: tuple[SignatureSummary, ...]
    problem: str | None = None  # why the content could not be opened
    # Decrypted with a cipher that detects alteration (AES-GCM: True) or not (CBC: False);
    # None when there was nothing decrypted.
    authenticated_cipher: bool | None = None

    @property
    def verified(self) -> bool:
        """Signed, and every signature holds."""
        return self.signed and all(s.valid for s in self.signatures)

    @property
    def summary(self) -> str:
        parts = []
        if self.encrypted:
            parts.append(
                f"Encrypted ({self.cipher})." if self.decrypted else "Encrypted, not readable."
            )
        else:
            parts.append("Not encrypted.")
        parts += [s.summary for s in self.signatures] or ["Not signed."]
        if self.problem:
            parts.append(self.problem)
        return " ".join(parts)


@dataclass(frozen=True)
class OpenedView:
    headers: dict[str, str]
    text: str | None
    html: str | None
    remote_images_blocked: int
    attachments: tuple[AttachmentView, ...]
    security: SecuritySummary
    problems: tuple[str, ...] = field(default_factory=tuple)
    header_protection: HeaderProtectionView = field(default_factory=HeaderProtectionView)


# ---- peeling ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Signed:
    """One verified signature layer: the result, each signer's timestamps, why CRLs of its
    distribution points could not be had, and the header block whose From the signer must be
    (the protected one when the signed content carries RFC 9788 fields)."""

    result: VerificationResult
    stamps: list[tuple[tsp.TokenVerification, ...]]
    crls_unavailable: tuple[str, ...]
    sender_headers: bytes


@dataclass
class _Peeled:
    message: bytes
    encrypted: bool = False
    decrypted: bool = True
    cipher: str | None = None
    signatures: list[_Signed] = field(default_factory=list)
    problem: str | None = None
    sealed_at: int | None = None  # signatures found before the first encrypted layer
    payload: bytes | None = None  # the innermost entity with its own header fields (RFC 9788)


def _peel(
    raw: bytes,
    keys: Sequence[tuple[Certificate, PrivateKey]],
    anchors: Sequence[Certificate],
    at: datetime.datetime | None,
    crl_store: CrlStore | None = None,
    tsa_anchors: Sequence[Certificate] | None = None,
) -> _Peeled:
    outer = mime.outer_headers(raw)
    peeled = _Peeled(raw)
    try:
        _peel_layers(raw, outer, peeled, keys, anchors, at, crl_store, tsa_anchors)
    except PkiError:
        if peeled.sealed_at is None and not _claims_encrypted(raw):
            raise
        # One failure for every way encrypted content can fail to open (module docstring).
        kept = peeled.signatures[: peeled.sealed_at or 0]
        return _Peeled(outer + b"\r\n", True, False, None, kept, UNREADABLE)
    return peeled


def _peel_layers(
    raw: bytes,
    outer: bytes,
    peeled: _Peeled,
    keys: Sequence[tuple[Certificate, PrivateKey]],
    anchors: Sequence[Certificate],
    at: datetime.datetime | None,
    crl_store: CrlStore | None = None,
    tsa_anchors: Sequence[Certificate] | None = None,
) -> None:
    current = raw
    decrypted = False
    for _ in range(MAX_LAYERS):
        # What a decryption gave is unwrapped as the library does: bytes that are not MIME are
        # the same DecryptionFailed as a bad padding (one outcome, module docstring).
        layer = smime.unwrap_decrypted(current) if decrypted else mime.unwrap(current)
        decrypted = False
        if layer.kind in ("enveloped", "auth_enveloped"):
            assert layer.der is not None
            if peeled.sealed_at is None:
                peeled.sealed_at = len(peeled.signatures)
            peeled.encrypted = True
            current, info = enveloped.decrypt_with_info(layer.der, keys)
            peeled.cipher = info.cipher
            decrypted = True
        elif layer.kind in ("signed_opaque", "multipart_signed"):
            der = layer.der if layer.kind == "signed_opaque" else layer.signature
            assert der is not None
            stamps = tsp.signature_timestamps(der, tsa_anchors or anchors)

            content = layer.content if layer.kind == "multipart_signed" else None
            trusted = tsp.trusted_times(stamps) or None
            # Revocation of the trusted paths only (crls module docstring): validation asks for
            # the CRLs of each signer's path once it has built one to an anchor.
            source = PathCrls(crl_store) if crl_store is not None else None
            result = _verify_layer(der, content, anchors, at, trusted, source)
            unavailable = tuple(source.unavailable) if source is not None else ()
            # opaque: a protected From in the content shows only once it is verified
            senders = sender_block(outer, content if content is not None else result.content)
            peeled.signatures.append(_Signed(result, stamps, unavailable, senders))
            if layer.kind == "signed_opaque":
                current = result.content
            else:
                assert layer.content is not None
                current = layer.content
        else:
            peeled.message = mime.rewrap_headers(current, outer)
            peeled.payload = current
            return
    raise MalformedInput(f"More than {MAX_LAYERS} S/MIME layers: refusing to go deeper.")


def _verify_layer(
    der: bytes,
    content: bytes | None,
    anchors: Sequence[Certificate],
    at: datetime.datetime | None,
    trusted: dict[int, datetime.datetime] | None,
    crls: CrlSource | None,
) -> VerificationResult:
    return verify(
        der,
        content=content,
        trust_anchors=list(anchors),
        # Whether the signer is the sender is decided once, from every From value, by
        # x509.sender (open_message), not from the first address alone.
        from_address=None,
        at=at,
        trusted_time=trusted,
        # Our CA signs its SM2 CA certificates with the empty ID (as OpenSSL checks them) and
        # end entities with the standard one; senders may use either.
        sm2_ids=BOTH_IDS,
        crls=crls,
    )


def _claims_encrypted(raw: bytes) -> bool:
    """Whether the outer entity says it is (or may be) encrypted: application/pkcs7-mime
    without an smime-type that says otherwise, or a .p7m file. Broken bytes under such a
    header are the same failure as bad ciphertext."""
    try:
        head = _PARSER.parsebytes(raw, headersonly=True)
        ctype = head.get_content_type()
        smime_type = str(head.get_param("smime-type") or "").lower()
        name = str(head.get_param("name") or head.get_filename() or "").lower()
    except (ValueError, LookupError, TypeError, AttributeError, email.errors.MessageError):
        return False
    if ctype in ("application/pkcs7-mime", "application/x-pkcs7-mime"):
        return smime_type not in ("signed-data", "certs-only")
    return ctype == "application/octet-stream" and name.endswith(".p7m")


# ---- summaries -------------------------------------------------------------------------------


def _suite_name(peeled: _Peeled, results: Sequence[VerificationResult]) -> str | None:
    if peeled.cipher:
        try:
            return ciphers.by_name(peeled.cipher).suite
        except (PkiError, KeyError, ValueError):
            return None
    for result in results:
        for signer in result.signers:
            if signer.certificate is not None:
                return _suite.suite_of(signer.certificate).name
    return None


def _authenticated(peeled: _Peeled) -> bool | None:
    if not (peeled.encrypted and peeled.decrypted and peeled.cipher):
        return None
    try:
        return ciphers.by_name(peeled.cipher).aead
    except (PkiError, KeyError, ValueError):
        return False  # an algorithm we do not know: never assume it detects alteration


# ---- content ---------------------------------------------------------------------------------


def _decode_header(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return str(email.header.make_header(email.header.decode_header(value)))
    except (ValueError, LookupError, email.errors.HeaderParseError):
        return value


def _headers(message: EmailMessage) -> dict[str, str]:
    found = {}
    for name in ("From", "To", "Cc", "Date", "Subject", "Message-ID", "In-Reply-To", "References"):
        try:
            value = message.get(name)
        except (ValueError, IndexError, TypeError, AttributeError):
            value = None
        if value is not None:
            found[name.lower()] = _decode_header(str(value)) or ""
    return found


def _text_of(part: EmailMessage) -> str:
    try:
        content = part.get_content()
        if isinstance(content, str):
            return content.replace("\r\n", "\n")
    except (LookupError, ValueError, AssertionError, AttributeError, KeyError):
        pass
    payload = part.get_payload(decode=True) or b""
    try:
        text = payload.decode(part.get_content_charset() or "utf-8", "replace")
    except LookupError:  # a charset Python does not know
        text = payload.decode("utf-8", "replace")
    return text.replace("\r\n", "\n")


def _content(message: EmailMessage) -> tuple[str | None, str | None, list[AttachmentView]]:
    text = html = None
    attachments: list[AttachmentView] = []
    for part in message.walk():
        if part.is_multipart():
            continue
        ctype = part.get_content_type()
        disposition = part.get_content_disposition()
        name = part.get_filename()
        if disposition != "attachment" and name is None:
            if ctype == "text/plain" and text is None:
                text = _text_of(part)
                continue
            if ctype == "text/html" and html is None:
                html = _text_of(part)
                continue
        data = part.get_payload(decode=True)
        if data is None:  # message/rfc822 and friends: their bytes as they are
            data = part.as_bytes()
        content_id = part.get("Content-ID")
        attachments.append(
            AttachmentView(
                name=name,
                content_type=ctype,
                size=len(data),
                data=data,
                content_id=str(content_id).strip().strip("<>") if content_id else None,
                inline=disposition == "inline",
            )
        )
    return text, html, attachments


# ---- the operations --------------------------------------------------------------------------


def open_message(
    raw: bytes,
    *,
    keystore: Keystore | None,
    trust_anchors: Sequence[Certificate],
    book: CertificateBook | None = None,
    allow_remote: bool = False,
    at: datetime.datetime | None = None,
    keys: Sequence[tuple[Certificate, PrivateKey]] = (),
    crl_store: CrlStore | None = None,
    tsa_anchors: Sequence[Certificate] | None = None,
) -> OpenedView:
    """Open one raw message (see the module docstring). keys: more (certificate, key) pairs;
    tsa_anchors: timestamps' roots (default trust_anchors); crl_store: where the signers' CRLs
    come from (None: revocation is not checked, and each signature says so). Not a message:
    MalformedInput."""
    if not isinstance(raw, bytes) or not raw.strip():
        raise ReadError("The message is empty.")
    pairs = [*(keystore.decryption_pairs() if keystore is not None else []), *keys]
    try:
        peeled = _peel(raw, pairs, trust_anchors, at, crl_store, tsa_anchors)
    except PkiError as error:
        raise ReadError(f"The message cannot be read: {error.message}") from None
    results = [signed.result for signed in peeled.signatures]
    signatures = []
    problems: list[str] = []
    for signed in peeled.signatures:
        result, stamps = signed.result, signed.stamps
        from_values = from_field_values(signed.sender_headers)
        senders = [sender_check(from_values, signer) for signer in result.signers]
        harvested_for: list[str] = []
        if book is not None and result.valid and all(s.matches for s in senders):
            with contextlib.suppress(StorageFailed):  # a cache: a full disk only skips it
                harvested_for = book.harvest(result)
        for signer, sender in zip(result.signers, senders, strict=True):
            tokens = stamps[signer.index] if signer.index < len(stamps) else ()
            summary = signature_summary(signer, tokens, bool(harvested_for), sender)
            revoked = revocation_summary(signer, signed.crls_unavailable)
            words = summary.summary
            if revoked.status == "not_checked" or revoked.valid_as_of is not None:
                words += f" {revoked.summary}"  # a revocation that voids it is among its reasons
            signatures.append(dataclasses.replace(summary, revocation=revoked, summary=words))
    security = SecuritySummary(
        encrypted=peeled.encrypted,
        decrypted=peeled.decrypted,
        cipher=peeled.cipher,
        suite=_suite_name(peeled, results),
        signed=bool(signatures),
        signatures=tuple(signatures),
        problem=peeled.problem,
        authenticated_cipher=_authenticated(peeled),
    )
    outer = mime.outer_headers(peeled.message)
    read = read_payload(outer, peeled.payload, encrypted=peeled.encrypted, signatures=results)
    protected = read is not None and read.protected
    # the email package's tree, built faster; of the protected fields when the payload has them
    message = mime.parse_message(read.message if read is not None and protected else peeled.message)
    assert isinstance(message, EmailMessage)
    text, html, attachments = (None, None, []) if not peeled.decrypted else _content(message)
    blocked = 0
    if html is not None:
        cids = {a.content_id for a in attachments if a.content_id}
        cleaned = sanitize_html(html, allow_remote=allow_remote)
        html = cleaned.html
        blocked = cleaned.remote_images_blocked
        unknown = set(cleaned.cid_references) - cids
        if unknown:
            problems.append(f"The HTML refers to parts the message lacks: {', '.join(unknown)}.")
    return OpenedView(
        headers=read.shown() if read is not None and protected else _headers(message),
        text=text,
        html=html,
        remote_images_blocked=blocked,
        attachments=tuple(attachments),
        security=security,
        problems=tuple(problems),
        header_protection=view_of(read),
    )


def open_by_message_id(
    mailbox: Mailbox,
    message_id: str,
    folder: str | None = None,
    **options: object,
) -> OpenedView:
    """Find the message by Message-ID (in folder, else INBOX, Sent and All Mail) and open it
    with open_message(**options)."""
    found = mailbox.find_by_message_id(message_id, [folder] if folder else None)
    if found is None:
        where = f"in {folder}" if folder else "in INBOX, Sent or All Mail"
        raise MessageNotFound(f"No message {message_id} {where}.")
    return open_message(found.raw, **options)  # type: ignore[arg-type]


def signer_time(view: OpenedView) -> datetime.datetime | None:
    """The trusted time of the first signature, if its timestamp holds (a convenience)."""
    for signature in view.security.signatures:
        if signature.timestamp is not None and signature.timestamp.trusted_time is not None:
            return signature.timestamp.trusted_time
    return None
