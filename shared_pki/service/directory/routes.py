"""The certificate directory ("public key exchange"): GET /certs/{address} returns every
currently valid certificate the CA issued for exactly that address, both algorithms.

Lookup by exact (normalised) address only: no listing, no search, no enumeration; a per-client
rate limit on all lookups (in each process: a cap on load), and one on lookups that find nothing
(counted in the database, shared by every process: existence probing), past which every lookup
of that client is refused with Retry-After (a process asks the database about a client once it
saw that client miss); revoked and expired certificates are filtered out by the
query itself, so a revocation withdraws a certificate at once in every process.

Answers carry validators so correspondents notice a renewal (or a revocation) quickly and
cheaply: an ETag naming exactly the certificates served (and the representation), and
Cache-Control max-age of `directory_max_age_seconds`, never beyond the newest certificate's
expiry. A request with If-None-Match of the current ETag gets 304 and no body."""

from __future__ import annotations

import base64
import datetime
import hashlib
import threading
import time
from collections import deque
from typing import Any

import anyio
from sqlalchemy import bindparam, select
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from shared_pki.acme.objects import normalize_email
from shared_pki.acme.problems import AcmeProblem
from shared_pki.service.state import ServiceState
from shared_pki.service.storage import limits
from shared_pki.service.storage.store import certificates

PEM_CHAIN = "application/pem-certificate-chain"
DATABASE_THREADS = 4  # lookups at the database at once, per process (see routes())
PROBLEM = "application/problem+json"


class RateLimiter:
    """A sliding one-minute window per client address, in this process."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def allow(self, client: str) -> bool:
        now = time.monotonic()
        with self._lock:
            hits = self._hits.setdefault(client, deque())
            while hits and hits[0] <= now - 60:
                hits.popleft()
            if len(hits) >= self.per_minute:
                return False
            hits.append(now)
            if len(self._hits) > 100_000:  # forget idle clients rather than grow without bound
                self._hits = {k: v for k, v in self._hits.items() if v and v[-1] > now - 60}
            return True


def pem(der: bytes) -> str:
    body = base64.encodebytes(der).decode("ascii")
    return f"-----BEGIN CERTIFICATE-----\n{body}-----END CERTIFICATE-----\n"


def _iso(epoch: float) -> str:
    return datetime.datetime.fromtimestamp(epoch, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _problem(
    status: int, title: str, detail: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    """An RFC 9457 problem document (the directory is not ACME, so no ACME error types)."""
    return JSONResponse(
        {"type": "about:blank", "title": title, "detail": detail, "status": status},
        status_code=status,
        media_type=PROBLEM,
        headers=headers,
    )


def entity_tag(media_type: str, ders: list[bytes]) -> str:
    """A strong ETag of exactly these certificates in this representation."""
    digest = hashlib.sha256(media_type.encode())
    for fingerprint in sorted(hashlib.sha256(der).digest() for der in ders):
        digest.update(fingerprint)
    return '"' + digest.hexdigest()[:32] + '"'


def max_age(configured: int, newest_not_after: float | None, now: float) -> int:
    """Seconds an answer may be used without asking again: the configured figure, and never
    past the newest certificate's expiry (after it the answer is certainly wrong)."""
    if newest_not_after is None:
        return configured
    return max(0, min(configured, int(newest_not_after - now)))


def etag_matches(if_none_match: str, etag: str) -> bool:
    """RFC 9110 13.1.2: weak comparison of any listed tag, or `*`."""
    listed = [tag.strip().removeprefix("W/") for tag in if_none_match.split(",")]
    return "*" in listed or etag in listed


def _rows(db: Any, query: Any, address: str, now: float) -> list[Any]:
    return list(db.execute(query, {"address": address, "now": now}).all())


