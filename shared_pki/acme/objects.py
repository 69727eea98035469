"""ACME resources (RFC 8555 section 7.1) as dataclasses, their status machines (section 7.1.6) as
pure transition functions, and the `email` identifier of RFC 8823 with its normalisation.

`to_json()` gives the JSON object the server sends; `from_json()` parses what a client receives
and is strict about what it understands: a status value outside the RFC's list, a wrong type or
a missing required member is `malformed` (unknown extra members are ignored, as section 7.1
asks of clients). Request payloads (newAccount, newOrder, finalize, revokeCert...) have their
own `parse_*` functions that raise the problem type the server must answer with.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, TypeVar
from urllib.parse import unquote

from shared_pki.acme.jws import b64url_decode
from shared_pki.acme.problems import AcmeProblem, ProblemType, malformed

EMAIL = "email"
EMAIL_REPLY_00 = "email-reply-00"

# ---------------------------------------------------------------------------------------------
# Statuses


class AccountStatus(StrEnum):
    VALID = "valid"
    DEACTIVATED = "deactivated"
    REVOKED = "revoked"


class OrderStatus(StrEnum):
    PENDING = "pending"
    READY = "ready"
    PROCESSING = "processing"
    VALID = "valid"
    INVALID = "invalid"


class AuthorizationStatus(StrEnum):
    PENDING = "pending"
    VALID = "valid"
    INVALID = "invalid"
    DEACTIVATED = "deactivated"
    EXPIRED = "expired"
    REVOKED = "revoked"


class ChallengeStatus(StrEnum):
    PENDING = "pending"
    PROCESSING = "processing"
    VALID = "valid"
    INVALID = "invalid"


_E = TypeVar("_E", bound=StrEnum)


def _enum(cls: type[_E], value: Any, what: str) -> _E:
    if isinstance(value, cls):
        return value
    if isinstance(value, str):
        try:
            return cls(value)
        except ValueError:
            pass
    raise malformed(f"{what} {value!r} is not one of {[m.value for m in cls]}")


# ---------------------------------------------------------------------------------------------
# JSON helpers


def format_time(when: datetime) -> str:
    """RFC 3339 in UTC with a Z, whole seconds (what RFC 8555 examples and Boulder send)."""
    if when.tzinfo is None:
        raise ValueError("naive datetime")
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: Any, what: str = "timestamp") -> datetime:
    """An RFC 3339 timestamp with an offset (or Z), as an aware datetime in UTC."""
    if not isinstance(value, str) or not re.fullmatch(
        r"\d{4}-\d\d-\d\d[Tt]\d\d:\d\d:\d\d(\.\d{1,9})?([Zz]|[+-]\d\d:\d\d)", value
    ):
        raise malformed(f"{what} {value!r} is not an RFC 3339 timestamp")
    text = value.upper().replace("Z", "+00:00")
    text = re.sub(r"\.(\d{6})\d+", r".\1", text)  # Python keeps microseconds
    try:
        return datetime.fromisoformat(text).astimezone(UTC)
    except ValueError as exc:
        raise malformed(f"{what} {value!r} is not a valid time") from exc


def _obj(value: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise malformed(f"{what} is not a JSON object")
    return value


def _str(obj: Mapping[str, Any], key: str, what: str, *, required: bool = True) -> str | None:
    value = obj.get(key)
    if value is None and not required and key not in obj:
        return None
    if not isinstance(value, str):
        raise malformed(f"{what} {key!r} is not a string")
    return value


def _req_str(obj: Mapping[str, Any], key: str, what: str) -> str:
    value = _str(obj, key, what)
    assert value is not None
    return value


def _str_list(obj: Mapping[str, Any], key: str, what: str) -> tuple[str, ...]:
    value = obj.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise malformed(f"{what} {key!r} is not a list of strings")
    return tuple(value)


def _lenient_str_list(value: Any) -> tuple[str, ...] | None:
    """An extension field another server may fill differently: a list of strings, else None
    (never a reason to refuse the whole object)."""
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    return None


def _opt_time(obj: Mapping[str, Any], key: str, what: str) -> datetime | None:
    return parse_time(obj[key], f"{what} {key!r}") if key in obj else None


def _opt_bool(obj: Mapping[str, Any], key: str, what: str) -> bool | None:
    value = obj.get(key)
    if value is not None and not isinstance(value, bool):
        raise malformed(f"{what} {key!r} is not a boolean")
    return value


def _opt_problem(obj: Mapping[str, Any], key: str, what: str) -> dict[str, Any] | None:
    if key not in obj:
        return None
    return dict(_obj(obj[key], f"{what} {key!r}"))


def _drop_none(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if v is not None}


# ---------------------------------------------------------------------------------------------
# Identifiers


@dataclass(frozen=True)
class Identifier:
    type: str
    value: str

    def to_json(self) -> dict[str, str]:
        return {"type": self.type, "value": self.value}

    @classmethod
    def from_json(cls, obj: Any) -> Identifier:
        """Structure only (type and value strings); `check_identifier` also judges them."""
        obj = _obj(obj, "identifier")
        return cls(_req_str(obj, "type", "identifier"), _req_str(obj, "value", "identifier"))


# RFC 5322 atext; the local part must be a dot-atom: no quoted strings, comments, spaces,
# leading, trailing or doubled dots. RFC 5321 4.5.3.1: local part at most 64 octets.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_DOT_ATOM = re.compile(rf"{_ATEXT}(?:\.{_ATEXT})*")
_LDH_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")


def _rejected(value: str, detail: str) -> AcmeProblem:
    return AcmeProblem(
        ProblemType.REJECTED_IDENTIFIER,
        detail,
        identifier={"type": EMAIL, "value": value},
    )


def _domain_to_ascii(value: str, domain: str) -> str:
    if not domain:
        raise _rejected(value, "the address has no domain")
    if domain.startswith("["):
        raise _rejected(value, "address literals are not accepted, only domain names")
    if domain.isascii():
        ascii_domain = domain.lower()
    else:
        import idna  # IDNA 2008 with UTS 46 mapping; needed only for internationalised domains

        try:
            ascii_domain = idna.encode(domain, uts46=True, transitional=False).decode("ascii")
        except idna.IDNAError as exc:
            raise _rejected(value, f"the domain is not a valid IDN: {exc}") from exc
    labels = ascii_domain.split(".")
    if len(labels) < 2:
        raise _rejected(value, "the domain must have at least two labels")
    if len(ascii_domain) > 253:
        raise _rejected(value, "the domain is longer than 253 characters")
    for label in labels:
        if not _LDH_LABEL.fullmatch(label):
            raise _rejected(value, f"the domain label {label!r} is not a host name label")
        if label.startswith("xn--") or label[2:4] == "--":
            import idna

            try:
                idna.decode(label)
            except idna.IDNAError as exc:
                raise _rejected(
                    value, f"the domain label {label!r} is not a valid A-label"
                ) from exc
    if labels[-1].isdigit():
        raise _rejected(value, "the domain looks like an IP address")
    return ascii_domain


def normalize_email(value: Any) -> str:
    """The canonical form of an `email` identifier's value: the local part kept exactly as
    given (it is case-sensitive in principle) and the domain in lowercase, internationalised
    domains as IDNA A-labels. Quoted, commented, non-ASCII or otherwise unusual local parts and
    address literals are refused with rejectedIdentifier."""
    if not isinstance(value, str):
        raise malformed("identifier value is not a string")
    if not value or len(value) > 320 or not value.isprintable() or any(c.isspace() for c in value):
        raise _rejected(value, "not a plain mailbox address")
    local, at, domain = value.rpartition("@")
    if not at or not local:
        raise _rejected(value, "an email identifier is local-part@domain")
    if not local.isascii():
        raise _rejected(value, "internationalised local parts (SMTPUTF8) are not supported")
    if not _DOT_ATOM.fullmatch(local):
        raise _rejected(value, "the local part must be a plain dot-atom (no quotes or comments)")
    if len(local) > 64:
        raise _rejected(value, "the local part is longer than 64 characters")
    address = f"{local}@{_domain_to_ascii(value, domain)}"
    if len(address) > 254:
        raise _rejected(value, "the address is longer than 254 characters")
    return address


def check_identifier(obj: Any) -> Identifier:
    """An identifier from a request, judged: type `email` only (anything else is
    unsupportedIdentifier), the value normalised (`normalize_email`)."""
    ident = Identifier.from_json(obj)
    if ident.type != EMAIL:
        raise AcmeProblem(
            ProblemType.UNSUPPORTED_IDENTIFIER,
            f"identifier type {ident.type!r} is not supported; this CA issues for 'email' only",
            identifier=ident.to_json(),
        )
    return Identifier(EMAIL, normalize_email(ident.value))


def check_identifiers(values: Any, *, limit: int = 10) -> tuple[Identifier, ...]:
    """The identifiers of a newOrder: a non-empty list, each judged by `check_identifier`,
    duplicates (after normalisation) removed. Several refusals come back as one problem with
    subproblems (RFC 8555 section 6.7.1)."""
    if not isinstance(values, list) or not values:
        raise malformed("'identifiers' must be a non-empty list")
    if len(values) > limit:
        raise AcmeProblem(ProblemType.REJECTED_IDENTIFIER, f"at most {limit} identifiers")
    out: list[Identifier] = []
    problems: list[AcmeProblem] = []
    for item in values:
        try:
            ident = check_identifier(item)
        except AcmeProblem as exc:
            problems.append(exc)
            continue
        if ident not in out:
            out.append(ident)
    if len(problems) == 1:
        raise problems[0]
    if problems:
        types = {p.type for p in problems}
        top = problems[0].type if len(types) == 1 else ProblemType.MALFORMED
        raise AcmeProblem(top, "some identifiers were refused", subproblems=problems)
    return tuple(out)


# ---------------------------------------------------------------------------------------------
# Directory


@dataclass(frozen=True)
class DirectoryMeta:
    terms_of_service: str | None = None
    website: str | None = None
    caa_identities: tuple[str, ...] = ()
    external_account_required: bool | None = None
    #: An extension field of ours (`smimeSuites`): the certificate families the CA issues,
    #: "intl" (RSA/ECDSA) and "sm" (SM2). None: the CA does not say (a plain RFC 8823 CA).
    smime_suites: tuple[str, ...] | None = None

    def to_json(self) -> dict[str, Any]:
        return _drop_none(
            {
                "termsOfService": self.terms_of_service,
                "website": self.website,
                "caaIdentities": list(self.caa_identities) or None,
                "externalAccountRequired": self.external_account_required,
                "smimeSuites": None if self.smime_suites is None else list(self.smime_suites),
            }
        )

    @classmethod
    def from_json(cls, obj: Any) -> DirectoryMeta:
        obj = _obj(obj, "directory meta")
        return cls(
            terms_of_service=_str(obj, "termsOfService", "meta", required=False),
            website=_str(obj, "website", "meta", required=False),
            caa_identities=_str_list(obj, "caaIdentities", "meta"),
            external_account_required=_opt_bool(obj, "externalAccountRequired", "meta"),
            smime_suites=_lenient_str_list(obj.get("smimeSuites")),
        )


@dataclass(frozen=True)
class Directory:
    new_nonce: str
    new_account: str
    new_order: str
    revoke_cert: str
    key_change: str
    new_authz: str | None = None
    meta: DirectoryMeta | None = None
    #: Our extension resource (`publishCert`): publish a certificate from another CA in the
    #: directory, proved by a valid authorization. None at a CA without it.
    publish_cert: str | None = None

    def to_json(self) -> dict[str, Any]:
        return _drop_none(
            {
                "newNonce": self.new_nonce,
                "newAccount": self.new_account,
                "newOrder": self.new_order,
                "newAuthz": self.new_authz,
                "revokeCert": self.revoke_cert,
                "keyChange": self.key_change,
                "meta": self.meta.to_json() if self.meta else None,
                "publishCert": self.publish_cert,
            }
        )

    @classmethod
    def from_json(cls, obj: Any) -> Directory:
        obj = _obj(obj, "directory")
        return cls(
            new_nonce=_req_str(obj, "newNonce", "directory"),
            new_account=_req_str(obj, "newAccount", "directory"),
            new_order=_req_str(obj, "newOrder", "directory"),
            revoke_cert=_req_str(obj, "revokeCert", "directory"),
            key_change=_req_str(obj, "keyChange", "directory"),
            new_authz=_str(obj, "newAuthz", "directory", required=False),
            meta=DirectoryMeta.from_json(obj["meta"]) if "meta" in obj else None,
            publish_cert=obj["publishCert"] if isinstance(obj.get("publishCert"), str) else None,
        )


# ---------------------------------------------------------------------------------------------
# Account


@dataclass(frozen=True)
class Account:
    status: AccountStatus
    contact: tuple[str, ...] = ()
    terms_of_service_agreed: bool | None = None
    orders: str | None = None

    def to_json(self) -> dict[str, Any]:
        return _drop_none(
            {
                "status": self.status.value,
                "contact": list(self.contact),
                "termsOfServiceAgreed": self.terms_of_service_agreed,
                "orders": self.orders,
            }
        )

    @classmethod
    def from_json(cls, obj: Any) -> Account:
        obj = _obj(obj, "account")
        return cls(
            status=_enum(AccountStatus, obj.get("status"), "account status"),
            contact=_str_list(obj, "contact", "account"),
            terms_of_service_agreed=_opt_bool(obj, "termsOfServiceAgreed", "account"),
            orders=_str(obj, "orders", "account", required=False),
        )


@dataclass(frozen=True)
class NewAccountRequest:
    contact: tuple[str, ...] = ()
    terms_of_service_agreed: bool | None = None
    only_return_existing: bool = False
    external_account_binding: dict[str, Any] | None = None


def check_contacts(contacts: Iterable[str]) -> tuple[str, ...]:
    """Account contact URLs: `mailto:` only (unsupportedContact otherwise), each with exactly
    one plain address and no header fields (invalidContact otherwise, RFC 8555 section 7.3)."""
    out = []
    for url in contacts:
        scheme, _, rest = url.partition(":")
        if scheme.lower() != "mailto":
            raise AcmeProblem(ProblemType.UNSUPPORTED_CONTACT, f"contact {url!r} is not mailto:")
        if "?" in rest or "," in unquote(rest):
            raise AcmeProblem(
                ProblemType.INVALID_CONTACT,
                f"contact {url!r} has header fields or several addresses",
            )
        try:
            address = normalize_email(unquote(rest))
        except AcmeProblem as exc:
            raise AcmeProblem(
                ProblemType.INVALID_CONTACT, f"contact {url!r}: {exc.detail}"
            ) from exc
        out.append(f"mailto:{address}")
    return tuple(out)


def parse_new_account(payload: Any) -> NewAccountRequest:
    """The payload of a newAccount request, its contacts checked."""
    obj = _obj(payload, "newAccount payload")
    eab = obj.get("externalAccountBinding")
    if eab is not None and not isinstance(eab, Mapping):
        raise malformed("'externalAccountBinding' is not a JSON object")
    return NewAccountRequest(
        contact=check_contacts(_str_list(obj, "contact", "newAccount")),
        terms_of_service_agreed=_opt_bool(obj, "termsOfServiceAgreed", "newAccount"),
        only_return_existing=bool(_opt_bool(obj, "onlyReturnExisting", "newAccount")),
        external_account_binding=dict(eab) if eab is not None else None,
    )


# ---------------------------------------------------------------------------------------------
# Challenge, authorization, order


@dataclass(frozen=True)
class Challenge:
    """A challenge; `from_address` is the `from` member of email-reply-00 (the CA's sender)."""

    type: str
    url: str
    status: ChallengeStatus
    token: str | None = None
    from_address: str | None = None
    validated: datetime | None = None
    error: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return _drop_none(
            {
                "type": self.type,
                "url": self.url,
                "status": self.status.value,
                "token": self.token,
                "from": self.from_address,
                "validated": format_time(self.validated) if self.validated else None,
                "error": self.error,
            }
        )

    @classmethod
    def from_json(cls, obj: Any) -> Challenge:
        obj = _obj(obj, "challenge")
        challenge = cls(
            type=_req_str(obj, "type", "challenge"),
            url=_req_str(obj, "url", "challenge"),
            status=_enum(ChallengeStatus, obj.get("status"), "challenge status"),
            token=_str(obj, "token", "challenge", required=False),
            from_address=_str(obj, "from", "challenge", required=False),
            validated=_opt_time(obj, "validated", "challenge"),
            error=_opt_problem(obj, "error", "challenge"),
        )
        if challenge.type == EMAIL_REPLY_00 and (
            challenge.token is None or challenge.from_address is None
        ):
            raise malformed("an email-reply-00 challenge needs 'token' and 'from'")
        return challenge


@dataclass(frozen=True)
class Authorization:
    identifier: Identifier
    status: AuthorizationStatus
    challenges: tuple[Challenge, ...] = ()
    expires: datetime | None = None
    wildcard: bool | None = None

    def to_json(self) -> dict[str, Any]:
        return _drop_none(
            {
                "identifier": self.identifier.to_json(),
                "status": self.status.value,
                "expires": format_time(self.expires) if self.expires else None,
                "challenges": [c.to_json() for c in self.challenges],
                "wildcard": self.wildcard,
            }
        )

    @classmethod
    def from_json(cls, obj: Any) -> Authorization:
        obj = _obj(obj, "authorization")
        challenges = obj.get("challenges")
        if not isinstance(challenges, list):
            raise malformed("authorization 'challenges' is not a list")
        return cls(
            identifier=Identifier.from_json(obj.get("identifier")),
            status=_enum(AuthorizationStatus, obj.get("status"), "authorization status"),
            challenges=tuple(Challenge.from_json(c) for c in challenges),
            expires=_opt_time(obj, "expires", "authorization"),
            wildcard=_opt_bool(obj, "wildcard", "authorization"),
        )


@dataclass(frozen=True)
class Order:
    status: OrderStatus
    identifiers: tuple[Identifier, ...]
    authorizations: tuple[str, ...]
    finalize: str
    expires: datetime | None = None
    not_before: datetime | None = None
    not_after: datetime | None = None
    error: dict[str, Any] | None = None
    certificate: str | None = None

    def to_json(self) -> dict[str, Any]:
        return _drop_none(
            {
                "status": self.status.value,
                "expires": format_time(self.expires) if self.expires else None,
                "identifiers": [i.to_json() for i in self.identifiers],
                "notBefore": format_time(self.not_before) if self.not_before else None,
                "notAfter": format_time(self.not_after) if self.not_after else None,
                "error": self.error,
                "authorizations": list(self.authorizations),
                "finalize": self.finalize,
                "certificate": self.certificate,
            }
        )

    @classmethod
    def from_json(cls, obj: Any) -> Order:
        obj = _obj(obj, "order")
        identifiers = obj.get("identifiers")
        if not isinstance(identifiers, list):
            raise malformed("order 'identifiers' is not a list")
        return cls(
            status=_enum(OrderStatus, obj.get("status"), "order status"),
            identifiers=tuple(Identifier.from_json(i) for i in identifiers),
            authorizations=_str_list(obj, "authorizations", "order"),
            finalize=_req_str(obj, "finalize", "order"),
            expires=_opt_time(obj, "expires", "order"),
            not_before=_opt_time(obj, "notBefore", "order"),
            not_after=_opt_time(obj, "notAfter", "order"),
            error=_opt_problem(obj, "error", "order"),
            certificate=_str(obj, "certificate", "order", required=False),
        )


@dataclass(frozen=True)
class NewOrderRequest:
    identifiers: tuple[Identifier, ...]
    not_before: datetime | None = None
    not_after: datetime | None = None


def parse_new_order(payload: Any, *, max_identifiers: int = 10) -> NewOrderRequest:
    """The payload of a newOrder request: identifiers judged and normalised, optional validity."""
    obj = _obj(payload, "newOrder payload")
    return NewOrderRequest(
        identifiers=check_identifiers(obj.get("identifiers"), limit=max_identifiers),
        not_before=_opt_time(obj, "notBefore", "newOrder"),
        not_after=_opt_time(obj, "notAfter", "newOrder"),
    )


def parse_finalize(payload: Any) -> bytes:
    """The DER CSR of a finalize request (its content is judged by the CA: badCSR)."""
    obj = _obj(payload, "finalize payload")
    try:
        der = b64url_decode(obj.get("csr"), what="csr")
    except AcmeProblem as exc:
        raise AcmeProblem(ProblemType.BAD_CSR, exc.detail) from exc
    if not der:
        raise AcmeProblem(ProblemType.BAD_CSR, "empty csr")
    return der


#: RFC 5280 CRLReason codes a revokeCert may carry (7 is unused, 8 removeFromCRL is CRL-only).
REVOCATION_REASONS = frozenset({0, 1, 2, 3, 4, 5, 6, 9, 10})


def parse_revocation(payload: Any) -> tuple[bytes, int | None]:
    """The certificate (DER) and optional reason code of a revokeCert request."""
    obj = _obj(payload, "revokeCert payload")
    der = b64url_decode(obj.get("certificate"), what="certificate")
    reason = obj.get("reason")
    if reason is not None and (
        isinstance(reason, bool) or not isinstance(reason, int) or reason not in REVOCATION_REASONS
    ):
        raise AcmeProblem(ProblemType.BAD_REVOCATION_REASON, f"reason {reason!r} is not allowed")
    return der, reason


# ---------------------------------------------------------------------------------------------
# Status machines (RFC 8555 section 7.1.6)


class ChallengeEvent(StrEnum):
    RESPOND = "respond"  # the client POSTed {} to the challenge URL
    SUCCEED = "succeed"  # the server's validation succeeded
    FAIL = "fail"  # the server's validation failed (or the challenge expired)


class AuthorizationEvent(StrEnum):
    REFRESH = "refresh"  # re-derive from the challenges and the clock
    DEACTIVATE = "deactivate"  # the client POSTed {"status": "deactivated"}
    REVOKE = "revoke"  # the server revoked it


class OrderEvent(StrEnum):
    REFRESH = "refresh"  # re-derive from the authorizations and the clock
    FINALIZE = "finalize"  # the client POSTed a CSR
    ISSUED = "issued"  # the certificate was issued
    FAIL = "fail"  # issuance failed (or the server gave up on the order)


class AccountEvent(StrEnum):
    DEACTIVATE = "deactivate"  # the client POSTed {"status": "deactivated"}
    REVOKE = "revoke"  # the server revoked it


def _internal(what: str, current: StrEnum, event: StrEnum) -> AcmeProblem:
    return AcmeProblem(
        ProblemType.SERVER_INTERNAL, f"{what} cannot go from {current.value} on {event.value}"
    )


def next_challenge_status(current: ChallengeStatus, event: ChallengeEvent) -> ChallengeStatus:
    """pending -respond-> processing -succeed/fail-> valid/invalid. A response to a challenge
    that is no longer pending changes nothing (the client may retry its POST); a server event
    out of order is serverInternal. `fail` also ends a pending challenge (expiry, error)."""
    current = _enum(ChallengeStatus, current, "challenge status")
    event = ChallengeEvent(event)
    if event is ChallengeEvent.RESPOND:
        return ChallengeStatus.PROCESSING if current is ChallengeStatus.PENDING else current
    if event is ChallengeEvent.SUCCEED and current is ChallengeStatus.PROCESSING:
        return ChallengeStatus.VALID
    if event is ChallengeEvent.FAIL and current in (
        ChallengeStatus.PENDING,
        ChallengeStatus.PROCESSING,
    ):
        return ChallengeStatus.INVALID
    raise _internal("a challenge", current, event)


def _expired(now: datetime | None, expires: datetime | None) -> bool:
    return now is not None and expires is not None and now >= expires


def next_authorization_status(
    current: AuthorizationStatus,
    event: AuthorizationEvent = AuthorizationEvent.REFRESH,
    *,
    challenge_statuses: Sequence[ChallengeStatus] = (),
    now: datetime | None = None,
    expires: datetime | None = None,
) -> AuthorizationStatus:
    """pending becomes valid when one challenge is valid, invalid when one failed, expired at
    `expires`; valid becomes expired at `expires`, deactivated by the client, revoked by the
    server; the other states are final. Deactivating anything but a pending or valid
    authorization is malformed (the client asked for something impossible)."""
    current = _enum(AuthorizationStatus, current, "authorization status")
    event = AuthorizationEvent(event)
    statuses = [_enum(ChallengeStatus, s, "challenge status") for s in challenge_statuses]
    live = (AuthorizationStatus.PENDING, AuthorizationStatus.VALID)
    refreshed = current
    if current in live and _expired(now, expires):
        refreshed = AuthorizationStatus.EXPIRED
    elif current is AuthorizationStatus.PENDING:
        if ChallengeStatus.VALID in statuses:
            refreshed = AuthorizationStatus.VALID
        elif ChallengeStatus.INVALID in statuses:
            refreshed = AuthorizationStatus.INVALID
    if event is AuthorizationEvent.REFRESH:
        return refreshed
    if event is AuthorizationEvent.DEACTIVATE:
        if refreshed in live:
            return AuthorizationStatus.DEACTIVATED
        raise malformed(f"an authorization that is {refreshed.value} cannot be deactivated")
    if refreshed is AuthorizationStatus.VALID:
        return AuthorizationStatus.REVOKED
    raise _internal("an authorization", refreshed, event)


_DEAD_AUTHZ = frozenset(
    {
        AuthorizationStatus.INVALID,
        AuthorizationStatus.DEACTIVATED,
        AuthorizationStatus.EXPIRED,
        AuthorizationStatus.REVOKED,
    }
)


def next_order_status(
    current: OrderStatus,
    event: OrderEvent = OrderEvent.REFRESH,
    *,
    authorization_statuses: Sequence[AuthorizationStatus] = (),
    now: datetime | None = None,
    expires: datetime | None = None,
) -> OrderStatus:
    """pending becomes ready when every authorization is valid, invalid when one is invalid,
    deactivated, expired or revoked, or when the order expires; ready becomes processing on
    finalize (finalizing an order that is not ready is orderNotReady, 403), processing becomes
    valid when the certificate is issued or invalid when issuance fails."""
    current = _enum(OrderStatus, current, "order status")
    event = OrderEvent(event)
    authz = [_enum(AuthorizationStatus, s, "authorization status") for s in authorization_statuses]
    refreshed = current
    if current in (OrderStatus.PENDING, OrderStatus.READY):
        if _expired(now, expires) or any(s in _DEAD_AUTHZ for s in authz):
            refreshed = OrderStatus.INVALID
        elif authz and all(s is AuthorizationStatus.VALID for s in authz):
            refreshed = OrderStatus.READY
        else:
            refreshed = OrderStatus.PENDING
    if event is OrderEvent.REFRESH:
        return refreshed
    if event is OrderEvent.FINALIZE:
        if refreshed is OrderStatus.READY:
            return OrderStatus.PROCESSING
        raise AcmeProblem(ProblemType.ORDER_NOT_READY, f"the order is {refreshed.value}, not ready")
    if event is OrderEvent.ISSUED and refreshed is OrderStatus.PROCESSING:
        return OrderStatus.VALID
    if event is OrderEvent.FAIL and refreshed in (
        OrderStatus.PENDING,
        OrderStatus.READY,
        OrderStatus.PROCESSING,
    ):
        return OrderStatus.INVALID
    raise _internal("an order", refreshed, event)


def next_account_status(current: AccountStatus, event: AccountEvent) -> AccountStatus:
    """valid -deactivate-> deactivated, valid -revoke-> revoked; both final. Acting on an
    account that is not valid is unauthorized (RFC 8555 section 7.3.6)."""
    current = _enum(AccountStatus, current, "account status")
    event = AccountEvent(event)
    require_valid_account(current)
    if event is AccountEvent.DEACTIVATE:
        return AccountStatus.DEACTIVATED
    return AccountStatus.REVOKED


def require_valid_account(status: AccountStatus) -> None:
    """Requests signed by a deactivated or revoked account are refused (unauthorized)."""
    if _enum(AccountStatus, status, "account status") is not AccountStatus.VALID:
        raise AcmeProblem(ProblemType.UNAUTHORIZED, f"the account is {AccountStatus(status).value}")


__all__ = [
    "EMAIL",
    "EMAIL_REPLY_00",
    "Account",
    "AccountEvent",
    "AccountStatus",
    "Authorization",
    "AuthorizationEvent",
    "AuthorizationStatus",
    "Challenge",
    "ChallengeEvent",
    "ChallengeStatus",
    "Directory",
    "DirectoryMeta",
    "Identifier",
    "NewAccountRequest",
    "NewOrderRequest",
    "Order",
    "OrderEvent",
    "OrderStatus",
    "check_contacts",
    "check_identifier",
    "check_identifiers",
    "format_time",
    "next_account_status",
    "next_authorization_status",
    "next_challenge_status",
    "next_order_status",
    "normalize_email",
    "parse_finalize",
    "parse_new_account",
    "parse_new_order",
    "parse_revocation",
    "parse_time",
    "require_valid_account",
]
