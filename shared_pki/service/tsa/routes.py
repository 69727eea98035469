"""The time-stamp authority over HTTP (RFC 3161 section 3.4): POST application/timestamp-query,
answer application/timestamp-reply. Every request, however bad, gets a TimeStampResp, except a
body over the service's size limit, refused 413 before it is read (request_size). Signing runs
in the thread pool, off the event loop."""

from __future__ import annotations

import datetime
import secrets
import threading
import time

import anyio
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from shared_pki import tsp
from shared_pki.keys import Certificate, Credential
from shared_pki.service.state import ServiceState

QUERY = "application/timestamp-query"
REPLY = "application/timestamp-reply"
MAX_QUERY = 64 * 1024


def unique_serial() -> int:
    """Unique across processes and restarts without coordination: nanoseconds since the epoch
    in the high bits, 64 random bits below (well under RFC 3161's 160-bit limit)."""
    return (time.time_ns() << 64) | secrets.randbits(64)


def routes(state: ServiceState) -> list[Route]:
    hierarchy = state.hierarchy

    def fresh(cert: Certificate) -> Certificate:
        # Parsed anew from DER for the token's certificate set. Root cause, seen with py-spy:
        # asn1crypto's dump() takes any header whose last byte is 0x80 for an indefinite length
        # and re-encodes the whole value on every call, so a certificate of 640 (0x0280) bytes
        # costs 0.3 ms per dump instead of 4 us. Re-parsing here measured 300 -> 830 tokens/s.
        return Certificate.load(cert.dump())

    tsa = Credential(
        hierarchy.tsa.key,
        fresh(hierarchy.tsa.certificate),
        (fresh(hierarchy.intl_issuing.certificate), fresh(hierarchy.intl_root.certificate)),
    )
    config = state.config

    # asn1crypto parses lazily and caches as it goes: the TSA's certificates are not safe to use
    # from two threads at once (seen under load: a public key half-parsed by another thread).
    # One token at a time, then: the work holds the GIL anyway, and the event loop stays free.
    # A thread of its own for signing, rather than the pool's 40 of which all but one waited
    # on this lock (p99 under load was the wait of the queue at the lock, in threads).
    signing = threading.Lock()
    signer_thread = anyio.CapacityLimiter(1)

    def sign(query: bytes) -> bytes:
        with signing:
            return _sign(query)

    def _sign(query: bytes) -> bytes:
        return tsp.make_response(
            query,
            tsa=tsa,
            policy_oid=config.tsa_policy_oid,
            serial_number=unique_serial(),
            gen_time=datetime.datetime.now(datetime.UTC),
            accuracy_ms=config.tsa_accuracy_ms,
        )

    async def timestamp(request: Request) -> Response:
        # The body was counted as it arrived (request_size); the query is checked here.
        body = await request.body()
        if len(body) > MAX_QUERY:
            reply = tsp.rejection("rejection", "bad_data_format", "The request is too large.")
        elif request.headers.get("content-type", "").split(";")[0].strip() != QUERY:
            reply = tsp.rejection("rejection", "bad_data_format", f"Send {QUERY}.")
        else:  # parsing and signing are CPU work: off the event loop, so others are served
            reply = await anyio.to_thread.run_sync(sign, body, limiter=signer_thread)
        return Response(reply, media_type=REPLY)

    return [Route(config.tsa_path, timestamp, methods=["POST"])]
