"""The certificate profile: CA/B Forum S/MIME Baseline Requirements, mailbox-validated, strict
(policy 2.23.140.1.5.1.3), for RFC 8823 orders.

`check_csr` is the gate in front of issuance. It refuses, with an error carrying the ACME
problem type (RFC 8555 section 6.7):

- badCSR: bytes that are not a PKCS#10 request, a signature that does not verify (or uses a
  digest weaker than SHA-256), no subjectAltName, subject attributes other than commonName and
  emailAddress, a request for a CA certificate or for another extended key usage, a keyUsage
  that allows neither signing nor encryption; and weak or unapproved keys (`WeakKey`: RSA below
  2048 bits, other than a multiple of 8 bits, or with an even or tiny exponent; EC curves other
  than P-256/P-384/P-521). RFC 8555 gives "a short key" as its example of badCSR; badPublicKey
  is defined for the key that signs the JWS, so a CSR key never maps to it.
- rejectedIdentifier: any name other than the validated address: another rfc822Name, a second
  SAN entry, a dNSName or other SAN type, a commonName/emailAddress that differs.

Addresses compare with the local part exact and the domain case-insensitive (RFC 5321); the
certificate always carries the validated spelling.

Requested keyUsage decides the kind of certificate: signing-only (digitalSignature and/or
nonRepudiation), encryption-only (keyEncipherment, dataEncipherment or keyAgreement) or dual use
(both kinds, or no keyUsage requested: the default). What is issued follows the BR strict
profile per key type (7.1.2.3 e), not the literal request:

  key   signing                 encryption                           dual use
  RSA   digitalSignature        keyEncipherment                      both
  EC    digitalSignature        keyAgreement                         both
  SM2   digitalSignature        keyEncipherment + dataEncipherment   all three

nonRepudiation is added to a signing or dual-use certificate only when the CSR asked for it.
SM2 is outside the BRs; its encryption bits follow GM/T 0015 (and the GB/T 20518 practice of
separate signature and encryption certificates): SM2 encryption in CMS is key transport of the
content key (keyEncipherment) and GM/T profiles set dataEncipherment alongside it.

`issue` writes: subject commonName (if it fits the 64-character bound) and emailAddress, both
the address; subjectAltName rfc822Name; keyUsage (critical); basicConstraints cA=FALSE
(critical); EKU emailProtection; certificatePolicies; AIA caIssuers; CRL distribution point;
SMIMECapabilities (1.2.840.113549.1.9.15: what every mail client reads, AES-CBC and RSA PKCS#1
v1.5, never GCM or OAEP, since the holder may read with any program); SKI and AKI. Validity is at
most 825 days counted inclusively (RFC 5280: notAfter is the last second of validity), default
365. Serials come from
the caller (so it can guarantee uniqueness in its database) and must carry at least 64 bits:
`random_serial()` makes a suitable one.
"""

from __future__ import annotations

import datetime
import secrets
from dataclasses import dataclass
from typing import Any

from asn1crypto import core
from asn1crypto import csr as asn1_csr
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm as CryptoUnsupported
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from shared_pki import sm2, sm_oids
from shared_pki.ca.common import (
    DEFAULT_POLICY_OIDS,
    INTL,
    OID_SMIME_CAPABILITIES,
    SM2,
    SM2_END_ENTITY_SIGNER_ID,
    KeyCert,
    ProfileError,
    asn1_distribution_extensions,
    asn1_extension,
    crypto_certificate,
    crypto_distribution_extensions,
    resign_sm2,
    signature_hash,
    utc,
)
from shared_pki.cms import capabilities
from shared_pki.errors import PkiError
from shared_pki.x509 import sm2_certs

MAX_DAYS = 825
DEFAULT_DAYS = 365
MIN_RSA_BITS = 2048
MAX_RSA_BITS = 8192
APPROVED_CURVES = frozenset({"secp256r1", "secp384r1", "secp521r1"})
SIGNING, ENCRYPTION, DUAL = "signing", "encryption", "dual"

