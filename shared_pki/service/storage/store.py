"""The service's storage: one SQLAlchemy Core schema for SQLite (embedded default) and
PostgreSQL (several processes or machines). Every table lives here, so the schema is read in
one place; the modules that own a table's rows say so in its comment."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import (
    Boolean,
    Column,
    Connection,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    delete,
    event,
    insert,
)
from sqlalchemy.engine import Engine

metadata = MetaData()

# ACME replay nonces (acme server): inserted when issued, deleted when used; a nonce that
# deletes no row was never issued or was already used, whichever process issued it.
nonces = Table(
    "nonces",
    metadata,
    Column("value", String(64), primary_key=True),
    Column("created", Float, nullable=False),
)

# Every certificate the CA issued (issuance), read by the directory; revocation sets the
# revoked columns and withdraws it from the directory at once.
certificates = Table(
    "certificates",
    metadata,
    Column("serial", String(64), primary_key=True),  # hex
    Column("issuer", String(32), nullable=False),  # "intl" or "sm2"
    Column("address", String(320), nullable=False),  # normalised
    Column("algorithm", String(16), nullable=False),  # "rsa", "ecdsa", "sm2"
    Column("not_before", Float, nullable=False),
    Column("not_after", Float, nullable=False),
    Column("der", LargeBinary, nullable=False),
    Column("account", String(64)),
    Column("revoked", Float),
    Column("reason", Integer),
    Column("published", Boolean, nullable=False, default=True),
)
Index("certificates_by_address", certificates.c.address)

# ACME (acme server): accounts by JWK thumbprint; orders; authorizations (shared by the orders
# of one account for one address while valid); RFC 8823 challenges, whose token parts are
# unique so that no token is ever reused. JSON columns hold the RFC 8555 objects' lists.
accounts = Table(
    "accounts",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("thumbprint", String(64), nullable=False, unique=True),
    Column("jwk", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("contact", Text, nullable=False, default="[]"),
    Column("created", Float, nullable=False),
)

orders = Table(
    "orders",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("account", String(64), nullable=False, index=True),
    Column("status", String(16), nullable=False),
    Column("identifiers", Text, nullable=False),
    Column("expires", Float, nullable=False),
    Column("not_before", Float),
    Column("not_after", Float),
    Column("error", Text),
    Column("certificate", String(64)),  # serial of the issued certificate
    Column("created", Float, nullable=False),
)

authorizations = Table(
    "authorizations",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("account", String(64), nullable=False),
    Column("address", String(320), nullable=False),
    Column("status", String(16), nullable=False),
    Column("expires", Float, nullable=False),
    Column("created", Float, nullable=False),
)
Index("authorizations_by_account_address", authorizations.c.account, authorizations.c.address)

order_authorizations = Table(
    "order_authorizations",
    metadata,
    Column("order_id", String(64), primary_key=True),
    Column("authorization_id", String(64), primary_key=True),
)

challenges = Table(
    "challenges",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("authorization", String(64), nullable=False, index=True),
    Column("type", String(32), nullable=False),
    Column("status", String(16), nullable=False),
    Column("token_part1", String(128), nullable=False, unique=True),
    Column("token_part2", String(128), nullable=False, unique=True),
    Column("from_address", String(320), nullable=False),
    Column("message_id", String(256), unique=True),  # of the challenge mail, once sent
    Column("sent", Float),
    Column("validated", Float),
    Column("expires", Float, nullable=False),
    Column("error", Text),
    Column("reply_id", String(256)),  # Message-ID of the accepted reply (accepted once)
)

# Abuse limits (storage.limits): one row per counted event (a new account, an order, a challenge
# mail, a directory miss), so every server process sharing the database counts the same events.
rate_events = Table(
    "rate_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("bucket", String(32), nullable=False),
    Column("key", String(320), nullable=False),
    Column("at", Float, nullable=False),
)
Index("rate_events_by_key", rate_events.c.bucket, rate_events.c.key, rate_events.c.at)

# Small named values shared by all processes (CRL numbers, ...).
settings = Table(
    "settings",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)


def engine_for(url: str) -> Engine:
    """An engine for sqlite:///... or postgresql://...; SQLite gets WAL and a busy timeout so
    that several processes can share one file."""
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    if url.startswith("sqlite:"):
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _pragmas(connection, _record) -> None:
            cursor = connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        return engine
    # No pre-ping: it costs a round trip per request; recycle connections instead.
    return create_engine(url, pool_recycle=1800, pool_size=10, max_overflow=20)


class Store:
    """The engine plus the few operations shared by several services."""

    def __init__(self, url: str) -> None:
        self.engine = engine_for(url)
        metadata.create_all(self.engine)

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        with self.engine.begin() as connection:
            yield connection

    def add_nonce(self, value: str) -> None:
        with self.transaction() as db:
            db.execute(insert(nonces).values(value=value, created=time.time()))

    def use_nonce(self, value: str, max_age: float = 3600) -> bool:
        """True exactly once for a nonce issued less than max_age seconds ago."""
        with self.transaction() as db:
            used = db.execute(
                delete(nonces).where(
                    nonces.c.value == value, nonces.c.created > time.time() - max_age
                )
            ).rowcount
        return used == 1

    def close(self) -> None:
        self.engine.dispose()
