"""S/MIME on whole messages (RFC 8551): sign, encrypt, and open (peel every layer).

The composition of the pure pieces: mime.py moves bytes between RFC 5322/MIME and CMS blobs,
cms/ signs, verifies, encrypts and decrypts. The native host and the command line use these
functions and nothing below them.

Suites (cms/suite.py): a message is all-international or all-SM. sign_message and
encrypt_message take `suite` ("intl", "sm", a Suite, or None to infer it from the keys and
certificates, refusing a mixture); cms.suite.choose_suite decides which certificates to pass.
open_message needs no suite: it dispatches on the algorithms in the message. SM2 signer IDs are
explicit: `sm2_id` to sign (None: 1234567812345678; b"" for OpenSSL), `sm2_ids` to verify.
"""

from __future__ import annotations

import contextlib
import datetime
import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from email.utils import getaddresses
from typing import TYPE_CHECKING

from shared_pki import mime
from shared_pki.cms import choice, digests, enveloped, signed
from shared_pki.cms import suite as _suite
from shared_pki.cms.capabilities import Capability
from shared_pki.cms.ciphers import BAD_CONTENT
from shared_pki.cms.verify import VerificationResult, verify
from shared_pki.errors import DecryptionFailed, EncryptionError, MalformedInput, SigningError
from shared_pki.keys import Certificate, Credential, PrivateKey
from shared_pki.x509.sender import from_field_values

if TYPE_CHECKING:  # imported where used: opening a message reads no protected header field
    from shared_pki import header_protection

MAX_LAYERS = 8  # signed inside encrypted inside signed...; more is an attack, not mail


def sign_message(
    message: bytes,
    signer: Credential,
    *,
    detached: bool = True,
    digest: str | None = None,
    pss: bool = False,
    signing_time: datetime.datetime | None = None,
    suite: str | _suite.Suite | None = None,
    sm2_id: bytes | None = None,
    convention: str = "pkcs7",
    protect_headers: bool = False,
) -> bytes:
    """Sign a whole message: multipart/signed (detached, readable without S/MIME) by default,
    or opaque application/pkcs7-mime signed-data. The outer headers stay as they were.

    suite None means the signer key's suite; the digest defaults to the suite's (SHA-256 or
    SM3) and the SMIMECapabilities advertised are the suite's. sm2_id and convention matter
    for SM2 signers only (see cms.signed.sign). protect_headers: RFC 9788 hp="clear", the
    message's header fields are copied inside the signature too (header_protection.protect)."""
    outer, entity = mime.split_headers(message)
    if protect_headers:
        from shared_pki import header_protection

        entity = header_protection.protect(outer, entity, encrypted=False).entity
    return _sign(
        entity,
        signer,
        detached=detached,
        digest=digest,
        pss=pss,
        signing_time=signing_time,
        suite=suite,
        sm2_id=sm2_id,
        convention=convention,
        headers=outer,
    )


def sign_entity(
    entity: bytes,
    signer: Credential,
    *,
    detached: bool = True,
    digest: str | None = None,
    pss: bool = False,
    signing_time: datetime.datetime | None = None,
    suite: str | _suite.Suite | None = None,
    sm2_id: bytes | None = None,
    convention: str = "pkcs7",
) -> bytes:
    """sign_message for a MIME entity, whatever header fields it carries (a header-protected
    payload carries them inside what is signed): the multipart/signed or application/pkcs7-mime
    entity, no outer header fields."""
    return _sign(
        entity,
        signer,
        detached=detached,
        digest=digest,
        pss=pss,
        signing_time=signing_time,
        suite=suite,
        sm2_id=sm2_id,
        convention=convention,
        headers=None,
    )


