"""CMS SignedData (RFC 5652, RFC 8551): making signatures, and the two edits a signature may
receive afterwards (an unsigned attribute, such as an RFC 3161 token) with what it hashes.

Content is bytes the caller has already canonicalised (the MIME layer turns text into CRLF);
this module never touches line endings. Verification lives in verify.py.
"""

from __future__ import annotations

import datetime
import functools
from collections.abc import Sequence

from asn1crypto import cms, core, tsp
from asn1crypto import x509 as asn1_x509

from shared_pki import der
from shared_pki import oids as _oids  # registrations asn1crypto lacks, content-type conventions
from shared_pki.cms import capabilities as caps
from shared_pki.cms import digests, signatures
from shared_pki.errors import MalformedInput, SigningError
from shared_pki.keys import Certificate, Credential

OID_DATA = "1.2.840.113549.1.7.1"
OID_SIGNED_DATA = "1.2.840.113549.1.7.2"
_PARSE_ERRORS = (ValueError, TypeError, KeyError, IndexError, AttributeError, OverflowError)


def sign(
    content: bytes,
    signer: Credential | Sequence[Credential],
    *,
    digest: str = "sha256",
    pss: bool = False,
    detached: bool = True,
    signing_time: datetime.datetime | None = None,
    extra_certs: Sequence[Certificate] = (),
    capabilities: tuple[caps.Capability, ...] | None = None,
    use_ski: bool = False,
    content_type: str | None = None,
    sm2_id: bytes | None = None,
    convention: str = "pkcs7",
    include_certificates: bool = True,
) -> bytes:
    """DER ContentInfo(SignedData) over content, by one signer or several (in the order given).

    pss selects RSASSA-PSS for RSA keys; use_ski identifies signers by subjectKeyIdentifier
    (SignerInfo v3) instead of issuer-and-serial. capabilities=() leaves SMIMECapabilities out.
    sm2_id is the signer ID SM2 signers hash in (None: the standard 1234567812345678; b"" is
    what OpenSSL 3 verifies). convention "gmt" writes the GM/T 0010 content types (GmSSL's)
    instead of PKCS#7's; content_type None means the convention's data type (another type,
    such as RFC 3161's TSTInfo, is embedded as the octets given). include_certificates=False
    leaves the certificate set out (a TSA answering a request without certReq).
    """
    signers = [signer] if isinstance(signer, Credential) else list(signer)
    if not signers:
        raise SigningError("No signer given.")
    algorithm = digests.by_name(digest)
    types = _oids.content_types(convention)
    content_type = content_type or types.data
    when = signing_time or datetime.datetime.now(datetime.UTC)
    infos = [
        _signer_info(
            content, one, algorithm, pss, when, capabilities, use_ski, content_type, sm2_id
        )
        for one in signers
    ]
    encodings = _unique_encodings(
        [cert for one in signers for cert in (one.certificate, *one.chain)] + list(extra_certs)
    )
    encap = [_content_type_der(content_type)]
    if not detached:  # eContent [0] EXPLICIT OCTET STRING: any content type, parsed or not
        encap += der.constructed(0xA0, der.constructed(0x04, [content]))
    v3 = use_ski or _oids.standard_content_type(content_type) != OID_DATA
    # Written piece by piece (shared_pki.der): through asn1crypto, every certificate was copied
    # into the set and re-encoded whole on each dump, most of a TSA token's cost.
    certificate_set = sorted(encodings) if include_certificates else []  # DER sorts a SET OF
    signed_data = der.constructed(
        0x30,
        [
            core.Integer(3 if v3 else 1).dump(),
            _digest_algorithms_der(algorithm.oid),
            *der.constructed(0x30, encap),
            *(der.constructed(0xA0, certificate_set) if certificate_set else []),
            *der.constructed(0x31, infos),  # kept in the order given (see _set_in_order)
        ],
    )
    return b"".join(
        der.constructed(
            0x30,
            [
                _content_type_der(types.signed_data),
                *der.constructed(0xA0, signed_data),
            ],
        )
    )


