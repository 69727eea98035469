"""DKIM verification (dkimpy) of RFC 8823 mail, for both sides: the CA checks that a reply is
signed by the domain of its From address, the host that a challenge mail is signed by the domain
of the challenge's `from` address.

A message passes when one DKIM-Signature verifies and is aligned with the From domain (d= equal
to it or a parent of it, relaxed alignment as in DMARC) and signs the whole body (no l= tag:
with l= anyone could append a response block under someone else's signature).

`dnsfunc` is dkimpy's resolver hook, `dnsfunc(name: bytes, timeout=5) -> bytes | None` for
the TXT record at `name`; None means dkimpy's own (dnspython, the system's resolvers). Tests
and deployments with a local zone pass their own (`zone_resolver`)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import dkim

DnsFunc = Callable[..., bytes | None]
#: Shortest RSA key accepted (RFC 8301: verifiers must not accept keys under 1024 bits).
MIN_KEY_BITS = 1024

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DkimResult:
    """`valid`: an aligned full-body signature verified; `detail`: why not, for people."""

    valid: bool
    detail: str
    domain: str | None = None


def aligned(signing_domain: str, from_domain: str) -> bool:
    """d= equal to the From domain or one of its parents (never a bare TLD)."""
    d = signing_domain.lower().rstrip(".")
    f = from_domain.lower().rstrip(".")
    return "." in d and (f == d or f.endswith("." + d))


def verify_dkim(message: bytes, *, from_domain: str, dnsfunc: DnsFunc | None = None) -> DkimResult:
    """Check the DKIM signatures of a raw message (CRLF or LF) for `from_domain`."""
    quiet = logging.getLogger(f"{__name__}.dkimpy")  # dkimpy logs every failure as ERROR
    quiet.setLevel(logging.CRITICAL)
    try:
        checker = dkim.DKIM(message, logger=quiet, minkey=MIN_KEY_BITS)
    except dkim.DKIMException as exc:
        return DkimResult(False, f"the message cannot be parsed for DKIM: {exc}")
    count = sum(1 for name, _value in checker.headers if name.lower() == b"dkim-signature")
    if count == 0:
        return DkimResult(False, "the message has no DKIM signature")
    reasons: list[str] = []
    for index in range(count):
        try:
            ok = checker.verify(idx=index, dnsfunc=dnsfunc or dkim.dnsplug.get_txt)
        except dkim.DKIMException as exc:
            reasons.append(f"signature {index + 1}: {exc}")
            continue
        fields = getattr(checker, "signature_fields", {}) or {}
        domain = bytes(fields.get(b"d", b"")).decode("ascii", "replace")
        if not ok:
            reasons.append(f"signature {index + 1} (d={domain}) does not verify")
        elif b"l" in fields:
            reasons.append(f"signature {index + 1} (d={domain}) signs part of the body only (l=)")
        elif not aligned(domain, from_domain):
            reasons.append(f"signature {index + 1} is by {domain}, not by {from_domain}")
        else:
            return DkimResult(True, "aligned DKIM signature verified", domain)
    return DkimResult(
        False, "no valid DKIM signature by the sender's domain: " + "; ".join(reasons)
    )


def zone_resolver(records: Mapping[str, str | bytes]) -> DnsFunc:
    """A dnsfunc answering TXT queries from a fixed zone {name: TXT}: names without the final
    dot, case-insensitive (e.g. {"sel._domainkey.example.test": "v=DKIM1; k=rsa; p=..."})."""
    table = {
        k.lower().rstrip("."): v if isinstance(v, bytes) else v.encode() for k, v in records.items()
    }

    def lookup(name: bytes, timeout: float = 5) -> bytes | None:
        return table.get(name.decode("ascii", "replace").lower().rstrip("."))

    return lookup


__all__ = ["MIN_KEY_BITS", "DkimResult", "DnsFunc", "aligned", "verify_dkim", "zone_resolver"]