def _sign(
    entity: bytes,
    signer: Credential,
    *,
    detached: bool,
    digest: str | None,
    pss: bool,
    signing_time: datetime.datetime | None,
    suite: str | _suite.Suite | None,
    sm2_id: bytes | None,
    convention: str,
    headers: mime.HeaderInput | None,
) -> bytes:
    """sign_entity, and with headers the whole message (wrapped once, not copied again)."""
    own = _suite.suite_of_key(signer.key)
    chosen = own if suite is None else _suite.by_name(suite)
    if chosen != own:
        raise SigningError(f"A {own} key cannot sign a {chosen} message.")
    digest = digest or chosen.digest
    entity = mime.prepare_for_signing(entity)  # canonical CRLF, 7-bit safe
    der = signed.sign(
        entity,
        signer,
        digest=digest,
        pss=pss,
        detached=detached,
        signing_time=signing_time,
        capabilities=chosen.advertised,
        sm2_id=sm2_id,
        convention=convention,
    )
    if detached:
        micalg = digests.by_name(digest).micalg
        return mime.wrap_multipart_signed(entity, der, micalg, prepared=True, headers=headers)
    return mime.wrap_pkcs7_mime(der, "signed-data", headers=headers)


def encrypt_message(
    message: bytes,
    recipients: Sequence[Certificate | tuple[Certificate, tuple[Capability, ...] | None]],
    *,
    sender: Certificate | None,
    cipher: str | None = None,
    use_ski: bool = False,
    suite: str | _suite.Suite | None = None,
    convention: str = "pkcs7",
    protect_headers: bool = False,
    policy: header_protection.Policy | None = None,
) -> bytes:
    """Encrypt a whole message to the recipients and the sender (so the Sent copy stays
    readable). Without a cipher, the strongest of the suite that every recipient advertises is
    chosen, and what every client reads when someone advertises nothing.

    Every certificate must belong to the suite (EncryptionError otherwise); suite None infers
    it from the certificates. convention "gmt" writes GM/T 0010 content types (GmSSL).
    protect_headers: RFC 9788 hp="cipher" for an unsigned message: the header fields go inside,
    the outside is what `policy` leaves (None: hcp_baseline, Subject "[...]"). A signed message
    must be protected before it is signed (header_protection.protect, sign_entity,
    encrypt_entity)."""
    outer, entity = mime.split_headers(message)
    headers: mime.HeaderInput = outer
    if protect_headers:
        if mime.unwrap(entity).kind != "plain":
            raise MalformedInput(
                "Header protection goes on the innermost entity: protect it before signing "
                "(header_protection.protect, then sign_entity and encrypt_entity)."
            )
        from shared_pki import header_protection

        protected = header_protection.protect(
            outer, entity, encrypted=True, policy=policy or header_protection.hcp_baseline
        )
        entity, headers = protected.entity, protected.outer_headers
    der = _encrypt(
        entity,
        recipients,
        sender=sender,
        cipher=cipher,
        use_ski=use_ski,
        suite=suite,
        convention=convention,
    )
    return mime.wrap_pkcs7_mime(der, mime.smime_type_for(der), headers=headers)


def encrypt_entity(
    entity: bytes,
    recipients: Sequence[Certificate | tuple[Certificate, tuple[Capability, ...] | None]],
    *,
    sender: Certificate | None,
    cipher: str | None = None,
    use_ski: bool = False,
    suite: str | _suite.Suite | None = None,
    convention: str = "pkcs7",
) -> bytes:
    """encrypt_message for a MIME entity, whatever header fields it carries (a header-protected
    payload carries them inside what is encrypted): the application/pkcs7-mime entity, no outer
    header fields."""
    der = _encrypt(
        entity,
        recipients,
        sender=sender,
        cipher=cipher,
        use_ski=use_ski,
        suite=suite,
        convention=convention,
    )
    # The label from the DER's content type: parsing the whole envelope again to learn the
    # cipher (enveloped.inspect) cost more than the wrapping.
    return mime.wrap_pkcs7_mime(der, mime.smime_type_for(der))


