"""RFC 8555 section 6.7 problem documents (RFC 7807 `application/problem+json`).

Every refusal of the ACME layer is an `AcmeProblem` carrying the problem type, a sentence for
people and the HTTP status the server answers with; the server turns it into a response with
`to_json()` and `CONTENT_TYPE`, the client raises it from a problem document with
`AcmeProblem.from_json()`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import StrEnum
from typing import Any

CONTENT_TYPE = "application/problem+json"
URN_PREFIX = "urn:ietf:params:acme:error:"


class ProblemType(StrEnum):
    """The ACME error types of RFC 8555 section 6.7 (value: the short name after the prefix)."""

    ACCOUNT_DOES_NOT_EXIST = "accountDoesNotExist"
    ALREADY_REVOKED = "alreadyRevoked"
    BAD_CSR = "badCSR"
    BAD_NONCE = "badNonce"
    BAD_PUBLIC_KEY = "badPublicKey"
    BAD_REVOCATION_REASON = "badRevocationReason"
    BAD_SIGNATURE_ALGORITHM = "badSignatureAlgorithm"
    CAA = "caa"
    COMPOUND = "compound"
    CONNECTION = "connection"
    DNS = "dns"
    EXTERNAL_ACCOUNT_REQUIRED = "externalAccountRequired"
    INCORRECT_RESPONSE = "incorrectResponse"
    INVALID_CONTACT = "invalidContact"
    MALFORMED = "malformed"
    ORDER_NOT_READY = "orderNotReady"
    RATE_LIMITED = "rateLimited"
    REJECTED_IDENTIFIER = "rejectedIdentifier"
    SERVER_INTERNAL = "serverInternal"
    TLS = "tls"
    UNAUTHORIZED = "unauthorized"
    UNSUPPORTED_CONTACT = "unsupportedContact"
    UNSUPPORTED_IDENTIFIER = "unsupportedIdentifier"
    USER_ACTION_REQUIRED = "userActionRequired"

    @property
    def urn(self) -> str:
        return URN_PREFIX + self.value

    @property
    def default_status(self) -> int:
        return DEFAULT_STATUS[self]

    @classmethod
    def from_urn(cls, urn: str) -> ProblemType:
        """The type named by a full URN; ValueError for anything else (other namespaces too)."""
        if not isinstance(urn, str) or not urn.startswith(URN_PREFIX):
            raise ValueError(f"not an ACME problem type: {urn!r}")
        return cls(urn[len(URN_PREFIX) :])


#: HTTP status per type. RFC 8555 fixes some (badNonce 400 in 6.5, badSignatureAlgorithm 400 in
#: 6.2, orderNotReady 403 in 7.4, unauthorized for a url mismatch in 6.4, rateLimited 429 in
#: 6.6); the rest follow Boulder and Pebble: 400 for what the client sent, 403 for what it is
#: not allowed to do, 500 for the server's own failures.
DEFAULT_STATUS: dict[ProblemType, int] = {
    ProblemType.ACCOUNT_DOES_NOT_EXIST: 400,
    ProblemType.ALREADY_REVOKED: 400,
    ProblemType.BAD_CSR: 400,
    ProblemType.BAD_NONCE: 400,
    ProblemType.BAD_PUBLIC_KEY: 400,
    ProblemType.BAD_REVOCATION_REASON: 400,
    ProblemType.BAD_SIGNATURE_ALGORITHM: 400,
    ProblemType.CAA: 403,
    ProblemType.COMPOUND: 400,
    ProblemType.CONNECTION: 400,
    ProblemType.DNS: 400,
    ProblemType.EXTERNAL_ACCOUNT_REQUIRED: 403,
    ProblemType.INCORRECT_RESPONSE: 403,
    ProblemType.INVALID_CONTACT: 400,
    ProblemType.MALFORMED: 400,
    ProblemType.ORDER_NOT_READY: 403,
    ProblemType.RATE_LIMITED: 429,
    ProblemType.REJECTED_IDENTIFIER: 400,
    ProblemType.SERVER_INTERNAL: 500,
    ProblemType.TLS: 400,
    ProblemType.UNAUTHORIZED: 403,
    ProblemType.UNSUPPORTED_CONTACT: 400,
    ProblemType.UNSUPPORTED_IDENTIFIER: 400,
    ProblemType.USER_ACTION_REQUIRED: 403,
}


class AcmeProblem(Exception):
    """An ACME error: `type` (a ProblemType), `detail`, `status` (HTTP), and optionally the
    `identifier` it concerns, `subproblems` (section 6.7.1) and extra members (`algorithms` of
    badSignatureAlgorithm, `instance` of userActionRequired...)."""

    def __init__(
        self,
        type: ProblemType,
        detail: str,
        *,
        status: int | None = None,
        identifier: Mapping[str, str] | None = None,
        subproblems: Iterable[AcmeProblem] = (),
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(f"{type.value}: {detail}")
        self.type = ProblemType(type)
        self.detail = detail
        self.status = self.type.default_status if status is None else status
        self.identifier = dict(identifier) if identifier is not None else None
        self.subproblems = list(subproblems)
        self.extra = dict(extra or {})

    def to_json(self) -> dict[str, Any]:
        """The problem document (serialise with json.dumps, send as CONTENT_TYPE)."""
        doc: dict[str, Any] = dict(self.extra)
        doc.update({"type": self.type.urn, "detail": self.detail, "status": self.status})
        if self.identifier is not None:
            doc["identifier"] = dict(self.identifier)
        if self.subproblems:
            doc["subproblems"] = [_subproblem_json(p) for p in self.subproblems]
        return doc

    @classmethod
    def from_json(cls, doc: Any, *, status: int | None = None) -> AcmeProblem:
        """A problem document received by a client. A type outside the ACME namespace, or a
        document that is not one, becomes serverInternal with the text kept in the detail."""
        if not isinstance(doc, Mapping):
            return cls(ProblemType.SERVER_INTERNAL, f"not a problem document: {doc!r:.200}")
        detail = doc.get("detail")
        detail = detail if isinstance(detail, str) else ""
        try:
            ptype = ProblemType.from_urn(doc.get("type", ""))
        except ValueError:
            ptype = ProblemType.SERVER_INTERNAL
            detail = f"{doc.get('type')!r}: {detail}"
        doc_status = doc.get("status")
        if status is None and isinstance(doc_status, int) and not isinstance(doc_status, bool):
            status = doc_status
        identifier = doc.get("identifier")
        subs = doc.get("subproblems")
        extra = {
            k: v
            for k, v in doc.items()
            if k not in ("type", "detail", "status", "identifier", "subproblems")
        }
        return cls(
            ptype,
            detail,
            status=status,
            identifier=identifier if isinstance(identifier, Mapping) else None,
            subproblems=[cls.from_json(s) for s in subs] if isinstance(subs, list) else (),
            extra=extra,
        )

    def __repr__(self) -> str:
        return f"AcmeProblem({self.type.value!r}, {self.detail!r}, status={self.status})"


def _subproblem_json(problem: AcmeProblem) -> dict[str, Any]:
    doc = problem.to_json()
    doc.pop("status", None)  # subproblems carry no HTTP status of their own
    return doc


def malformed(detail: str) -> AcmeProblem:
    return AcmeProblem(ProblemType.MALFORMED, detail)


def unauthorized(detail: str) -> AcmeProblem:
    return AcmeProblem(ProblemType.UNAUTHORIZED, detail)
