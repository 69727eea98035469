"""Verifying CMS SignedData: per signer, precisely what holds and what does not.

Each SignerInfo gets a SignerResult listing Problems with stable codes (from validate.py, plus
bad_signature, message_digest_mismatch, content_type_mismatch, missing_attribute,
signing_certificate_mismatch, unsupported_algorithm, signer_certificate_missing). `valid` means
no problem at all.

Time: the chain is judged at `at` (default now). It is also judged at the signing time, which
is the caller's trusted time (an RFC 3161 genTime) if given, else the signer's own signingTime
claim. An expired certificate is accepted only with a trusted time at which everything was
valid; with the signer's claim alone it stays a problem, and `valid_at_signing_time` says
whether the claim would have made it valid (a claim anyone can backdate).

Bad bytes raise MalformedInput. An algorithm we do not implement is reported per signer as
unsupported_algorithm, so one exotic signer does not hide a good one.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from asn1crypto import cms, core
from cryptography.hazmat.primitives import hashes

from shared_pki.cms import capabilities as caps
from shared_pki.cms import digests, signatures
from shared_pki.cms.signed import _PARSE_ERRORS, OID_DATA, _der_length, load_signed_data
from shared_pki.errors import MalformedInput, PkiError, UnsupportedAlgorithm
from shared_pki.keys import Certificate
from shared_pki.oids import standard_content_type
from shared_pki.x509 import validate as path_validation
from shared_pki.x509.names import same_name
from shared_pki.x509.validate import TIME_CODES, CrlSource, PathResult, Problem

__all__ = ["Problem", "SignerResult", "VerificationResult", "verify"]


@dataclass(frozen=True)
class SignerResult:
    """Everything known about one signer. Booleans that could not be checked are None."""

    index: int
    certificate: Certificate | None
    digest_algorithm: str
    signature_algorithm: str
    signature_ok: bool
    message_digest_ok: bool | None
    content_type_ok: bool | None
    signing_certificate_ok: bool | None
    signing_time: datetime.datetime | None
    trusted_time: datetime.datetime | None
    chain: PathResult | None
    chain_at_signing_time: PathResult | None
    capabilities: tuple[caps.Capability, ...]
    problems: tuple[Problem, ...]

    @property
    def valid(self) -> bool:
        return not self.problems

    @property
    def trusted(self) -> bool:
        return self.chain is not None and self.chain.trusted

    @property
    def expired(self) -> bool:
        """The certificate (or one in its chain) is outside its validity at the checked time."""
        return self.chain is not None and not self.chain.time_ok

    @property
    def valid_at_signing_time(self) -> bool | None:
        """Whether the chain was trusted and in its validity at the signing time (None: no
        signing time known)."""
        chain = self.chain_at_signing_time
        return None if chain is None else chain.trusted and chain.time_ok

    @property
    def address_ok(self) -> bool | None:
        return None if self.chain is None else self.chain.address_ok

    @property
    def codes(self) -> tuple[str, ...]:
        return tuple(problem.code for problem in self.problems)

    @property
    def summary(self) -> str:
        who = _who(self.certificate)
        if self.valid:
            when = self.trusted_time or self.signing_time
            at = f", signed {when:%Y-%m-%d %H:%M} UTC" if when else ""
            note = " (certificate expired since; timestamped)" if self.expired else ""
            return f"Valid signature by {who}{at}{note}."
        reasons = "; ".join(problem.message.rstrip(".") for problem in self.problems)
        extra = ""
        if self.expired and self.valid_at_signing_time:
            extra = " (it was valid at the claimed signing time)"
        return f"Signature by {who} is not valid: {reasons}{extra}."


@dataclass(frozen=True)
class VerificationResult:
    """All signers of one message, the content type, and the content that was verified."""

    signers: tuple[SignerResult, ...]
    content_type: str
    content: bytes
    detached: bool

    @property
    def valid(self) -> bool:
        return bool(self.signers) and all(signer.valid for signer in self.signers)

    @property
    def summary(self) -> str:
        if len(self.signers) == 1:
            return self.signers[0].summary
        good = sum(signer.valid for signer in self.signers)
        parts = " | ".join(signer.summary for signer in self.signers)
        return f"{good} of {len(self.signers)} signatures valid: {parts}"


def verify(
    signed_der: bytes,
    *,
    content: bytes | None = None,
    trust_anchors: Sequence[Certificate],
    intermediates: Iterable[Certificate] = (),
    from_address: str | None = None,
    at: datetime.datetime | None = None,
    trusted_time: datetime.datetime | Mapping[int, datetime.datetime] | None = None,
    sm2_ids: Sequence[bytes] | None = None,
    crls: CrlSource | None = None,
) -> VerificationResult:
    """Verify every signer of a DER ContentInfo(SignedData).

    content: the canonical content of a detached signature (ignored if equal to the embedded
    one). trusted_time: a time vouched for by a verified timestamp, for all signers or per
    signer index. sm2_ids: the SM2 signer IDs to try, for the SignerInfos and for every SM2
    certificate link of the chains (None: the standard 1234567812345678 only). crls: DER CRLs
    to check each signer's chain with, or a callable giving them for a chain once it is built
    (x509.validate.CrlSource; None: revocation not looked at); a signer revoked before
    its trusted time, or revoked with no trusted time, is not valid (x509.revocation).
    """
    signed_data = load_signed_data(signed_der)
    encap = signed_data["encap_content_info"]
    content_type = encap["content_type"].dotted
    data, detached = _content(encap, content)
    message_certs = [
        choice.chosen
        for choice in (signed_data["certificates"] or ())
        if choice.name == "certificate"
    ]
    pool = [*message_certs, *intermediates]
    when = at or datetime.datetime.now(datetime.UTC)
    context = _Context(data, content_type, pool, list(trust_anchors), from_address, when)
    context.sm2_ids = None if sm2_ids is None else tuple(sm2_ids)
    context.crls = crls if crls is None or callable(crls) else tuple(crls)
    results = []
    for index, info in enumerate(signed_data["signer_infos"]):
        trusted = trusted_time.get(index) if isinstance(trusted_time, Mapping) else trusted_time
        try:
            results.append(_verify_signer(index, info, context, trusted))
        except _PARSE_ERRORS as error:
            raise MalformedInput(f"SignerInfo {index} does not parse: {error}") from None
    return VerificationResult(tuple(results), content_type, data, detached)


@dataclass
class _Context:
    content: bytes
    content_type: str
    pool: list[Certificate]
    anchors: list[Certificate]
    address: str | None
    at: datetime.datetime

    def __post_init__(self) -> None:
        self.digest_cache: dict[str, bytes] = {}
        self.sm2_ids: tuple[bytes, ...] | None = None
        self.crls: CrlSource | None = None

    def digest(self, algorithm: digests.DigestAlgorithm) -> bytes:
        if algorithm.oid not in self.digest_cache:
            self.digest_cache[algorithm.oid] = algorithm.compute(self.content)
        return self.digest_cache[algorithm.oid]


def _content(encap: cms.EncapsulatedContentInfo, given: bytes | None) -> tuple[bytes, bool]:
    embedded = encap["content"]
    if isinstance(embedded, core.Void) or embedded.native is None:
        if given is None:
            raise MalformedInput("A detached signature needs its content to be verified.")
        return bytes(given), True
    value = embedded.native
    if not isinstance(value, bytes):
        raise MalformedInput("The encapsulated content is not an OCTET STRING.")
    if given is not None and bytes(given) != value:
        raise MalformedInput("Content given for a signature that embeds different content.")
    return value, False


def _verify_signer(
    index: int, info: cms.SignerInfo, ctx: _Context, trusted: datetime.datetime | None
) -> SignerResult:
    problems: list[Problem] = []
    cert = _find_signer(info["sid"], [*ctx.pool, *ctx.anchors])
    digest_oid = info["digest_algorithm"]["algorithm"].dotted
    signature_oid = info["signature_algorithm"]["algorithm"].dotted
    signed_attrs = info["signed_attrs"]
    has_attrs = not isinstance(signed_attrs, core.Void)
    attrs = _attributes(signed_attrs) if has_attrs else {}

    algorithm: digests.DigestAlgorithm | None = None
    try:
        algorithm = digests.by_oid(digest_oid)
    except UnsupportedAlgorithm as error:
        problems.append(Problem("unsupported_algorithm", error.message))

    message_digest_ok = content_type_ok = None
    if has_attrs:
        content_type_ok = _check_content_type(attrs, ctx.content_type, problems)
        if algorithm is not None:
            message_digest_ok = _check_message_digest(attrs, ctx.digest(algorithm), problems)
        # Verified over the bytes received, re-tagged as a SET OF (RFC 5652 section 5.4).
        to_verify = b"\x31" + _der_length(len(signed_attrs.contents)) + signed_attrs.contents
    else:
        to_verify = ctx.content
        if standard_content_type(ctx.content_type) != OID_DATA:
            problems.append(
                Problem("missing_attribute", "Signed attributes are missing for non-data content.")
            )

    signature_ok = False
    if cert is None:
        problems.append(
            Problem("signer_certificate_missing", "The signer's certificate is not available.")
        )
    elif algorithm is not None:
        try:
            signature_ok = signatures.verify_with(
                signature_oid,
                info["signature_algorithm"]["parameters"],
                cert.public_key,
                info["signature"].native,
                to_verify,
                algorithm,
                ctx.sm2_ids,
            )
            if not signature_ok:
                problems.append(Problem("bad_signature", "The signature does not verify."))
        except UnsupportedAlgorithm as error:
            problems.append(Problem("unsupported_algorithm", error.message))
        except MalformedInput:
            raise
        except PkiError as error:
            problems.append(Problem("bad_signature", error.message))

    signing_time = _signing_time(attrs)
    signing_certificate_ok = _check_signing_certificate(attrs, cert, problems)
    chain = chain_then = None
    if cert is not None:
        chain = path_validation.validate(
            cert,
            trust_anchors=ctx.anchors,
            intermediates=ctx.pool,
            at=ctx.at,
            address=ctx.address,
            sm2_ids=ctx.sm2_ids,
            crls=ctx.crls,
            trusted_time=trusted,
        )
        then = trusted or signing_time
        if then is not None:
            chain_then = path_validation.validate(
                cert,
                trust_anchors=ctx.anchors,
                intermediates=ctx.pool,
                at=then,
                sm2_ids=ctx.sm2_ids,
            )
        chain_problems = list(chain.problems)
        if trusted is not None and chain_then is not None and chain_then.valid:
            chain_problems = [p for p in chain_problems if p.code not in TIME_CODES]
        problems.extend(chain_problems)

    return SignerResult(
        index=index,
        certificate=cert,
        digest_algorithm=algorithm.name if algorithm else digest_oid,
        signature_algorithm=signature_oid,
        signature_ok=signature_ok,
        message_digest_ok=message_digest_ok,
        content_type_ok=content_type_ok,
        signing_certificate_ok=signing_certificate_ok,
        signing_time=signing_time,
        trusted_time=trusted,
        chain=chain,
        chain_at_signing_time=chain_then,
        capabilities=_capabilities(attrs),
        problems=tuple(problems),
    )


def _find_signer(sid: cms.SignerIdentifier, certs: list[Certificate]) -> Certificate | None:
    for cert in certs:
        if sid.name == "subject_key_identifier":
            if cert.key_identifier == sid.chosen.native:
                return cert
        elif cert.serial_number == sid.chosen["serial_number"].native and same_name(
            cert.issuer, sid.chosen["issuer"]
        ):
            return cert
    return None


def _attributes(signed_attrs: cms.CMSAttributes) -> dict[str, list[cms.CMSAttribute]]:
    found: dict[str, list[cms.CMSAttribute]] = {}
    for attribute in signed_attrs:
        found.setdefault(attribute["type"].dotted, []).append(attribute)
    return found


def _single(attrs: dict[str, list[cms.CMSAttribute]], oid: str) -> core.Asn1Value | None:
    """The one value of a signed attribute that RFC 5652 allows only once; else MalformedInput."""
    found = attrs.get(oid)
    if not found:
        return None
    if len(found) != 1 or len(found[0]["values"]) != 1:
        raise MalformedInput(f"Signed attribute {oid} must have exactly one value.")
    return found[0]["values"][0]


def _check_content_type(attrs: dict, content_type: str, problems: list[Problem]) -> bool:
    value = _single(attrs, "1.2.840.113549.1.9.3")
    if value is None:
        problems.append(Problem("missing_attribute", "The contentType attribute is missing."))
        return False
    if value.dotted != content_type:
        problems.append(
            Problem("content_type_mismatch", "The signed contentType differs from the content's.")
        )
        return False
    return True


def _check_message_digest(attrs: dict, digest: bytes, problems: list[Problem]) -> bool:
    value = _single(attrs, "1.2.840.113549.1.9.4")
    if value is None:
        problems.append(Problem("missing_attribute", "The messageDigest attribute is missing."))
        return False
    if value.native != digest:
        problems.append(
            Problem("message_digest_mismatch", "The content was changed after signing.")
        )
        return False
    return True


def _signing_time(attrs: dict) -> datetime.datetime | None:
    value = _single(attrs, "1.2.840.113549.1.9.5")
    if value is None:
        return None
    when = value.native
    return when if when.tzinfo else when.replace(tzinfo=datetime.UTC)


def _capabilities(attrs: dict) -> tuple[caps.Capability, ...]:
    value = _single(attrs, "1.2.840.113549.1.9.15")
    return () if value is None else caps.parse(value.dump())


def _check_signing_certificate(
    attrs: dict, cert: Certificate | None, problems: list[Problem]
) -> bool | None:
    """RFC 5035 signingCertificateV2 (or RFC 2634 v1): the first ESSCertID names the signer's
    certificate, so a substitute certificate with the same key cannot be slipped in."""
    v2 = _single(attrs, "1.2.840.113549.1.9.16.2.47")
    v1 = _single(attrs, "1.2.840.113549.1.9.16.2.12")
    if (v2 is None and v1 is None) or cert is None:
        return None
    ess = (v2 or v1)["certs"][0]
    if v2 is not None:
        try:
            algorithm = digests.by_oid(ess["hash_algorithm"]["algorithm"].dotted)
        except UnsupportedAlgorithm as error:
            problems.append(Problem("unsupported_algorithm", error.message))
            return None
        actual = algorithm.compute(cert.dump())
    else:
        context = hashes.Hash(hashes.SHA1())
        context.update(cert.dump())
        actual = context.finalize()
    ok = ess["cert_hash"].native == actual
    issuer_serial = ess["issuer_serial"]
    if ok and not isinstance(issuer_serial, core.Void):
        ok = issuer_serial["serial_number"].native == cert.serial_number and any(
            name.name == "directory_name" and same_name(name.chosen, cert.issuer)
            for name in issuer_serial["issuer"]
        )
    if not ok:
        problems.append(
            Problem(
                "signing_certificate_mismatch",
                "The signingCertificate attribute names another certificate.",
            )
        )
    return ok


def _who(cert: Certificate | None) -> str:
    if cert is None:
        return "an unknown signer"
    addresses = path_validation.certificate_addresses(cert)
    if addresses:
        return addresses[0]
    try:
        return cert.subject.human_friendly
    except (ValueError, KeyError, TypeError):
        return "an unnamed signer"
