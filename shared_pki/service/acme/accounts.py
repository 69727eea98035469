"""ACME directory, nonces, accounts and key change (RFC 8555 sections 7.1.1, 7.2, 7.3)."""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Row
from sqlalchemy.exc import IntegrityError
from starlette.requests import Request

from shared_pki.acme import jws
from shared_pki.acme.objects import (
    AccountEvent,
    AccountStatus,
    Directory,
    DirectoryMeta,
    check_contacts,
    next_account_status,
    parse_new_account,
    require_valid_account,
)
from shared_pki.acme.problems import AcmeProblem, ProblemType, malformed
from shared_pki.service.acme.http import Acme, LocatedProblem, RateLimited, Reply
from shared_pki.service.acme.transitions import refresh_order
from shared_pki.service.storage import limits
from shared_pki.service.storage.store import accounts, authorizations, order_authorizations

# ---- directory and nonces ---------------------------------------------------------------------


def directory(acme: Acme, _request: Request, _body: bytes) -> Reply:
    suites = ("intl", "sm") if acme.config.offer_sm2 else ("intl",)
    meta = DirectoryMeta(
        website=acme.config.public_url, external_account_required=False, smime_suites=suites
    )
    doc = Directory(
        new_nonce=acme.url("new-nonce"),
        new_account=acme.url("new-account"),
        new_order=acme.url("new-order"),
        revoke_cert=acme.url("revoke-cert"),
        key_change=acme.url("key-change"),
        meta=meta,
        # An extension resource (clients ignore what they do not know): publish a certificate
        # from another CA in the directory, proved by a valid authorization (publish.py).
        publish_cert=acme.url("publish-cert"),
    ).to_json()
    return Reply(body=doc, headers={"Cache-Control": "public, max-age=0"})


def new_nonce(_acme: Acme, request: Request, _body: bytes) -> Reply:
    # RFC 8555 7.2: 200 to HEAD, 204 to GET; the plumbing adds the nonce and no-store.
    return Reply(status=200 if request.method == "HEAD" else 204)


# ---- accounts ---------------------------------------------------------------------------------


def new_account(acme: Acme, request: Request, body: bytes) -> Reply:
    verified, _ = acme.verify(request, body, require="jwk")
    if verified.payload is None:
        raise malformed("newAccount needs a payload, not POST-as-GET")
    wanted = parse_new_account(verified.payload)
    with acme.store.transaction() as db:
        row = db.execute(
            select(accounts).where(accounts.c.thumbprint == verified.thumbprint)
        ).first()
    if row is not None:
        require_valid_account(AccountStatus(row.status))
        return Reply(body=acme.account_json(row), headers={"Location": acme.account_url(row.id)})
    if wanted.only_return_existing:
        raise AcmeProblem(ProblemType.ACCOUNT_DOES_NOT_EXIST, "no account has this key")
    if acme.config.require_contact and not wanted.contact:
        # What a CA that insists on a way to reach the subscriber answers (config knob).
        raise AcmeProblem(ProblemType.INVALID_CONTACT, "Contact information is missing")
    account_id = jws.b64url_encode(secrets.token_bytes(12))
    client = request.client.host if request.client else "unknown"
    try:
        with acme.store.transaction() as db:
            limits.take(db, client, acme.state.limits.new_accounts)
            db.execute(
                insert(accounts).values(
                    id=account_id,
                    thumbprint=verified.thumbprint,
                    jwk=json.dumps(verified.jwk),
                    status=AccountStatus.VALID.value,
                    contact=json.dumps(list(wanted.contact)),
                    created=time.time(),
                )
            )
    except IntegrityError:  # the same key registered concurrently: answer with that account
        return new_account_existing(acme, verified.thumbprint)
    except limits.Exceeded as exceeded:
        raise RateLimited(exceeded) from None
    with acme.store.transaction() as db:
        row = db.execute(select(accounts).where(accounts.c.id == account_id)).one()
    return Reply(
        status=201, body=acme.account_json(row), headers={"Location": acme.account_url(row.id)}
    )


def new_account_existing(acme: Acme, thumbprint: str) -> Reply:
    with acme.store.transaction() as db:
        row = db.execute(select(accounts).where(accounts.c.thumbprint == thumbprint)).one()
    return Reply(body=acme.account_json(row), headers={"Location": acme.account_url(row.id)})


