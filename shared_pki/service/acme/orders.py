"""ACME orders, authorizations, challenges, finalize, certificates and revocation (RFC 8555
sections 7.1.2.1, 7.4 to 7.6) for RFC 8823 `email` identifiers.

Decisions:
- One address per order: an S/MIME certificate names exactly one rfc822Name (the profile), so
  an order with several identifiers is rejectedIdentifier; `notBefore`/`notAfter` in newOrder
  are refused (malformed): the CA sets validity (`certificate_days`).
- Authorizations belong to (account, address). A new order reuses the account's *pending*
  authorization for the address (one challenge mail at a time per mailbox; this is also how the
  dual pair ordered together shares one validation) and, when `reuse_valid_authorizations`
  (default on), its *valid* one. So one validated authorization serves both orders of a dual
  pair: the RSA/ECDSA order and the SM2 order for the same address; the family is chosen at
  finalize by the CSR's key (RSA/ECDSA -> intl CA, SM2 -> sm2 CA). `authorization_per_order`
  turns all reuse off: every order gets its own authorization and challenge mail, as some other
  RFC 8823 CAs do.
- An authorization and its single `email-reply-00` challenge expire together, `challenge_hours`
  after creation (at most 24 h: RFC 8823 and the S/MIME BR 3.2.2.4 random-value lifetime); a
  valid authorization is reusable until then. The challenge's `token` is token-part2, its
  `from` is `mail_from` (or the CA mail identity's address); token-part1 stays in the database
  for the mail validator.
- Challenge POST `{}` moves a pending challenge to processing and calls the validator
  (`validation`); the answer is the challenge as it is after `start` returned (a synchronous
  validator may already have made it valid). POST-as-GET just reads it, unless
  `challenge_post_validates_at_once` makes it start the validation too, as some servers do. An
  expired challenge is failed (unauthorized) on POST.
- Finalize with a refused CSR leaves the order `ready` so the client can send a better CSR.
  Only one finalize of an order issues (ready -> processing is a conditional UPDATE).
- The certificate URL answers `application/pem-certificate-chain`: the leaf then its issuing
  CA, without the root (as RFC 8555 9.1 and common CAs do: relying parties hold the root as a
  trust anchor, published at /ca/roots.pem). Only the ordering account may download it.
- revokeCert: signed (kid) by the account that ordered it or by an account holding a valid
  authorization for the address (RFC 8555 7.6), or (jwk) by the certificate's own key (RSA and
  ECDSA only: SM2 is not a JWS algorithm). Revocation withdraws the certificate from the
  directory at once and the CRL lists it on the next fetch (ca_files regenerates on change).
"""

from __future__ import annotations

import datetime
import json
import math
import secrets
import time
from typing import Any

from asn1crypto import pem
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from sqlalchemy import Connection, func, insert, select, update
from sqlalchemy.engine import Row
from starlette.requests import Request

from shared_pki.acme import email_reply, jws
from shared_pki.acme.objects import (
    EMAIL_REPLY_00,
    Authorization,
    AuthorizationEvent,
    AuthorizationStatus,
    Challenge,
    ChallengeStatus,
    Identifier,
    Order,
    OrderStatus,
    next_authorization_status,
    parse_finalize,
    parse_new_order,
    parse_revocation,
)
from shared_pki.acme.problems import AcmeProblem, ProblemType, malformed, unauthorized
from shared_pki.ca import profile
from shared_pki.errors import PkiError
from shared_pki.service.acme import transitions as acme_state
from shared_pki.service.acme.http import Acme, RateLimited, Reply
from shared_pki.service.ca import issuance
from shared_pki.service.storage import limits
from shared_pki.service.storage.store import (
    authorizations,
    certificates,
    challenges,
    order_authorizations,
    orders,
)

PEM_CHAIN = "application/pem-certificate-chain"


def _utc(epoch: float | None) -> Any:
    return None if epoch is None else datetime.datetime.fromtimestamp(epoch, datetime.UTC)


def _not_found(what: str) -> AcmeProblem:
    return AcmeProblem(ProblemType.MALFORMED, f"no such {what}", status=404)


def _owned(row: Row | None, account: Row | None, what: str) -> Row:
    if row is None:
        raise _not_found(what)
    assert account is not None
    if row.account != account.id:
        raise unauthorized(f"this {what} belongs to another account")
    return row


# ---- JSON views -------------------------------------------------------------------------------


