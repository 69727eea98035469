"""What the parts of the service share in one process, typed: each part names the fields it
uses instead of looking things up by string key.

Built once per process by `app.create_app` (the only place that wires parts together) and
handed to every part's `routes(state)`. The layers below it (config, storage, the pure
library) know nothing of it; the parts above it (ca, acme, mail_validation, directory, tsa)
import it and nothing of each other except downward (see docs/DESIGN.md)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from shared_pki.ca.hierarchy import Hierarchy
from shared_pki.service.config import ServiceConfig
from shared_pki.service.storage.limits import Limits
from shared_pki.service.storage.store import Store

#: dkimpy's resolver hook: dnsfunc(name: bytes, timeout=5) -> the TXT record or None.
DnsFunc = Callable[..., bytes | None]
#: Background work run once per process at start-up or shutdown (the mail reply watcher).
Hook = Callable[[], object]


@runtime_checkable
class Validator(Protocol):
    """Validates the challenges of the ACME server, which never validates anything itself.

    `challenge_created` is called after a new challenge is committed (RFC 8823 has the CA mail
    the challenge before the client answers); `start` when the client POSTed the challenge
    (it is now `processing`). The validator records the outcome, then or later, with
    `acme.transitions.challenge_result`. Several server processes may share one database, so a
    validator must not assume the process that called `start` finishes the challenge. With no
    validator a challenge POST is refused: nothing is ever validated by accident."""

    def challenge_created(self, state: ServiceState, challenge_id: str) -> object: ...

    def start(self, state: ServiceState, challenge_id: str) -> object: ...


@dataclass
class ServiceState:
    """The service's parts for one process (see the module docstring)."""

    config: ServiceConfig
    store: Store
    hierarchy: Hierarchy
    #: The RFC 8823 mail validator when the CA mailbox is configured (or one a test gives).
    validator: Validator | None = None
    #: TXT lookups for DKIM checks of challenge replies; None: the system's resolvers.
    dkim_dns: DnsFunc | None = None
    #: Orders per page of an ACME account's orders list (RFC 8555 7.1.2.1).
    orders_page_size: int = 100
    on_startup: list[Hook] = field(default_factory=list)
    on_shutdown: list[Hook] = field(default_factory=list)
    #: The abuse limits of config (storage.limits), counted in the store.
    limits: Limits = field(init=False)

    def __post_init__(self) -> None:
        self.limits = Limits.of(self.config)