def routes(state: ServiceState) -> list[Route]:
    limiter = RateLimiter(state.config.directory_rate_per_minute)
    configured_max_age = state.config.directory_max_age_seconds
    # One statement per lookup, so no transaction around it: in autocommit PostgreSQL answers
    # in one round trip instead of BEGIN, SELECT and the pool's ROLLBACK.
    engine = state.store.engine.execution_options(isolation_level="AUTOCOMMIT")
    # Built once with bound parameters: building the clause and its cache key per request was
    # a third of a lookup's time (py-spy, PostgreSQL, one worker).
    query = (
        select(
            certificates.c.serial,
            certificates.c.algorithm,
            certificates.c.not_before,
            certificates.c.not_after,
            certificates.c.der,
        )
        .where(
            certificates.c.address == bindparam("address"),
            certificates.c.published.is_(True),
            certificates.c.revoked.is_(None),
            certificates.c.not_before <= bindparam("now"),
            certificates.c.not_after > bindparam("now"),
        )
        .order_by(certificates.c.not_after.desc())
    )

    misses = state.limits.directory_misses
    # Clients that missed in this process within the window: only their lookups ask the
    # database for the shared count (a lookup by anyone else costs no extra query). A prober
    # misses on every worker behind a load balancer, so every worker soon checks it.
    missed_here: dict[str, float] = {}
    missed_lock = threading.Lock()

    def find(client: str, address: str) -> list[Any]:
        """The address's certificates; a client past its misses gets limits.Exceeded for every
        lookup (found or not, so the refusal itself tells nothing), and a miss is counted."""
        now = time.time()
        with missed_lock:
            watched = misses.on and missed_here.get(client, 0.0) > now - misses.window
        rows: list[Any] = []
        if not watched:
            with engine.connect() as db:
                rows = _rows(db, query, address, now)
            if rows or not misses.on:
                return rows
            # a miss by a client not watched here yet: checked and counted below
        with state.store.transaction() as db:
            limits.check(db, misses, client, now=now)
            if watched:
                rows = _rows(db, query, address, now)
            if not rows:
                limits.record(db, misses.bucket, client, now=now)
        if not rows:
            with missed_lock:
                if len(missed_here) > 100_000:  # forget idle clients rather than grow
                    for name, at in list(missed_here.items()):
                        if at <= now - misses.window:
                            del missed_here[name]
                missed_here[client] = now
        return rows

    # The lookups' database work runs on at most DATABASE_THREADS threads of this process:
    # with the pool's 40, they fought over the GIL and the connection pool (PostgreSQL, 2
    # workers under 64 connections: 1,214 lookups/s, p99 306 ms; with 4: 3,479/s, p99 34 ms).
    database_threads = anyio.CapacityLimiter(DATABASE_THREADS)

    async def lookup(request: Request) -> Response:
        client = request.client.host if request.client else "unknown"
        if not limiter.allow(client):
            return _problem(
                429, "Too Many Requests", "Too many directory lookups; try again later."
            )
        try:
            address = normalize_email(request.path_params["address"])
        except AcmeProblem as problem:
            return _problem(400, "Bad Request", problem.detail)
        try:  # the database off the event loop
            rows = await anyio.to_thread.run_sync(find, client, address, limiter=database_threads)
        except limits.Exceeded as exceeded:
            refused = _problem(429, "Too Many Requests", exceeded.detail)
            refused.headers["Retry-After"] = str(exceeded.retry_after)
            return refused
        if not rows:
            return _problem(
                404,
                "Not Found",
                "No valid certificate is published for that address.",
                {"Cache-Control": f"max-age={configured_max_age}"},
            )
        wants_pem = PEM_CHAIN in request.headers.get("accept", "")
        media_type = PEM_CHAIN if wants_pem else "application/json"
        etag = entity_tag(media_type, [row.der for row in rows])
        seconds = max_age(configured_max_age, rows[0].not_after, time.time())
        headers = {"Cache-Control": f"max-age={seconds}", "ETag": etag, "Vary": "Accept"}
        if etag_matches(request.headers.get("if-none-match", ""), etag):
            return Response(status_code=304, headers=headers)
        if wants_pem:
            body = "".join(pem(row.der) for row in rows)
            return Response(body, media_type=PEM_CHAIN, headers=headers)
        return JSONResponse(
            {
                "address": address,
                "certificates": [
                    {
                        "serial": row.serial,
                        "algorithm": row.algorithm,
                        "notBefore": _iso(row.not_before),
                        "notAfter": _iso(row.not_after),
                        "pem": pem(row.der),
                    }
                    for row in rows
                ],
            },
            headers=headers,
        )

    return [Route(f"{state.config.certs_path}/{{address}}", lookup)]