def _signer_info(
    content: bytes,
    credential: Credential,
    algorithm: digests.DigestAlgorithm,
    pss: bool,
    when: datetime.datetime,
    capabilities: tuple[caps.Capability, ...] | None,
    use_ski: bool,
    content_type: str,
    sm2_id: bytes | None,
) -> bytes:
    """The DER of one SignerInfo. Written piece by piece like the SignedData around it: the
    asn1crypto tree (attributes, the issuer's Name copied into the sid) cost 3 ms per TSA
    token; every value is still asn1crypto's DER."""
    cert = credential.certificate
    scheme = signatures.for_signing(credential.key, "rsassa_pss" if pss else None)
    attributes = [
        _attribute_der("content_type", _content_type_der(content_type)),
        _attribute_der("signing_time", _time(when).dump()),
        _attribute_der("message_digest", core.OctetString(algorithm.compute(content)).dump()),
        # From cached DER: building it each time dominated a TSA token's cost.
        _attribute_der("signing_certificate_v2", _ess_der(der.encoded(cert))),
    ]
    if capabilities != ():
        attributes.append(_attribute_der("smime_capabilities", _capabilities_der(capabilities)))
    attributes.sort()  # a SET OF, sorted by encoding as DER requires
    to_sign = b"".join(der.constructed(0x31, attributes))  # signed as a SET OF, not as [0]
    identifier, identifier_der = _signature_identifier(scheme, algorithm)
    try:
        signature = signatures.sign_with(scheme, credential.key, to_sign, algorithm, sm2_id)
    except (ValueError, TypeError) as error:
        raise SigningError(f"The key cannot make this signature: {error}") from None
    # A key that does not belong to the certificate would make a signature nobody can verify.
    if not signatures.verify_with(
        identifier["algorithm"].dotted,
        identifier["parameters"],
        cert.public_key,
        signature,
        to_sign,
        algorithm,
        None if sm2_id is None else (sm2_id,),
    ):
        raise SigningError("The private key does not match the signer's certificate.")
    return b"".join(
        der.constructed(
            0x30,
            [
                core.Integer(3 if use_ski else 1).dump(),
                _sid_der(cert, use_ski),
                _digest_algorithm_der(algorithm.oid),
                *der.constructed(0xA0, attributes),  # signedAttrs [0] IMPLICIT
                identifier_der,
                core.OctetString(signature).dump(),
            ],
        )
    )


# The same few algorithm identifiers and content types go into every signature: made once.
@functools.lru_cache(maxsize=32)
def _content_type_der(content_type: str) -> bytes:
    return cms.ContentType(content_type).dump()


@functools.lru_cache(maxsize=32)
def _digest_algorithms_der(oid: str) -> bytes:
    return cms.DigestAlgorithms([{"algorithm": oid}]).dump()


@functools.lru_cache(maxsize=32)
def _digest_algorithm_der(oid: str) -> bytes:
    return cms.DigestAlgorithm({"algorithm": oid}).dump()


_IDENTIFIERS: dict[tuple[str, str], tuple[core.Asn1Value, bytes]] = {}


def _signature_identifier(
    scheme: signatures.SignatureScheme, algorithm: digests.DigestAlgorithm
) -> tuple[core.Asn1Value, bytes]:
    """The scheme's AlgorithmIdentifier for this digest and its DER, made once per pair."""
    key = (scheme.name, algorithm.name)
    if key not in _IDENTIFIERS:
        identifier = scheme.algorithm_identifier(algorithm)
        _IDENTIFIERS[key] = (identifier, identifier.dump())
    return _IDENTIFIERS[key]


@functools.lru_cache(maxsize=32)
def _attribute_type_der(name: str) -> bytes:
    return cms.CMSAttributeType(name).dump()


def _attribute_der(name: str, value_der: bytes) -> bytes:
    """Attribute ::= SEQUENCE { attrType, attrValues SET OF } with one value."""
    return b"".join(
        der.constructed(0x30, [_attribute_type_der(name), *der.constructed(0x31, [value_der])])
    )


@functools.lru_cache(maxsize=32)
def _capabilities_der(capabilities: tuple[caps.Capability, ...] | None) -> bytes:
    return (caps.encode(capabilities) if capabilities else caps.encode()).dump()


