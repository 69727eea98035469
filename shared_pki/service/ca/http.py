"""Public CA material over HTTP: the root and intermediate bundles, each CA certificate (the
AIA caIssuers URLs in issued certificates) and a CRL per CA, regenerated when a revocation
happened since the cached one or when it is half-way to its next update."""

from __future__ import annotations

import datetime
import threading
import time

from sqlalchemy import func, select
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from shared_pki.ca import crl
from shared_pki.ca.hierarchy import LABELS
from shared_pki.service.state import ServiceState
from shared_pki.service.storage.store import certificates

CA_LABELS = tuple(label for label in LABELS if label.endswith(("-root", "-issuing")))
PEM_CHAIN = "application/pem-certificate-chain"


class CrlCache:
    """One CRL per CA label, rebuilt when stale; issuing CAs list the certificates revoked in
    the store, roots list none (their issuing CAs are never revoked by this service). A
    revocation is noticed by the number of revoked certificates and the latest revocation time
    together: a revocation dated before the latest one (backdated to the compromise) changes
    the count."""

    def __init__(self, state: ServiceState) -> None:
        self.state = state
        self._lock = threading.Lock()
        # label -> (made, (revoked count, latest revocation), der)
        self._cached: dict[str, tuple[float, tuple[int, float], bytes]] = {}

    def get(self, label: str) -> bytes:
        hierarchy = self.state.hierarchy
        family = label.split("-", 1)[0]
        with self.state.store.transaction() as db:
            count, newest = db.execute(
                select(func.count(certificates.c.revoked), func.max(certificates.c.revoked)).where(
                    certificates.c.issuer == family
                )
            ).one()
        latest = (int(count or 0), float(newest or 0))
        period = self.state.config.crl_hours * 3600
        with self._lock:
            made, revoked_at, der = self._cached.get(label, (0.0, (-1, -1.0), b""))
            if der and revoked_at == latest and time.time() - made < period / 2:
                return der
            revoked = []
            if label.endswith("-issuing"):
                with self.state.store.transaction() as db:
                    rows = db.execute(
                        select(
                            certificates.c.serial, certificates.c.revoked, certificates.c.reason
                        ).where(
                            certificates.c.issuer == family, certificates.c.revoked.is_not(None)
                        )
                    ).all()
                revoked = [
                    (int(serial, 16), _utc(when), reason or 0) for serial, when, reason in rows
                ]
            now = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
            der = crl.make_crl(
                hierarchy.items()[label],
                revoked,
                this_update=now,
                next_update=now + datetime.timedelta(seconds=period),
                number=int(now.timestamp() * 1000),
            )
            self._cached[label] = (time.time(), latest, der)
            return der


def _utc(epoch: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(epoch, datetime.UTC)


def routes(state: ServiceState) -> list[Route]:
    cache = CrlCache(state)

    def roots(_request: Request) -> Response:
        return Response(state.hierarchy.roots_pem(), media_type=PEM_CHAIN)

    def intermediates(_request: Request) -> Response:
        return Response(state.hierarchy.intermediates_pem(), media_type=PEM_CHAIN)

    def certificate(request: Request) -> Response:
        label = request.path_params["label"]
        if label not in CA_LABELS:
            return Response("No such CA certificate.", status_code=404)
        der = state.hierarchy.items()[label].der
        return Response(der, media_type="application/pkix-cert")

    def revocation_list(request: Request) -> Response:
        label = request.path_params["label"]
        if label not in CA_LABELS:
            return Response("No such CRL.", status_code=404)
        return Response(cache.get(label), media_type="application/pkix-crl")

    return [
        Route("/ca/roots.pem", roots),
        Route("/ca/intermediates.pem", intermediates),
        Route("/ca/{label}.cer", certificate),
        Route("/crl/{label}.crl", revocation_list),
    ]
