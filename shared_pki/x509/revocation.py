"""Revocation by CRL (RFC 5280 sections 5 and 6.3), decided from bytes the caller supplies: no
fetching here. For one certificate, its issuer and the CRLs at hand: whether a CRL of that issuer
is signed by it (RSA, ECDSA and SM2 through the same signature registry as certificate links),
current at the time of checking (thisUpdate <= now <= nextUpdate), and whether it lists the
certificate, when and why.

What a revocation means for a signature (the caller says which time a trusted RFC 3161 timestamp
proves): revoked before that time, the signature is not valid; revoked after it, the signature
still stands as of that time; with no trusted time, revoked means not valid, since nothing shows
the signature was made before. The revocation time used is the earlier of the entry's
revocationDate and its invalidityDate (RFC 5280 section 5.3.2: when the key is known or
suspected to have been compromised).

When no usable CRL is supplied, the answer is NOT_CHECKED with the reason in words, distinct
from GOOD: a CRL that is not signed by the issuer, not yet or no longer current, a delta or
indirect CRL, or one with critical extensions we do not process, checks nothing.

The pure parts the host needs to fetch and cache CRLs are here too: the CRL distribution point
URLs of a certificate, and until when a CRL may be kept (its nextUpdate).
"""

from __future__ import annotations

import datetime
import functools
from collections.abc import Sequence
from dataclasses import dataclass

from asn1crypto import crl as asn1_crl

from shared_pki.cms import signatures
from shared_pki.errors import PkiError
from shared_pki.keys import Certificate
from shared_pki.x509.names import same_name

GOOD = "good"
REVOKED = "revoked"
NOT_CHECKED = "not_checked"

# Why a check is NOT_CHECKED (RevocationCheck.detail).
NO_CRL = "no_crl"
CRL_MALFORMED = "crl_malformed"
CRL_NOT_SIGNED_BY_ISSUER = "crl_not_signed_by_issuer"
CRL_NOT_CURRENT = "crl_not_current"
CRL_UNSUPPORTED = "crl_unsupported"

# The SM2 IDs a CRL signature is tried under: our CA signs CRLs with the empty ID (what
# `openssl crl -verify` checks, shared_pki.ca.common), other issuers may use the standard one.
CRL_SM2_IDS = (b"", b"1234567812345678")
# CRL and entry extensions understood well enough to accept when critical.
_HANDLED_CRL = {"issuing_distribution_point", "crl_number", "authority_key_identifier"}
_HANDLED_ENTRY = {"crl_reason", "invalidity_date"}
_PARSE_ERRORS = (ValueError, TypeError, KeyError, AttributeError, OverflowError)


@dataclass(frozen=True)
class Crl:
    """A parsed CRL: what the checks need, read once."""

    der: bytes
    issuer: str
    this_update: datetime.datetime
    next_update: datetime.datetime | None
    number: int | None
    revoked: dict[int, tuple[datetime.datetime, str | None, datetime.datetime | None]]
    problem: str | None  # why the CRL cannot be used at all (unsupported scope), or None
    scope: str  # "all", "user" (onlyContainsUserCerts) or "ca" (onlyContainsCACerts)
    value: asn1_crl.CertificateList


@dataclass(frozen=True)
class RevocationCheck:
    """One certificate's revocation status. `status` GOOD, REVOKED or NOT_CHECKED; `detail`
    says why NOT_CHECKED; for REVOKED, when (the earlier of revocationDate and invalidityDate)
    and why (the RFC 5280 reason name, or None when the CRL gives none), and `valid_as_of`, the
    trusted time at which the certificate still stood (None when it did not, or none was
    given). `message` says it all in words."""

    status: str
    message: str
    detail: str | None = None
    revoked_at: datetime.datetime | None = None
    reason: str | None = None
    valid_as_of: datetime.datetime | None = None
    crl_number: int | None = None

    @property
    def checked(self) -> bool:
        return self.status != NOT_CHECKED

    @property
    def invalidates(self) -> bool:
        """Revoked, and no trusted time shows the certificate was still good when it was used."""
        return self.status == REVOKED and self.valid_as_of is None


def parse_crl(der: bytes) -> Crl:
    """A DER CRL, fully parsed now. Bytes that are no CRL raise ValueError (or another parse
    error), which check() turns into NOT_CHECKED. The same bytes are parsed once: one message
    checks each link of each signer's path against the same few CRLs (a Crl is never changed)."""
    return _parse_crl(bytes(der))