def own_account(acme: Acme, request: Request, account: Row | None) -> Row:
    """The account of a kid request, which must be the account the URL names."""
    assert account is not None
    if account.id != request.path_params["account_id"]:
        raise AcmeProblem(ProblemType.UNAUTHORIZED, "this is not the signing account's URL")
    return account


def account_update(acme: Acme, request: Request, body: bytes) -> Reply:
    verified, account = acme.verify(request, body)
    account = own_account(acme, request, account)
    payload = verified.payload
    values: dict[str, Any] = {}
    if payload:
        unknown = set(payload) - {"contact", "status", "termsOfServiceAgreed", "orders"}
        if unknown:
            raise malformed(f"account fields {sorted(unknown)} cannot be updated")
        if "contact" in payload:
            contact = payload["contact"]
            if not isinstance(contact, list) or not all(isinstance(c, str) for c in contact):
                raise malformed("'contact' is not a list of strings")
            values["contact"] = json.dumps(list(check_contacts(contact)))
        if "status" in payload:
            if payload["status"] != AccountStatus.DEACTIVATED.value:
                raise malformed("a client may only set an account's status to 'deactivated'")
            status = next_account_status(AccountStatus(account.status), AccountEvent.DEACTIVATE)
            values["status"] = status.value
    if values:
        with acme.store.transaction() as db:
            db.execute(update(accounts).where(accounts.c.id == account.id).values(**values))
            if "status" in values:
                _deactivate_authorizations(db, account.id)
    with acme.store.transaction() as db:
        row = db.execute(select(accounts).where(accounts.c.id == account.id)).one()
    return Reply(body=acme.account_json(row), headers={"Location": acme.account_url(row.id)})


def _deactivate_authorizations(db: Any, account_id: str) -> None:
    """RFC 8555 7.3.6: cancel what the deactivated account's key authorized: its pending and
    valid authorizations (no longer reusable), and so the orders that need them."""
    ids = [
        authz_id
        for (authz_id,) in db.execute(
            select(authorizations.c.id).where(
                authorizations.c.account == account_id,
                authorizations.c.status.in_(("pending", "valid")),
            )
        )
    ]
    if not ids:
        return
    db.execute(
        update(authorizations).where(authorizations.c.id.in_(ids)).values(status="deactivated")
    )
    order_ids = {
        order_id
        for (order_id,) in db.execute(
            select(order_authorizations.c.order_id).where(
                order_authorizations.c.authorization_id.in_(ids)
            )
        )
    }
    now = time.time()
    for order_id in order_ids:
        refresh_order(db, order_id, now=now)


def key_change(acme: Acme, request: Request, body: bytes) -> Reply:
    verified, account = acme.verify(request, body)
    assert account is not None
    change = jws.verify_key_change(verified)
    try:
        with acme.store.transaction() as db:
            taken = db.execute(
                select(accounts.c.id).where(accounts.c.thumbprint == change.new_thumbprint)
            ).first()
            if taken is not None:
                raise _key_in_use(acme, taken.id)
            db.execute(
                update(accounts)
                .where(accounts.c.id == account.id)
                .values(thumbprint=change.new_thumbprint, jwk=json.dumps(change.new_jwk))
            )
    except IntegrityError:  # another request took the key between our check and the update
        with acme.store.transaction() as db:
            taken = db.execute(
                select(accounts.c.id).where(accounts.c.thumbprint == change.new_thumbprint)
            ).first()
        raise _key_in_use(acme, taken.id if taken else "") from None
    with acme.store.transaction() as db:
        row = db.execute(select(accounts).where(accounts.c.id == account.id)).one()
    return Reply(body=acme.account_json(row), headers={"Location": acme.account_url(row.id)})


def _key_in_use(acme: Acme, account_id: str) -> AcmeProblem:
    # RFC 8555 7.3.5: 409 Conflict with the Location of the account that has the key.
    return LocatedProblem(
        ProblemType.MALFORMED,
        "the new key is already the key of an account",
        location=acme.account_url(account_id),
        status=409,
    )


HANDLERS = (
    ("new-account", new_account),
    ("account/{account_id}", account_update),
    ("key-change", key_change),
)