def order_json(acme: Acme, db: Connection, order: Row) -> dict[str, Any]:
    authz_ids = [
        authz_id
        for (authz_id,) in db.execute(
            select(order_authorizations.c.authorization_id)
            .where(order_authorizations.c.order_id == order.id)
            .order_by(order_authorizations.c.authorization_id)
        )
    ]
    return Order(
        status=OrderStatus(order.status),
        identifiers=tuple(Identifier(**i) for i in json.loads(order.identifiers)),
        authorizations=tuple(acme.url("authz", a) for a in authz_ids),
        finalize=acme.url("order", order.id, "finalize"),
        expires=_utc(order.expires),
        error=json.loads(order.error) if order.error else None,
        certificate=acme.url("cert", order.certificate) if order.certificate else None,
    ).to_json()


def challenge_json(acme: Acme, row: Row) -> dict[str, Any]:
    return challenge_object(acme, row).to_json()


def challenge_object(acme: Acme, row: Row) -> Challenge:
    return Challenge(
        type=row.type,
        url=acme.url("chall", row.id),
        status=ChallengeStatus(row.status),
        token=row.token_part2,
        from_address=row.from_address,
        validated=_utc(row.validated),
        error=json.loads(row.error) if row.error else None,
    )


def authorization_json(acme: Acme, db: Connection, authz: Row) -> dict[str, Any]:
    rows = db.execute(
        select(challenges).where(challenges.c.authorization == authz.id).order_by(challenges.c.id)
    ).all()
    status = AuthorizationStatus(authz.status)
    shown = rows
    if status is AuthorizationStatus.VALID:  # RFC 8555 7.1.4: only the challenge that passed
        shown = [r for r in rows if r.status == ChallengeStatus.VALID] or rows
    return Authorization(
        identifier=Identifier("email", authz.address),
        status=status,
        challenges=tuple(challenge_object(acme, r) for r in shown),
        expires=_utc(authz.expires),
    ).to_json()


# ---- freshness --------------------------------------------------------------------------------


def _expire_challenges(db: Connection, authz_id: str, now: float) -> list[str]:
    """Pending or processing challenges of an authorization past their expiry."""
    return [
        cid
        for (cid,) in db.execute(
            select(challenges.c.id).where(
                challenges.c.authorization == authz_id,
                challenges.c.status.in_((ChallengeStatus.PENDING, ChallengeStatus.PROCESSING)),
                challenges.c.expires <= now,
            )
        )
    ]


def _fail_expired(acme: Acme, authz_ids: list[str], now: float) -> None:
    """Fail the expired challenges of these authorizations, then re-derive their statuses."""
    expired: list[str] = []
    with acme.store.transaction() as db:
        for authz_id in authz_ids:
            expired += _expire_challenges(db, authz_id, now)
    for cid in expired:
        acme_state.challenge_result(
            acme.store, cid, valid=False, problem=_expired_problem(), now=now
        )
    with acme.store.transaction() as db:
        for authz_id in authz_ids:
            acme_state.refresh_authorization(db, authz_id, now=now)


def _expired_problem() -> AcmeProblem:
    return AcmeProblem(
        ProblemType.UNAUTHORIZED, "the challenge expired before it was answered", status=403
    )


def _order_authz_ids(db: Connection, order_id: str) -> list[str]:
    return [
        a
        for (a,) in db.execute(
            select(order_authorizations.c.authorization_id).where(
                order_authorizations.c.order_id == order_id
            )
        )
    ]


def _fresh_order(acme: Acme, order_id: str) -> None:
    now = time.time()
    with acme.store.transaction() as db:
        authz_ids = _order_authz_ids(db, order_id)
    _fail_expired(acme, authz_ids, now)
    with acme.store.transaction() as db:
        acme_state.refresh_order(db, order_id, now=now)


# ---- newOrder ---------------------------------------------------------------------------------


