"""Session-wide fixtures shared by all test folders."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from harness.mail import MailStack
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