@functools.lru_cache(maxsize=16)  # CRLs can be large; a host consults a few
def _parse_crl(der: bytes) -> Crl:
    value = asn1_crl.CertificateList.load(der, strict=True)
    tbs = value["tbs_cert_list"]
    value.native  # noqa: B018  a full parse now, so that bad bytes fail here
    problem = None
    unknown = sorted(set(value.critical_extensions) - _HANDLED_CRL)
    if unknown:
        problem = f"it has critical extensions we do not process ({', '.join(unknown)})"
    if value.delta_crl_indicator_value is not None:
        problem = "it is a delta CRL, which needs its base CRL"
    scope = "all"
    point = value.issuing_distribution_point_value
    if point is not None:
        if point["indirect_crl"].native:
            problem = "it is an indirect CRL (entries of other issuers)"
        elif point["only_some_reasons"].native:
            problem = "it covers only some revocation reasons"
        elif point["only_contains_attribute_certs"].native:
            problem = "it covers attribute certificates only"
        if point["only_contains_user_certs"].native:
            scope = "user"
        elif point["only_contains_ca_certs"].native:
            scope = "ca"
    revoked = {}
    for entry in tbs["revoked_certificates"]:
        unknown = sorted(set(entry.critical_extensions) - _HANDLED_ENTRY)
        if unknown:
            problem = f"an entry has critical extensions we do not process ({', '.join(unknown)})"
        reason = entry.crl_reason_value
        invalidity = entry.invalidity_date_value
        revoked[entry["user_certificate"].native] = (
            entry["revocation_date"].native,
            None if reason is None else reason.native,
            None if invalidity is None else invalidity.native,
        )
    next_update = tbs["next_update"].native
    number = value.crl_number_value
    return Crl(
        der=bytes(der),
        issuer=_name(value.issuer),
        this_update=tbs["this_update"].native,
        next_update=next_update,
        number=None if number is None else number.native,
        revoked=revoked,
        problem=problem,
        scope=scope,
        value=value,
    )


def signed_by(crl: Crl, issuer: Certificate, sm2_ids: Sequence[bytes] = CRL_SM2_IDS) -> bool:
    """The CRL names issuer as its issuer, issuer may sign CRLs (keyUsage cRLSign when it has
    keyUsage), the key identifiers agree when both are there, and the signature verifies."""
    value = crl.value
    if not same_name(value.issuer, issuer.subject):
        return False
    usage = issuer.key_usage_value
    if usage is not None and "crl_sign" not in usage.native:
        return False
    aki, ski = value.authority_key_identifier, issuer.key_identifier
    if aki is not None and ski is not None and aki != ski:
        return False
    algorithm = value["signature_algorithm"]
    tbs = value["tbs_cert_list"]
    if tbs["signature"].dump() != algorithm.dump():
        return False  # RFC 5280 5.1.1.2: the two must be the same
    try:
        return signatures.verify_with(
            algorithm["algorithm"].dotted,
            algorithm["parameters"],
            issuer.public_key,
            value["signature"].native,
            tbs.dump(),
            None,
            tuple(sm2_ids),
        )
    except PkiError:
        return False


def current_problem(crl: Crl, now: datetime.datetime) -> str | None:
    """Why the CRL is not current at `now`, or None."""
    if now < crl.this_update:
        return f"it is valid only from {crl.this_update:%Y-%m-%d %H:%M} UTC"
    if crl.next_update is not None and now > crl.next_update:
        return f"it was due to be replaced on {crl.next_update:%Y-%m-%d %H:%M} UTC"
    return None


