"""Certificate path validation for S/MIME signers (RFC 5280 subset, RFC 8550 profile).

What is checked: a path from the end entity through the certificates at hand to a configured
trust anchor, each link's signature (through the signature-scheme registry, so SM2 plugs in),
validity at a given time, basicConstraints/keyUsage/pathLen of every CA, unknown critical
extensions (rejected), the end entity's keyUsage and extendedKeyUsage, and its address, and,
when the caller supplies CRLs, revocation of every certificate on the path below the anchor
(shared_pki.x509.revocation; without CRLs the result says revocation was not checked, and a
revoked certificate invalidates the path unless a trusted time shows it was used before).
Not checked here: OCSP, certificate policies, name constraints (a critical nameConstraints
extension makes the path untrusted rather than silently ignored).

Address matching (RFC 8550 section 3, RFC 5280 section 4.2.1.6): the rfc822Names of the
subjectAltName, or the subject's emailAddress only when there is no subjectAltName. The domain
is compared case-insensitively (and as IDNA A-labels); the local part exactly, as RFC 5280
requires, because only the receiving domain may say that two spellings are one mailbox. A
mismatch only in the local part's case is reported with its own code so a UI can soften it.
"""

from __future__ import annotations

import contextlib
import datetime
import itertools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from email.utils import parseaddr

from shared_pki.cms import signatures
from shared_pki.errors import PkiError
from shared_pki.keys import Certificate
from shared_pki.x509 import revocation as _revocation
from shared_pki.x509.names import same_name

#: CRLs for validate(): DER CRLs, or a callable giving them for the path that was built.
CrlSource = Sequence[bytes] | Callable[[tuple[Certificate, ...]], Sequence[bytes]]

MAX_DEPTH = 8
# Extensions this module understands well enough to accept when marked critical. Policies are
# accepted as a relying party without an explicit-policy requirement may (RFC 5280 6.1).
HANDLED_CRITICAL = {
    "basic_constraints", "key_usage", "extended_key_usage", "subject_alt_name",
    "certificate_policies", "policy_constraints", "inhibit_any_policy", "policy_mappings",
}  # fmt: skip
SIGNING_USAGES = {"digital_signature", "non_repudiation"}
EMAIL_EKUS = {"email_protection", "any_extended_key_usage"}


@dataclass(frozen=True)
class Problem:
    """One thing that does not hold: a stable code and a sentence for people."""

    code: str
    message: str


# Codes: untrusted (no path; `reason` says why), expired, not_yet_valid, key_usage,
# extended_key_usage, address_mismatch, address_case_mismatch, no_address, revoked.
TIME_CODES = frozenset({"expired", "not_yet_valid"})


@dataclass(frozen=True)
class PathResult:
    """What holds for one certificate at one time. `path` runs end entity first, anchor last
    (empty when no path to an anchor was found)."""

    certificate: Certificate
    at: datetime.datetime
    path: tuple[Certificate, ...]
    problems: tuple[Problem, ...]
    addresses: tuple[str, ...] = field(default=())
    address: str | None = None
    # One per certificate of the path below the anchor, end entity first, when CRLs were
    # supplied (None: the caller did not ask for revocation at all).
    revocation: tuple[_revocation.RevocationCheck, ...] | None = None

    @property
    def valid(self) -> bool:
        return not self.problems

    @property
    def trusted(self) -> bool:
        """A path to an anchor exists with good signatures and CA constraints (time aside)."""
        return not self._has("untrusted")

    @property
    def time_ok(self) -> bool:
        return not any(problem.code in TIME_CODES for problem in self.problems)

    @property
    def only_time_problems(self) -> bool:
        return bool(self.problems) and all(p.code in TIME_CODES for p in self.problems)

    @property
    def address_ok(self) -> bool | None:
        """None when no address was asked about."""
        if self.address is None:
            return None
        return not any(
            p.code.startswith("address") or p.code == "no_address" for p in self.problems
        )

    @property
    def revocation_checked(self) -> bool:
        """Every certificate below the anchor was checked against a usable CRL."""
        return bool(self.revocation) and all(check.checked for check in self.revocation or ())

    @property
    def revocation_summary(self) -> str:
        """Revocation in words: "not checked" unless every certificate was."""
        if self.revocation is None:
            return "Revocation not checked (no CRLs were consulted)."
        if not self.revocation:
            if not self.path:
                return "Revocation not checked: there is no path to a trust anchor."
            return "Revocation not checked: the certificate is itself a trust anchor."
        return " ".join(check.message for check in self.revocation)

    @property
    def reason(self) -> str | None:
        """The first problem in words, or None."""
        return self.problems[0].message if self.problems else None

    def _has(self, code: str) -> bool:
        return any(problem.code == code for problem in self.problems)


