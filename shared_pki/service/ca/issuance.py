"""Issuance and revocation over the store: sign a CSR that `profile.check_csr` accepted with the
issuing CA of its key's family, record the certificate (which publishes it in the certificate
directory at once), and revoke (which withdraws it from the directory and puts it on the next
CRL, both read from the same row).

The family follows the CSR key: RSA and ECDSA keys go to the international issuing CA, SM2 keys
to the SM2 one. Serials are `profile.random_serial()` (159 random bits); the primary key on the
serial makes a collision an error that is retried, never a duplicate.
"""

from __future__ import annotations

import datetime
import time
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from shared_pki.ca import profile
from shared_pki.ca.hierarchy import Hierarchy
from shared_pki.service.storage.store import Store, certificates

_ALGORITHMS = {"rsa": "rsa", "ec": "ecdsa", "sm2": "sm2"}


@dataclass(frozen=True)
class Issued:
    serial: str  # lowercase hex, as in the certificates table
    family: str  # "intl" or "sm2"
    algorithm: str  # "rsa", "ecdsa" or "sm2"
    address: str
    not_before: float
    not_after: float
    der: bytes


def algorithm_of(csr_info: profile.CsrInfo) -> str:
    return _ALGORITHMS[csr_info.key_type]


def issue(
    store: Store,
    hierarchy: Hierarchy,
    csr_info: profile.CsrInfo,
    *,
    account: str | None,
    days: int,
    now: float | None = None,
    published: bool = True,
) -> Issued:
    """Issue the certificate csr_info asks for and record it; returns what was recorded."""
    family = csr_info.family
    label = f"{family}-issuing"
    start = datetime.datetime.fromtimestamp(now if now is not None else time.time(), datetime.UTC)
    start = start.replace(microsecond=0)
    end = start + datetime.timedelta(days=days) - datetime.timedelta(seconds=1)
    for _attempt in range(3):
        serial = profile.random_serial()
        der = profile.issue(
            csr_info,
            hierarchy.issuing(family),
            serial=serial,
            not_before=start,
            days=days,
            crl_url=hierarchy.crl_url(label),
            aia_url=hierarchy.aia_url(label),
        )
        issued = Issued(
            serial=f"{serial:x}",
            family=family,
            algorithm=algorithm_of(csr_info),
            address=csr_info.address,
            not_before=start.timestamp(),
            not_after=end.timestamp(),
            der=der,
        )
        try:
            with store.transaction() as db:
                db.execute(
                    certificates.insert().values(
                        serial=issued.serial,
                        issuer=family,
                        address=issued.address,
                        algorithm=issued.algorithm,
                        not_before=issued.not_before,
                        not_after=issued.not_after,
                        der=der,
                        account=account,
                        published=published,
                    )
                )
        except IntegrityError:
            continue  # a serial collision (2^-159): draw another
        return issued
    raise RuntimeError("three serial collisions in a row: the random source is broken")


class AlreadyRevoked(Exception):
    pass


def revoke(store: Store, serial: str, reason: int | None, *, now: float | None = None) -> None:
    """Mark the certificate revoked with a CRLReason code (None: unspecified); AlreadyRevoked if
    it was, KeyError if there is no such certificate. Once per certificate, in any process."""
    with store.transaction() as db:
        changed = db.execute(
            update(certificates)
            .where(certificates.c.serial == serial, certificates.c.revoked.is_(None))
            .values(revoked=now if now is not None else time.time(), reason=reason or 0)
        ).rowcount
        if changed == 1:
            return
        exists = db.execute(
            select(certificates.c.serial).where(certificates.c.serial == serial)
        ).first()
    if exists is None:
        raise KeyError(serial)
    raise AlreadyRevoked(serial)
