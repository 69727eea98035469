"""Algorithm choice per message (RFC 8551 section 2.7): the strongest content cipher every
recipient advertises, and per recipient the strongest key transport it advertises for its key,
falling back to what every client reads when a recipient advertises nothing: AES-256-CBC, RSA
PKCS#1 v1.5 for RSA keys, ECDH stdDH-sha256kdf for EC keys.

Capabilities come from the caller (the SMIMECapabilities of the correspondent's last signed
message: the freshest and most precise) or else from the smimeCapabilities extension of the
certificate. The sender is always a recipient, or they cannot read their own sent mail:
`encrypt_for` adds them.

Only algorithms of one suite (suite.py: "intl" by default, or "sm") are considered, so a
correspondent advertising SM4 never gets it in an international message, nor AES in an SM one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from shared_pki.cms import capabilities, ciphers, enveloped
from shared_pki.cms import recipients as _recipients
from shared_pki.cms import suite as _suite
from shared_pki.cms.capabilities import Capability
from shared_pki.errors import EncryptionError, MalformedInput
from shared_pki.keys import Certificate

FALLBACK_CIPHER = "aes256_cbc"
OID_SMIME_CAPABILITIES_EXTENSION = "1.2.840.113549.1.9.15"

RecipientWithCaps = tuple[Certificate, tuple[Capability, ...] | None]


@dataclass(frozen=True)
class Choice:
    """The content cipher and, in recipient order, the key transport for each recipient."""

    cipher: str
    key_transports: tuple[str, ...]


def certificate_capabilities(certificate: Certificate) -> tuple[Capability, ...] | None:
    """The smimeCapabilities extension (RFC 4262) of certificate; None if absent or unreadable
    (a broken extension must not stop mail from being encrypted with the fallback)."""
    try:
        extensions = certificate["tbs_certificate"]["extensions"]
        for extension in extensions:
            if extension["extn_id"].dotted == OID_SMIME_CAPABILITIES_EXTENSION:
                return capabilities.parse(extension["extn_value"].contents)
    except (MalformedInput, ValueError, TypeError, KeyError):
        return None
    return None


def choose(
    recipients: Sequence[RecipientWithCaps], *, suite: str | _suite.Suite = _suite.INTL
) -> Choice:
    """The algorithms of `suite` for one message to these recipients (certificate,
    advertised or None)."""
    if not recipients:
        raise EncryptionError("A message needs at least one recipient.")
    chosen = _suite.by_name(suite)
    advertised = [
        caps if caps is not None else certificate_capabilities(certificate)
        for certificate, caps in recipients
    ]
    return Choice(
        _cipher(advertised, chosen),
        tuple(
            _transport(certificate, caps, chosen).name
            for (certificate, _), caps in zip(recipients, advertised, strict=True)
        ),
    )


def _cipher(advertised: list[tuple[Capability, ...] | None], suite: _suite.Suite) -> str:
    """Strongest cipher of the suite in everyone's list; the fallback if anyone lists none."""
    for cipher in ciphers.registered():
        if cipher.suite != suite.name:
            continue
        if all(caps and any(c.oid == cipher.oid for c in caps) for caps in advertised):
            return cipher.name
    return suite.fallback_cipher


def _transport(
    certificate: Certificate, caps: tuple[Capability, ...] | None, suite: _suite.Suite
) -> _recipients.KeyTransport:
    """Strongest transport of the suite this recipient advertises for its key; else the
    suite's default for the key."""
    for transport in _recipients.registered():
        if transport.suite != suite.name or not transport.fits_certificate(certificate):
            continue
        for capability in caps or ():
            if capability.oid == transport.oid and transport.accepts_capability(
                capability.parameters
            ):
                return transport
    return _recipients.default_for(certificate, suite.name)


def encrypt_for(
    content: bytes,
    sender: Certificate,
    recipients: Sequence[RecipientWithCaps],
    *,
    sender_capabilities: tuple[Capability, ...] | None = None,
    use_ski: bool = False,
    suite: str | _suite.Suite = _suite.INTL,
    convention: str = "pkcs7",
) -> bytes:
    """Encrypt content to the recipients and to the sender (who reads everything we
    advertise in the suite), with the choice above; a certificate listed twice gets one
    RecipientInfo. convention "gmt" writes GM/T 0010 content types (see enveloped.encrypt)."""
    chosen = _suite.by_name(suite)
    if sender_capabilities is None:
        sender_capabilities = chosen.advertised
    everyone: list[RecipientWithCaps] = []
    seen: set[tuple[bytes, int]] = set()
    for certificate, caps in [(sender, sender_capabilities), *recipients]:
        identity = (certificate.issuer.dump(), certificate.serial_number)
        if identity not in seen:
            seen.add(identity)
            everyone.append((certificate, caps))
    choice = choose(everyone, suite=chosen)
    return enveloped.encrypt(
        content,
        [certificate for certificate, _ in everyone],
        cipher=choice.cipher,
        key_transport=choice.key_transports,
        use_ski=use_ski,
        convention=convention,
    )