_OID_RSA = "1.2.840.113549.1.1.1"
_OID_EC = "1.2.840.10045.2.1"
# CSR self-signatures we accept: SHA-2 RSA PKCS#1 v1.5, RSASSA-PSS, SHA-2 ECDSA.
_INTL_CSR_SIGNATURES = frozenset(
    {
        "1.2.840.113549.1.1.11",
        "1.2.840.113549.1.1.12",
        "1.2.840.113549.1.1.13",
        "1.2.840.113549.1.1.10",
        "1.2.840.10045.4.3.2",
        "1.2.840.10045.4.3.3",
        "1.2.840.10045.4.3.4",
    }
)
_SIGN_BITS = frozenset({"digital_signature", "non_repudiation"})
_ENCRYPT_BITS = frozenset(
    {"key_encipherment", "data_encipherment", "key_agreement", "encipher_only", "decipher_only"}
)
_CA_BITS = frozenset({"key_cert_sign", "crl_sign"})
# SMIMECapabilities of SM2 certificates: SM4-CBC content, SM2 key transport.
SM2_ADVERTISED = (
    capabilities.Capability(sm_oids.SM4_CBC),
    capabilities.Capability(sm_oids.SM2_ENCRYPT),
)


# ---- errors -------------------------------------------------------------------------------------


class CsrRefused(PkiError):
    """A CSR the CA will not sign; `problem_type` is the RFC 8555 problem type name."""

    code = "csr_refused"
    problem_type = "badCSR"

    @property
    def acme_type(self) -> str:
        return f"urn:ietf:params:acme:error:{self.problem_type}"


class BadCsr(CsrRefused):
    code = "bad_csr"


class WeakKey(BadCsr):
    """An RSA key below 2048 bits, an unapproved curve, an unsupported key algorithm."""

    code = "weak_key"


class WrongFamily(BadCsr):
    """An SM2 key for the international CA, or an RSA/ECDSA key for the SM2 CA."""

    code = "wrong_key_family"


class RejectedIdentifier(CsrRefused):
    """A name in the CSR other than the validated address."""

    code = "rejected_identifier"
    problem_type = "rejectedIdentifier"


# ---- check_csr ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CsrInfo:
    """What an accepted CSR asks for. `public_key` is a cryptography public key (intl) or an
    SM2PublicKey; `spki_der` the SubjectPublicKeyInfo as the CSR carried it."""

    address: str
    family: str  # "intl" or "sm2"
    key_type: str  # "rsa", "ec" or "sm2"
    key_size: int  # RSA modulus bits, EC/SM2 field bits
    curve: str | None  # "secp256r1", ..., "sm2p256v1"; None for RSA
    usage: str  # "signing", "encryption" or "dual"
    non_repudiation: bool
    public_key: Any
    spki_der: bytes
    csr_der: bytes
    sm2_csr_id: bytes | None = None  # the SM2 ID the CSR signature verified under

    def key_usage(self) -> frozenset[str]:
        """The keyUsage bits the certificate gets (asn1crypto names)."""
        signing = {"digital_signature"} | ({"non_repudiation"} if self.non_repudiation else set())
        encryption = {
            "rsa": {"key_encipherment"},
            "ec": {"key_agreement"},
            "sm2": {"key_encipherment", "data_encipherment"},
        }[self.key_type]
        if self.usage == SIGNING:
            return frozenset(signing)
        if self.usage == ENCRYPTION:
            return frozenset(encryption)
        return frozenset(signing | encryption)


