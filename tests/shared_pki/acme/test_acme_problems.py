"""shared_pki.acme.problems: RFC 8555 section 6.7 types, statuses and problem documents."""

from __future__ import annotations

import pytest

from shared_pki.acme.problems import CONTENT_TYPE, DEFAULT_STATUS, AcmeProblem, ProblemType

# RFC 8555 section 6.7, table of error types (all 24 short names)
RFC8555_TYPES = [
    "accountDoesNotExist",
    "alreadyRevoked",
    "badCSR",
    "badNonce",
    "badPublicKey",
    "badRevocationReason",
    "badSignatureAlgorithm",
    "caa",
    "compound",
    "connection",
    "dns",
    "externalAccountRequired",
    "incorrectResponse",
    "invalidContact",
    "malformed",
    "orderNotReady",
    "rateLimited",
    "rejectedIdentifier",
    "serverInternal",
    "tls",
    "unauthorized",
    "unsupportedContact",
    "unsupportedIdentifier",
    "userActionRequired",
]


def test_every_rfc_type_and_no_other() -> None:
    assert sorted(t.value for t in ProblemType) == sorted(RFC8555_TYPES)
    assert set(DEFAULT_STATUS) == set(ProblemType)
    assert CONTENT_TYPE == "application/problem+json"


@pytest.mark.parametrize(
    ("ptype", "status"),
    [
        (ProblemType.BAD_NONCE, 400),  # RFC 8555 6.5
        (ProblemType.BAD_SIGNATURE_ALGORITHM, 400),  # 6.2
        (ProblemType.ORDER_NOT_READY, 403),  # 7.4
        (ProblemType.UNAUTHORIZED, 403),
        (ProblemType.RATE_LIMITED, 429),  # 6.6
        (ProblemType.SERVER_INTERNAL, 500),
        (ProblemType.MALFORMED, 400),
    ],
)
def test_statuses(ptype: ProblemType, status: int) -> None:
    assert AcmeProblem(ptype, "x").status == status
    assert ptype.urn == "urn:ietf:params:acme:error:" + ptype.value


def test_document_with_subproblems_round_trips() -> None:
    sub = AcmeProblem(
        ProblemType.UNSUPPORTED_IDENTIFIER,
        "dns is not supported",
        identifier={"type": "dns", "value": "example.org"},
    )
    top = AcmeProblem(ProblemType.MALFORMED, "some identifiers refused", subproblems=[sub])
    doc = top.to_json()
    assert doc == {
        "type": "urn:ietf:params:acme:error:malformed",
        "detail": "some identifiers refused",
        "status": 400,
        "subproblems": [
            {
                "type": "urn:ietf:params:acme:error:unsupportedIdentifier",
                "detail": "dns is not supported",
                "identifier": {"type": "dns", "value": "example.org"},
            }
        ],
    }
    back = AcmeProblem.from_json(doc)
    assert back.type is ProblemType.MALFORMED and back.status == 400
    assert back.subproblems[0].type is ProblemType.UNSUPPORTED_IDENTIFIER
    assert back.subproblems[0].identifier == {"type": "dns", "value": "example.org"}


def test_extra_members_and_overrides() -> None:
    p = AcmeProblem(ProblemType.BAD_SIGNATURE_ALGORITHM, "no", extra={"algorithms": ["ES256"]})
    assert p.to_json()["algorithms"] == ["ES256"]
    p = AcmeProblem(ProblemType.MALFORMED, "no", status=405, extra={"type": "spoof"})
    assert p.to_json()["type"] == "urn:ietf:params:acme:error:malformed"
    assert p.to_json()["status"] == 405


def test_foreign_documents() -> None:
    p = AcmeProblem.from_json({"type": "about:blank", "detail": "teapot", "status": 418})
    assert p.type is ProblemType.SERVER_INTERNAL and p.status == 418 and "teapot" in p.detail
    assert AcmeProblem.from_json("nope").type is ProblemType.SERVER_INTERNAL
    with pytest.raises(ValueError):
        ProblemType.from_urn("urn:ietf:params:acme:error:noSuchThing")
