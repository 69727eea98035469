"""What a reader of a signed message is told about each signature: whether it holds, whether
its signer is the message's sender (shared_pki.x509.sender, never "unknown"), its RFC 3161
timestamps, and whether the signer's certificates were revoked (from the CRLs domain.crls
fetched), each in words. domain.reading peels the layers and verifies; this module turns one
signer's verification into the summary message.open returns."""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from dataclasses import dataclass

from shared_pki import tsp
from shared_pki.cms.verify import SignerResult
from shared_pki.x509 import revocation
from shared_pki.x509.sender import SenderCheck, check_sender
from shared_pki.x509.validate import certificate_addresses


@dataclass(frozen=True)
class TimestampSummary:
    """The RFC 3161 timestamps of one signature: `trusted_time` is set only when a token is
    valid (TSA trusted, imprint = this signature); problems say what did not hold."""

    count: int
    valid: bool
    trusted_time: datetime.datetime | None
    tsa: str | None
    problems: tuple[str, ...]
    summary: str


@dataclass(frozen=True)
class RevocationSummary:
    """Whether the signer's certificates were revoked, from the CRLs of their distribution
    points: status "good" (every certificate below the anchor checked), "revoked" (with when,
    and `valid_as_of` the trusted time at which it still stood, if it did), or "not_checked"
    (a CRL that could not be had: the summary says why)."""

    status: str
    summary: str
    revoked_at: datetime.datetime | None = None
    valid_as_of: datetime.datetime | None = None


NOT_CHECKED = RevocationSummary("not_checked", "Revocation not checked (no CRLs were consulted).")


@dataclass(frozen=True)
class SignatureSummary:
    valid: bool
    signer: str | None  # the certificate's first address
    signer_subject: str | None
    # Whether the signer is the message's sender (shared_pki.x509.sender): never unknown; the
    # stable code and the reason in words either way.
    from_matches: bool
    from_code: str
    from_reason: str
    chain_valid: bool
    trusted: bool
    expired: bool
    reasons: tuple[str, ...]
    codes: tuple[str, ...]
    signing_time: datetime.datetime | None
    timestamp: TimestampSummary | None
    harvested: bool
    summary: str
    revocation: RevocationSummary = NOT_CHECKED


def timestamp_summary(tokens: Sequence[tsp.TokenVerification]) -> TimestampSummary | None:
    if not tokens:
        return None
    good = [t for t in tokens if t.valid]
    best = min(good, key=lambda t: t.gen_time) if good else tokens[0]
    tsa = None
    if best.certificate is not None:
        tsa = best.certificate.subject.human_friendly
    problems = tuple(p.message for t in tokens if not t.valid for p in t.problems)
    return TimestampSummary(
        count=len(tokens),
        valid=bool(good),
        trusted_time=best.trusted_time if good else None,
        tsa=tsa,
        problems=problems,
        summary=best.summary,
    )


#: The code prefix of a sender problem among a signature's codes (from_mismatch, ...).
FROM_CODE = "from_"
NO_SIGNER_CERTIFICATE = "unknown_signer"


def sender_check(from_values: Sequence[str], signer: SignerResult) -> SenderCheck:
    """Whether this signer is the message's sender, decided by x509.sender from every From
    value; a signer whose certificate is missing vouches for nobody."""
    if signer.certificate is None:
        return SenderCheck(
            False,
            NO_SIGNER_CERTIFICATE,
            "The signer's certificate is not in the message, so nothing shows who signed it.",
            None,
            (),
        )
    return check_sender(from_values, signer.certificate)


def signature_summary(
    signer: SignerResult,
    tokens: Sequence[tsp.TokenVerification],
    harvested: bool,
    sender: SenderCheck,
) -> SignatureSummary:
    cert = signer.certificate
    addresses = certificate_addresses(cert) if cert is not None else ()
    subject = None
    if cert is not None:
        try:
            subject = cert.subject.human_friendly
        except (ValueError, KeyError, TypeError):
            subject = None
    stamp = timestamp_summary(tokens)
    reasons = tuple(p.message for p in signer.problems)
    codes = signer.codes
    if signer.valid:
        # A signature that holds but names someone else vouches for nothing here: said as the
        # mismatch it is ("signed by X, but the message says it is from Y").
        summary = signer.summary if sender.matches else sender.reason
    else:
        summary = signer.summary + ("" if sender.matches else f" {sender.reason}")
    if not sender.matches:
        reasons += (sender.reason,)
        codes += (FROM_CODE + sender.code,)
    if stamp is not None:
        summary += f" {stamp.summary}"
    return SignatureSummary(
        valid=signer.valid and sender.matches,
        signer=addresses[0] if addresses else None,
        signer_subject=subject,
        from_matches=sender.matches,
        from_code=sender.code,
        from_reason=sender.reason,
        chain_valid=signer.chain is not None and signer.chain.valid,
        trusted=signer.trusted,
        expired=signer.expired,
        reasons=reasons,
        codes=codes,
        signing_time=signer.signing_time,
        timestamp=stamp,
        harvested=harvested,
        summary=summary,
    )


def revocation_summary(signer: SignerResult, unavailable: Sequence[str]) -> RevocationSummary:
    chain = signer.chain
    checks = chain.revocation if chain is not None else None
    if chain is None or checks is None:
        return NOT_CHECKED
    if not checks:
        return RevocationSummary("not_checked", chain.revocation_summary)
    for check in checks:
        if check.status == revocation.REVOKED:
            return RevocationSummary("revoked", check.message, check.revoked_at, check.valid_as_of)
    if all(check.checked for check in checks):
        return RevocationSummary("good", checks[0].message)
    if unavailable:
        return RevocationSummary("not_checked", "Revocation not checked: " + " ".join(unavailable))
    return RevocationSummary(
        "not_checked", " ".join(check.message for check in checks if not check.checked)
    )