def check_csr(csr_der: bytes, expected_address: str, *, family: str | None = None) -> CsrInfo:
    """Accept a DER PKCS#10 request for expected_address under the strict mailbox profile, or
    raise a CsrRefused subclass. family ("intl"/"sm2") refuses the other family's keys early;
    `issue` checks it against the issuing CA in any case."""
    if not isinstance(csr_der, bytes | bytearray):
        raise BadCsr("The CSR must be DER bytes.")
    csr_der = bytes(csr_der)
    try:
        request = asn1_csr.CertificationRequest.load(csr_der, strict=True)
        request.native  # noqa: B018  force a full parse
        info = request["certification_request_info"]
    except (ValueError, TypeError, KeyError) as error:
        raise BadCsr(f"The CSR does not parse as PKCS#10: {error}") from None
    if info["version"].native != "v1":
        raise BadCsr("The CSR has a version other than 1 (value 0).")

    key_family, key_type, key_size, curve, public_key = _classify_key(info["subject_pk_info"])
    if family is not None and family != key_family:
        raise WrongFamily(
            f"A {key_type.upper()} key cannot be certified by the {family} CA; "
            f"send it to the {key_family} one."
        )
    sm2_id = _check_signature(request, csr_der, key_family, public_key)
    _check_subject(info["subject"], expected_address)
    extensions = _requested_extensions(info["attributes"])
    _check_san(extensions.get("subject_alt_name"), expected_address)
    _check_other_extensions(extensions)
    usage, non_repudiation = _requested_usage(extensions.get("key_usage"))
    return CsrInfo(
        address=expected_address,
        family=key_family,
        key_type=key_type,
        key_size=key_size,
        curve=curve,
        usage=usage,
        non_repudiation=non_repudiation,
        public_key=public_key,
        spki_der=info["subject_pk_info"].dump(),
        csr_der=csr_der,
        sm2_csr_id=sm2_id,
    )


def _classify_key(spki: Any) -> tuple[str, str, int, str | None, Any]:
    algorithm = spki["algorithm"]["algorithm"].dotted
    if algorithm == _OID_RSA:
        key = _crypto_public_key(spki)
        assert isinstance(key, rsa.RSAPublicKey)
        bits, exponent = key.key_size, key.public_numbers().e
        if bits < MIN_RSA_BITS:
            raise WeakKey(f"RSA keys must have at least {MIN_RSA_BITS} bits, this one has {bits}.")
        if bits > MAX_RSA_BITS or bits % 8:
            raise WeakKey(f"RSA modulus of {bits} bits: we accept multiples of 8 up to 8192.")
        if exponent < 3 or exponent % 2 == 0:
            raise WeakKey(f"RSA public exponent {exponent} is not an odd number of at least 3.")
        return INTL, "rsa", bits, None, key
    if algorithm == _OID_EC:
        parameters = spki["algorithm"]["parameters"]
        if parameters.name != "named":
            raise WeakKey("EC keys must name their curve (explicit parameters are refused).")
        curve_oid = parameters.chosen.dotted
        if curve_oid == sm_oids.SM2_CURVE:
            try:
                return SM2, "sm2", 256, sm_oids.CURVE_NAME, sm2.SM2PublicKey.from_spki(spki)
            except PkiError as error:
                raise BadCsr(f"The SM2 public key is not valid: {error.message}") from None
        name = parameters.chosen.native
        if name not in APPROVED_CURVES:
            raise WeakKey(f"EC curve {name} is not approved; use P-256, P-384 or P-521.")
        key = _crypto_public_key(spki)
        assert isinstance(key, ec.EllipticCurvePublicKey)
        return INTL, "ec", key.curve.key_size, name, key
    raise WeakKey(f"Key algorithm {algorithm} is not accepted (RSA, ECDSA or SM2 only).")


def _crypto_public_key(spki: Any) -> Any:
    try:
        return serialization.load_der_public_key(spki.dump())
    except (ValueError, CryptoUnsupported) as error:
        raise BadCsr(f"The public key in the CSR is not valid: {error}") from None


def _check_signature(request: Any, csr_der: bytes, family: str, key: Any) -> bytes | None:
    oid = request["signature_algorithm"]["algorithm"].dotted
    if family == SM2:
        if oid != sm_oids.SM2_WITH_SM3:
            raise BadCsr(f"An SM2 CSR must be signed with SM2-with-SM3, not {oid}.")
        # The standard ID, or the empty one OpenSSL 3 uses without -sigopt distid: either
        # proves possession of the key.
        for signer_id in (sm2.DEFAULT_ID, b""):
            try:
                if sm2_certs.verify_csr(request, signer_id=signer_id):
                    return signer_id
            except PkiError as error:
                raise BadCsr(f"The CSR signature cannot be checked: {error.message}") from None
        raise BadCsr("The CSR signature does not verify.")
    if oid not in _INTL_CSR_SIGNATURES:
        raise BadCsr(f"CSR signature algorithm {oid} is not accepted (SHA-2 RSA or ECDSA only).")
    try:
        csr = x509.load_der_x509_csr(csr_der)
        valid = csr.is_signature_valid
    except (ValueError, CryptoUnsupported) as error:
        raise BadCsr(f"The CSR signature cannot be checked: {error}") from None
    if not valid:
        raise BadCsr("The CSR signature does not verify.")
    return None