def new_order(acme: Acme, request: Request, body: bytes) -> Reply:
    verified, account = acme.verify(request, body)
    assert account is not None
    if verified.payload is None:
        raise malformed("newOrder needs a payload, not POST-as-GET")
    wanted = parse_new_order(verified.payload)
    if wanted.not_before is not None or wanted.not_after is not None:
        raise malformed("this CA sets the validity itself: send no notBefore or notAfter")
    if len(wanted.identifiers) != 1:
        raise AcmeProblem(
            ProblemType.REJECTED_IDENTIFIER,
            "one email address per order: an S/MIME certificate names exactly one mailbox",
        )
    address = wanted.identifiers[0].value
    now = time.time()

    with acme.store.transaction() as db:
        candidates = [
            r.id
            for r in db.execute(
                select(authorizations.c.id).where(
                    authorizations.c.account == account.id,
                    authorizations.c.address == address,
                    authorizations.c.status.in_(("pending", "valid")),
                    authorizations.c.expires > now,
                )
            )
        ]
    _fail_expired(acme, candidates, now)

    identifier = wanted.identifiers[0].to_json()
    try:
        with acme.store.transaction() as db:
            order_id, doc, created_challenge = _create_order(
                acme, db, account.id, address, wanted, now
            )
    except limits.Exceeded as exceeded:
        raise RateLimited(exceeded, identifier) from None
    validator = acme.state.validator
    if created_challenge is not None and validator is not None:
        validator.challenge_created(acme.state, created_challenge)
    return Reply(status=201, body=doc, headers={"Location": acme.url("order", order_id)})


def _create_order(
    acme: Acme,
    db: Connection,
    account_id: str,
    address: str,
    wanted: Any,
    now: float,
) -> tuple[str, dict[str, Any], str | None]:
    """The order (id, JSON) in one transaction, reusing the account's authorization for the
    address or making one with its challenge (whose mail the validator then sends), within the
    abuse limits (storage.limits: orders per account, pending authorizations per account,
    challenge mails per address per hour and per day); limits.Exceeded counts nothing."""
    config = acme.config
    lifetime = config.challenge_hours * 3600
    rules = acme.state.limits
    limits.check(db, rules.new_orders, account_id, now=now)
    created_challenge: str | None = None
    statuses = ["pending"] + (["valid"] if config.reuse_valid_authorizations else [])
    reuse = db.execute(
        select(authorizations)
        .where(
            authorizations.c.account == account_id,
            authorizations.c.address == address,
            authorizations.c.status.in_(statuses),
            authorizations.c.expires > now,
        )
        .order_by(authorizations.c.status.desc(), authorizations.c.expires.desc())
    ).first()  # "valid" sorts after "pending": desc puts a valid one first
    if config.authorization_per_order:
        reuse = None  # like CAs that validate every order on its own (config knob)
    if reuse is not None:
        authz_id, authz_expires = reuse.id, reuse.expires
    else:
        _limit_new_authorization(db, acme, account_id, address, now)
        authz_id, authz_expires = _random_id(), now + lifetime
        db.execute(
            insert(authorizations).values(
                id=authz_id,
                account=account_id,
                address=address,
                status=AuthorizationStatus.PENDING.value,
                expires=authz_expires,
                created=now,
            )
        )
        created_challenge = _random_id()
        db.execute(
            insert(challenges).values(
                id=created_challenge,
                authorization=authz_id,
                type=EMAIL_REPLY_00,
                status=ChallengeStatus.PENDING.value,
                token_part1=email_reply.new_token(),
                token_part2=email_reply.new_token(),
                from_address=config.mail_from or acme.state.hierarchy.mail_address,
                expires=authz_expires,
            )
        )
    order_id = _random_id()
    db.execute(
        insert(orders).values(
            id=order_id,
            account=account_id,
            status=OrderStatus.PENDING.value,
            identifiers=json.dumps([i.to_json() for i in wanted.identifiers]),
            expires=min(authz_expires, now + lifetime),
            created=now,
        )
    )
    db.execute(insert(order_authorizations).values(order_id=order_id, authorization_id=authz_id))
    acme_state.refresh_order(db, order_id, now=now)
    order = db.execute(select(orders).where(orders.c.id == order_id)).one()
    doc = order_json(acme, db, order)
    limits.take(db, account_id, rules.new_orders, now=now)  # checked first, counted here
    return order_id, doc, created_challenge


def _limit_new_authorization(
    db: Connection, acme: Acme, account_id: str, address: str, now: float
) -> None:
    """A new authorization means a challenge mail to address: within the account's pending
    authorizations and the address's mails per hour and per day, then counted."""
    rules = acme.state.limits
    if rules.pending_authorizations > 0:
        pending = db.execute(
            select(func.count())
            .select_from(authorizations)
            .where(
                authorizations.c.account == account_id,
                authorizations.c.status == AuthorizationStatus.PENDING.value,
                authorizations.c.expires > now,
            )
        ).scalar_one()
        if pending >= rules.pending_authorizations:
            oldest = db.execute(
                select(func.min(authorizations.c.expires)).where(
                    authorizations.c.account == account_id,
                    authorizations.c.status == AuthorizationStatus.PENDING.value,
                    authorizations.c.expires > now,
                )
            ).scalar_one()
            limit = limits.Limit(
                "pending_authorization", rules.pending_authorizations, 0,
                "pending authorizations of one account",
            )  # fmt: skip
            raise limits.Exceeded(limit, max(1, math.ceil(oldest - now)))
    limits.take(db, address, rules.mails_per_hour, rules.mails_per_day, now=now)