def _sid_der(cert: Certificate, use_ski: bool) -> bytes:
    """SignerIdentifier: issuerAndSerialNumber (the issuer's Name as the certificate has it),
    or subjectKeyIdentifier [0] IMPLICIT."""
    if use_ski:
        if cert.key_identifier is None:
            raise SigningError("The signer's certificate has no subjectKeyIdentifier.")
        return der.header(0x80, len(cert.key_identifier)) + cert.key_identifier
    return b"".join(
        der.constructed(0x30, [der.encoded(cert.issuer), core.Integer(cert.serial_number).dump()])
    )


def _time(when: datetime.datetime) -> cms.Time:
    """UTCTime for 1950-2049, GeneralizedTime otherwise (RFC 5652 section 11.3)."""
    if when.tzinfo is None:
        raise SigningError("signing_time must be timezone-aware.")
    when = when.astimezone(datetime.UTC).replace(microsecond=0)
    kind = "utc_time" if 1950 <= when.year <= 2049 else "generalized_time"
    return cms.Time({kind: when})


@functools.lru_cache(maxsize=64)
def _ess_der(certificate_der: bytes) -> bytes:
    """The DER of a certificate's signingCertificateV2 value, made once per certificate."""
    return _ess_cert_id_v2(Certificate.load(certificate_der)).dump()


def _ess_cert_id_v2(cert: Certificate) -> tsp.SigningCertificateV2:
    """RFC 5035 ESSCertIDv2: SHA-256 (the default, so omitted) of the cert, and issuerSerial."""
    return tsp.SigningCertificateV2(
        {
            "certs": [
                {
                    "cert_hash": digests.SHA256.compute(cert.dump()),
                    "issuer_serial": {
                        "issuer": [asn1_x509.GeneralName({"directory_name": cert.issuer})],
                        "serial_number": cert.serial_number,
                    },
                }
            ]
        }
    )


def _unique_encodings(certs: list[Certificate]) -> list[bytes]:
    """The DER of each distinct certificate, in the order given."""
    return list(dict.fromkeys(der.encoded(cert) for cert in certs))


def _set_in_order(cls: type[core.SetOf], items: Sequence[core.Asn1Value]) -> core.SetOf:
    """A SET OF kept in the given order, so that signer indexes stay stable across edits
    (asn1crypto would sort it; verifiers accept any order)."""
    body = b"".join(item.dump() for item in items)
    return cls.load(b"\x31" + _der_length(len(body)) + body)


def _der_length(length: int) -> bytes:
    if length < 0x80:
        return bytes([length])
    octets = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(octets)]) + octets


# ---- parsing and post-signing edits ---------------------------------------------------------


def load_signed_data(der: bytes) -> cms.SignedData:
    """ContentInfo(SignedData) fully parsed; anything else is MalformedInput."""
    if not isinstance(der, bytes | bytearray | memoryview):
        raise MalformedInput("SignedData must be bytes.")
    try:
        info = cms.ContentInfo.load(bytes(der), strict=True)
        if _oids.standard_content_type(info["content_type"].dotted) != OID_SIGNED_DATA:
            raise MalformedInput(f"Not CMS SignedData but {info['content_type'].dotted}.")
        signed_data = info["content"]
        _touch(signed_data)
    except MalformedInput:
        raise
    except _PARSE_ERRORS as error:
        raise MalformedInput(f"SignedData does not parse: {error}") from None
    version = signed_data["version"].native
    if version not in ("v1", "v3", "v4", "v5"):
        raise MalformedInput(f"SignedData version {version} is not one RFC 5652 defines.")
    if len(signed_data["signer_infos"]) == 0:
        raise MalformedInput("SignedData without any SignerInfo.")
    for info in signed_data["signer_infos"]:
        sid_kind = info["sid"].name
        expected = "v1" if sid_kind == "issuer_and_serial_number" else "v3"
        if info["version"].native != expected:
            raise MalformedInput(
                f"SignerInfo version {info['version'].native} does not fit a {sid_kind} sid."
            )
    return signed_data


