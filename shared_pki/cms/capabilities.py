"""SMIMECapabilities (RFC 8551 section 2.5.2): what we advertise in every signature, and reading
what a correspondent advertises, in preference order. Choosing per message is choice.py's job."""

from __future__ import annotations

from dataclasses import dataclass

from asn1crypto import algos, cms, core

from shared_pki import oids as _oids  # noqa: F401
from shared_pki.errors import MalformedInput

OID_AES256_GCM = "2.16.840.1.101.3.4.1.46"
OID_AES128_GCM = "2.16.840.1.101.3.4.1.6"
OID_AES256_CBC = "2.16.840.1.101.3.4.1.42"
OID_AES128_CBC = "2.16.840.1.101.3.4.1.2"
OID_RSAES_OAEP = "1.2.840.113549.1.1.7"
OID_RSAES_PKCS1V15 = "1.2.840.113549.1.1.1"
OID_ECDH_STD_SHA256KDF = "1.3.132.1.11.1"
OID_ECDH_STD_SHA384KDF = "1.3.132.1.11.2"
OID_AES256_WRAP = "2.16.840.1.101.3.4.1.45"


@dataclass(frozen=True)
class Capability:
    """One advertised algorithm: its OID (dotted) and its parameters (DER), if any."""

    oid: str
    parameters: bytes | None = None


def _oaep_sha256_params() -> bytes:
    return algos.RSAESOAEPParams(
        {
            "hash_algorithm": {"algorithm": "sha256"},
            "mask_gen_algorithm": {"algorithm": "mgf1", "parameters": {"algorithm": "sha256"}},
        }
    ).dump()


def _wrap_params() -> bytes:
    """ECDH capabilities carry the key-wrap algorithm they are used with (RFC 5753)."""
    return cms.KeyEncryptionAlgorithm({"algorithm": "aes256_wrap"}).dump()


# Strongest first (RFC 8551 section 2.7: AES-GCM MUST/SHOULD+, OAEP SHOULD+, CBC SHOULD-).
ADVERTISED: tuple[Capability, ...] = (
    Capability(OID_AES256_GCM),
    Capability(OID_AES128_GCM),
    Capability(OID_AES256_CBC),
    Capability(OID_AES128_CBC),
    Capability(OID_RSAES_OAEP, _oaep_sha256_params()),
    Capability(OID_ECDH_STD_SHA256KDF, _wrap_params()),
    Capability(OID_ECDH_STD_SHA384KDF, _wrap_params()),
    Capability(OID_RSAES_PKCS1V15),
)

#: What a CA promises in a certificate's smimeCapabilities extension (RFC 4262) for its holder,
#: whatever mail program they read with (a key exported to Thunderbird, Outlook...): only what
#: every client reads. Thunderbird 115 and other NSS before 3.100 read neither AES-GCM
#: (AuthEnvelopedData) nor RSAES-OAEP and refuse the whole message. A signed message's own
#: SMIMECapabilities attribute (ADVERTISED) speaks for the program that sent it.
CERTIFICATE_ADVERTISED: tuple[Capability, ...] = (
    Capability(OID_AES256_CBC),
    Capability(OID_AES128_CBC),
    Capability(OID_RSAES_PKCS1V15),
)


def encode(capabilities: tuple[Capability, ...] = ADVERTISED) -> cms.SMIMECapabilites:
    """The attribute value (a SEQUENCE OF SMIMECapability) for a SignerInfo."""
    items = []
    for capability in capabilities:
        item = {"capability_id": capability.oid}
        if capability.parameters is not None:
            item["parameters"] = core.Any.load(capability.parameters)
        items.append(item)
    return cms.SMIMECapabilites(items)


def parse(value: cms.SMIMECapabilites | bytes) -> tuple[Capability, ...]:
    """Capabilities in the correspondent's order of preference; bad bytes are MalformedInput."""
    try:
        if isinstance(value, bytes):
            value = cms.SMIMECapabilites.load(value, strict=True)
        result = []
        for item in value:
            parameters = item["parameters"]
            result.append(
                Capability(
                    item["capability_id"].dotted,
                    None if isinstance(parameters, core.Void) else parameters.dump(),
                )
            )
        return tuple(result)
    except (ValueError, TypeError, KeyError) as error:
        raise MalformedInput(f"SMIMECapabilities do not parse: {error}") from None