def _random_id() -> str:
    return jws.b64url_encode(secrets.token_bytes(12))


# ---- orders -----------------------------------------------------------------------------------


def get_order(acme: Acme, request: Request, body: bytes) -> Reply:
    verified, account = acme.verify(request, body)
    if verified.payload is not None:
        raise malformed("an order is read with POST-as-GET (empty payload)")
    order_id = request.path_params["order_id"]
    with acme.store.transaction() as db:
        _owned(db.execute(select(orders).where(orders.c.id == order_id)).first(), account, "order")
    _fresh_order(acme, order_id)
    with acme.store.transaction() as db:
        order = db.execute(select(orders).where(orders.c.id == order_id)).one()
        doc = order_json(acme, db, order)
    if _still_processing(acme, order_id, doc):
        return Reply(body=doc, headers={"Retry-After": "1"})
    return Reply(body=doc, headers=_retry_after(order))


def _still_processing(acme: Acme, order_id: str, doc: dict[str, Any]) -> bool:
    """config.order_processing_seconds: an order issued less than that long ago is shown as
    `processing`, without its certificate (the deadline is kept per server process)."""
    deadline = acme.processing_until.get(order_id)
    if deadline is None:
        return False
    if time.time() >= deadline:
        acme.processing_until.pop(order_id, None)
        return False
    doc["status"] = OrderStatus.PROCESSING.value
    doc.pop("certificate", None)
    return True


def _retry_after(order: Row) -> dict[str, str] | None:
    if order.status in (OrderStatus.PENDING, OrderStatus.PROCESSING):
        return {"Retry-After": "1"}
    return None


def list_orders(acme: Acme, request: Request, body: bytes) -> Reply:
    verified, account = acme.verify(request, body)
    assert account is not None
    if verified.payload is not None:
        raise malformed("the orders list is read with POST-as-GET (empty payload)")
    if account.id != request.path_params["account_id"]:
        raise unauthorized("this is another account's orders list")
    page = acme.state.orders_page_size
    cursor_text = request.query_params.get("cursor", "0")
    if not cursor_text.isdigit() or len(cursor_text) > 9:
        raise malformed("bad cursor")
    cursor = int(cursor_text)
    with acme.store.transaction() as db:
        ids = [
            order_id
            for (order_id,) in db.execute(
                select(orders.c.id)
                .where(orders.c.account == account.id, orders.c.status != OrderStatus.INVALID)
                .order_by(orders.c.created, orders.c.id)
                .offset(cursor)
                .limit(page + 1)
            )
        ]
    links: tuple[str, ...] = ()
    if len(ids) > page:
        ids = ids[:page]
        next_url = acme.url("account", account.id, f"orders?cursor={cursor + page}")
        links = (f'<{next_url}>;rel="next"',)
    return Reply(body={"orders": [acme.url("order", i) for i in ids]}, links=links)


# ---- authorizations and challenges ------------------------------------------------------------


def get_authorization(acme: Acme, request: Request, body: bytes) -> Reply:
    verified, account = acme.verify(request, body)
    authz_id = request.path_params["authz_id"]
    with acme.store.transaction() as db:
        authz = db.execute(select(authorizations).where(authorizations.c.id == authz_id)).first()
        _owned(authz, account, "authorization")
    now = time.time()
    _fail_expired(acme, [authz_id], now)
    payload = verified.payload
    if payload is not None:
        if payload != {"status": "deactivated"}:
            raise malformed('an authorization accepts only {"status": "deactivated"}')
        with acme.store.transaction() as db:
            authz = db.execute(
                select(authorizations).where(authorizations.c.id == authz_id).with_for_update()
            ).one()
            status = next_authorization_status(
                AuthorizationStatus(authz.status), AuthorizationEvent.DEACTIVATE
            )
            db.execute(
                update(authorizations)
                .where(authorizations.c.id == authz_id)
                .values(status=status.value)
            )
            for order_id in db.execute(
                select(order_authorizations.c.order_id).where(
                    order_authorizations.c.authorization_id == authz_id
                )
            ).scalars():
                acme_state.refresh_order(db, order_id, now=now)
    with acme.store.transaction() as db:
        authz = db.execute(select(authorizations).where(authorizations.c.id == authz_id)).one()
        doc = authorization_json(acme, db, authz)
    headers = {"Retry-After": "1"} if authz.status == AuthorizationStatus.PENDING else None
    return Reply(body=doc, headers=headers)