def same_address(candidate: str, address: str) -> bool:
    """Local part exactly, domain case-insensitively (RFC 5321 section 2.4)."""
    local, _, domain = candidate.rpartition("@")
    want_local, _, want_domain = address.rpartition("@")
    return bool(local) and local == want_local and domain.lower() == want_domain.lower()


def _check_subject(subject: Any, address: str) -> None:
    for rdn in subject.chosen:
        for attribute in rdn:
            kind = attribute["type"].native
            value = attribute["value"].native
            if kind not in ("common_name", "email_address"):
                raise BadCsr(
                    f"The subject may hold only commonName and emailAddress, not {kind} "
                    "(mailbox-validated strict profile)."
                )
            if not isinstance(value, str) or not same_address(value, address):
                raise RejectedIdentifier(f"The subject's {kind} {value!r} is not {address}.")


def _requested_extensions(attributes: Any) -> dict[str, Any]:
    requests = [a for a in attributes if a["type"].native == "extension_request"]
    if not requests:
        return {}
    if len(requests) > 1 or len(requests[0]["values"]) != 1:
        raise BadCsr("The CSR holds more than one extensionRequest.")
    found: dict[str, Any] = {}
    for extension in requests[0]["values"][0]:
        name = extension["extn_id"].native
        if name in found:
            raise BadCsr(f"The CSR requests the {name} extension twice.")
        found[name] = extension["extn_value"].parsed
    return found


def _check_san(san: Any, address: str) -> None:
    if san is None:
        raise BadCsr(f"The CSR must request subjectAltName rfc822Name {address} (RFC 8823).")
    names = list(san)
    for name in names:
        if name.name != "rfc822_name":
            raise RejectedIdentifier(
                f"The CSR names a {name.name} ({name.native!r}); only the address is certified."
            )
        if not same_address(name.native, address):
            raise RejectedIdentifier(f"The CSR names {name.native}, not the validated {address}.")
    if len(names) != 1:
        raise RejectedIdentifier(f"The CSR must name {address} once and nothing else.")


def _check_other_extensions(extensions: dict[str, Any]) -> None:
    constraints = extensions.get("basic_constraints")
    if constraints is not None and constraints["ca"].native:
        raise BadCsr("The CSR asks for a CA certificate.")
    ekus = extensions.get("extended_key_usage")
    if ekus is not None:
        other = sorted(set(ekus.native) - {"email_protection"})
        if other:
            raise BadCsr(f"Only emailProtection is issued; the CSR asks for {', '.join(other)}.")


def _requested_usage(key_usage: Any) -> tuple[str, bool]:
    if key_usage is None:
        return DUAL, False
    bits = set(key_usage.native)
    if bits & _CA_BITS:
        raise BadCsr("The CSR asks for keyCertSign/cRLSign.")
    signing, encryption = bool(bits & _SIGN_BITS), bool(bits & _ENCRYPT_BITS)
    if not (signing or encryption):
        raise BadCsr("The CSR's keyUsage allows neither signing nor encryption.")
    usage = DUAL if signing and encryption else SIGNING if signing else ENCRYPTION
    return usage, "non_repudiation" in bits


# ---- issue --------------------------------------------------------------------------------------


def random_serial() -> int:
    """A positive serial of 159 random bits with the top bit set (20 DER octets, never more)."""
    return secrets.randbits(158) | (1 << 158)