def check(
    certificate: Certificate,
    issuer: Certificate,
    crls: Sequence[bytes | Crl],
    *,
    now: datetime.datetime,
    trusted_time: datetime.datetime | None = None,
    sm2_ids: Sequence[bytes] = CRL_SM2_IDS,
) -> RevocationCheck:
    """The revocation status of `certificate` (issued by `issuer`) from the CRLs at hand, judged
    current at `now`; `trusted_time` is when a trusted timestamp proves the certificate was used
    (a signature), or None."""
    now = _aware(now)
    who, by = _describe(certificate), _describe(issuer)
    usable: list[Crl] = []
    refusals: list[tuple[str, str]] = []
    for item in crls:
        try:
            crl = item if isinstance(item, Crl) else parse_crl(item)
        except _PARSE_ERRORS:
            refusals.append((CRL_MALFORMED, "a CRL does not parse"))
            continue
        if not same_name(crl.value.issuer, certificate.issuer):
            continue  # another issuer's CRL: not about this certificate
        if not _in_scope(crl, certificate):
            continue
        if crl.problem is not None:
            refusals.append((CRL_UNSUPPORTED, f"the CRL of {by} is not usable: {crl.problem}"))
        elif not signed_by(crl, issuer, sm2_ids):
            refusals.append(
                (CRL_NOT_SIGNED_BY_ISSUER, f"the CRL naming {by} is not signed by its key")
            )
        elif (late := current_problem(crl, now)) is not None:
            refusals.append((CRL_NOT_CURRENT, f"the CRL of {by} is not current: {late}"))
        else:
            usable.append(crl)
    if not usable:
        detail, why = refusals[-1] if refusals else (NO_CRL, f"no CRL of {by} was supplied")
        return RevocationCheck(
            NOT_CHECKED, f"Revocation of {who} not checked: {why}.", detail=detail
        )
    newest = max(usable, key=lambda c: (c.this_update, c.number or 0))
    serial = certificate.serial_number
    listed = [c.revoked[serial] for c in usable if serial in c.revoked]
    if not listed:
        return RevocationCheck(
            GOOD,
            f"{_upper(who)} is not revoked (CRL of {by} of "
            f"{newest.this_update:%Y-%m-%d %H:%M} UTC).",
            crl_number=newest.number,
        )
    revocation_date, reason, invalidity = min(listed, key=lambda e: e[0])
    revoked_at = min(revocation_date, invalidity) if invalidity else revocation_date
    why = f" ({reason.replace('_', ' ')})" if reason and reason != "unspecified" else ""
    when = f"{revoked_at:%Y-%m-%d %H:%M} UTC"
    if trusted_time is not None and _aware(trusted_time) < revoked_at:
        return RevocationCheck(
            REVOKED,
            f"{_upper(who)} was revoked on {when}{why}, after the trusted time "
            f"{_aware(trusted_time):%Y-%m-%d %H:%M} UTC: valid as of that time.",
            revoked_at=revoked_at,
            reason=reason,
            valid_as_of=_aware(trusted_time),
            crl_number=newest.number,
        )
    after = " before the trusted time of its use" if trusted_time is not None else ""
    return RevocationCheck(
        REVOKED,
        f"{_upper(who)} was revoked on {when}{why}{after}.",
        revoked_at=revoked_at,
        reason=reason,
        crl_number=newest.number,
    )


# ---- for fetching and caching (the host's job; these are the pure parts) ------------------


def distribution_points(certificate: Certificate) -> tuple[str, ...]:
    """The CRL distribution point URLs of a certificate (http, https, ldap), in order."""
    try:
        points = certificate.crl_distribution_points_value
    except _PARSE_ERRORS:
        return ()
    urls: list[str] = []
    for point in points or ():
        name = point["distribution_point"]
        if name.name != "full_name":
            continue
        for general in name.chosen:
            if general.name == "uniform_resource_identifier":
                url = general.native
                if url.lower().startswith(("http://", "https://", "ldap://")) and url not in urls:
                    urls.append(url)
    return tuple(urls)


def keep_until(crl: bytes | Crl, *, now: datetime.datetime) -> datetime.datetime | None:
    """Until when a fetched CRL may be cached: its nextUpdate, or None when it must not be
    kept (already past its nextUpdate at `now`, or without one: RFC 5280 requires it, and a
    CRL without it says nothing about when to look again)."""
    parsed = crl if isinstance(crl, Crl) else parse_crl(crl)
    if parsed.next_update is None or _aware(now) >= parsed.next_update:
        return None
    return parsed.next_update


# ---- helpers ------------------------------------------------------------------------------


def _in_scope(crl: Crl, certificate: Certificate) -> bool:
    if crl.scope == "all":
        return True
    constraints = certificate.basic_constraints_value
    is_ca = constraints is not None and bool(constraints["ca"].native)
    return is_ca if crl.scope == "ca" else not is_ca


def _aware(value: datetime.datetime) -> datetime.datetime:
    return value if value.tzinfo else value.replace(tzinfo=datetime.UTC)


def _name(name: object) -> str:
    try:
        return name.human_friendly  # type: ignore[attr-defined]
    except _PARSE_ERRORS:
        return "an unreadable name"


def _describe(cert: Certificate) -> str:
    """A certificate in a few words: its first mail address, else its common name."""
    try:
        san = cert.subject_alt_name_value
        emails = [n.native for n in san or () if n.name == "rfc822_name"]
        if emails:
            return f"'{emails[0]}'"
        subject = cert.subject.native
        name = subject.get("common_name") or subject.get("email_address")
        return f"'{name}'" if name else f"'{cert.subject.human_friendly}'"
    except _PARSE_ERRORS:
        return "a certificate"


def _upper(text: str) -> str:
    return text[:1].upper() + text[1:]
