"""ACME state changes in the store that more than one module makes: a challenge's result, and
what follows from it for its authorization and every order that uses that authorization.

The transition rules are the pure ones in shared_pki.acme.objects; this module applies them in
one database transaction, so several server processes (and the mail watcher) agree."""

from __future__ import annotations

import datetime
import json

from sqlalchemy import Connection, select, update

from shared_pki.acme.objects import (
    AuthorizationEvent,
    AuthorizationStatus,
    ChallengeEvent,
    ChallengeStatus,
    OrderEvent,
    OrderStatus,
    next_authorization_status,
    next_challenge_status,
    next_order_status,
)
from shared_pki.acme.problems import AcmeProblem
from shared_pki.service.storage.store import (
    Store,
    authorizations,
    challenges,
    order_authorizations,
    orders,
)


def _utc(epoch: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(epoch, datetime.UTC)


def challenge_result(
    store: Store,
    challenge_id: str,
    *,
    valid: bool,
    problem: AcmeProblem | None = None,
    reply_id: str | None = None,
    now: float,
) -> bool:
    """Record the outcome of validating a challenge, once: True if this call decided it, False
    if the challenge was already valid or invalid (a second reply changes nothing)."""
    with store.transaction() as db:
        row = db.execute(
            select(challenges).where(challenges.c.id == challenge_id).with_for_update()
        ).first()
        if row is None or row.status not in (ChallengeStatus.PENDING, ChallengeStatus.PROCESSING):
            return False
        status = next_challenge_status(
            ChallengeStatus(row.status), ChallengeEvent.SUCCEED if valid else ChallengeEvent.FAIL
        )
        changed = db.execute(
            update(challenges)
            .where(challenges.c.id == challenge_id, challenges.c.status == row.status)
            .values(
                status=status.value,
                validated=now if valid else None,
                reply_id=reply_id,
                error=json.dumps(problem.to_json()) if problem is not None else None,
            )
        ).rowcount
        if changed != 1:
            return False
        refresh_authorization(db, row.authorization, now=now)
    return True


def refresh_authorization(db: Connection, authorization_id: str, *, now: float) -> str:
    """Re-derive an authorization's status from its challenges and the clock, then refresh
    every order that uses it; returns the new status."""
    authz = db.execute(
        select(authorizations).where(authorizations.c.id == authorization_id)
    ).first()
    if authz is None:
        return ""
    statuses = [
        ChallengeStatus(s)
        for (s,) in db.execute(
            select(challenges.c.status).where(challenges.c.authorization == authorization_id)
        )
    ]
    status = next_authorization_status(
        AuthorizationStatus(authz.status),
        AuthorizationEvent.REFRESH,
        challenge_statuses=statuses,
        now=_utc(now),
        expires=_utc(authz.expires),
    )
    if status.value != authz.status:
        db.execute(
            update(authorizations)
            .where(authorizations.c.id == authorization_id)
            .values(status=status.value)
        )
    order_ids = [
        order_id
        for (order_id,) in db.execute(
            select(order_authorizations.c.order_id).where(
                order_authorizations.c.authorization_id == authorization_id
            )
        )
    ]
    for order_id in order_ids:
        refresh_order(db, order_id, now=now)
    return status.value


def refresh_order(db: Connection, order_id: str, *, now: float) -> str:
    """Re-derive an order's status from its authorizations and the clock."""
    order = db.execute(select(orders).where(orders.c.id == order_id)).first()
    if order is None:
        return ""
    statuses = [
        AuthorizationStatus(s)
        for (s,) in db.execute(
            select(authorizations.c.status)
            .join(
                order_authorizations,
                order_authorizations.c.authorization_id == authorizations.c.id,
            )
            .where(order_authorizations.c.order_id == order_id)
        )
    ]
    status = next_order_status(
        OrderStatus(order.status),
        OrderEvent.REFRESH,
        authorization_statuses=statuses,
        now=_utc(now),
        expires=_utc(order.expires),
    )
    if status.value != order.status:
        db.execute(update(orders).where(orders.c.id == order_id).values(status=status.value))
    return status.value