def issue(
    csr_info: CsrInfo,
    issuing_ca: KeyCert,
    *,
    serial: int,
    not_before: datetime.datetime,
    days: int = DEFAULT_DAYS,
    crl_url: str,
    aia_url: str,
    policy_oids: tuple[str, ...] = DEFAULT_POLICY_OIDS,
) -> bytes:
    """The DER certificate for an accepted CSR, signed by issuing_ca (a KeyCert of the same
    family). Validity runs from not_before for `days` days, inclusive of both ends."""
    if issuing_ca.family != csr_info.family:
        raise WrongFamily(
            f"A {csr_info.key_type.upper()} key cannot be certified by the {issuing_ca.family} CA."
        )
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_DAYS:
        raise ProfileError(f"Validity must be 1 to {MAX_DAYS} days, not {days!r}.")
    if not isinstance(serial, int) or serial <= 0 or serial.bit_length() > 159:
        raise ProfileError("The serial must be a positive integer of at most 159 bits.")
    if serial.bit_length() < 64:
        raise ProfileError("The serial must carry at least 64 random bits (use random_serial).")
    start = utc(not_before, "not_before")
    end = start + datetime.timedelta(days=days) - datetime.timedelta(seconds=1)
    if end > issuing_ca.certificate.not_valid_after:
        raise ProfileError("The certificate would outlive its issuing CA.")
    if csr_info.family == SM2:
        return _issue_sm2(csr_info, issuing_ca, serial, start, end, crl_url, aia_url, policy_oids)
    return _issue_intl(csr_info, issuing_ca, serial, start, end, crl_url, aia_url, policy_oids)


def _subject_attributes(address: str) -> list[tuple[str, str]]:
    attributes = []
    if len(address) <= 64:  # ub-common-name (RFC 5280 appendix A)
        attributes.append(("common_name", address))
    attributes.append(("email_address", address))
    return attributes


_CRYPTO_NAME_OIDS = {"common_name": NameOID.COMMON_NAME, "email_address": NameOID.EMAIL_ADDRESS}


def _crypto_key_usage(bits: frozenset[str]) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature="digital_signature" in bits,
        content_commitment="non_repudiation" in bits,
        key_encipherment="key_encipherment" in bits,
        data_encipherment="data_encipherment" in bits,
        key_agreement="key_agreement" in bits,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


def _issue_intl(
    info: CsrInfo,
    ca: KeyCert,
    serial: int,
    start: datetime.datetime,
    end: datetime.datetime,
    crl_url: str,
    aia_url: str,
    policy_oids: tuple[str, ...],
) -> bytes:
    ca_cert = crypto_certificate(ca.certificate)
    subject = x509.Name(
        [x509.NameAttribute(_CRYPTO_NAME_OIDS[k], v) for k, v in _subject_attributes(info.address)]
    )
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(info.public_key)
        .serial_number(serial)
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_crypto_key_usage(info.key_usage()), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), False)
        .add_extension(x509.SubjectAlternativeName([x509.RFC822Name(info.address)]), False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(info.public_key), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), False
        )
        .add_extension(
            x509.UnrecognizedExtension(
                x509.ObjectIdentifier(OID_SMIME_CAPABILITIES),
                capabilities.encode(capabilities.CERTIFICATE_ADVERTISED).dump(),
            ),
            False,
        )
    )
    for extension in crypto_distribution_extensions(crl_url, aia_url, policy_oids):
        builder = builder.add_extension(extension, critical=False)
    try:
        cert = builder.sign(ca.key, signature_hash(ca.key))
    except ValueError as error:  # e.g. a non-ASCII address in an rfc822Name
        raise ProfileError(f"The certificate cannot be built: {error}") from None
    return cert.public_bytes(serialization.Encoding.DER)


def _issue_sm2(
    info: CsrInfo,
    ca: KeyCert,
    serial: int,
    start: datetime.datetime,
    end: datetime.datetime,
    crl_url: str,
    aia_url: str,
    policy_oids: tuple[str, ...],
) -> bytes:
    subject = asn1_x509.Name.build(dict(_subject_attributes(info.address)))
    base = sm2_certs.issue_certificate(
        info.public_key,
        subject,
        ca.key,
        ca.certificate,
        emails=[info.address],
        serial_number=serial,
        not_before=start,
        not_after=end,
        key_usage=info.key_usage(),
        extended_key_usage=("email_protection",),
        signer_id=SM2_END_ENTITY_SIGNER_ID,
    )
    extra = asn1_distribution_extensions(crl_url, aia_url, policy_oids)
    caps = capabilities.encode(SM2_ADVERTISED).dump()
    extra.append(asn1_extension(OID_SMIME_CAPABILITIES, core.ParsableOctetString(caps)))
    return resign_sm2(base, extra, ca.key, SM2_END_ENTITY_SIGNER_ID)
