"""Distinguished names compared as RFC 5280 section 7.1 says (asn1crypto's LDAP string prep),
fast: path building, CRL matching and signer lookup compare the same few names hundreds of
times per message, and asn1crypto prepares both names again on every `==` (a fifth of a
message.open went there). Identical DER is equal at once; otherwise each DER's normalised form
is computed once and kept."""

from __future__ import annotations

import functools

from asn1crypto import x509 as asn1_x509

__all__ = ["same_name"]


@functools.lru_cache(maxsize=4096)
def _normalised(der: bytes) -> str:
    """asn1crypto's `Name.hashable`: the form its `==` compares, as one string."""
    return asn1_x509.Name.load(der).hashable


def _plain(name: asn1_x509.Name) -> asn1_x509.Name:
    return name.untag() if name.explicit else name


def same_name(a: asn1_x509.Name, b: asn1_x509.Name) -> bool:
    """a == b under RFC 5280's comparison rules (what asn1crypto's Name.__eq__ decides). A
    name under an explicit tag (a GeneralName's directoryName) is compared without it."""
    der_a, der_b = _plain(a).dump(), _plain(b).dump()
    return der_a == der_b or _normalised(der_a) == _normalised(der_b)
