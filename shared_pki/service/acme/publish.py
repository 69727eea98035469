"""Publishing a certificate from ANOTHER CA in the directory (issue: "publishing certificates
from elsewhere requires proof of mailbox control").

The proof is the ACME one: the request is a JWS signed by an ACME account that holds a valid,
unexpired authorization for the certificate's address — i.e. it answered an RFC 8823 challenge
for that mailbox. POST /acme/publish-cert {"certificate": base64url(DER)} publishes;
{"certificate": ..., "withdraw": true} takes it down again. The certificate must name exactly
one address, be valid now, and allow S/MIME (emailProtection or no EKU)."""

from __future__ import annotations

import datetime
import hashlib
import time
from typing import Any

from sqlalchemy import delete, insert, select
from starlette.requests import Request

from shared_pki.acme import jws
from shared_pki.acme.objects import normalize_email
from shared_pki.acme.problems import AcmeProblem, ProblemType
from shared_pki.errors import KeyLoadError
from shared_pki.keys import parse_certificate
from shared_pki.service.acme.http import Acme, Reply
from shared_pki.service.storage.store import authorizations, certificates
from shared_pki.x509.validate import certificate_addresses

EMAIL_PROTECTION = "1.3.6.1.5.5.7.3.4"
ANY_EKU = "2.5.29.37.0"
ALGORITHMS = {"rsa": "rsa", "ec": "ecdsa"}


def _certificate(payload: dict[str, Any]) -> tuple[Any, bytes]:
    encoded = payload.get("certificate")
    if not isinstance(encoded, str):
        raise AcmeProblem(ProblemType.MALFORMED, "certificate (base64url DER) is required")
    try:
        der = jws.b64url_decode(encoded)
        return parse_certificate(der), der
    except (KeyLoadError, AcmeProblem, ValueError) as error:
        raise AcmeProblem(ProblemType.MALFORMED, f"not a certificate: {error}") from None


def _check_usable(cert: Any) -> None:
    now = datetime.datetime.now(datetime.UTC)
    if not cert.not_valid_before <= now < cert.not_valid_after:
        raise AcmeProblem(ProblemType.MALFORMED, "the certificate is not valid now")
    usages = cert.extended_key_usage_value
    if usages is not None and not {u.dotted for u in usages} & {EMAIL_PROTECTION, ANY_EKU}:
        raise AcmeProblem(ProblemType.MALFORMED, "the certificate is not for email protection")


def publish_certificate(acme: Acme, request: Request, body: bytes) -> Reply:
    verified, account = acme.verify(request, body, require="kid")
    assert account is not None
    payload = verified.payload or {}
    cert, der = _certificate(payload)
    addresses = certificate_addresses(cert)
    if len(addresses) != 1:
        raise AcmeProblem(
            ProblemType.REJECTED_IDENTIFIER, "a published certificate names exactly one address"
        )
    address = normalize_email(addresses[0])
    now = time.time()
    with acme.store.transaction() as db:
        proof = db.execute(
            select(authorizations.c.id).where(
                authorizations.c.account == account.id,
                authorizations.c.address == address,
                authorizations.c.status == "valid",
                authorizations.c.expires > now,
            )
        ).first()
        if proof is None:
            raise AcmeProblem(
                ProblemType.UNAUTHORIZED,
                f"prove control of {address} first: order it and answer the email challenge",
            )
        key = f"x{hashlib.sha256(der).hexdigest()[:63]}"  # never collides with our hex serials
        if payload.get("withdraw") is True:
            db.execute(
                delete(certificates).where(
                    certificates.c.serial == key, certificates.c.issuer == "external"
                )
            )
            return Reply(200, {"address": address, "published": False})
        _check_usable(cert)
        exists = db.execute(select(certificates.c.serial).where(certificates.c.serial == key))
        if exists.first() is None:
            db.execute(
                insert(certificates).values(
                    serial=key, issuer="external", address=address,
                    algorithm=ALGORITHMS.get(cert.public_key.algorithm, cert.public_key.algorithm),
                    not_before=cert.not_valid_before.timestamp(),
                    not_after=cert.not_valid_after.timestamp(),
                    der=der, account=account.id, published=True,
                )
            )  # fmt: skip
    return Reply(201, {"address": address, "published": True})


HANDLERS = (("publish-cert", publish_certificate),)
