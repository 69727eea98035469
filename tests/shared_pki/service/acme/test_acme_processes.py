"""Two server processes sharing one PostgreSQL serve one ACME client, as behind a load
balancer: both answer for the same public URL, every request goes to the other process than
the one before, so each nonce is used at the process that did not issue it."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from harness.acme_client import AcmeClient, ServerProcess, assert_problem, free_port, new_key

from shared_pki.service import config as service_config
from shared_pki.service.ca import material as ca_state


class RoundRobin:
    """An httpx-style client sending each request to the next port in turn (a load balancer
    in front of the public URL's port)."""

    def __init__(self, public_port: int, ports: list[int]) -> None:
        self.http = httpx.Client(timeout=30)
        self.public = f"127.0.0.1:{public_port}"
        self.ports = itertools.cycle(ports)
        self.served: list[int] = []

    def _route(self, url: str) -> str:
        port = next(self.ports)
        self.served.append(port)
        return url.replace(self.public, f"127.0.0.1:{port}", 1)

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.http.get(self._route(url), **kwargs)

    def head(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.http.head(self._route(url), **kwargs)

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.http.post(self._route(url), **kwargs)


@pytest.fixture(scope="module")
def two_servers(
    postgres: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    postgres.psql("CREATE DATABASE acme_two_processes")
    db_url = postgres.url_for("acme_two_processes")
    data: Path = tmp_path_factory.mktemp("pki")
    public_port = free_port()
    public_url = f"http://127.0.0.1:{public_port}"
    settings = {"db_url": db_url, "public_url": public_url}
    ca_state.load_or_create(service_config.load(data, settings))  # one CA, made once
    with (
        ServerProcess(data, port=public_port, **settings) as first,
        ServerProcess(data, **settings) as second,
    ):
        yield first, second


def test_two_processes_share_nonces_and_orders(
    two_servers: tuple[ServerProcess, ServerProcess],
) -> None:
    first, second = two_servers
    pids = {httpx.get(f"{s.url}/health").json()["pid"] for s in two_servers}
    assert len(pids) == 2
    # A nonce from one process is accepted by the other, once.
    balancer = RoundRobin(first.port, [first.port, second.port])
    acme = AcmeClient(balancer, f"{first.url}/acme/directory", new_key("p256"))
    nonce = httpx.head(f"{first.url}/acme/new-nonce").headers["Replay-Nonce"]
    account = acme.directory["newAccount"]
    balancer.ports = itertools.cycle([second.port])
    registered = acme.post(account, {"termsOfServiceAgreed": True}, kid=False, nonce=nonce)
    assert registered.status_code == 201, registered.text
    acme.account_url = registered.headers["Location"]
    balancer.ports = itertools.cycle([first.port])
    assert_problem(acme.post(acme.account_url, None, nonce=nonce), "badNonce", 400)
    # The whole enrollment, alternating processes request by request.
    balancer.ports = itertools.cycle([first.port, second.port])
    order, chain = acme.issue("nina@example.test", new_key("p256"))
    assert order["status"] == "valid" and chain.count("BEGIN CERTIFICATE") == 2
    assert set(balancer.served) == {first.port, second.port}
    for server in two_servers:  # published by one process, found through either
        found = httpx.get(f"{server.url}/certs/nina@example.test")
        assert found.status_code == 200 and len(found.json()["certificates"]) == 1