def _touch(signed_data: cms.SignedData) -> None:
    """Parse every field verification reads, so bad bytes fail here and not later.

    Not `.native` on the whole: attribute values of type ANY (SMIMECapabilities parameters)
    would be parsed as generic SEQUENCEs and fail on valid input.
    """
    for name in ("version", "digest_algorithms", "encap_content_info"):
        signed_data[name].native  # noqa: B018
    for choice in signed_data["certificates"] or ():
        if choice.name == "certificate":
            _check_certificate(der.encoded(choice.chosen))
    for info in signed_data["signer_infos"]:
        for name in ("version", "sid", "digest_algorithm", "signature_algorithm", "signature"):
            info[name].native  # noqa: B018
        for name in ("signed_attrs", "unsigned_attrs"):
            for attribute in info[name] or ():
                attribute["type"].native  # noqa: B018
                len(attribute["values"])


@functools.lru_cache(maxsize=256)
def _check_certificate(encoding: bytes) -> None:
    """Parse every field of a certificate (`.native`), once per distinct certificate: the same
    signers' and TSAs' certificates come with every message, and parsing them in full (names
    through stringprep, URIs, extensions) was a third of the host's CPU per message.open
    (py-spy). A certificate that fails raises each time (exceptions are not cached)."""
    asn1_x509.Certificate.load(encoding).native  # noqa: B018


def signer_info(signed_data_der: bytes, signer_index: int) -> cms.SignerInfo:
    """One SignerInfo by its position in the message."""
    infos = load_signed_data(signed_data_der)["signer_infos"]
    if not 0 <= signer_index < len(infos):
        raise IndexError(f"No signer {signer_index}; the message has {len(infos)}.")
    return infos[signer_index]


def signature_value(signed_data_der: bytes, signer_index: int = 0) -> bytes:
    """The signature octets of one signer: what an RFC 3161 messageImprint hashes."""
    return signer_info(signed_data_der, signer_index)["signature"].native


def add_unsigned_attribute(
    signed_data_der: bytes, signer_index: int, attr_type: str, value_der: bytes
) -> bytes:
    """The same SignedData with one more unsigned attribute value on one signer.

    attr_type is a dotted OID or an asn1crypto name ('signature_time_stamp_token'); a value of
    a type already present joins that attribute's values. Everything signed stays byte for
    byte as it was, and signer positions do not move.
    """
    signed_data = load_signed_data(signed_data_der)
    infos = list(signed_data["signer_infos"])
    if not 0 <= signer_index < len(infos):
        raise IndexError(f"No signer {signer_index}; the message has {len(infos)}.")
    try:
        type_id = cms.CMSAttributeType(attr_type)
        name = type_id.native
        spec = cms.CMSAttribute._oid_specs.get(name, cms.SetOfAny)
        # strict: one whole TLV of the attribute's type. Deeper checks are the reader's job
        # (`.native` would misparse ANY-typed fields such as SMIMECapabilities parameters).
        value = spec._child_spec.load(value_der, strict=True)
    except _PARSE_ERRORS as error:
        raise MalformedInput(f"Unsigned attribute {attr_type} does not parse: {error}") from None
    info = infos[signer_index]
    present = not isinstance(info["unsigned_attrs"], core.Void)
    existing = list(info["unsigned_attrs"]) if present else []
    attributes = []
    added = False
    for attribute in existing:
        if attribute["type"].dotted == type_id.dotted and not added:
            values = [*attribute["values"], value]
            attributes.append(cms.CMSAttribute({"type": type_id.dotted, "values": values}))
            added = True
        else:
            attributes.append(attribute)
    if not added:
        attributes.append(cms.CMSAttribute({"type": type_id.dotted, "values": [value]}))
    info["unsigned_attrs"] = cms.CMSAttributes(attributes)
    infos[signer_index] = info
    signed_data["signer_infos"] = _set_in_order(cms.SignerInfos, infos)
    outer_type = cms.ContentInfo.load(bytes(signed_data_der))["content_type"].dotted  # kept
    return cms.ContentInfo({"content_type": outer_type, "content": signed_data}).dump()