def _encrypt(
    entity: bytes,
    recipients: Sequence[Certificate | tuple[Certificate, tuple[Capability, ...] | None]],
    *,
    sender: Certificate | None,
    cipher: str | None,
    use_ski: bool,
    suite: str | _suite.Suite | None,
    convention: str,
) -> bytes:
    """The DER of encrypt_entity's EnvelopedData or AuthEnvelopedData."""
    # Transfer-encode 8-bit and binary parts first: canonicalizing raw binary would turn LF
    # into CRLF inside attachments.
    entity = mime.prepare_for_signing(entity)
    with_caps = [r if isinstance(r, tuple) else (r, None) for r in recipients]
    everyone = [c for c, _ in with_caps] + ([sender] if sender is not None else [])
    # None: the certificates' own suite (refusing a mixture); else every one must fit it.
    checked = None if suite is None else _suite.check_certificates(suite, everyone)
    chosen = checked or _suite.infer(everyone)
    if cipher is not None and ciphers_suite(cipher) != chosen.name:
        raise EncryptionError(f"{cipher} is not a cipher of the {chosen} suite.")
    if cipher is None and sender is not None:
        der = choice.encrypt_for(
            entity, sender, with_caps, use_ski=use_ski, suite=chosen, convention=convention
        )
    else:
        unique = list({(c.issuer.dump(), c.serial_number): c for c in everyone}.values())
        with_none = [(c, None) for c in unique]
        choice_made = choice.choose(with_none, suite=chosen)
        der = enveloped.encrypt(
            entity,
            unique,
            cipher=cipher or choice_made.cipher,
            key_transport=choice_made.key_transports,
            use_ski=use_ski,
            convention=convention,
        )
    return der


def ciphers_suite(cipher: str) -> str:
    """The suite a content cipher belongs to ("intl" or "sm")."""
    from shared_pki.cms import ciphers

    return ciphers.by_name(cipher).suite


@dataclass(frozen=True)
class OpenedLayer:
    """One layer taken off: `encrypted` (with the cipher and recipient count) or `signed`
    (with the full verification result)."""

    kind: str
    form: str
    cipher: str | None = None
    verification: VerificationResult | None = None


@dataclass(frozen=True)
class OpenedMessage:
    """The innermost entity with the original outer headers (`message`), and every layer found
    on the way, outermost first. payload: that innermost entity as it came out of the last
    layer, its own header fields included (RFC 9788's Cryptographic Payload: headers() reads
    it). Both are made when first read, from one `content` (decrypted in a taken-over
    bytearray, it is that bytearray) and the outer header fields; message_pieces() gives the
    message without making it."""

    layers: tuple[OpenedLayer, ...]
    content: bytes | bytearray = field(repr=False)
    outer: bytes = field(repr=False)

    @functools.cached_property
    def message(self) -> bytes:
        return b"".join(self.message_pieces())

    @functools.cached_property
    def payload(self) -> bytes:
        return bytes(self.content)  # bytes as they are, a bytearray copied

    def message_pieces(self) -> tuple[bytes, memoryview]:
        """message as its header block and a view of the content's body, to be written one
        after the other: the command line writes a 10 MB message without a copy of it."""
        return mime.rewrap_pieces(self.content, self.outer)

    @property
    def encrypted(self) -> bool:
        return any(layer.kind == "encrypted" for layer in self.layers)

    @property
    def signatures(self) -> list[VerificationResult]:
        return [layer.verification for layer in self.layers if layer.verification is not None]

    @property
    def signed_and_valid(self) -> bool:
        """Signed at least once, and every signature holds."""
        return bool(self.signatures) and all(result.valid for result in self.signatures)

    def headers(self) -> header_protection.ReadHeaders:
        """The header fields to show (RFC 9788: the protected ones when the payload carries
        them, else the outer ones), with what HP-Outer said and the discrepancies in words."""
        from shared_pki import header_protection

        outer = mime.outer_headers(self.message_pieces()[0])  # not the whole message
        return header_protection.read(
            outer, self.payload, encrypted=self.encrypted, signature_valid=self.signed_and_valid
        )


def from_address(outer_headers: bytes) -> str | None:
    """The first address of the From field, or None. Whether a signature is from the sender is
    decided by shared_pki.x509.sender.check_sender, which takes every From value."""
    addresses = [a for _, a in getaddresses(list(from_field_values(outer_headers))) if "@" in a]
    return addresses[0] if addresses else None


def unwrap_decrypted(content: bytes) -> mime.SmimeLayer:
    """mime.unwrap of what a decryption gave, where bytes that are not MIME are the one
    DecryptionFailed of enveloped.decrypt: content decrypted under a wrong key (a PKCS#1 v1.5
    implicit rejection key, say) passes a CBC padding check 1 time in 256 and is then garbage,
    and its failing here must not tell that apart from the padding failing."""
    try:
        return mime.unwrap(content)
    except MalformedInput:
        raise DecryptionFailed(BAD_CONTENT) from None


