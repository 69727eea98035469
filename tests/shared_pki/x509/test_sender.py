"""shared_pki.x509.sender: the signer's certificate against the message's From, one decision in
words. The first three cases are what the read path answered before (fromMatches null, null and
true for mallory's signature); every one of them must be a mismatch."""

from __future__ import annotations

import pytest
from harness import pki

from shared_pki.x509 import sender
from shared_pki.x509.sender import check_sender, from_field_values


@pytest.fixture(scope="module")
def certs() -> dict[str, object]:
    root = pki.root()
    return {
        "alice": root.smime("alice@example.test", "p256").asn1,
        "mallory": root.smime("mallory@example.test", "p256").asn1,
        "idn": root.smime("jan@xn--bcher-kva.example", "p256").asn1,
        "no address": root.asn1,  # a CA certificate names no mailbox
    }


def _check(value, cert) -> sender.SenderCheck:
    result = check_sender(value, cert)
    assert result.matches is (result.code == sender.MATCH)  # never "unknown"
    return result


def test_an_encoded_word_that_reads_as_another_address_is_a_mismatch(certs):
    result = _check("=?utf-8?q?alice=40example.test?=", certs["mallory"])
    assert (result.matches, result.code) == (False, sender.MISMATCH)
    assert result.reason == (
        "Signed by mallory@example.test, but the message says it is from alice@example.test."
    )


def test_a_group_with_no_member_names_no_sender(certs):
    result = _check("undisclosed-recipients:;", certs["mallory"])
    assert (result.matches, result.code, result.sender) == (False, sender.NO_SENDER, None)
    assert "names no sender" in result.reason


def test_two_mailboxes_are_more_than_one_sender_even_if_one_is_the_signer(certs):
    result = _check("mallory@example.test, alice@example.test", certs["mallory"])
    assert (result.matches, result.code) == (False, sender.SEVERAL_SENDERS)
    assert "more than one sender" in result.reason
    assert "mallory@example.test, alice@example.test" in result.reason


def test_two_from_fields_are_more_than_one_sender(certs):
    headers = b"From: mallory@example.test\r\nTo: bob@example.test\r\nFrom: alice@example.test\r\n"
    values = from_field_values(headers)
    assert values == ("mallory@example.test", "alice@example.test")
    result = _check(values, certs["mallory"])
    assert (result.matches, result.code) == (False, sender.SEVERAL_SENDERS)
    assert "2 From fields" in result.reason


@pytest.mark.parametrize(
    "value",
    [
        "alice@example.test",
        "Alice <alice@example.test>",
        '"Example, Alice" <alice@example.test>',
        "=?utf-8?q?Al=C3=AFce?= <alice@example.test>",
        "alice@EXAMPLE.Test",  # the domain's case does not matter
        "alice@example.test (at work)",
        '"alice@example.test" <alice@example.test>',
        "team: alice@example.test;",  # a group of one names one sender
        "=?utf-8?q?alice=40example.test?=",  # what readers show, and it is the signer
    ],
)
def test_the_signers_own_address_matches(certs, value):
    result = _check(value, certs["alice"])
    assert (result.matches, result.code) == (True, sender.MATCH)
    assert result.sender is not None and result.sender.lower() == "alice@example.test"
    assert result.reason == "Signed by alice@example.test, the message's sender."


def test_internationalised_domains_compare_as_a_labels(certs):
    for value in ("jan@bücher.example", "Jan <jan@xn--bcher-kva.example>", "jan@BÜCHER.example"):
        assert _check(value, certs["idn"]).matches, value
    assert not _check("jan@bucher.example", certs["idn"]).matches


def test_the_local_part_is_compared_exactly_and_a_case_difference_said_so(certs):
    result = _check("Alice@example.test", certs["alice"])
    assert (result.matches, result.code) == (False, sender.CASE_MISMATCH)
    assert "letter case" in result.reason


def test_a_display_name_holding_another_address_is_a_mismatch(certs):
    for value in (
        '"alice@example.test" <mallory@example.test>',
        "=?utf-8?b?YWxpY2VAZXhhbXBsZS50ZXN0?= <mallory@example.test>",
    ):
        result = _check(value, certs["mallory"])
        assert (result.matches, result.code) == (False, sender.NAME_MISMATCH), value
        assert "sender name says alice@example.test" in result.reason


def test_another_address_is_a_mismatch_in_words(certs):
    result = _check("Alice <alice@example.test>", certs["mallory"])
    assert (result.matches, result.code, result.sender) == (
        False,
        sender.MISMATCH,
        "alice@example.test",
    )
    assert result.reason == (
        "Signed by mallory@example.test, but the message says it is from alice@example.test."
    )


@pytest.mark.parametrize(
    ("value", "code"),
    [
        ("", sender.NO_SENDER),
        ((), sender.NO_SENDER),
        ("<>", sender.NO_SENDER),
        ("a@b@c", sender.NO_SENDER),
        ("alice@", sender.NO_SENDER),
        ("alice", sender.MISMATCH),  # shown as "alice": not the signer's address
        ("not an address at all;", sender.MISMATCH),
    ],
)
def test_what_names_no_address_never_matches(certs, value, code):
    result = _check(value, certs["alice"])
    assert (result.matches, result.code) == (False, code)


def test_a_certificate_without_an_address_vouches_for_nobody(certs):
    result = _check("alice@example.test", certs["no address"])
    assert (result.matches, result.code) == (False, sender.SIGNER_HAS_NO_ADDRESS)
    assert "names no mail address" in result.reason


def test_raw_header_bytes_are_read_as_utf8_and_folded_lines_joined(certs):
    headers = (
        b"Subject: hi\r\nFrom: =?utf-8?q?Al=C3=AFce?=\r\n <alice@example.test>\r\n\r\n"
        b"From: body@example.test\r\n"
    )
    assert from_field_values(headers) == ("=?utf-8?q?Al=C3=AFce?= <alice@example.test>",)
    assert _check(from_field_values(headers), certs["alice"]).matches
    assert _check("Ålice <alice@example.test>".encode(), certs["alice"]).matches
