"""The one ASGI application: every part's routes over one store and one CA.

`create_app(config)` is what uvicorn serves (`autosmime pki serve`) and what tests drive with
Starlette's TestClient. It is the one place that wires the parts together: it builds the
ServiceState (store, CA material loaded and unsealed, the mail validator when the CA mailbox
is configured) once per process, then asks each part for its routes."""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from shared_pki.service import config as service_config
from shared_pki.service.acme import routes as acme_routes
from shared_pki.service.acme.http import Acme
from shared_pki.service.ca import http as ca_http
from shared_pki.service.ca import material
from shared_pki.service.config import ServiceConfig
from shared_pki.service.directory import routes as directory_routes
from shared_pki.service.mail_validation import install as mail_validation
from shared_pki.service.request_size import RequestSizeLimit
from shared_pki.service.state import DnsFunc, ServiceState, Validator
from shared_pki.service.storage.store import Store
from shared_pki.service.tsa import routes as tsa_routes

log = logging.getLogger(__name__)

RoutesOf = Callable[[ServiceState], list[Route]]

#: Every part's routes(state), in the order they are matched.
PARTS: tuple[RoutesOf, ...] = (
    ca_http.routes,
    directory_routes.routes,
    tsa_routes.routes,
    acme_routes.routes,
)


def _health(_request: Any) -> Response:
    return JSONResponse({"status": "ok", "pid": os.getpid()})


def create_app(
    config: ServiceConfig,
    *,
    parts: Sequence[RoutesOf] = PARTS,
    validator: Validator | None = None,
    dkim_dns: DnsFunc | None = None,
    orders_page_size: int | None = None,
) -> Starlette:
    """The application for config. Without a validator and with the CA mailbox configured,
    RFC 8823 mail validation is installed (a test may give another validator instead)."""
    config.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    store = Store(config.db_url)
    hierarchy, _created = material.load_or_create(config)
    state = ServiceState(config, store, hierarchy, validator=validator, dkim_dns=dkim_dns)
    if orders_page_size is not None:
        state.orders_page_size = orders_page_size
    installed = mail_validation.install(state) if validator is None else None

    routes: list[BaseRoute] = [Route("/health", _health)]
    for part in parts:
        routes += part(state)

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        for hook in state.on_startup:
            hook()
        try:
            yield
        finally:
            for hook in state.on_shutdown:
                try:
                    hook()
                except Exception:
                    log.exception("shutdown hook %r failed", hook)
            store.close()

    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        # Every body counted as it arrives, before any part reads it (request_size).
        middleware=[
            Middleware(
                RequestSizeLimit,
                limit=config.max_request_bytes,
                headers_for=_nonce_for(state),
                acme_prefix=f"{config.acme_path}/",
            )
        ],
    )
    app.state.service = state
    app.state.mail_validation = installed
    return app


def _nonce_for(state: ServiceState) -> Callable[[str], dict[str, str]]:
    """A refusal on an ACME path carries a fresh nonce like every ACME answer (RFC 8555 6.5)."""
    acme = Acme(state)
    prefix = f"{state.config.acme_path}/"

    def headers(path: str) -> dict[str, str]:
        return {"Replay-Nonce": acme.new_nonce()} if path.startswith(prefix) else {}

    return headers


DATA_ENV = "AUTOSMIME_PKI_DATA"
OVERRIDES_ENV = "AUTOSMIME_PKI_OVERRIDES"


def app_from_environment() -> Starlette:
    """The uvicorn factory for `autosmime pki serve`: each worker process builds its app from
    the data folder and the command-line overrides the parent put in the environment."""
    overrides = json.loads(os.environ.get(OVERRIDES_ENV, "{}"))
    return create_app(service_config.load(Path(os.environ[DATA_ENV]), overrides))
