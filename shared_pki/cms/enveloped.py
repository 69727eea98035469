"""Encrypting and decrypting S/MIME content: CMS EnvelopedData (RFC 5652) for CBC ciphers and
AuthEnvelopedData (RFC 5083) for AEAD ciphers, many recipients of mixed key types per message.

Pure functions, bytes in, bytes out. Algorithms live in ciphers.py and recipients.py
(registries); choosing them per message is choice.py's job. Every failure is a typed error:
MalformedInput (bad bytes), UnsupportedAlgorithm, NoMatchingKey (none of our keys is a
recipient), DecryptionFailed (a key matched but the content did not decrypt), EncryptionError.
DecryptionFailed always carries the same words (ciphers.BAD_CONTENT), whether the key, its
padding, or the content failed: RSA PKCS#1 v1.5 uses implicit rejection (recipients.py).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from asn1crypto import algos, cms, core

from shared_pki import der as _der
from shared_pki import oids as _oids  # registrations asn1crypto lacks, content-type conventions
from shared_pki.cms import ciphers
from shared_pki.cms import recipients as _recipients
from shared_pki.cms.recipients import KeyTransport, RecipientId
from shared_pki.errors import (
    DecryptionFailed,
    EncryptionError,
    MalformedInput,
    NoMatchingKey,
    PkiError,
    UnsupportedAlgorithm,
)
from shared_pki.keys import Certificate, PrivateKey

ENVELOPED = "enveloped_data"
AUTH_ENVELOPED = "authenticated_enveloped_data"
_PARSE_ERRORS = (ValueError, TypeError, KeyError, IndexError, OverflowError, AttributeError)


@dataclass(frozen=True)
class Recipient:
    """One recipient named in a message: its kind (ktri, kari, kekri, pwri, ori), how it is
    identified (None for kinds without a certificate), and the key-encryption algorithm
    (asn1crypto's OID name such as rsaes_oaep, or the dotted OID)."""

    kind: str
    rid: RecipientId | None
    key_encryption: str


@dataclass(frozen=True)
class EnvelopeInfo:
    """What a message says about itself before any key is used (for the UI and key choice)."""

    content_type: str  # "enveloped_data" or "authenticated_enveloped_data"
    cipher: str  # registered cipher name, or the dotted OID of an unknown one
    inner_content_type: str
    recipients: tuple[Recipient, ...]


@dataclass(frozen=True)
class _Entry:
    """A decryptable recipient slot: identifier, its RecipientInfo, and its encrypted key."""

    recipient: Recipient
    info: cms.Sequence
    encrypted_key: bytes
    oid: str


@dataclass(frozen=True)
class _Envelope:
    content_type: str
    cipher_oid: str
    algorithm: algos.EncryptionAlgorithm
    inner_content_type: str
    entries: tuple[_Entry, ...]
    others: tuple[Recipient, ...]
    ciphertext: bytes | memoryview | None  # a view of the DER when _cut_ciphertext found it
    mac: bytes | None
    aad: bytes


# --- encrypting --------------------------------------------------------------------------------


def encrypt(
    content: bytes,
    recipients: Sequence[Certificate],
    *,
    cipher: str = "aes256_cbc",
    key_transport: str | Sequence[str | None] | None = None,
    use_ski: bool = False,
    convention: str = "pkcs7",
) -> bytes:
    """DER ContentInfo: EnvelopedData, or AuthEnvelopedData when the cipher is AEAD (GCM).

    convention "gmt" writes the GM/T 0010 content types (envelopedData and data) that GmSSL
    reads, instead of PKCS#7's; AuthEnvelopedData has no such alias.

    key_transport: None gives each recipient the default for its key type (RSA PKCS#1 v1.5,
    ECDH stdDH-sha256kdf); a name applies to every recipient it fits (the others get their
    default); a sequence names one transport (or None) per recipient. The sender must be among
    the recipients, or they cannot read their own sent mail: see choice.encrypt_for.
    """
    if not recipients:
        raise EncryptionError("A message needs at least one recipient.")
    content_cipher = ciphers.by_name(cipher)
    types = _oids.content_types(convention)
    if content_cipher.aead and types != _oids.PKCS7:
        raise EncryptionError(f"{cipher} (AuthEnvelopedData) exists only in the PKCS#7 convention.")
    transports = _transports(recipients, key_transport)
    cek = os.urandom(content_cipher.key_size)
    infos = [
        _recipient_info(transport, cek, certificate, use_ski)
        for certificate, transport in zip(recipients, transports, strict=True)
    ]
    sealed = content_cipher.seal(cek, content, b"")
    if content_cipher.aead:
        return _content_info(
            AUTH_ENVELOPED,
            [
                _VERSION_0,
                cms.RecipientInfos(infos).dump(),
                *_encrypted_content_info(types.data, sealed),
                core.OctetString(sealed.mac).dump(),
            ],
        )
    simple = all(info.name == "ktri" and info.chosen["version"].native == "v0" for info in infos)
    return _content_info(
        types.enveloped_data,
        [
            _VERSION_0 if simple else _VERSION_2,
            cms.RecipientInfos(infos).dump(),
            *_encrypted_content_info(types.data, sealed),
        ],
    )


# The DER around the ciphertext is written here rather than by asn1crypto, whose dump() copies
# a value into every enclosing level (and then again when the tree is serialized): 45 ms of a
# 10 MB message's 80. Every small field is still asn1crypto's DER; the pieces are joined once.
_VERSION_0 = core.Integer(0).dump()
_VERSION_2 = core.Integer(2).dump()


def _encrypted_content_info(content_type: str, sealed: ciphers.Sealed) -> list[bytes]:
    """EncryptedContentInfo: contentType, contentEncryptionAlgorithm, [0] IMPLICIT OCTET
    STRING encryptedContent (primitive, tag 0x80)."""
    return _der.constructed(
        0x30,
        [
            cms.ContentType(content_type).dump(),
            sealed.algorithm.dump(),
            _der.header(0x80, len(sealed.ciphertext)),
            sealed.ciphertext,
        ],
    )


def _content_info(content_type: str, body_fields: list[bytes]) -> bytes:
    """ContentInfo { contentType, [0] EXPLICIT SEQUENCE { body_fields } } as one DER string."""
    body = _der.constructed(0x30, body_fields)
    content_type_der = cms.ContentType(content_type).dump()
    return b"".join(_der.constructed(0x30, [content_type_der, *_der.constructed(0xA0, body)]))


def _transports(
    certificates: Sequence[Certificate], requested: str | Sequence[str | None] | None
) -> list[KeyTransport]:
    """One key transport per recipient, from the caller's request and the key types."""
    if requested is None or isinstance(requested, str):
        named = _recipients.by_name(requested) if requested else None
        if named and not any(named.fits_certificate(c) for c in certificates):
            raise EncryptionError(f"Key transport {named.name} fits none of the recipients.")
        return [
            named if named and named.fits_certificate(c) else _recipients.default_for(c)
            for c in certificates
        ]
    if len(requested) != len(certificates):
        raise EncryptionError("key_transport must name one transport per recipient.")
    result = []
    for certificate, name in zip(certificates, requested, strict=True):
        transport = _recipients.by_name(name) if name else _recipients.default_for(certificate)
        if not transport.fits_certificate(certificate):
            raise EncryptionError(
                f"Key transport {transport.name} does not fit the key of {_describe(certificate)}."
            )
        result.append(transport)
    return result


def _recipient_info(
    transport: KeyTransport, cek: bytes, certificate: Certificate, use_ski: bool
) -> cms.RecipientInfo:
    try:
        usage = certificate.key_usage_value
    except _PARSE_ERRORS as error:
        raise EncryptionError(f"The recipient certificate does not parse: {error}") from None
    if usage is not None and transport.key_usage not in usage.native:
        raise EncryptionError(
            f"The certificate of {_describe(certificate)} does not allow "
            f"{transport.key_usage.replace('_', ' ')} (keyUsage): it is not for encryption."
        )
    return transport.build(cek, certificate, RecipientId.of(certificate, use_ski))


def _describe(certificate: Certificate) -> str:
    try:
        return certificate.subject.human_friendly
    except _PARSE_ERRORS:
        return "a recipient"


# --- decrypting --------------------------------------------------------------------------------


def decrypt(der: bytes, keys: Sequence[tuple[Certificate, PrivateKey]]) -> bytes:
    """The content of an EnvelopedData or AuthEnvelopedData, using whichever of keys (current
    or expired) the message names as a recipient. Tries every matching key before failing."""
    return decrypt_with_info(der, keys)[0]


def decrypt_with_info(
    der: bytes | bytearray,
    keys: Sequence[tuple[Certificate, PrivateKey]],
    *,
    in_place: bool = False,
) -> tuple[bytes | bytearray, EnvelopeInfo]:
    """decrypt, and what inspect says of the message, from one parse (a reader shows the
    cipher; parsing a 10 MB envelope twice cost as much as decrypting it).

    in_place: der is a bytearray its owner gives up. When the cipher can (AES, SM4) and the
    content is one piece of der, it is decrypted into der's front and der, cut to the
    plaintext, is the content returned, so that a 10 MB content is never held beside its
    ciphertext. The same checks run first; on failure der holds no plaintext. Otherwise, or
    with bytes, the content is new bytes."""
    envelope = _parse(der)
    into = der if in_place and isinstance(der, bytearray) else None
    return _decrypt(envelope, keys, into), _info(envelope)


def _decrypt(
    envelope: _Envelope,
    keys: Sequence[tuple[Certificate, PrivateKey]],
    into: bytearray | None = None,
) -> bytes | bytearray:
    content_cipher = ciphers.by_oid(envelope.cipher_oid)
    if content_cipher.aead != (envelope.content_type == AUTH_ENVELOPED):
        raise UnsupportedAlgorithm(
            f"{content_cipher.name} cannot be used in {envelope.content_type} (RFC 5083)."
        )
    if envelope.ciphertext is None:
        raise MalformedInput("The message has no encrypted content (detached content).")
    candidates = [
        (entry, key)
        for entry in envelope.entries
        for certificate, key in keys
        if _matches(entry.recipient.rid, certificate)
    ]
    if not candidates:
        present = "; ".join(_name(r) for r in _all_recipients(envelope)) or "none"
        raise NoMatchingKey(
            f"None of your {len(keys)} key(s) is a recipient of this message. "
            f"It is encrypted for: {present}."
        )
    failures: list[PkiError] = []
    for number, (entry, key) in enumerate(candidates, 1):
        try:
            transport = _recipients.for_decryption(entry.oid, key)
            cek = transport.recover(entry.info, entry.encrypted_key, key, content_cipher.key_size)
            # in place by the last key only: decrypting overwrites the ciphertext
            if into is not None and number == len(candidates):
                opened = _open_in_place(content_cipher, cek, envelope, into)
                if opened is not None:
                    return opened
            return content_cipher.open(
                cek, envelope.algorithm, envelope.ciphertext, envelope.mac, envelope.aad
            )
        except DecryptionFailed:
            # One failure for a key that did not decrypt and content that did not: the words
            # must not say which check failed (and a transport registered elsewhere might).
            failures.append(DecryptionFailed(ciphers.BAD_CONTENT))
        except PkiError as error:
            failures.append(error)
        except _PARSE_ERRORS as error:
            failures.append(MalformedInput(f"A recipient info does not parse: {error}"))
    for kind in (DecryptionFailed, MalformedInput, UnsupportedAlgorithm):
        for failure in failures:
            if isinstance(failure, kind):
                raise failure
    raise failures[0]


def _open_in_place(
    content_cipher: ciphers.ContentCipher, cek: bytes, envelope: _Envelope, der: bytearray
) -> bytearray | None:
    """The content decrypted into der's front, der cut to it; None when the cipher cannot or
    the ciphertext is not a view of der (asn1crypto parsed a constructed or indefinite one)."""
    ciphertext = envelope.ciphertext
    if content_cipher.open_into is None or not (
        isinstance(ciphertext, memoryview) and ciphertext.obj is der
    ):
        return None
    with memoryview(der) as into:
        length = content_cipher.open_into(
            cek, envelope.algorithm, ciphertext, envelope.mac, envelope.aad, into
        )
    ciphertext.release()  # der can be cut once nothing looks into it
    del der[length:]
    return der


def _matches(rid: RecipientId | None, certificate: Certificate) -> bool:
    """rid names certificate; a certificate too broken to compare names nothing."""
    try:
        return rid is not None and rid.matches(certificate)
    except _PARSE_ERRORS:
        return False


def inspect(der: bytes) -> EnvelopeInfo:
    """Content type, cipher and recipients of a message, without decrypting it; unknown
    algorithms are reported by OID rather than rejected."""
    return _info(_parse(der))


def _info(envelope: _Envelope) -> EnvelopeInfo:
    try:
        cipher = ciphers.by_oid(envelope.cipher_oid).name
    except UnsupportedAlgorithm:
        cipher = envelope.cipher_oid
    return EnvelopeInfo(
        envelope.content_type,
        cipher,
        envelope.inner_content_type,
        tuple(_all_recipients(envelope)),
    )


def _all_recipients(envelope: _Envelope) -> list[Recipient]:
    return [entry.recipient for entry in envelope.entries] + list(envelope.others)


def _name(recipient: Recipient) -> str:
    return str(recipient.rid) if recipient.rid else f"a {recipient.kind} recipient"


# RFC 5652 section 6.1 and RFC 5083 section 2.1.
_VERSIONS = {ENVELOPED: ("v0", "v2", "v3", "v4"), AUTH_ENVELOPED: ("v0",)}


def _parse(der: bytes) -> _Envelope:
    """Every field decrypt needs, parsed now, so bad bytes fail as MalformedInput here."""
    if not isinstance(der, bytes | bytearray | memoryview):
        raise MalformedInput("CMS input must be bytes.")
    try:
        cut = _cut_ciphertext(der)
        info = cms.ContentInfo.load(cut[0] if cut else bytes(der), strict=True)
        content_type = info["content_type"].native
        if _oids.standard_content_type(info["content_type"].dotted) == _oids.OID_ENVELOPED_DATA:
            content_type = ENVELOPED  # whichever convention named it
        if content_type not in (ENVELOPED, AUTH_ENVELOPED):
            raise MalformedInput(f"Not an encrypted CMS message but {content_type}.")
        body = info["content"]
        version = body["version"].native
        if version not in _VERSIONS[content_type]:
            raise MalformedInput(f"{content_type} version {version} is not one RFC 5652 defines.")
        if content_type == ENVELOPED:
            eci = body["encrypted_content_info"]
            mac, aad = None, b""
        else:
            eci = body["auth_encrypted_content_info"]
            mac = body["mac"].native
            aad = _auth_attrs_aad(body["auth_attrs"])
        algorithm = eci["content_encryption_algorithm"]
        encrypted = eci["encrypted_content"]
        ciphertext = None if isinstance(encrypted, core.Void) else encrypted.native
        if cut is not None:
            ciphertext = cut[1]
        entries: list[_Entry] = []
        others: list[Recipient] = []
        for recipient_info in body["recipient_infos"]:
            _collect(recipient_info, entries, others)
        return _Envelope(
            content_type,
            algorithm["algorithm"].dotted,
            algorithm,
            eci["content_type"].native,
            tuple(entries),
            tuple(others),
            ciphertext,
            mac,
            aad,
        )
    except PkiError:
        raise
    except _PARSE_ERRORS as error:
        raise MalformedInput(f"Not a valid CMS encrypted message: {error}") from None


def _cut_ciphertext(data: bytes | bytearray | memoryview) -> tuple[bytes, memoryview] | None:
    """The envelope with its encrypted content left empty, and a view of that content, when
    every level down to it has a definite length and the content is one primitive [0] (how
    we, OpenSSL's non-streaming output and most writers encode it); None otherwise, and
    asn1crypto parses the whole. asn1crypto copies a value at each level it descends (five
    copies of a 10 MB ciphertext: 29 ms and 50 MB), so it gets the small rest only."""
    view = memoryview(data)
    top = _inside(view, 0, len(view), 0x30)
    if top is None or [tag for tag, _, _ in top] != [0x06, 0xA0]:
        return None
    body = _inside(view, top[1][1], top[1][2], 0xA0)
    if body is None or len(body) != 1:
        return None
    fields = _inside(view, body[0][1], body[0][2], 0x30)
    tags = [tag for tag, _, _ in fields or ()]
    if fields is None or 0x31 not in tags or 0x30 not in tags[tags.index(0x31) :]:
        return None
    eci_index = tags.index(0x30, tags.index(0x31))  # (auth)EncryptedContentInfo
    eci = _inside(view, fields[eci_index][1], fields[eci_index][2], 0x30)
    if eci is None or [tag for tag, _, _ in eci] != [0x06, 0x30, 0x80]:
        return None
    _, content_start, content_end = eci[2]
    header = _der.read_header(view, content_start)
    if header is None:
        return None

    def raw(piece: tuple[int, int, int]) -> bytes:
        return bytes(view[piece[1] : piece[2]])

    # every field but the (auth)EncryptedContentInfo, whose copy would be the ciphertext's
    pieces = [b"" if index == eci_index else raw(field) for index, field in enumerate(fields)]
    empty_content = b"\x80\x00"
    pieces[eci_index] = b"".join(_der.constructed(0x30, [raw(eci[0]), raw(eci[1]), empty_content]))
    body_der = _der.constructed(0x30, pieces)
    reduced = _der.constructed(0x30, [raw(top[0]), *_der.constructed(0xA0, body_der)])
    return b"".join(reduced), view[content_start + header[1] : content_end]


def _inside(view: memoryview, start: int, end: int, tag: int) -> list[tuple[int, int, int]] | None:
    """The values inside the one value from start to end, which must have this tag."""
    header = _der.read_header(view, start)
    if header is None or header[0] != tag or start + header[1] + header[2] != end:
        return None
    return _der.children(view, start + header[1], end)


def _auth_attrs_aad(attributes: core.Asn1Value) -> bytes:
    """RFC 5083: authenticated attributes are authenticated as a DER SET OF, not as [1]."""
    if isinstance(attributes, core.Void):
        return b""
    return attributes.untag().dump()


def _collect(recipient_info: cms.RecipientInfo, entries: list[_Entry], others: list) -> None:
    kind = recipient_info.name
    info = recipient_info.chosen
    if kind == "ktri":
        algorithm = info["key_encryption_algorithm"]["algorithm"]
        rid = info["rid"]
        if rid.name == "issuer_and_serial_number":
            identifier = RecipientId.from_issuer_and_serial(rid.chosen)
        else:
            identifier = RecipientId(ski=rid.chosen.native)
        recipient = Recipient(kind, identifier, _algorithm_name(algorithm))
        entries.append(_Entry(recipient, info, info["encrypted_key"].native, algorithm.dotted))
    elif kind == "kari":
        algorithm = info["key_encryption_algorithm"]["algorithm"]
        for encrypted_key in info["recipient_encrypted_keys"]:
            rid = encrypted_key["rid"]
            if rid.name == "issuer_and_serial_number":
                identifier = RecipientId.from_issuer_and_serial(rid.chosen)
            else:
                identifier = RecipientId(ski=rid.chosen["subject_key_identifier"].native)
            recipient = Recipient(kind, identifier, _algorithm_name(algorithm))
            entries.append(
                _Entry(recipient, info, encrypted_key["encrypted_key"].native, algorithm.dotted)
            )
    else:
        others.append(Recipient(kind, None, "unknown"))


def _algorithm_name(oid: core.ObjectIdentifier) -> str:
    """asn1crypto's name for a registered OID (rsaes_oaep, ...), else the dotted OID."""
    return oid.native
