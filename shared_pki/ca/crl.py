"""Certificate revocation lists (RFC 5280 section 5) for either CA family.

International CAs use cryptography's CRL builder; SM2 CAs an asn1crypto CertificateList signed
with SM2-with-SM3 under the EMPTY signer ID, because `openssl crl -verify` (3.0) offers no ID
option and checks with the empty one (measured); pass `sm2_signer_id=sm2.DEFAULT_ID` for
verifiers that insist on the GM/T default. Every CRL is v2 with cRLNumber and
authorityKeyIdentifier. Reasons are RFC 5280 CRLReason codes (0-10, not 7) or their names
(`key_compromise` or `keyCompromise`); unspecified (0) or None writes no reasonCode entry
extension, as RFC 5280 section 5.3.1 recommends.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from dataclasses import dataclass

from asn1crypto import crl as asn1_crl
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from shared_pki import sm_oids
from shared_pki.ca.common import (
    SM2,
    SM2_CA_SIGNER_ID,
    KeyCert,
    ProfileError,
    crypto_certificate,
    signature_hash,
    utc,
)
from shared_pki.errors import MalformedInput
from shared_pki.keys import Certificate
from shared_pki.x509 import revocation

REASONS = {
    0: "unspecified",
    1: "key_compromise",
    2: "ca_compromise",
    3: "affiliation_changed",
    4: "superseded",
    5: "cessation_of_operation",
    6: "certificate_hold",
    8: "remove_from_crl",
    9: "privilege_withdrawn",
    10: "aa_compromise",
}
_CODES = {name: code for code, name in REASONS.items()}
_CRYPTO_REASONS = {
    1: x509.ReasonFlags.key_compromise,
    2: x509.ReasonFlags.ca_compromise,
    3: x509.ReasonFlags.affiliation_changed,
    4: x509.ReasonFlags.superseded,
    5: x509.ReasonFlags.cessation_of_operation,
    6: x509.ReasonFlags.certificate_hold,
    8: x509.ReasonFlags.remove_from_crl,
    9: x509.ReasonFlags.privilege_withdrawn,
    10: x509.ReasonFlags.aa_compromise,
}

Reason = int | str | None
RevokedInput = tuple[int, datetime.datetime, Reason]


@dataclass(frozen=True)
class RevokedEntry:
    serial: int
    revocation_time: datetime.datetime
    reason: int | None  # RFC 5280 code; None when the entry carries no reasonCode


def reason_code(reason: Reason) -> int | None:
    """An RFC 5280 CRLReason code from a code or a name; None and 0 mean "no reason given"."""
    if reason is None:
        return None
    if isinstance(reason, str):
        key = "".join("_" + c.lower() if c.isupper() else c for c in reason).lstrip("_")
        if key not in _CODES:
            raise ProfileError(f"Unknown revocation reason {reason!r}.")
        reason = _CODES[key]
    if isinstance(reason, bool) or not isinstance(reason, int) or reason not in REASONS:
        raise ProfileError(f"Unknown revocation reason code {reason!r}.")
    return reason or None


def make_crl(
    issuing_ca: KeyCert,
    revoked: Sequence[RevokedInput],
    *,
    this_update: datetime.datetime,
    next_update: datetime.datetime,
    number: int,
    sm2_signer_id: bytes = SM2_CA_SIGNER_ID,
) -> bytes:
    """A DER CRL by issuing_ca listing revoked (serial, revocation time, reason)."""
    this_update = utc(this_update, "this_update")
    next_update = utc(next_update, "next_update")
    if next_update <= this_update:
        raise ProfileError("next_update must come after this_update.")
    if isinstance(number, bool) or not isinstance(number, int) or not 0 <= number < 2**159:
        raise ProfileError("The CRL number must be a non-negative integer of at most 20 octets.")
    entries = []
    for serial, when, reason in revoked:
        if isinstance(serial, bool) or not isinstance(serial, int) or serial <= 0:
            raise ProfileError(f"Serial {serial!r} is not a positive integer.")
        entries.append((serial, utc(when, "revocation_time"), reason_code(reason)))
    if issuing_ca.family == SM2:
        return _sm2_crl(issuing_ca, entries, this_update, next_update, number, sm2_signer_id)
    return _intl_crl(issuing_ca, entries, this_update, next_update, number)


def _intl_crl(
    ca: KeyCert,
    entries: list[tuple[int, datetime.datetime, int | None]],
    this_update: datetime.datetime,
    next_update: datetime.datetime,
    number: int,
) -> bytes:
    ca_cert = crypto_certificate(ca.certificate)
    ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca_cert.subject)
        .last_update(this_update)
        .next_update(next_update)
        .add_extension(x509.CRLNumber(number), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
    )
    for serial, when, code in entries:
        entry = x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(when)
        if code is not None:
            entry = entry.add_extension(x509.CRLReason(_CRYPTO_REASONS[code]), critical=False)
        builder = builder.add_revoked_certificate(entry.build())
    crl = builder.sign(ca.key, signature_hash(ca.key))
    return crl.public_bytes(serialization.Encoding.DER)


def _time(value: datetime.datetime) -> asn1_x509.Time:
    kind = "utc_time" if value.year < 2050 else "general_time"
    return asn1_x509.Time(name=kind, value=value)


def _sm2_crl(
    ca: KeyCert,
    entries: list[tuple[int, datetime.datetime, int | None]],
    this_update: datetime.datetime,
    next_update: datetime.datetime,
    number: int,
    signer_id: bytes,
) -> bytes:
    algorithm = {"algorithm": sm_oids.SM2_WITH_SM3}
    revoked = []
    for serial, when, code in entries:
        entry: dict[str, object] = {"user_certificate": serial, "revocation_date": _time(when)}
        if code is not None:
            entry["crl_entry_extensions"] = [
                {"extn_id": "crl_reason", "critical": False, "extn_value": REASONS[code]}
            ]
        revoked.append(entry)
    key_id = ca.certificate.key_identifier
    tbs_fields: dict[str, object] = {
        "version": "v2",
        "signature": algorithm,
        "issuer": ca.certificate.subject,
        "this_update": _time(this_update),
        "next_update": _time(next_update),
        "crl_extensions": [
            {"extn_id": "crl_number", "critical": False, "extn_value": number},
            {
                "extn_id": "authority_key_identifier",
                "critical": False,
                "extn_value": {"key_identifier": key_id},
            },
        ],
    }
    if revoked:  # RFC 5280: absent, not empty, when nothing is revoked
        tbs_fields["revoked_certificates"] = revoked
    tbs = asn1_crl.TbsCertList(tbs_fields)
    signature = ca.key.sign(tbs.dump(), signer_id=signer_id)
    return asn1_crl.CertificateList(
        {"tbs_cert_list": tbs, "signature_algorithm": algorithm, "signature": signature}
    ).dump()


def _load(der: bytes) -> asn1_crl.CertificateList:
    try:
        crl = asn1_crl.CertificateList.load(der, strict=True)
        crl.native  # noqa: B018  force a full parse
    except (ValueError, TypeError, KeyError) as error:
        raise MalformedInput(f"Not a valid CRL: {error}") from None
    return crl


def crl_entries(der: bytes) -> list[RevokedEntry]:
    """Every revoked entry of a DER CRL, in order, with its reason code."""
    entries = []
    for item in _load(der)["tbs_cert_list"]["revoked_certificates"]:
        code = None
        for extension in item["crl_entry_extensions"]:
            if extension["extn_id"].native == "crl_reason":
                code = _CODES[extension["extn_value"].native]
        entries.append(
            RevokedEntry(item["user_certificate"].native, item["revocation_date"].native, code)
        )
    return entries


def crl_revoked_serials(der: bytes) -> list[int]:
    """The serial numbers a DER CRL lists, in order."""
    return [entry.serial for entry in crl_entries(der)]


def crl_number(der: bytes) -> int | None:
    crl = _load(der)
    value = crl.crl_number_value
    return None if value is None else value.native


def verify_crl(
    der: bytes, issuer: Certificate, *, sm2_ids: Sequence[bytes] = (SM2_CA_SIGNER_ID,)
) -> bool:
    """True when the CRL's signature verifies with issuer's key and names issuer as its issuer.
    SM2 CRLs are tried under each ID in sm2_ids. The check is the relying party's
    (shared_pki.x509.revocation.signed_by), so the CA tests what verifiers will find."""
    _load(der)  # MalformedInput for bytes that are no CRL
    return revocation.signed_by(revocation.parse_crl(der), issuer, sm2_ids)
