"""The ACME server (RFC 8555) for `email` identifiers and `email-reply-00` challenges (RFC 8823).

Fixed paths under /acme/ (every URL is `config.public_url` + path; JWS `url` must match it):

    GET       /acme/directory
    HEAD/GET  /acme/new-nonce
    POST      /acme/new-account                 jwk form; 201 new, 200 existing
    POST      /acme/account/{id}                POST-as-GET, contact update, deactivation
    POST      /acme/account/{id}/orders         POST-as-GET, paginated (Link rel="next")
    POST      /acme/key-change                  RFC 8555 7.3.5
    POST      /acme/new-order, /acme/order/{id}, /acme/order/{id}/finalize,
              /acme/authz/{id}, /acme/chall/{id}, /acme/cert/{serial}, /acme/revoke-cert
              (acme_orders)

Every response carries a fresh `Replay-Nonce` and `Link: <directory>;rel="index"`. Every
refusal is an `application/problem+json` document with the RFC 8555 section 6.7 type and its
HTTP status; an unexpected failure is `serverInternal` (500) and is logged, bad input never is.

Nonces live in the database (`Store.add_nonce/use_nonce`): single-use, and a nonce issued by one
server process is accepted by any other sharing the database. `reject_nonce_share` refuses
that share of otherwise valid nonces with badNonce, as Pebble does, to keep clients honest.

Handlers are synchronous (SQLAlchemy Core) and run in Starlette's thread pool.
"""

from __future__ import annotations

import json
import logging
import random
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import Row
from sqlalchemy.exc import IntegrityError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from shared_pki.acme import jws
from shared_pki.acme.objects import (
    Account,
    AccountEvent,
    AccountStatus,
    Directory,
    DirectoryMeta,
    check_contacts,
    next_account_status,
    parse_new_account,
    require_valid_account,
)
from shared_pki.acme.problems import (
    CONTENT_TYPE as PROBLEM_TYPE,
)
from shared_pki.acme.problems import (
    AcmeProblem,
    ProblemType,
    malformed,
)
from shared_pki.service.app import ServiceState
from shared_pki.service.storage.store import accounts, authorizations, nonces

log = logging.getLogger(__name__)

JOSE = "application/jose+json"
NONCE_MAX_AGE = 3600.0
#: Nonces older than NONCE_MAX_AGE are deleted about once per this many nonces issued.
NONCE_PRUNE_EVERY = 500


@dataclass
class Reply:
    """What a handler answers; the plumbing adds the nonce and index link."""

    status: int = 200
    body: Any = None  # JSON-serialisable, bytes, or None
    media_type: str = "application/json"
    headers: dict[str, str] | None = None
    links: tuple[str, ...] = ()


class Acme:
    """Per-process ACME context: URLs, nonces, request verification, account loading."""

    def __init__(self, state: ServiceState) -> None:
        self.state = state
        self.config = state.config
        self.store = state.store
        self.base = f"{state.config.public_url}/acme"
        self.account_prefix = f"{self.base}/account/"
        self._random = random.SystemRandom()

    # ---- URLs -------------------------------------------------------------------------------

    def url(self, *parts: str) -> str:
        return "/".join((self.base, *parts))

    def request_url(self, request: Request) -> str:
        query = request.url.query
        return f"{self.config.public_url}{request.url.path}" + (f"?{query}" if query else "")

    def account_url(self, account_id: str) -> str:
        return self.account_prefix + account_id

    # ---- nonces -----------------------------------------------------------------------------

    def new_nonce(self) -> str:
        value = jws.b64url_encode(secrets.token_bytes(16))
        self.store.add_nonce(value)
        if self._random.random() < 1 / NONCE_PRUNE_EVERY:
            with self.store.transaction() as db:
                db.execute(delete(nonces).where(nonces.c.created < time.time() - NONCE_MAX_AGE))
        return value

    # ---- verification -----------------------------------------------------------------------

    def verify(
        self, request: Request, body: bytes, *, require: str = "kid"
    ) -> tuple[jws.VerifiedRequest, Row | None]:
        """Check a POST: media type, JWS, signature, url, then the nonce (consumed only for a
        request whose signature verified). Returns the request and the account row for `kid`
        requests (the account is valid: a deactivated one is refused as unauthorized)."""
        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media != JOSE:
            raise AcmeProblem(ProblemType.MALFORMED, f"send {JOSE}, not {media!r}", status=415)
        found: dict[str, Row] = {}

        def lookup(kid: str) -> Mapping[str, Any] | None:
            row = self.account_by_url(kid)
            if row is None:
                return None
            require_valid_account(AccountStatus(row.status))
            found["account"] = row
            return json.loads(row.jwk)

        verified = jws.parse_and_verify(
            body, expected_url=self.request_url(request), key_lookup=lookup, require=require
        )
        if not self.store.use_nonce(verified.nonce or "", NONCE_MAX_AGE):
            raise AcmeProblem(ProblemType.BAD_NONCE, "the nonce was not issued here or was used")
        share = self.config.reject_nonce_share
        if share > 0 and self._random.random() < share:
            raise AcmeProblem(ProblemType.BAD_NONCE, "nonce rejected (reject_nonce_share test)")
        return verified, found.get("account")

    def account_by_url(self, kid: str) -> Row | None:
        if not kid.startswith(self.account_prefix):
            return None
        account_id = kid[len(self.account_prefix) :]
        if not account_id or "/" in account_id:
            return None
        with self.store.transaction() as db:
            return db.execute(select(accounts).where(accounts.c.id == account_id)).first()

    def account_json(self, row: Row) -> dict[str, Any]:
        return Account(
            status=AccountStatus(row.status),
            contact=tuple(json.loads(row.contact)),
            orders=self.url("account", row.id, "orders"),
        ).to_json()


