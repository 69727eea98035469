"""The ACME server's plumbing shared by its handler modules (accounts, orders, publish): the
per-process context (URLs, nonces, request verification) and the endpoint wrapper.

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

from sqlalchemy import delete, select
from sqlalchemy.engine import Row
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from shared_pki.acme import jws
from shared_pki.acme.objects import Account, AccountStatus, require_valid_account
from shared_pki.acme.problems import CONTENT_TYPE as PROBLEM_TYPE
from shared_pki.acme.problems import AcmeProblem, ProblemType
from shared_pki.service.state import ServiceState
from shared_pki.service.storage.limits import Exceeded
from shared_pki.service.storage.store import accounts, nonces

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
        self.base = f"{state.config.public_url}{state.config.acme_path}"
        self.account_prefix = f"{self.base}/account/"
        #: config.order_processing_seconds: order id -> when it stops looking `processing`.
        self.processing_until: dict[str, float] = {}
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


class RateLimited(AcmeProblem):
    """rateLimited (RFC 8555 section 6.6): 429 with Retry-After, the limit named in words."""

    def __init__(self, exceeded: Exceeded, identifier: Mapping[str, str] | None = None) -> None:
        super().__init__(
            ProblemType.RATE_LIMITED, exceeded.detail, status=429, identifier=identifier
        )
        self.retry_after = exceeded.retry_after


class LocatedProblem(AcmeProblem):
    """A problem answered with a Location header (409 Conflict of keyChange)."""

    def __init__(self, type: ProblemType, detail: str, *, location: str, status: int) -> None:
        super().__init__(type, detail, status=status)
        self.location = location


def problem_reply(problem: AcmeProblem) -> Reply:
    headers = {"Location": problem.location} if isinstance(problem, LocatedProblem) else None
    if isinstance(problem, RateLimited):
        headers = {"Retry-After": str(problem.retry_after)}
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