def _as_bytes(content: bytearray) -> bytes:
    """A content decrypted in place that is not plain, as the bytes the rest of opening reads
    (a signature inside, say); the bytearray is emptied."""
    data = bytes(content)
    _release(content)
    return data


def _release(buffer: bytes | bytearray) -> None:
    """Empty a taken-over buffer whose content has been decrypted, unless something still
    looks into it (then it goes when that does)."""
    if isinstance(buffer, bytearray):
        with contextlib.suppress(BufferError):
            buffer.clear()


def open_message(
    message: bytes | bytearray,
    *,
    keys: Sequence[tuple[Certificate, PrivateKey]] = (),
    trust_anchors: Sequence[Certificate] = (),
    intermediates: Sequence[Certificate] = (),
    at: datetime.datetime | None = None,
    sm2_ids: Sequence[bytes] | None = None,
    crls: Sequence[bytes] | None = None,
) -> OpenedMessage:
    """Decrypt and verify every S/MIME layer of a message, outermost first. A layer that cannot
    be opened raises its typed error (NoMatchingKey, DecryptionFailed, MalformedInput...);
    signatures never raise for being invalid: their results say what holds. International
    and SM layers open alike (keys may mix RSA/EC and SM2); sm2_ids are the SM2 signer IDs
    tried on SM2 signatures and certificate links (None: 1234567812345678 only). crls: DER
    CRLs to check the signers' chains with (None: revocation is not looked at).

    A bytearray is taken over (the command line reads files so): a base64 CMS body is decoded
    into it (mime.unwrap_taking), its content decrypted into it (enveloped.decrypt_with_info
    in_place) and, when that content is a plain entity, it is the result's `content`; else it
    is emptied. So a 10 MB message is never held beside its DER, nor its DER beside its
    plaintext. What it holds afterwards is unspecified. The same checks run."""
    taken = mime.unwrap_taking(message) if isinstance(message, bytearray) else None
    if isinstance(message, bytearray) and taken is None:  # not base64 CMS: opened as bytes
        message, buffer = bytes(message), message
        buffer.clear()
    outer = taken.outer_headers if taken is not None else mime.outer_headers(message)
    sender = from_address(outer)
    layers: list[OpenedLayer] = []
    current = message if isinstance(message, bytes) else b""  # taken: the first layer is known
    while True:
        if len(layers) >= MAX_LAYERS:
            raise MalformedInput(f"More than {MAX_LAYERS} S/MIME layers: refusing to go deeper.")
        decrypted = bool(layers) and layers[-1].kind == "encrypted"
        if taken is not None:
            layer, taken = taken, None
        elif isinstance(current, bytearray):  # decrypted in place
            if mime.is_plain(current):
                return OpenedMessage(tuple(layers), current, outer)
            current = _as_bytes(current)
            layer = unwrap_decrypted(current)
        else:
            layer = unwrap_decrypted(current) if decrypted else mime.unwrap(current)
        if layer.kind in ("enveloped", "auth_enveloped"):
            assert layer.der is not None
            current, info = enveloped.decrypt_with_info(layer.der, keys, in_place=layer.taken)
            if layer.taken and current is not layer.der:
                _release(layer.der)
            layers.append(OpenedLayer("encrypted", layer.kind, cipher=info.cipher))
        elif layer.kind == "signed_opaque":
            assert layer.der is not None
            der = bytes(layer.der)  # a taken bytearray as bytes (no copy of bytes)
            if layer.taken:
                _release(layer.der)
            result = verify(
                der,
                trust_anchors=list(trust_anchors),
                intermediates=intermediates,
                from_address=sender,
                at=at,
                sm2_ids=sm2_ids,
                crls=crls,
            )
            if result.content is None:
                raise MalformedInput("An opaque signed message carries no content.")
            current = result.content
            layers.append(OpenedLayer("signed", "opaque", verification=result))
        elif layer.kind == "multipart_signed":
            assert layer.signature is not None and layer.content is not None
            result = verify(
                layer.signature,
                content=layer.content,
                trust_anchors=list(trust_anchors),
                intermediates=intermediates,
                from_address=sender,
                at=at,
                sm2_ids=sm2_ids,
                crls=crls,
            )
            current = layer.content
            layers.append(OpenedLayer("signed", "multipart", verification=result))
        else:
            return OpenedMessage(tuple(layers), current, outer)
