"""certs.list (this profile's own keys and certificates) and certs.lookup (correspondents'
usable certificates and where they came from)."""

from __future__ import annotations

import datetime
import hashlib
from typing import Any

from native_host.errors import BadParams
from native_host.ops import state
from native_host.ops.state import operation, text_param


def _iso(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _certificate(cert: Any, now: datetime.datetime) -> dict[str, Any]:
    return {
        "subject": cert.subject.human_friendly,
        "issuer": cert.issuer.human_friendly,
        "serial": format(cert.serial_number, "x"),
        "notBefore": _iso(cert.not_valid_before),
        "notAfter": _iso(cert.not_valid_after),
        "expired": cert.not_valid_after <= now,
        "fingerprint": hashlib.sha256(cert.dump()).hexdigest(),
    }


@operation
def list_own(params: dict[str, Any], ctx: Any) -> dict[str, Any]:
    """Every key this profile ever held, oldest first: address, suite, key type, status, its
    certificates (latest last) with expiry, and whether a proven backup holds it."""
    host = state.current()
    address = text_param(params, "address")
    records = host.keystore.records(address)
    backed_up = host.backed_up_keys() if records else {}
    now = datetime.datetime.now(datetime.UTC)
    keys = []
    for record in records:
        certificates = [_certificate(c.certificate, now) for c in record.certificates]
        latest = certificates[-1] if certificates else None
        if record.key_id in backed_up:
            backup = {"state": "proven", "messageId": backed_up[record.key_id]}
        elif record.status == "pending":
            backup = {"state": "not_yet", "messageId": None}
        else:
            backup = {"state": "unknown", "messageId": None}
        keys.append(
            {
                "keyId": record.key_id,
                "address": record.address,
                "suite": record.suite,
                "keyType": record.key_type,
                "status": record.status,
                "origin": record.origin,
                "created": record.created,
                "notAfter": latest["notAfter"] if latest else None,
                "certificate": latest,
                "certificates": certificates,
                "backup": backup,
            }
        )
    return {"keys": keys}


@operation
def lookup(params: dict[str, Any], ctx: Any) -> dict[str, Any]:
    """Per address, the certificates that may be encrypted to now (validated against the
    account's configured roots) and where they came from: directory, cache or harvested."""
    addresses = params.get("addresses")
    if isinstance(addresses, str):
        addresses = [addresses]
    if (
        not isinstance(addresses, list)
        or not addresses
        or not all(isinstance(a, str) and a for a in addresses)
    ):
        raise BadParams("addresses must be a non-empty list of mail addresses.")
    if len(addresses) > 500:
        raise BadParams("At most 500 addresses can be looked up at once.")
    book = state.current().book(text_param(params, "account"))
    found = book.lookup(addresses)
    return {"results": [found[a].to_json() for a in dict.fromkeys(addresses)]}
