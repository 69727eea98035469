"""shared_pki.acme.objects: resources to and from JSON, status machines, email identifiers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared_pki.acme import objects as o
from shared_pki.acme.problems import AcmeProblem, ProblemType

NOW = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)


def problem_of(fn: Any, *args: Any, **kw: Any) -> AcmeProblem:
    with pytest.raises(AcmeProblem) as info:
        fn(*args, **kw)
    return info.value


# --- identifiers ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("alice@example.test", "alice@example.test"),
        ("Alice.Smith@EXAMPLE.Test", "Alice.Smith@example.test"),  # local part kept as is
        ("bob+tag@Mail.Example.ORG", "bob+tag@mail.example.org"),
        ("jörg@Bücher.example", None),  # non-ASCII local part: refused
        ("jo@Bücher.EXAMPLE", "jo@xn--bcher-kva.example"),
        ("user@xn--bcher-kva.example", "user@xn--bcher-kva.example"),
        ("user@例え.テスト", "user@xn--r8jz45g.xn--zckzah"),
        ("o'hara@example.test", "o'hara@example.test"),
    ],
)
def test_normalize_email(given: str, expected: str | None) -> None:
    if expected is None:
        assert problem_of(o.normalize_email, given).type is ProblemType.REJECTED_IDENTIFIER
    else:
        assert o.normalize_email(given) == expected


@pytest.mark.parametrize(
    "weird",
    [
        '"alice smith"@example.test',  # quoted local part
        '"a@b"@example.test',
        "alice(comment)@example.test",
        "alice @example.test",
        "alice@example.test ",
        ".alice@example.test",
        "alice.@example.test",
        "al..ice@example.test",
        "alice@",
        "@example.test",
        "alice",
        "alice@localhost",  # single label
        "alice@[192.0.2.1]",  # address literal
        "alice@192.0.2.1",
        "alice@exa_mple.test",
        "alice@-example.test",
        "alice@example.test.",
        "alice@xn--zz.example",  # not a valid A-label
        "a" * 65 + "@example.test",
        "alice@" + "a" * 64 + ".test",
        "alice\x00@example.test",
        "Alice <alice@example.test>",
        "alice@exa\u200bmple.test",  # zero-width space in the domain (IDNA refuses)
    ],
)
def test_weird_addresses_rejected(weird: str) -> None:
    problem = problem_of(o.normalize_email, weird)
    assert problem.type is ProblemType.REJECTED_IDENTIFIER
    assert problem.status == 400
    assert problem.identifier == {"type": "email", "value": weird}


def test_identifier_types() -> None:
    assert o.check_identifier({"type": "email", "value": "A@EXAMPLE.TEST"}) == o.Identifier(
        "email", "A@example.test"
    )
    for other in ("dns", "ip", "Email", "EMAIL", "rfc822"):
        problem = problem_of(o.check_identifier, {"type": other, "value": "example.test"})
        assert problem.type is ProblemType.UNSUPPORTED_IDENTIFIER
        assert problem.to_json()["identifier"] == {"type": other, "value": "example.test"}
    for broken in ({"type": "email"}, {"value": "a@b.test"}, {"type": 1, "value": "x"}, "x"):
        assert problem_of(o.check_identifier, broken).type is ProblemType.MALFORMED


def test_new_order_identifiers() -> None:
    req = o.parse_new_order(
        {
            "identifiers": [
                {"type": "email", "value": "alice@EXAMPLE.test"},
                {"type": "email", "value": "alice@example.TEST"},  # duplicate once normalised
            ],
            "notAfter": "2026-03-01T00:00:00Z",
        }
    )
    assert req.identifiers == (o.Identifier("email", "alice@example.test"),)
    assert req.not_after == datetime(2026, 3, 1, tzinfo=UTC)
    # a dns identifier next to an email one (the mistake some clients make)
    problem = problem_of(
        o.parse_new_order,
        {
            "identifiers": [
                {"type": "dns", "value": "example.test"},
                {"type": "email", "value": "a@b.test"},
            ]
        },
    )
    assert problem.type is ProblemType.UNSUPPORTED_IDENTIFIER
    problem = problem_of(
        o.parse_new_order,
        {
            "identifiers": [
                {"type": "dns", "value": "example.test"},
                {"type": "email", "value": '"x"@b.test'},
            ]
        },
    )
    assert problem.type is ProblemType.MALFORMED
    assert [s.type for s in problem.subproblems] == [
        ProblemType.UNSUPPORTED_IDENTIFIER,
        ProblemType.REJECTED_IDENTIFIER,
    ]
    assert "status" not in problem.to_json()["subproblems"][0]
    for payload in ({}, {"identifiers": []}, {"identifiers": "a@b.test"}, None):
        assert problem_of(o.parse_new_order, payload).type is ProblemType.MALFORMED
    many = {"identifiers": [{"type": "email", "value": f"u{i}@b.test"} for i in range(11)]}
    assert problem_of(o.parse_new_order, many).type is ProblemType.REJECTED_IDENTIFIER


# --- resources --------------------------------------------------------------------------------


def test_directory_round_trip() -> None:
    d = o.Directory(
        new_nonce="https://ca/acme/new-nonce",
        new_account="https://ca/acme/new-acct",
        new_order="https://ca/acme/new-order",
        revoke_cert="https://ca/acme/revoke-cert",
        key_change="https://ca/acme/key-change",
        meta=o.DirectoryMeta(terms_of_service="https://ca/tos", external_account_required=False),
    )
    doc = d.to_json()
    assert doc["newNonce"] == "https://ca/acme/new-nonce" and "newAuthz" not in doc
    assert doc["meta"] == {"termsOfService": "https://ca/tos", "externalAccountRequired": False}
    assert o.Directory.from_json(doc) == d
    assert problem_of(o.Directory.from_json, {"newNonce": "x"}).type is ProblemType.MALFORMED


def test_order_authorization_challenge_round_trip() -> None:
    ch = o.Challenge(
        type=o.EMAIL_REPLY_00,
        url="https://ca/acme/chall/1",
        status=o.ChallengeStatus.VALID,
        token="DGyRejmCefe7v4NfDGDKfA",
        from_address="acme-generator@example.org",
        validated=NOW,
    )
    doc = ch.to_json()
    assert doc["from"] == "acme-generator@example.org"
    assert doc["validated"] == "2025-03-01T12:00:00Z"
    authz = o.Authorization(
        identifier=o.Identifier("email", "alice@example.test"),
        status=o.AuthorizationStatus.VALID,
        challenges=(ch,),
        expires=NOW + timedelta(days=1),
    )
    assert o.Authorization.from_json(authz.to_json()) == authz
    order = o.Order(
        status=o.OrderStatus.PENDING,
        identifiers=(o.Identifier("email", "alice@example.test"),),
        authorizations=("https://ca/acme/authz/1",),
        finalize="https://ca/acme/order/1/finalize",
        expires=NOW,
        error={"type": "urn:ietf:params:acme:error:malformed", "detail": "x"},
    )
    assert o.Order.from_json(order.to_json()) == order
    account = o.Account(o.AccountStatus.VALID, ("mailto:alice@example.test",), True, "https://ca/o")
    assert o.Account.from_json(account.to_json()) == account


@pytest.mark.parametrize(
    ("cls", "doc"),
    [
        (o.Order, {"status": "done", "identifiers": [], "authorizations": [], "finalize": "u"}),
        (o.Order, {"status": "Pending", "identifiers": [], "authorizations": [], "finalize": "u"}),
        (o.Order, {"identifiers": [], "authorizations": [], "finalize": "u"}),
        (
            o.Order,
            {
                "status": "pending",
                "identifiers": [],
                "authorizations": [],
                "finalize": "u",
                "expires": "tomorrow",
            },
        ),
        (
            o.Authorization,
            {
                "identifier": {"type": "email", "value": "a@b.c"},
                "status": "active",
                "challenges": [],
            },
        ),
        (o.Challenge, {"type": "email-reply-00", "url": "u", "status": "ready"}),
        (o.Challenge, {"type": "email-reply-00", "url": "u", "status": "pending"}),  # no token/from
        (o.Account, {"status": "suspended"}),
        (o.Account, {"status": "valid", "contact": "mailto:a@b.c"}),
    ],
)
def test_from_json_strict(cls: Any, doc: dict[str, Any]) -> None:
    assert problem_of(cls.from_json, doc).type is ProblemType.MALFORMED


def test_unknown_members_ignored_and_time_formats() -> None:
    ch = o.Challenge.from_json(
        {"type": "http-01", "url": "u", "status": "pending", "token": "t", "future": 1}
    )
    assert ch.status is o.ChallengeStatus.PENDING
    assert o.parse_time("2025-03-01T13:00:00.123456789+01:00") == datetime(
        2025, 3, 1, 12, 0, 0, 123456, tzinfo=UTC
    )
    for bad in ("2025-03-01", "2025-03-01T12:00:00", "2025-13-01T00:00:00Z", 5):
        assert problem_of(o.parse_time, bad).type is ProblemType.MALFORMED


def test_new_account_contacts() -> None:
    req = o.parse_new_account(
        {"contact": ["mailto:Alice@EXAMPLE.test"], "termsOfServiceAgreed": True}
    )
    assert req.contact == ("mailto:Alice@example.test",) and req.terms_of_service_agreed
    assert not req.only_return_existing
    assert (
        problem_of(o.parse_new_account, {"contact": ["tel:+123"]}).type
        is ProblemType.UNSUPPORTED_CONTACT
    )
    for bad in ("mailto:a@b.test?subject=x", "mailto:a@b.test,c@d.test", "mailto:not-an-address"):
        assert (
            problem_of(o.parse_new_account, {"contact": [bad]}).type is ProblemType.INVALID_CONTACT
        )
    assert (
        problem_of(o.parse_new_account, {"onlyReturnExisting": "yes"}).type is ProblemType.MALFORMED
    )


def test_finalize_and_revocation_payloads() -> None:
    assert o.parse_finalize({"csr": "MIIB"}) == b"0\x82\x01"
    for bad in ({}, {"csr": "MIIB=="}, {"csr": ""}, {"csr": 5}):
        assert problem_of(o.parse_finalize, bad).type is ProblemType.BAD_CSR
    assert o.parse_revocation({"certificate": "MIIB", "reason": 1}) == (b"0\x82\x01", 1)
    for reason in (7, 8, 11, -1, True, "1"):
        problem = problem_of(o.parse_revocation, {"certificate": "MIIB", "reason": reason})
        assert problem.type is ProblemType.BAD_REVOCATION_REASON


# --- status machines --------------------------------------------------------------------------

CS, AS, OS = o.ChallengeStatus, o.AuthorizationStatus, o.OrderStatus


def test_challenge_machine() -> None:
    assert o.next_challenge_status(CS.PENDING, o.ChallengeEvent.RESPOND) is CS.PROCESSING
    assert o.next_challenge_status(CS.PROCESSING, o.ChallengeEvent.RESPOND) is CS.PROCESSING
    assert o.next_challenge_status(CS.VALID, o.ChallengeEvent.RESPOND) is CS.VALID
    assert o.next_challenge_status(CS.PROCESSING, o.ChallengeEvent.SUCCEED) is CS.VALID
    assert o.next_challenge_status(CS.PROCESSING, o.ChallengeEvent.FAIL) is CS.INVALID
    assert o.next_challenge_status(CS.PENDING, o.ChallengeEvent.FAIL) is CS.INVALID
    for current in (CS.PENDING, CS.VALID, CS.INVALID):
        problem = problem_of(o.next_challenge_status, current, o.ChallengeEvent.SUCCEED)
        assert problem.type is ProblemType.SERVER_INTERNAL
    assert problem_of(o.next_challenge_status, CS.INVALID, o.ChallengeEvent.FAIL).status == 500
    assert (
        problem_of(o.next_challenge_status, "bogus", o.ChallengeEvent.FAIL).type
        is ProblemType.MALFORMED
    )


def test_authorization_machine() -> None:
    exp = NOW + timedelta(hours=1)
    refresh = o.next_authorization_status
    assert refresh(AS.PENDING, challenge_statuses=[CS.PENDING], now=NOW, expires=exp) is AS.PENDING
    assert refresh(AS.PENDING, challenge_statuses=[CS.VALID], now=NOW, expires=exp) is AS.VALID
    assert refresh(AS.PENDING, challenge_statuses=[CS.INVALID], now=NOW, expires=exp) is AS.INVALID
    assert refresh(AS.PENDING, challenge_statuses=[CS.VALID], now=exp, expires=exp) is AS.EXPIRED
    assert refresh(AS.VALID, now=exp + timedelta(seconds=1), expires=exp) is AS.EXPIRED
    assert refresh(AS.INVALID, challenge_statuses=[CS.VALID], now=NOW, expires=exp) is AS.INVALID
    deact = o.AuthorizationEvent.DEACTIVATE
    assert refresh(AS.VALID, deact, now=NOW, expires=exp) is AS.DEACTIVATED
    assert refresh(AS.PENDING, deact, now=NOW, expires=exp) is AS.DEACTIVATED
    assert problem_of(refresh, AS.VALID, deact, now=exp, expires=exp).type is ProblemType.MALFORMED
    assert problem_of(refresh, AS.INVALID, deact).type is ProblemType.MALFORMED
    assert refresh(AS.VALID, o.AuthorizationEvent.REVOKE) is AS.REVOKED
    assert problem_of(refresh, AS.PENDING, o.AuthorizationEvent.REVOKE).status == 500


def test_order_machine() -> None:
    exp = NOW + timedelta(days=7)
    nxt = o.next_order_status
    assert (
        nxt(OS.PENDING, authorization_statuses=[AS.VALID, AS.PENDING], now=NOW, expires=exp)
        is OS.PENDING
    )
    assert (
        nxt(OS.PENDING, authorization_statuses=[AS.VALID, AS.VALID], now=NOW, expires=exp)
        is OS.READY
    )
    assert nxt(OS.PENDING, authorization_statuses=[], now=NOW, expires=exp) is OS.PENDING
    for dead in (AS.INVALID, AS.DEACTIVATED, AS.EXPIRED, AS.REVOKED):
        assert (
            nxt(OS.READY, authorization_statuses=[AS.VALID, dead], now=NOW, expires=exp)
            is OS.INVALID
        )
    assert nxt(OS.READY, authorization_statuses=[AS.VALID], now=exp, expires=exp) is OS.INVALID
    fin = o.OrderEvent.FINALIZE
    assert (
        nxt(OS.READY, fin, authorization_statuses=[AS.VALID], now=NOW, expires=exp) is OS.PROCESSING
    )
    assert (
        nxt(OS.PENDING, fin, authorization_statuses=[AS.VALID], now=NOW, expires=exp)
        is OS.PROCESSING
    )
    for current, authz in (
        (OS.PENDING, [AS.PENDING]),
        (OS.VALID, [AS.VALID]),
        (OS.PROCESSING, [AS.VALID]),
    ):
        problem = problem_of(nxt, current, fin, authorization_statuses=authz, now=NOW, expires=exp)
        assert problem.type is ProblemType.ORDER_NOT_READY and problem.status == 403
    assert nxt(OS.PROCESSING, o.OrderEvent.ISSUED) is OS.VALID
    assert nxt(OS.PROCESSING, o.OrderEvent.FAIL) is OS.INVALID
    assert (
        problem_of(nxt, OS.READY, o.OrderEvent.ISSUED, authorization_statuses=[AS.VALID]).status
        == 500
    )
    assert problem_of(nxt, OS.VALID, o.OrderEvent.FAIL).status == 500
    assert nxt(OS.VALID, now=exp + timedelta(days=1), expires=exp) is OS.VALID  # final


def test_account_machine() -> None:
    assert (
        o.next_account_status(o.AccountStatus.VALID, o.AccountEvent.DEACTIVATE)
        is o.AccountStatus.DEACTIVATED
    )
    assert (
        o.next_account_status(o.AccountStatus.VALID, o.AccountEvent.REVOKE)
        is o.AccountStatus.REVOKED
    )
    for status in (o.AccountStatus.DEACTIVATED, o.AccountStatus.REVOKED):
        problem = problem_of(o.next_account_status, status, o.AccountEvent.DEACTIVATE)
        assert problem.type is ProblemType.UNAUTHORIZED and problem.status == 403
        assert problem_of(o.require_valid_account, status).type is ProblemType.UNAUTHORIZED
    o.require_valid_account(o.AccountStatus.VALID)
