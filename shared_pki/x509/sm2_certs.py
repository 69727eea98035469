"""X.509 certificates and PKCS#10 requests signed with SM2-with-SM3 (1.2.156.10197.1.501).

`cryptography` cannot sign or verify with SM2, so these are built from asn1crypto structures and
signed with shared_pki.sm2. The signature covers SM3(Z_A || DER(tbs)) and Z_A depends on the
signer ID: GM/T 0009 says `1234567812345678` (our default, and what `openssl verify -vfyopt
distid:1234567812345678` checks), while OpenSSL 3.0 signs certificates and requests with an
empty ID unless told `-sigopt distid:...`. Verifiers take the ID as a parameter.

OpenSSL 3.0 trap (checked with 3.0.19): `openssl verify -vfyopt distid:...` applies the ID to the
leaf only; intermediate CA certificates (and root self-signatures under -check_ss_sig) are
verified with the empty ID. So OpenSSL accepts root -> leaf with the standard ID everywhere, and
root -> intermediate -> leaf only when the intermediate was signed with signer_id=b"".
"""

from __future__ import annotations

import datetime
import hashlib
import secrets
from collections.abc import Iterable, Mapping, Sequence

from asn1crypto import csr as asn1_csr
from asn1crypto import pem
from asn1crypto import x509 as asn1_x509

from shared_pki import sm2, sm_oids
from shared_pki.errors import MalformedInput, SigningError, UnsupportedAlgorithm

Certificate = asn1_x509.Certificate
CertificationRequest = asn1_csr.CertificationRequest
NameInput = asn1_x509.Name | Mapping[str, str]

END_ENTITY_KEY_USAGE = frozenset({"digital_signature", "key_encipherment"})
CA_KEY_USAGE = frozenset({"key_cert_sign", "crl_sign"})


def _algorithm() -> dict[str, str]:
    # OpenSSL writes the SM2-with-SM3 AlgorithmIdentifier without parameters; so do we.
    return {"algorithm": sm_oids.SM2_WITH_SM3}


def _name(value: NameInput) -> asn1_x509.Name:
    if isinstance(value, asn1_x509.Name):
        return value
    return asn1_x509.Name.build(dict(value))


def _time(value: datetime.datetime) -> asn1_x509.Time:
    """UTCTime until 2049, GeneralizedTime after (RFC 5280 section 4.1.2.5)."""
    value = value.astimezone(datetime.UTC).replace(microsecond=0)
    if value.year < 2050:
        return asn1_x509.Time(name="utc_time", value=value)
    return asn1_x509.Time(name="general_time", value=value)


def _key_identifier(public_key: sm2.SM2PublicKey) -> bytes:
    """RFC 5280 section 4.2.1.2 method 1: SHA-1 of the subjectPublicKey bits."""
    return hashlib.sha1(public_key.point(), usedforsecurity=False).digest()


def _extension(name: str, value: object, critical: bool = False) -> dict[str, object]:
    return {"extn_id": name, "critical": critical, "extn_value": value}


def _load(data: bytes | object, cls: type, labels: tuple[str, ...]) -> object:
    """An asn1crypto object as given, or parsed from PEM/DER bytes, fully parsed now."""
    if isinstance(data, cls):
        return data
    if not isinstance(data, bytes | bytearray):
        raise MalformedInput(f"Expected bytes or {cls.__name__}")
    data = bytes(data)
    try:
        if pem.detect(data):
            label, _headers, data = pem.unarmor(data)
            if label not in labels:
                raise MalformedInput(f"PEM block {label!r} where {labels[0]} was expected")
        parsed = cls.load(data, strict=True)  # type: ignore[attr-defined]
        parsed.native  # noqa: B018  force a full parse
    except (ValueError, TypeError, KeyError) as error:
        raise MalformedInput(f"Not a valid {cls.__name__}: {error}") from None
    return parsed


def load_certificate(data: bytes | Certificate) -> Certificate:
    return _load(data, Certificate, ("CERTIFICATE", "X509 CERTIFICATE"))  # type: ignore[return-value]


def load_csr(data: bytes | CertificationRequest) -> CertificationRequest:
    return _load(  # type: ignore[return-value]
        data, CertificationRequest, ("CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST")
    )