def _challenge_with_owner(acme: Acme, challenge_id: str) -> tuple[Row | None, Row | None]:
    with acme.store.transaction() as db:
        row = db.execute(select(challenges).where(challenges.c.id == challenge_id)).first()
        if row is None:
            return None, None
        authz = db.execute(
            select(authorizations).where(authorizations.c.id == row.authorization)
        ).first()
    return row, authz


def post_challenge(acme: Acme, request: Request, body: bytes) -> Reply:
    verified, account = acme.verify(request, body)
    challenge_id = request.path_params["challenge_id"]
    row, authz = _challenge_with_owner(acme, challenge_id)
    if row is None:
        raise _not_found("challenge")
    _owned(authz, account, "challenge")
    assert authz is not None
    links = (f'<{acme.url("authz", authz.id)}>;rel="up"',)
    if verified.payload is not None:
        if verified.payload != {}:
            raise malformed("answer a challenge with an empty object {}")
        if row.status == ChallengeStatus.PENDING:
            _respond(acme, row, authz)
    elif acme.config.challenge_post_validates_at_once and row.status == ChallengeStatus.PENDING:
        _respond(acme, row, authz)  # like servers that start validating on any POST (knob)
    with acme.store.transaction() as db:
        row = db.execute(select(challenges).where(challenges.c.id == challenge_id)).one()
    return Reply(body=challenge_json(acme, row), links=links)


def _respond(acme: Acme, row: Row, authz: Row) -> None:
    now = time.time()
    if row.expires <= now or authz.status != AuthorizationStatus.PENDING:
        _fail_expired(acme, [authz.id], now)
        if row.expires <= now:
            raise _expired_problem()
        raise malformed(f"the authorization is {authz.status}; this challenge cannot be answered")
    validator = acme.state.validator
    if validator is None:
        raise AcmeProblem(
            ProblemType.SERVER_INTERNAL,
            "email validation is not configured on this server (no mail settings)",
            status=503,
        )
    with acme.store.transaction() as db:
        moved = db.execute(
            update(challenges)
            .where(challenges.c.id == row.id, challenges.c.status == ChallengeStatus.PENDING)
            .values(status=ChallengeStatus.PROCESSING.value)
        ).rowcount
    if moved != 1:
        return  # another request answered it first: nothing more to start
    try:
        validator.start(acme.state, row.id)
    except Exception as error:
        acme_state.challenge_result(
            acme.store,
            row.id,
            valid=False,
            problem=AcmeProblem(ProblemType.SERVER_INTERNAL, "validation could not start"),
            now=time.time(),
        )
        raise AcmeProblem(
            ProblemType.SERVER_INTERNAL, "validation could not start; order again later"
        ) from error


# ---- finalize and certificates ----------------------------------------------------------------


