"""Abuse limits counted in the database (RFC 8555 section 6.6): how many events of a kind (new
accounts, orders, challenge mails, directory misses) one key (a client address, an account, a
mail address) had in a sliding window, shared by every server process on the same SQLite file or
PostgreSQL database, so a limit holds however many workers serve.

`check` raises Exceeded, with the seconds until the oldest event that matters leaves the window
(the Retry-After a client is given), when `count` events or more happened in the window; `record`
counts one more. `take` does both in the caller's transaction (and `hit` in one of its own), so
a request that is refused, by a limit or by anything later in the same transaction, counts
nothing. Two processes checking the very same key in the same instant may both pass
(SQLite and PostgreSQL's default isolation do not serialise the count): a limit may be overshot
by the number of workers minus one, never more; that is the price of no lock per request.

Old events are deleted now and then (about once per PRUNE_EVERY recorded), past the longest
window any limit uses (a day).
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass

from sqlalchemy import Connection, delete, func, insert, select

from shared_pki.service.config import ServiceConfig
from shared_pki.service.storage.store import Store, rate_events

HOUR = 3600.0
DAY = 86400.0
PRUNE_EVERY = 200
_random = random.SystemRandom()


@dataclass(frozen=True)
class Limit:
    """At most `count` events of `bucket` per key in `window` seconds (count 0: no limit).
    `what` names it for people: "new accounts from one address per hour"."""

    bucket: str
    count: int
    window: float
    what: str

    @property
    def on(self) -> bool:
        return self.count > 0


class Exceeded(Exception):
    """A limit reached: which one, and in how many seconds a new event would be allowed."""

    def __init__(self, limit: Limit, retry_after: int) -> None:
        super().__init__(f"{limit.what}: at most {limit.count}; retry after {retry_after} s")
        self.limit = limit
        self.retry_after = retry_after

    @property
    def detail(self) -> str:
        return (
            f"Too many {self.limit.what} (at most {self.limit.count}); "
            f"try again in {self.retry_after} seconds."
        )


def check(db: Connection, limit: Limit, key: str, *, now: float | None = None) -> None:
    """Exceeded when `key` already had limit.count events of limit.bucket in the window."""
    if not limit.on:
        return
    now = time.time() if now is None else now
    since = now - limit.window
    used = db.execute(
        select(func.count())
        .select_from(rate_events)
        .where(
            rate_events.c.bucket == limit.bucket, rate_events.c.key == key, rate_events.c.at > since
        )
    ).scalar_one()
    if used < limit.count:
        return
    # The event whose leaving the window lets one more in: the (used - count + 1)-th oldest.
    oldest = db.execute(
        select(rate_events.c.at)
        .where(
            rate_events.c.bucket == limit.bucket, rate_events.c.key == key, rate_events.c.at > since
        )
        .order_by(rate_events.c.at)
        .offset(used - limit.count)
        .limit(1)
    ).scalar_one()
    raise Exceeded(limit, max(1, math.ceil(oldest + limit.window - now)))


def record(db: Connection, bucket: str, key: str, *, now: float | None = None) -> None:
    now = time.time() if now is None else now
    db.execute(insert(rate_events).values(bucket=bucket, key=key, at=now))
    if _random.random() < 1 / PRUNE_EVERY:
        db.execute(delete(rate_events).where(rate_events.c.at < now - DAY))


def take(db: Connection, key: str, *limits: Limit, now: float | None = None) -> None:
    """In the caller's transaction: check every limit (all of one bucket) for key, then count
    one event; Exceeded (nothing counted) when one is reached. Nothing when all are off."""
    active = [limit for limit in limits if limit.on]
    for limit in active:
        check(db, limit, key, now=now)
    if active:
        record(db, active[0].bucket, key, now=now)


def hit(store: Store, key: str, *limits: Limit, now: float | None = None) -> None:
    """take() in a transaction of its own."""
    if any(limit.on for limit in limits):
        with store.transaction() as db:
            take(db, key, *limits, now=now)


@dataclass(frozen=True)
class Limits:
    """The service's limits, from its configuration (config.py says what each one is for)."""

    new_accounts: Limit
    new_orders: Limit
    pending_authorizations: int  # a count of rows, not of events
    mails_per_hour: Limit
    mails_per_day: Limit
    directory_misses: Limit

    @classmethod
    def of(cls, config: ServiceConfig) -> Limits:
        return cls(
            new_accounts=Limit(
                "new_account", config.new_accounts_per_ip_per_hour, HOUR,
                "new accounts from one address per hour",
            ),
            new_orders=Limit(
                "new_order", config.new_orders_per_account_per_hour, HOUR,
                "new orders of one account per hour",
            ),
            pending_authorizations=config.pending_authorizations_per_account,
            mails_per_hour=Limit(
                "challenge_mail", config.challenge_mails_per_address_per_hour, HOUR,
                "challenge mails to one address per hour",
            ),
            mails_per_day=Limit(
                "challenge_mail", config.challenge_mails_per_address_per_day, DAY,
                "challenge mails to one address per day",
            ),
            directory_misses=Limit(
                "directory_miss", config.directory_misses_per_client_per_hour, HOUR,
                "directory lookups that found nothing, from one address per hour",
            ),
        )  # fmt: skip


__all__ = ["DAY", "HOUR", "Exceeded", "Limit", "Limits", "check", "hit", "record", "take"]
