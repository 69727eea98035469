"""Session-wide fixtures shared by all test folders."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from harness.mail import MailStack
from harness.pki_world import PkiWorld
from harness.postgres import PostgresServer


@pytest.fixture(scope="session")
def mail_stack() -> Iterator[MailStack]:
    """Dovecot (IMAP/IMAPS/LMTP) + SMTP submission on loopback, started once per session."""
    with MailStack() as stack:
        yield stack


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A throw-away PostgreSQL cluster with one database (`postgres.url`), once per session."""
    with PostgresServer() as server:
        yield server


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PkiWorld]:
    """The real PKI service in this process, its CA issuing certificates (harness.pki_world)."""
    service = PkiWorld(tmp_path_factory.mktemp("world"))
    try:
        yield service
    finally:
        service.close()