class LocatedProblem(AcmeProblem):
    """A problem answered with a Location header (409 Conflict of keyChange)."""

    def __init__(self, type: ProblemType, detail: str, *, location: str, status: int) -> None:
        super().__init__(type, detail, status=status)
        self.location = location


def problem_reply(problem: AcmeProblem) -> Reply:
    headers = {"Location": problem.location} if isinstance(problem, LocatedProblem) else None
    return Reply(
        status=problem.status, body=problem.to_json(), media_type=PROBLEM_TYPE, headers=headers
    )


Handler = Callable[[Acme, Request, bytes], Reply]


def endpoint(acme: Acme, handler: Handler, *, post_only: bool = False) -> Callable[[Request], Any]:
    """An ASGI endpoint around a synchronous handler: body size check, problems, nonce, links.
    A post_only endpoint answers GET with a 405 problem (Allow: POST)."""

    def run(request: Request, body: bytes) -> Response:
        return run_with(handler, request, body)

    def run_with(handler: Handler, request: Request, body: bytes) -> Response:
        try:
            reply = handler(acme, request, body)
        except AcmeProblem as problem:
            reply = problem_reply(problem)
        except Exception:
            log.exception("ACME %s %s failed", request.method, request.url.path)
            reply = problem_reply(
                AcmeProblem(ProblemType.SERVER_INTERNAL, "the server failed; try again later")
            )
        headers = dict(reply.headers or {})
        try:
            headers["Replay-Nonce"] = acme.new_nonce()
        except Exception:  # the database is down: still answer (without a nonce)
            log.exception("could not store a nonce")
        links = [f'<{acme.url("directory")}>;rel="index"', *reply.links]
        headers["Link"] = ", ".join(links)
        headers.setdefault("Cache-Control", "no-store")
        if reply.status == 405:
            headers["Allow"] = "POST"
        if reply.body is None:
            content = b""
        elif isinstance(reply.body, bytes):
            content = reply.body
        else:
            content = json.dumps(reply.body, separators=(",", ":")).encode()
        if request.method == "HEAD":
            content = b""
        return Response(content, status_code=reply.status, headers=headers,
                        media_type=reply.media_type if content else None)  # fmt: skip

    def refuse_get(acme: Acme, _request: Request, _body: bytes) -> Reply:
        raise AcmeProblem(
            ProblemType.MALFORMED, "use POST (POST-as-GET to read: RFC 8555 6.3)", status=405
        )

    async def asgi(request: Request) -> Response:
        body = b""
        if request.method in ("GET", "HEAD") and post_only:
            return await run_in_threadpool(run_with, refuse_get, request, body)
        if request.method == "POST":
            length = request.headers.get("content-length", "")
            if length.isdigit() and int(length) > jws.MAX_BODY_BYTES:
                body = b"x" * (jws.MAX_BODY_BYTES + 1)  # refused by parse_and_verify, unread
            else:
                body = await request.body()
        return await run_in_threadpool(run, request, body)

    return asgi