def certificate_public_key(cert: bytes | Certificate) -> sm2.SM2PublicKey:
    """The SM2 key of a certificate; UnsupportedAlgorithm for any other key type."""
    return sm2.SM2PublicKey.from_spki(
        load_certificate(cert)["tbs_certificate"]["subject_public_key_info"]
    )


def is_sm2_certificate(cert: bytes | Certificate) -> bool:
    """True when the certificate holds an SM2 key (whatever signed it)."""
    try:
        certificate_public_key(cert)
    except UnsupportedAlgorithm:
        return False
    return True


def _sign(key: sm2.SM2PrivateKey, tbs_der: bytes, signer_id: bytes) -> bytes:
    return key.sign(tbs_der, signer_id=signer_id)


def _verify(
    public_key: sm2.SM2PublicKey,
    algorithm: object,
    tbs_der: bytes,
    signature: object,
    signer_id: bytes,
) -> bool:
    oid = algorithm["algorithm"].dotted  # type: ignore[index]
    if oid != sm_oids.SM2_WITH_SM3:
        raise UnsupportedAlgorithm(f"Not signed with SM2-with-SM3 ({oid})")
    if algorithm["parameters"].native is not None:  # type: ignore[index]
        return False
    return public_key.verify(signature.native, tbs_der, signer_id=signer_id)  # type: ignore[attr-defined]


def _san_and_usage(
    emails: Sequence[str],
    key_usage: Iterable[str] | None,
    extended_key_usage: Iterable[str] | None,
    default_usage: frozenset[str],
) -> list[dict[str, object]]:
    extensions = []
    if key_usage is None:
        key_usage = default_usage
    if key_usage:
        extensions.append(_extension("key_usage", set(key_usage), critical=True))
    if extended_key_usage:
        extensions.append(_extension("extended_key_usage", list(extended_key_usage)))
    if emails:
        names = [asn1_x509.GeneralName(name="rfc822_name", value=e) for e in emails]
        extensions.append(_extension("subject_alt_name", names))
    return extensions


def build_csr(
    key: sm2.SM2PrivateKey,
    subject: NameInput | None = None,
    *,
    emails: Sequence[str] = (),
    key_usage: Iterable[str] | None = None,
    extended_key_usage: Iterable[str] | None = ("email_protection",),
    signer_id: bytes = sm2.DEFAULT_ID,
) -> bytes:
    """DER PKCS#10 request for key, self-signed with SM2-with-SM3 under signer_id. The subject
    defaults to the first email as commonName; SAN rfc822Names and keyUsage go into an
    extensionRequest (as RFC 8823 asks for S/MIME enrolment)."""
    if subject is None:
        subject = {"common_name": emails[0]} if emails else {}
    extensions = _san_and_usage(emails, key_usage, extended_key_usage, END_ENTITY_KEY_USAGE)
    attributes = []
    if extensions:
        attributes.append({"type": "extension_request", "values": [extensions]})
    info = asn1_csr.CertificationRequestInfo(
        {
            "version": "v1",
            "subject": _name(subject),
            "subject_pk_info": key.public_key.to_spki(),
            "attributes": attributes,
        }
    )
    tbs = info.dump()
    request = CertificationRequest(
        {
            "certification_request_info": info,
            "signature_algorithm": _algorithm(),
            "signature": _sign(key, tbs, signer_id),
        }
    )
    return request.dump()


def csr_public_key(csr: bytes | CertificationRequest) -> sm2.SM2PublicKey:
    request = load_csr(csr)
    return sm2.SM2PublicKey.from_spki(request["certification_request_info"]["subject_pk_info"])


def verify_csr(csr: bytes | CertificationRequest, *, signer_id: bytes = sm2.DEFAULT_ID) -> bool:
    """True when the request's SM2-with-SM3 self-signature verifies under signer_id.
    MalformedInput for bytes that are not a request, UnsupportedAlgorithm for non-SM2 ones."""
    request = load_csr(csr)
    info = request["certification_request_info"]
    public_key = sm2.SM2PublicKey.from_spki(info["subject_pk_info"])
    return _verify(
        public_key, request["signature_algorithm"], info.dump(), request["signature"], signer_id
    )


