"""A PKI service per test module on SQLite, and on PostgreSQL where a test asks for `db_url`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from shared_pki.service import config as service_config
from shared_pki.service.app import create_app


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path_factory.mktemp('db') / 'pki.sqlite3'}"
    server = request.getfixturevalue("postgres")
    name = f"pki_{abs(hash(request.node.nodeid)) % 10**8}"
    server.psql(f"CREATE DATABASE {name}")
    return server.url_for(name)


@pytest.fixture(scope="module")
def service_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("pki")


@pytest.fixture(scope="module")
def client(service_dir: Path, db_url: str) -> Iterator[TestClient]:
    config = service_config.load(service_dir, {"db_url": db_url, "directory_rate_per_minute": 50})
    with TestClient(create_app(config)) as test_client:
        yield test_client