# ---- directory and nonces ---------------------------------------------------------------------


def directory(acme: Acme, _request: Request, _body: bytes) -> Reply:
    meta = DirectoryMeta(website=acme.config.public_url, external_account_required=False)
    terms = acme.state.extras.get("terms_of_service")
    if terms:
        meta = DirectoryMeta(
            terms_of_service=terms, website=meta.website, external_account_required=False
        )
    doc = Directory(
        new_nonce=acme.url("new-nonce"),
        new_account=acme.url("new-account"),
        new_order=acme.url("new-order"),
        revoke_cert=acme.url("revoke-cert"),
        key_change=acme.url("key-change"),
        meta=meta,
    ).to_json()
    # An extension resource (clients ignore what they do not know): publish a certificate
    # from another CA in the directory, proved by a valid authorization (acme_publish.py).
    doc["publishCert"] = acme.url("publish-cert")
    return Reply(body=doc, headers={"Cache-Control": "public, max-age=0"})


def new_nonce(_acme: Acme, request: Request, _body: bytes) -> Reply:
    # RFC 8555 7.2: 200 to HEAD, 204 to GET; the plumbing adds the nonce and no-store.
    return Reply(status=200 if request.method == "HEAD" else 204)


# ---- accounts ---------------------------------------------------------------------------------


def new_account(acme: Acme, request: Request, body: bytes) -> Reply:
    verified, _ = acme.verify(request, body, require="jwk")
    if verified.payload is None:
        raise malformed("newAccount needs a payload, not POST-as-GET")
    wanted = parse_new_account(verified.payload)
    with acme.store.transaction() as db:
        row = db.execute(
            select(accounts).where(accounts.c.thumbprint == verified.thumbprint)
        ).first()
    if row is not None:
        require_valid_account(AccountStatus(row.status))
        return Reply(body=acme.account_json(row), headers={"Location": acme.account_url(row.id)})
    if wanted.only_return_existing:
        raise AcmeProblem(ProblemType.ACCOUNT_DOES_NOT_EXIST, "no account has this key")
    account_id = jws.b64url_encode(secrets.token_bytes(12))
    try:
        with acme.store.transaction() as db:
            db.execute(
                insert(accounts).values(
                    id=account_id,
                    thumbprint=verified.thumbprint,
                    jwk=json.dumps(verified.jwk),
                    status=AccountStatus.VALID.value,
                    contact=json.dumps(list(wanted.contact)),
                    created=time.time(),
                )
            )
    except IntegrityError:  # the same key registered concurrently: answer with that account
        return new_account_existing(acme, verified.thumbprint)
    with acme.store.transaction() as db:
        row = db.execute(select(accounts).where(accounts.c.id == account_id)).one()
    return Reply(
        status=201, body=acme.account_json(row), headers={"Location": acme.account_url(row.id)}
    )


def new_account_existing(acme: Acme, thumbprint: str) -> Reply:
    with acme.store.transaction() as db:
        row = db.execute(select(accounts).where(accounts.c.thumbprint == thumbprint)).one()
    return Reply(body=acme.account_json(row), headers={"Location": acme.account_url(row.id)})


def own_account(acme: Acme, request: Request, account: Row | None) -> Row:
    """The account of a kid request, which must be the account the URL names."""
    assert account is not None
    if account.id != request.path_params["account_id"]:
        raise AcmeProblem(ProblemType.UNAUTHORIZED, "this is not the signing account's URL")
    return account


