"""The one ASGI application: every service's routes over one store and one CA.

`create_app(config)` is what uvicorn serves (`autosmime pki serve`) and what tests drive with
Starlette's TestClient. Each service module contributes `routes(state)`; state is built once
per process at start-up (store connection, CA material loaded and unsealed)."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from shared_pki.service.config import ServiceConfig
from shared_pki.service.storage.store import Store


@dataclass
class ServiceState:
    """What every request handler may use; built once per process."""

    config: ServiceConfig
    store: Store
    extras: dict[str, Any] = field(default_factory=dict)


# Service modules, each with routes(state) -> list[Route].
ROUTE_MODULES: tuple[str, ...] = (
    "shared_pki.service.ca.http",
    "shared_pki.service.directory.routes",
    "shared_pki.service.tsa.routes",
    "shared_pki.service.acme.server",
)


def _health(_request: Any) -> Response:
    return JSONResponse({"status": "ok", "pid": os.getpid()})


def create_app(
    config: ServiceConfig,
    *,
    route_modules: tuple[str, ...] | None = None,
    extras: dict[str, Any] | None = None,
) -> Starlette:
    """The application for config; route_modules defaults to every service. extras go into
    state.extras before the routes are built (tests inject an ACME validator this way)."""
    import importlib

    from shared_pki.service.ca import material as ca_state

    config.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    store = Store(config.db_url)
    state = ServiceState(config, store, dict(extras or {}))
    state.extras["hierarchy"], _created = ca_state.load_or_create(config)

    # --- RFC 8823 mail validation (challenge_mail.install) -----------------------------------
    # With the CA mailbox configured and no validator injected: state.extras["validator"], and
    # the reply watcher's start/stop in state.extras["on_startup"] / ["on_shutdown"].
    from shared_pki.service.mail_validation import sender as challenge_mail

    challenge_mail.install(state)
    # --- end of RFC 8823 mail validation -----------------------------------------------------

    routes: list[BaseRoute] = [Route("/health", _health)]
    for name in route_modules if route_modules is not None else ROUTE_MODULES:
        routes += importlib.import_module(name).routes(state)

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        # Background work of the services (the mail reply watcher): callables without
        # arguments, run once per process at start and at shutdown.
        for hook in state.extras.get("on_startup", ()):
            hook()
        try:
            yield
        finally:
            for hook in state.extras.get("on_shutdown", ()):
                try:
                    hook()
                except Exception:
                    logging.getLogger(__name__).exception("shutdown hook %r failed", hook)
            store.close()

    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.service = state
    return app


DATA_ENV = "AUTOSMIME_PKI_DATA"
OVERRIDES_ENV = "AUTOSMIME_PKI_OVERRIDES"


def app_from_environment() -> Starlette:
    """The uvicorn factory for `autosmime pki serve`: each worker process builds its app from
    the data folder and the command-line overrides the parent put in the environment."""
    import json
    from pathlib import Path

    from shared_pki.service import config as service_config

    overrides = json.loads(os.environ.get(OVERRIDES_ENV, "{}"))
    return create_app(service_config.load(Path(os.environ[DATA_ENV]), overrides))
