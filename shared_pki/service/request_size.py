"""The request size limit of the whole service, enforced before a body is read: an ASGI middleware
in front of every part (ACME, TSA, directory, CA files).

A request whose Content-Length says it is larger than the limit is answered 413 at once, its
body never read. A body without Content-Length (chunked) is counted as it arrives: the part
reading it gets RequestTooLarge from `receive` the moment the count passes the limit, which ends
its reading, and the middleware answers 413 (no part holds more than the limit in memory, however
the body is sent). The answer is an RFC 9457 problem document; on ACME paths it is RFC 8555's
`malformed`, which ACME clients read.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

ACME_MALFORMED = "urn:ietf:params:acme:error:malformed"


class RequestTooLarge(Exception):
    """Raised from `receive` when a body passes the limit while it arrives."""


#: Extra header fields for a refusal, by request path (ACME's Replay-Nonce); may block: it is
#: run in the thread pool.
HeadersFor = Callable[[str], dict[str, str]]


class RequestSizeLimit:
    """Wraps an ASGI app; `limit` octets at most per request body. headers_for: extra header
    fields for a refusal on a path (ACME answers every request with a fresh nonce);
    acme_prefix: where ACME's paths begin (its refusals are RFC 8555 problems)."""

    def __init__(
        self,
        app: App,
        limit: int,
        headers_for: HeadersFor | None = None,
        acme_prefix: str = "/acme/",
    ) -> None:
        self.app = app
        self.limit = limit
        self.headers_for = headers_for
        self.acme_prefix = acme_prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.limit:
            await self._refuse(scope, send)
            return
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise RequestTooLarge
            return message

        async def watching_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, watching_send)
        except RequestTooLarge:
            if started:  # a part answered before reading all of it: nothing left to say
                return
            await self._refuse(scope, send)

    async def _refuse(self, scope: Scope, send: Send) -> None:
        path = str(scope.get("path", ""))
        acme = path.startswith(self.acme_prefix)
        extra: dict[str, str] = {}
        if self.headers_for is not None:
            from starlette.concurrency import run_in_threadpool

            try:
                extra = await run_in_threadpool(self.headers_for, path)
            except Exception:  # a refusal is still a refusal without them
                extra = {}
        body = json.dumps(
            {
                "type": ACME_MALFORMED if acme else "about:blank",
                "title": "Content Too Large",
                "status": 413,
                "detail": f"The request body is larger than {self.limit} octets.",
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/problem+json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                    *((k.lower().encode(), v.encode()) for k, v in extra.items()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name.lower() == b"content-length":
            text = value.decode("latin-1").strip()
            return int(text) if text.isdigit() else None
    return None


__all__ = ["RequestSizeLimit", "RequestTooLarge"]