def account_update(acme: Acme, request: Request, body: bytes) -> Reply:
    verified, account = acme.verify(request, body)
    account = own_account(acme, request, account)
    payload = verified.payload
    values: dict[str, Any] = {}
    if payload:
        unknown = set(payload) - {"contact", "status", "termsOfServiceAgreed", "orders"}
        if unknown:
            raise malformed(f"account fields {sorted(unknown)} cannot be updated")
        if "contact" in payload:
            contact = payload["contact"]
            if not isinstance(contact, list) or not all(isinstance(c, str) for c in contact):
                raise malformed("'contact' is not a list of strings")
            values["contact"] = json.dumps(list(check_contacts(contact)))
        if "status" in payload:
            if payload["status"] != AccountStatus.DEACTIVATED.value:
                raise malformed("a client may only set an account's status to 'deactivated'")
            status = next_account_status(AccountStatus(account.status), AccountEvent.DEACTIVATE)
            values["status"] = status.value
    if values:
        with acme.store.transaction() as db:
            db.execute(update(accounts).where(accounts.c.id == account.id).values(**values))
            if "status" in values:
                _deactivate_authorizations(db, account.id)
    with acme.store.transaction() as db:
        row = db.execute(select(accounts).where(accounts.c.id == account.id)).one()
    return Reply(body=acme.account_json(row), headers={"Location": acme.account_url(row.id)})


def _deactivate_authorizations(db: Any, account_id: str) -> None:
    """RFC 8555 7.3.6: cancel what the deactivated account's key authorized: its pending and
    valid authorizations (no longer reusable), and so the orders that need them."""
    from shared_pki.service.acme.transitions import refresh_order
    from shared_pki.service.storage.store import order_authorizations

    ids = [
        authz_id
        for (authz_id,) in db.execute(
            select(authorizations.c.id).where(
                authorizations.c.account == account_id,
                authorizations.c.status.in_(("pending", "valid")),
            )
        )
    ]
    if not ids:
        return
    db.execute(
        update(authorizations).where(authorizations.c.id.in_(ids)).values(status="deactivated")
    )
    order_ids = {
        order_id
        for (order_id,) in db.execute(
            select(order_authorizations.c.order_id).where(
                order_authorizations.c.authorization_id.in_(ids)
            )
        )
    }
    now = time.time()
    for order_id in order_ids:
        refresh_order(db, order_id, now=now)


def key_change(acme: Acme, request: Request, body: bytes) -> Reply:
    verified, account = acme.verify(request, body)
    assert account is not None
    change = jws.verify_key_change(verified)
    try:
        with acme.store.transaction() as db:
            taken = db.execute(
                select(accounts.c.id).where(accounts.c.thumbprint == change.new_thumbprint)
            ).first()
            if taken is not None:
                raise _key_in_use(acme, taken.id)
            db.execute(
                update(accounts)
                .where(accounts.c.id == account.id)
                .values(thumbprint=change.new_thumbprint, jwk=json.dumps(change.new_jwk))
            )
    except IntegrityError:  # another request took the key between our check and the update
        with acme.store.transaction() as db:
            taken = db.execute(
                select(accounts.c.id).where(accounts.c.thumbprint == change.new_thumbprint)
            ).first()
        raise _key_in_use(acme, taken.id if taken else "") from None
    with acme.store.transaction() as db:
        row = db.execute(select(accounts).where(accounts.c.id == account.id)).one()
    return Reply(body=acme.account_json(row), headers={"Location": acme.account_url(row.id)})


def _key_in_use(acme: Acme, account_id: str) -> AcmeProblem:
    # RFC 8555 7.3.5: 409 Conflict with the Location of the account that has the key.
    return LocatedProblem(
        ProblemType.MALFORMED,
        "the new key is already the key of an account",
        location=acme.account_url(account_id),
        status=409,
    )


# ---- routes -----------------------------------------------------------------------------------


def routes(state: ServiceState) -> list[Route]:
    from shared_pki.service.acme import orders as acme_orders
    from shared_pki.service.acme import publish as acme_publish

    acme = Acme(state)
    state.extras["acme"] = acme

    def route(path: str, handler: Handler, methods: list[str]) -> Route:
        post_only = methods == ["POST"]
        methods = ["GET", "POST"] if post_only else methods
        return Route(f"/acme/{path}", endpoint(acme, handler, post_only=post_only), methods=methods)

    return [
        route("directory", directory, ["GET"]),
        route("new-nonce", new_nonce, ["GET", "HEAD"]),
        route("new-account", new_account, ["POST"]),
        route("account/{account_id}", account_update, ["POST"]),
        route("key-change", key_change, ["POST"]),
        *(route(path, handler, ["POST"]) for path, handler in acme_orders.HANDLERS),
        *(route(path, handler, ["POST"]) for path, handler in acme_publish.HANDLERS),
    ]
