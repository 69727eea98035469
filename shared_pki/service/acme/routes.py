"""The ACME server's routes (RFC 8555 for `email` identifiers, RFC 8823 challenges): every
handler module's paths under config.acme_path (/acme by default, as below), each wrapped by the
plumbing of acme.http.

    GET       /acme/directory
    HEAD/GET  /acme/new-nonce
    POST      /acme/new-account, /acme/account/{id}, /acme/key-change      (accounts)
    POST      /acme/new-order, /acme/order/{id}, /acme/order/{id}/finalize,
              /acme/account/{id}/orders, /acme/authz/{id}, /acme/chall/{id},
              /acme/cert/{serial}, /acme/revoke-cert                       (orders)
    POST      /acme/publish-cert                                           (publish)
"""

from __future__ import annotations

from starlette.routing import Route

from shared_pki.service.acme import accounts, orders, publish
from shared_pki.service.acme.http import Acme, Handler, endpoint
from shared_pki.service.state import ServiceState


def routes(state: ServiceState) -> list[Route]:
    acme = Acme(state)
    prefix = state.config.acme_path

    def route(path: str, handler: Handler, methods: list[str]) -> Route:
        post_only = methods == ["POST"]
        methods = ["GET", "POST"] if post_only else methods
        return Route(
            f"{prefix}/{path}", endpoint(acme, handler, post_only=post_only), methods=methods
        )

    return [
        route("directory", accounts.directory, ["GET"]),
        route("new-nonce", accounts.new_nonce, ["GET", "HEAD"]),
        *(route(path, handler, ["POST"]) for path, handler in accounts.HANDLERS),
        *(route(path, handler, ["POST"]) for path, handler in orders.HANDLERS),
        *(route(path, handler, ["POST"]) for path, handler in publish.HANDLERS),
    ]