def finalize(acme: Acme, request: Request, body: bytes) -> Reply:
    verified, account = acme.verify(request, body)
    assert account is not None
    order_id = request.path_params["order_id"]
    with acme.store.transaction() as db:
        _owned(db.execute(select(orders).where(orders.c.id == order_id)).first(), account, "order")
    _fresh_order(acme, order_id)
    with acme.store.transaction() as db:
        order = db.execute(select(orders).where(orders.c.id == order_id)).one()
    if order.status != OrderStatus.READY:
        raise AcmeProblem(ProblemType.ORDER_NOT_READY, f"the order is {order.status}, not ready")
    csr_der = parse_finalize(verified.payload)
    (identifier,) = json.loads(order.identifiers)
    try:
        info = profile.check_csr(csr_der, identifier["value"])
    except profile.CsrRefused as refused:
        raise AcmeProblem(
            ProblemType(refused.problem_type),
            refused.message,
            identifier=identifier if refused.problem_type == "rejectedIdentifier" else None,
        ) from None
    except PkiError as error:
        raise AcmeProblem(ProblemType.BAD_CSR, error.message) from None
    if info.family == "sm2" and not acme.config.offer_sm2:
        raise AcmeProblem(ProblemType.BAD_CSR, "this CA does not issue SM2 certificates")
    with acme.store.transaction() as db:
        claimed = db.execute(
            update(orders)
            .where(orders.c.id == order_id, orders.c.status == OrderStatus.READY)
            .values(status=OrderStatus.PROCESSING.value)
        ).rowcount
    if claimed != 1:
        raise AcmeProblem(ProblemType.ORDER_NOT_READY, "the order is being or was finalized")
    try:
        issued = issuance.issue(
            acme.store,
            acme.state.hierarchy,
            info,
            account=account.id,
            days=acme.config.certificate_days,
        )
    except Exception:
        problem = AcmeProblem(ProblemType.SERVER_INTERNAL, "issuance failed")
        with acme.store.transaction() as db:
            db.execute(
                update(orders)
                .where(orders.c.id == order_id)
                .values(status=OrderStatus.INVALID.value, error=json.dumps(problem.to_json()))
            )
        raise
    with acme.store.transaction() as db:
        db.execute(
            update(orders)
            .where(orders.c.id == order_id)
            .values(status=OrderStatus.VALID.value, certificate=issued.serial)
        )
        order = db.execute(select(orders).where(orders.c.id == order_id)).one()
        doc = order_json(acme, db, order)
    if acme.config.order_processing_seconds > 0:
        acme.processing_until[order_id] = time.time() + acme.config.order_processing_seconds
        _still_processing(acme, order_id, doc)
    return Reply(body=doc, headers={"Location": acme.url("order", order_id)})


def _pem(der: bytes) -> bytes:
    return pem.armor("CERTIFICATE", der)


def get_certificate(acme: Acme, request: Request, body: bytes) -> Reply:
    verified, account = acme.verify(request, body)
    if verified.payload is not None:
        raise malformed("a certificate is read with POST-as-GET (empty payload)")
    serial = request.path_params["serial"]
    with acme.store.transaction() as db:
        row = db.execute(select(certificates).where(certificates.c.serial == serial)).first()
    row = _owned(row, account, "certificate")
    issuing = acme.state.hierarchy.issuing(row.issuer)
    return Reply(body=_pem(row.der) + issuing.pem, media_type=PEM_CHAIN)


def revoke_certificate(acme: Acme, request: Request, body: bytes) -> Reply:
    verified, account = acme.verify(request, body, require="any")
    der, reason = parse_revocation(verified.payload)
    try:
        serial = asn1_x509.Certificate.load(der, strict=True).serial_number
    except (ValueError, TypeError, KeyError):
        raise malformed("'certificate' is not a DER certificate") from None
    serial_hex = f"{serial:x}" if isinstance(serial, int) and serial > 0 else ""
    with acme.store.transaction() as db:
        row = db.execute(select(certificates).where(certificates.c.serial == serial_hex)).first()
        if row is None or bytes(row.der) != der:
            raise _not_found("certificate issued by this CA")
        if account is not None:
            allowed = row.account == account.id or _holds_authorization(db, account.id, row.address)
        else:
            allowed = _signed_by_certificate_key(der, verified)
    if not allowed:
        raise unauthorized("only the ordering account or the certificate's key may revoke it")
    try:
        issuance.revoke(acme.store, serial_hex, reason)
    except issuance.AlreadyRevoked:
        raise AcmeProblem(
            ProblemType.ALREADY_REVOKED, "the certificate is already revoked"
        ) from None
    return Reply(body=None)


def _holds_authorization(db: Connection, account_id: str, address: str) -> bool:
    now = time.time()
    return (
        db.execute(
            select(authorizations.c.id).where(
                authorizations.c.account == account_id,
                authorizations.c.address == address,
                authorizations.c.status == AuthorizationStatus.VALID,
                authorizations.c.expires > now,
            )
        ).first()
        is not None
    )


def _signed_by_certificate_key(der: bytes, verified: jws.VerifiedRequest) -> bool:
    try:
        key = x509.load_der_x509_certificate(der).public_key()
        return jws.thumbprint(key) == verified.thumbprint  # type: ignore[arg-type]
    except (ValueError, TypeError, AcmeProblem):
        return False  # SM2 and other keys no JWS can be signed with


HANDLERS = (
    ("new-order", new_order),
    ("order/{order_id}", get_order),
    ("order/{order_id}/finalize", finalize),
    ("account/{account_id}/orders", list_orders),
    ("authz/{authz_id}", get_authorization),
    ("chall/{challenge_id}", post_challenge),
    ("cert/{serial}", get_certificate),
    ("revoke-cert", revoke_certificate),
)
