"""shared_pki.x509.names.same_name decides exactly what asn1crypto's RFC 5280 comparison
decides (it only caches the normalised form), including names re-encoded by other software."""

from __future__ import annotations

import itertools

from asn1crypto import x509 as asn1_x509

from shared_pki.x509.names import same_name


def _name(*pairs: tuple[str, str], utf8: bool = False) -> asn1_x509.Name:
    return asn1_x509.Name.build(dict(pairs), use_printable=not utf8)


NAMES = [
    _name(("country_name", "DE"), ("organization_name", "Example CA")),
    # the same name re-encoded: UTF8String, other case and inner spaces (RFC 4518 prep)
    _name(("country_name", "DE"), ("organization_name", "example  ca"), utf8=True),
    _name(("country_name", "DE"), ("organization_name", "Example CB")),
    _name(("country_name", "FR"), ("organization_name", "Example CA")),
    _name(("common_name", "Alice"), ("email_address", "alice@example.test")),
    _name(("common_name", "alice"), ("email_address", "ALICE@example.test"), utf8=True),
]


def test_same_name_agrees_with_the_rfc_5280_comparison() -> None:
    for a, b in itertools.product(NAMES, repeat=2):
        assert same_name(a, b) == (a == b), (a.human_friendly, b.human_friendly)
    assert same_name(NAMES[0], NAMES[1]) and NAMES[0].dump() != NAMES[1].dump()
    assert not same_name(NAMES[0], NAMES[2])


def test_a_directory_name_under_its_general_name_tag_compares_as_the_name() -> None:
    """ESSCertID issuerSerial and a TSTInfo's tsa field hold the name under GeneralName's
    explicit [4]; its DER is not a Name's, yet it names the same issuer."""
    for a, b in itertools.product(NAMES, repeat=2):
        tagged = asn1_x509.GeneralName(name="directory_name", value=a).chosen
        assert tagged.dump() != a.dump()
        assert same_name(tagged, b) == (a == b), (a.human_friendly, b.human_friendly)