def issue_certificate(
    subject_public_key: sm2.SM2PublicKey,
    subject: NameInput,
    issuer_key: sm2.SM2PrivateKey,
    issuer_cert: bytes | Certificate | None = None,
    *,
    emails: Sequence[str] = (),
    serial_number: int | None = None,
    not_before: datetime.datetime | None = None,
    not_after: datetime.datetime | None = None,
    is_ca: bool = False,
    path_length: int | None = None,
    key_usage: Iterable[str] | None = None,
    extended_key_usage: Iterable[str] | None = None,
    signer_id: bytes = sm2.DEFAULT_ID,
) -> bytes:
    """DER X.509 v3 certificate signed with SM2-with-SM3 by issuer_key under signer_id.

    Without issuer_cert the certificate is self-signed (issuer_key must be the subject's key).
    keyUsage defaults to keyCertSign+cRLSign for a CA and digitalSignature+keyEncipherment
    otherwise; extendedKeyUsage to emailProtection for end entities.
    """
    subject_name = _name(subject)
    if issuer_cert is None:
        if issuer_key.public_key != subject_public_key:
            raise SigningError("A self-signed certificate needs the subject's own key")
        issuer_name = subject_name
        authority_key_id = _key_identifier(subject_public_key)
    else:
        issuer = load_certificate(issuer_cert)
        if certificate_public_key(issuer) != issuer_key.public_key:
            raise SigningError("The issuer key does not match the issuer certificate")
        issuer_name = issuer.subject
        authority_key_id = issuer.key_identifier or _key_identifier(issuer_key.public_key)
    now = datetime.datetime.now(datetime.UTC)
    not_before = not_before or now - datetime.timedelta(minutes=5)
    not_after = not_after or not_before + datetime.timedelta(days=365)
    if extended_key_usage is None and not is_ca:
        extended_key_usage = ("email_protection",)
    basic = {"ca": is_ca}
    if is_ca and path_length is not None:
        basic["path_len_constraint"] = path_length
    extensions = [
        _extension("basic_constraints", basic, critical=True),
        _extension("key_identifier", _key_identifier(subject_public_key)),
        _extension("authority_key_identifier", {"key_identifier": authority_key_id}),
        *_san_and_usage(
            emails, key_usage, extended_key_usage, CA_KEY_USAGE if is_ca else END_ENTITY_KEY_USAGE
        ),
    ]
    tbs = asn1_x509.TbsCertificate(
        {
            "version": "v3",
            # Positive, at most 20 octets, at least 64 random bits (CA/B Forum S/MIME BR 7.1).
            "serial_number": serial_number or secrets.randbits(159) | (1 << 158),
            "signature": _algorithm(),
            "issuer": issuer_name,
            "validity": {"not_before": _time(not_before), "not_after": _time(not_after)},
            "subject": subject_name,
            "subject_public_key_info": subject_public_key.to_spki(),
            "extensions": extensions,
        }
    )
    signature = _sign(issuer_key, tbs.dump(), signer_id)
    return Certificate(
        {"tbs_certificate": tbs, "signature_algorithm": _algorithm(), "signature_value": signature}
    ).dump()


def verify_certificate_signature(
    cert: bytes | Certificate,
    issuer_cert: bytes | Certificate,
    *,
    signer_id: bytes = sm2.DEFAULT_ID,
) -> bool:
    """True when cert's SM2-with-SM3 signature verifies with issuer_cert's SM2 key under
    signer_id (pass the issuer itself for a self-signed one). Only the signature: names,
    validity and extensions are path validation's business. The outer and inner signature
    algorithms must agree (RFC 5280 section 4.1.1.2)."""
    certificate = load_certificate(cert)
    issuer_key = certificate_public_key(issuer_cert)
    tbs = certificate["tbs_certificate"]
    if tbs["signature"].dump() != certificate["signature_algorithm"].dump():
        return False
    return _verify(
        issuer_key,
        certificate["signature_algorithm"],
        tbs.dump(),
        certificate["signature_value"],
        signer_id,
    )
