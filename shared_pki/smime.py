"""S/MIME on whole messages (RFC 8551): sign, encrypt, and open (peel every layer).

The composition of the pure pieces: mime.py moves bytes between RFC 5322/MIME and CMS blobs,
cms/ signs, verifies, encrypts and decrypts. The native host and the command line use these
functions and nothing below them.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from dataclasses import dataclass, field
from email.utils import getaddresses

from shared_pki import mime
from shared_pki.cms import choice, digests, enveloped, signed
from shared_pki.cms.capabilities import Capability
from shared_pki.cms.verify import VerificationResult, verify
from shared_pki.errors import MalformedInput
from shared_pki.keys import Certificate, Credential, PrivateKey

MAX_LAYERS = 8  # signed inside encrypted inside signed...; more is an attack, not mail
GCM_CIPHERS = ("aes128_gcm", "aes192_gcm", "aes256_gcm")


def sign_message(
    message: bytes,
    signer: Credential,
    *,
    detached: bool = True,
    digest: str = "sha256",
    pss: bool = False,
    signing_time: datetime.datetime | None = None,
) -> bytes:
    """Sign a whole message: multipart/signed (detached, readable without S/MIME) by default,
    or opaque application/pkcs7-mime signed-data. The outer headers stay as they were."""
    outer, entity = mime.split_headers(message)
    entity = mime.prepare_for_signing(entity)  # canonical CRLF, 7-bit safe
    der = signed.sign(
        entity, signer, digest=digest, pss=pss, detached=detached, signing_time=signing_time
    )
    if detached:
        body = mime.wrap_multipart_signed(entity, der, digests.by_name(digest).micalg)
    else:
        body = mime.wrap_pkcs7_mime(der, "signed-data")
    return mime.with_outer_headers(body, outer)


def encrypt_message(
    message: bytes,
    recipients: Sequence[Certificate | tuple[Certificate, tuple[Capability, ...] | None]],
    *,
    sender: Certificate | None,
    cipher: str | None = None,
    use_ski: bool = False,
) -> bytes:
    """Encrypt a whole message to the recipients and the sender (so the Sent copy stays
    readable). Without a cipher, the strongest that every recipient advertises is chosen, and
    what every client reads when someone advertises nothing."""
    outer, entity = mime.split_headers(message)
    # Transfer-encode 8-bit and binary parts first: canonicalizing raw binary would turn LF
    # into CRLF inside attachments.
    entity = mime.prepare_for_signing(entity)
    with_caps = [r if isinstance(r, tuple) else (r, None) for r in recipients]
    if cipher is None and sender is not None:
        der = choice.encrypt_for(entity, sender, with_caps, use_ski=use_ski)
    else:
        everyone = [c for c, _ in with_caps] + ([sender] if sender is not None else [])
        unique = list({(c.issuer.dump(), c.serial_number): c for c in everyone}.values())
        picked = cipher or choice.choose([(c, None) for c in unique]).cipher
        der = enveloped.encrypt(entity, unique, cipher=picked, use_ski=use_ski)
    kind = enveloped.inspect(der)
    smime_type = "authEnveloped-data" if kind.cipher in GCM_CIPHERS else "enveloped-data"
    return mime.with_outer_headers(mime.wrap_pkcs7_mime(der, smime_type), outer)


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
    """The innermost entity with the original outer headers, and every layer found on the way,
    outermost first."""

    message: bytes
    layers: tuple[OpenedLayer, ...] = field(default_factory=tuple)

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


def from_address(outer_headers: bytes) -> str | None:
    """The first address of the From field, or None."""
    text = outer_headers.decode("utf-8", "replace").replace("\r\n", "\n")
    values = []
    lines = text.split("\n")
    for index, line in enumerate(lines):
        if line.lower().startswith("from:"):
            value = line[5:]
            for continuation in lines[index + 1 :]:
                if not continuation[:1].isspace():
                    break
                value += continuation
            values.append(value)
    addresses = [address for _, address in getaddresses(values) if "@" in address]
    return addresses[0] if addresses else None


def open_message(
    message: bytes,
    *,
    keys: Sequence[tuple[Certificate, PrivateKey]] = (),
    trust_anchors: Sequence[Certificate] = (),
    intermediates: Sequence[Certificate] = (),
    at: datetime.datetime | None = None,
) -> OpenedMessage:
    """Decrypt and verify every S/MIME layer of a message, outermost first. A layer that cannot
    be opened raises its typed error (NoMatchingKey, DecryptionFailed, MalformedInput...);
    signatures never raise for being invalid: their results say what holds."""
    outer, _ = mime.split_headers(message)
    sender = from_address(outer)
    layers: list[OpenedLayer] = []
    current = message
    while True:
        if len(layers) >= MAX_LAYERS:
            raise MalformedInput(f"More than {MAX_LAYERS} S/MIME layers: refusing to go deeper.")
        layer = mime.unwrap(current)
        if layer.kind in ("enveloped", "auth_enveloped"):
            assert layer.der is not None
            info = enveloped.inspect(layer.der)
            current = enveloped.decrypt(layer.der, keys)
            layers.append(OpenedLayer("encrypted", layer.kind, cipher=info.cipher))
        elif layer.kind == "signed_opaque":
            assert layer.der is not None
            result = verify(
                layer.der,
                trust_anchors=list(trust_anchors),
                intermediates=intermediates,
                from_address=sender,
                at=at,
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
            )
            current = layer.content
            layers.append(OpenedLayer("signed", "multipart", verification=result))
        else:
            _, entity = mime.split_headers(current)
            return OpenedMessage(mime.with_outer_headers(entity, outer), tuple(layers))