def validate(
    certificate: Certificate,
    *,
    trust_anchors: Sequence[Certificate],
    intermediates: Iterable[Certificate] = (),
    at: datetime.datetime | None = None,
    address: str | None = None,
    usage: str = "sign",
    sm2_ids: Sequence[bytes] | None = None,
    crls: CrlSource | None = None,
    trusted_time: datetime.datetime | None = None,
) -> PathResult:
    """Validate a signer's certificate (usage 'sign') or a recipient's ('encrypt') at `at`
    (default now), optionally against the address of the mail (From). sm2_ids: the signer IDs
    tried on every SM2-signed link (None: the standard one only). OpenSSL 3 signs with the
    empty ID by default and checks intermediates with it whatever it is told, so a chain made
    by OpenSSL may need both.

    crls: DER CRLs to check revocation with (None: revocation is not looked at; a certificate
    without a usable CRL among them is reported "not checked", which is no problem by itself),
    or a callable that gives them for the path found (asked only once a path to an anchor is
    built, so the caller can fetch the CRLs of exactly that path without validating twice).
    CRLs are judged current at `at`; trusted_time is when a trusted timestamp proves the
    certificate was used: revoked after it, the path still holds as of that time."""
    when = at or datetime.datetime.now(datetime.UTC)
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)  # naive times are taken as UTC
    problems: list[Problem] = []
    ids = None if sm2_ids is None else tuple(sm2_ids)
    paths, failure = _paths(certificate, list(trust_anchors), list(intermediates), ids)
    path: tuple[Certificate, ...] = ()
    if not paths:
        problems.append(Problem("untrusted", failure))
    else:
        # Prefer a path valid at `when` (cross-certified chains can offer an expired one).
        timed = [(p, _time_problems(p, when)) for p in paths]
        path, time_problems = min(timed, key=lambda item: len(item[1]))
        problems.extend(time_problems)
    problems.extend(_usage_problems(certificate, usage))
    addresses = certificate_addresses(certificate)
    if address is not None:
        problems.extend(_address_problems(address, addresses))
    checks = None
    if crls is not None:
        if callable(crls):
            crls = tuple(crls(path)) if len(path) > 1 else ()  # an anchor alone: no CRL
        checks = tuple(
            _revocation.check(child, issuer, crls, now=when, trusted_time=trusted_time)
            for child, issuer in itertools.pairwise(path)
        )
        problems.extend(Problem("revoked", check.message) for check in checks if check.invalidates)
    return PathResult(certificate, when, path, tuple(problems), addresses, address, checks)


# ---- path building ---------------------------------------------------------------------------


def _paths(
    cert: Certificate,
    anchors: list[Certificate],
    pool: list[Certificate],
    sm2_ids: tuple[bytes, ...] | None = None,
) -> tuple[list[tuple[Certificate, ...]], str]:
    """Every path from cert to an anchor (signatures and CA constraints checked), or why none."""
    anchor_ders = {anchor.dump() for anchor in anchors}
    if cert.dump() in anchor_ders:
        return [(cert,)], ""
    candidates = _unique([*pool, *anchors])
    found: list[tuple[Certificate, ...]] = []
    failures: list[str] = []

    def extend(path: tuple[Certificate, ...]) -> None:
        child = path[-1]
        used = {c.dump() for c in path}
        issuers = [c for c in candidates if _may_issue(c, child) and c.dump() not in used]
        if not issuers:
            failures.append(
                f"no issuer found for {_describe(child)}, issued by '{_issuer_name(child)}'"
            )
        for issuer in issuers:
            link = _link_problem(issuer, child, len(path) - 1, sm2_ids)
            if link:
                failures.append(link)
                continue
            if issuer.dump() in anchor_ders:
                found.append((*path, issuer))
            elif len(path) < MAX_DEPTH:
                extend((*path, issuer))

    critical = _unhandled_critical(cert)
    if critical:
        return [], critical
    extend((cert,))
    reason = failures[-1] if failures else "no path to a trust anchor"
    return found, f"Untrusted: {reason}."


def _may_issue(issuer: Certificate, child: Certificate) -> bool:
    if not same_name(issuer.subject, child.issuer):
        return False
    aki, ski = child.authority_key_identifier, issuer.key_identifier
    return aki is None or ski is None or aki == ski


