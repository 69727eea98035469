"""The certificate directory ("public key exchange"): GET /certs/{address} returns every
currently valid certificate the CA issued for exactly that address, both algorithms.

Lookup by exact (normalised) address only: no listing, no search, no enumeration; a per-client
rate limit; revoked and expired certificates are filtered out by the query itself, so a
revocation withdraws a certificate at once in every process."""

from __future__ import annotations

import base64
import datetime
import threading
import time
from collections import deque

from sqlalchemy import bindparam, select
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from shared_pki.acme.objects import normalize_email
from shared_pki.acme.problems import AcmeProblem
from shared_pki.service.state import ServiceState
from shared_pki.service.storage.store import certificates

PEM_CHAIN = "application/pem-certificate-chain"
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


def _problem(status: int, title: str, detail: str) -> JSONResponse:
    """An RFC 9457 problem document (the directory is not ACME, so no ACME error types)."""
    return JSONResponse(
        {"type": "about:blank", "title": title, "detail": detail, "status": status},
        status_code=status,
        media_type=PROBLEM,
    )


def routes(state: ServiceState) -> list[Route]:
    limiter = RateLimiter(state.config.directory_rate_per_minute)
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
        now = time.time()
        with engine.connect() as db:
            rows = db.execute(query, {"address": address, "now": now}).all()
        if not rows:
            return _problem(404, "Not Found", "No valid certificate is published for that address.")
        headers = {"Cache-Control": "max-age=60"}
        if PEM_CHAIN in request.headers.get("accept", ""):
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