def _link_problem(
    issuer: Certificate, child: Certificate, below: int, sm2_ids: tuple[bytes, ...] | None = None
) -> str | None:
    """Why issuer cannot have issued child, or None. `below` counts the CAs under issuer."""
    name = _describe(issuer)
    constraints = issuer.basic_constraints_value
    if constraints is None or not constraints["ca"].native:
        return f"{name} is not a CA (basicConstraints)"
    path_len = constraints["path_len_constraint"].native
    if path_len is not None and below > path_len:
        return f"{name} allows {path_len} intermediate CAs below it, the path has {below}"
    usage = issuer.key_usage_value
    if usage is not None and "key_cert_sign" not in usage.native:
        return f"{name} may not sign certificates (keyUsage)"
    critical = _unhandled_critical(issuer)
    if critical:
        return critical
    ekus = issuer.extended_key_usage_value
    if ekus is not None and not EMAIL_EKUS & set(ekus.native):
        return f"{name} is restricted to other purposes than email (extendedKeyUsage)"
    if not _signature_ok(issuer, child, sm2_ids):
        return f"the signature of {_describe(child)} by {name} does not verify"
    return None


def _signature_ok(
    issuer: Certificate, child: Certificate, sm2_ids: tuple[bytes, ...] | None = None
) -> bool:
    algorithm = child["signature_algorithm"]
    try:
        return signatures.verify_with(
            algorithm["algorithm"].dotted,
            algorithm["parameters"],
            issuer.public_key,
            child["signature_value"].native,
            child["tbs_certificate"].dump(),
            None,
            sm2_ids,
        )
    except PkiError:
        return False  # an algorithm we do not know cannot make a link trusted


def _unhandled_critical(cert: Certificate) -> str | None:
    unknown = sorted(set(cert.critical_extensions) - HANDLED_CRITICAL)
    if unknown:
        return f"{_describe(cert)} has critical extensions we do not process: {', '.join(unknown)}"
    return None


def _unique(certs: list[Certificate]) -> list[Certificate]:
    seen: dict[bytes, Certificate] = {}
    for cert in certs:
        seen.setdefault(cert.dump(), cert)
    return list(seen.values())


def _issuer_name(cert: Certificate) -> str:
    try:
        return cert.issuer.human_friendly
    except (ValueError, KeyError, TypeError):
        return "?"


def _describe(cert: Certificate) -> str:
    try:
        return f"'{cert.subject.human_friendly}'"
    except (ValueError, KeyError, TypeError):
        return "a certificate"


# ---- time, usage, address --------------------------------------------------------------------


def _time_problems(path: tuple[Certificate, ...], when: datetime.datetime) -> list[Problem]:
    problems = []
    for cert in path:
        if when > cert.not_valid_after:
            problems.append(
                Problem("expired", f"{_describe(cert)} expired {cert.not_valid_after:%Y-%m-%d}.")
            )
        elif when < cert.not_valid_before:
            problems.append(
                Problem(
                    "not_yet_valid",
                    f"{_describe(cert)} is valid only from {cert.not_valid_before:%Y-%m-%d}.",
                )
            )
    return problems


def _usage_problems(cert: Certificate, usage: str) -> list[Problem]:
    problems = []
    key_usage = cert.key_usage_value
    if key_usage is not None:
        allowed = set(key_usage.native)
        needed = SIGNING_USAGES if usage == "sign" else {"key_encipherment", "key_agreement"}
        if not needed & allowed:
            problems.append(
                Problem("key_usage", f"The certificate's keyUsage does not allow {usage}ing.")
            )
    ekus = cert.extended_key_usage_value
    if ekus is not None and not EMAIL_EKUS & set(ekus.native):
        problems.append(
            Problem(
                "extended_key_usage",
                "The certificate's extendedKeyUsage does not include emailProtection.",
            )
        )
    return problems


def certificate_addresses(cert: Certificate) -> tuple[str, ...]:
    """The mail addresses a certificate names: SAN rfc822Names, else subject emailAddress."""
    san = cert.subject_alt_name_value
    if san is not None:
        return tuple(name.native for name in san if name.name == "rfc822_name")
    found = []
    for rdn in cert.subject.chosen:
        for attribute in rdn:
            if attribute["type"].native == "email_address":
                found.append(attribute["value"].native)
    return tuple(found)


def _split(address: str) -> tuple[str, str]:
    local, _, domain = address.strip().rpartition("@")
    domain = domain.rstrip(".").lower()
    with contextlib.suppress(UnicodeError):
        domain = domain.encode("idna").decode("ascii")
    return local, domain


def _address_problems(address: str, addresses: tuple[str, ...]) -> list[Problem]:
    wanted = parseaddr(address)[1] or address
    if not addresses:
        return [Problem("no_address", "The certificate names no mail address.")]
    local, domain = _split(wanted)
    pairs = [_split(candidate) for candidate in addresses]
    if (local, domain) in pairs:
        return []
    names = ", ".join(addresses)
    if any(d == domain and lp.lower() == local.lower() for lp, d in pairs):
        return [
            Problem(
                "address_case_mismatch",
                f"The sender {wanted} differs from the certificate's {names} in letter case.",
            )
        ]
    return [Problem("address_mismatch", f"The sender {wanted} is not the certificate's {names}.")]
