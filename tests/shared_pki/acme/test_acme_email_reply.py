"""shared_pki.acme.email_reply (RFC 8823): digest known answers computed here from the
definition and taken from acme4j, the interoperable response variants, every reply mismatch."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from shared_pki.acme import email_reply as er
from shared_pki.acme import jws
from shared_pki.acme.problems import AcmeProblem, ProblemType

NOW = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
T1 = "LgYemJLy3F1LDkiJrdIGbEzyFJyOyf6vBdyZ1TG3sME"
T2 = "DGyRejmCefe7v4NfDGDKfA"
THUMB = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def definition_digest(t1: str, t2: str, thumbprint: str) -> str:
    """RFC 8823 section 3.1 with RFC 8555 section 8.1: base64url(SHA-256(token "." thumbprint)),
    the token being token-part1 followed by token-part2 as strings."""
    return b64u(hashlib.sha256((t1 + t2 + "." + thumbprint).encode("ascii")).digest())


# --- tokens, key authorization, digest --------------------------------------------------------


def test_tokens_are_fresh_and_strong() -> None:
    tokens = {er.new_token() for _ in range(200)}
    assert len(tokens) == 200
    for t in tokens:
        assert re.fullmatch(r"[A-Za-z0-9_-]{32}", t)  # 24 random bytes, no padding
        assert len(base64.urlsafe_b64decode(t)) * 8 >= 128
    assert len(base64.urlsafe_b64decode(er.new_token(16) + "==")) == 16
    with pytest.raises(ValueError):
        er.new_token(15)


def test_key_authorization_joins_strings() -> None:
    assert er.key_authorization(T1, T2, THUMB) == f"{T1}{T2}.{THUMB}"
    # a padded token-part1 keeps its '=' in the middle (the acme4j convention)
    assert er.key_authorization(T1 + "=", T2, THUMB) == f"{T1}={T2}.{THUMB}"
    for bad in ("", "a b", "a+b", "a.b", "a==="):
        with pytest.raises(AcmeProblem):
            er.key_authorization(bad, T2, THUMB)


def test_digest_known_answer_from_definition() -> None:
    assert er.response_digest(T1, T2, THUMB) == definition_digest(T1, T2, THUMB)
    assert er.response_digest(T1, T2, THUMB) != definition_digest(T2, T1, THUMB)
    # and a fixed value, so a change of the definition itself would show
    assert definition_digest("a", "b", "c") == b64u(hashlib.sha256(b"ab.c").digest())


# acme4j-smime's test vector (SMIMETests.java and key.pem, Apache-2.0): a 512-bit RSA account
# key, a padded token-part1, and the response acme4j computes.
ACME4J_KEY = b"""-----BEGIN RSA PRIVATE KEY-----
MIIBOgIBAAJBANu2drKTZw3HX3fi0l4yAG5RV/nwl4poPOR+03xHvtQSedLX1CSg
DC6ChkDJ4fqcNMX8LGCSgspj1d0b8gKQDu0CAwEAAQJAYlXkAkDe2tfk7q9iIC6Y
6scVbRQ1fwjwWAQ7e2BRFHDsLNdTvFacwGAhHci83DVIwq6kl7MudUNhXGYi2yvt
MQIhAOnwrcQvFc/g/RkFmWjcKFfzsZGYO2tP2vW4CqDhoFGzAiEA8G5Vw/Yl25vs
QrF8RqouarLghHRG+qN4BpVYQwxZjN8CIQDKRVBpdXC9mcIc1WuMb/bt/QYGZgLS
SWx/0s5VxmAQ4wIgIDT3gi+X9KoXZPu3hRPI8fwSPUwCMhLxwhgBYcHmwQsCIDX5
IpHdsed3vjY69bjID8LgkIK7BUDGeIkQTMLxKtGb
-----END RSA PRIVATE KEY-----
"""
ACME4J_T1 = "LgYemJLy3F1LDkiJrdIGbEzyFJyOyf6vBdyZ1TG3sME="
ACME4J_T2 = "DGyRejmCefe7v4NfDGDKfA"
ACME4J_RESPONSE = "AjXW0h9_4YMP6Sv-9tKQNUrapI0us7ayBn0nCGOkUsk"


def test_digest_matches_acme4j() -> None:
    key = load_pem_private_key(ACME4J_KEY, None)
    numbers = key.public_key().public_numbers()
    jwk = {  # RFC 7638 canonical form, written out here
        "e": b64u(numbers.e.to_bytes(3, "big")),
        "kty": "RSA",
        "n": b64u(numbers.n.to_bytes(64, "big")),
    }
    thumb = b64u(hashlib.sha256(json.dumps(jwk, separators=(",", ":")).encode()).digest())
    assert jws.thumbprint(key) == thumb
    assert er.response_digest(ACME4J_T1, ACME4J_T2, thumb) == ACME4J_RESPONSE
    body = er.build_response_body(ACME4J_RESPONSE)
    assert body == f"{er.BEGIN}\r\n{ACME4J_RESPONSE}\r\n{er.END}\r\n"  # as acme4j writes it
    assert er.parse_response(body) == ACME4J_RESPONSE


def test_subject() -> None:
    assert er.challenge_subject(T1) == f"ACME: {T1}"
    assert er.token_part1_from_subject(f"ACME: {T1}") == T1
    # the acme4j example Subject, RFC 2047 decoded: whitespace inside the token is dropped
    assert (
        er.token_part1_from_subject("ACME: LgYemJLy3F1LDki JrdIGbEzyFJyOyf  6vBdyZ1TG3sME=")
        == ACME4J_T1
    )
    with pytest.raises(AcmeProblem):
        er.token_part1_from_subject(f"Re: ACME: {T1}")
    assert er.token_part1_from_subject(f"Re: ACME: {T1}", allow_reply_prefix=True) == T1


# --- the response block -----------------------------------------------------------------------

DIGEST = er.response_digest(T1, T2, THUMB)


def variants() -> list[tuple[str, str]]:
    d = DIGEST
    return [
        ("as built", er.build_response_body(d)),
        ("LF", f"{er.BEGIN}\n{d}\n{er.END}\n"),
        ("CR only", f"{er.BEGIN}\r{d}\r{er.END}"),
        ("padded", f"{er.BEGIN}\r\n{d}=\r\n{er.END}\r\n"),
        ("broken lines", f"{er.BEGIN}\n{d[:20]}\n{d[20:30]}\r\n{d[30:]}\n{er.END}\n"),
        ("broken and padded", f"{er.BEGIN}\n{d[:22]}\n{d[22:]}=\n{er.END}\n"),
        ("indented", f"  \t{er.BEGIN}  \n   {d}\t\n  {er.END}   "),
        ("blank lines inside", f"{er.BEGIN}\n\n{d}\n\n{er.END}"),
        ("no final newline", f"{er.BEGIN}\n{d}\n{er.END}"),
        (
            "surrounding text",
            f"Hello,\n\nhere is my response.\n\n{er.BEGIN}\n{d}\n{er.END}\n\n-- \nAlice\n\n"
            "On Sat, 1 Mar 2025 the CA wrote:\n"
            "> This is an automatically generated ACME challenge\n"
            "> for alice@example.test.\n",
        ),
        ("leading and trailing whitespace", f"\n\n   \n{er.BEGIN}\n{d}\n{er.END}\n   \n\n"),
    ]


@pytest.mark.parametrize(("name", "text"), variants(), ids=[n for n, _ in variants()])
def test_response_variants_accepted(name: str, text: str) -> None:
    assert er.parse_response(text) == DIGEST


def refused_variants() -> list[tuple[str, str]]:
    d = DIGEST
    last_bad = d[:-1] + ("B" if d[-1] != "B" else "C")  # non-zero unused bits
    return [
        ("empty", ""),
        ("no block", d),
        ("no end", f"{er.BEGIN}\n{d}\n"),
        ("no begin", f"{d}\n{er.END}\n"),
        ("end before begin", f"{er.END}\n{d}\n{er.BEGIN}\n"),
        ("two blocks", f"{er.BEGIN}\n{d}\n{er.END}\n{er.BEGIN}\n{d}\n{er.END}\n"),
        ("quoted block", f"> {er.BEGIN}\n> {d}\n> {er.END}\n"),
        ("marker inside a line", f"x {er.BEGIN}\n{d}\n{er.END}\n"),
        ("lowercase markers", f"{er.BEGIN.lower()}\n{d}\n{er.END.lower()}\n"),
        ("standard base64 '+'", f"{er.BEGIN}\n{d[:5]}+{d[6:]}\n{er.END}\n"),
        ("standard base64 '/'", f"{er.BEGIN}\n{d[:5]}/{d[6:]}\n{er.END}\n"),
        ("too short", f"{er.BEGIN}\n{d[:-1]}\n{er.END}\n"),
        ("too long", f"{er.BEGIN}\n{d}A\n{er.END}\n"),
        ("two pads", f"{er.BEGIN}\n{d}==\n{er.END}\n"),
        ("non-canonical", f"{er.BEGIN}\n{last_bad}\n{er.END}\n"),
        ("hex", f"{er.BEGIN}\n{hashlib.sha256(b'x').hexdigest()}\n{er.END}\n"),
        ("key authorization instead", f"{er.BEGIN}\n{T1}{T2}.{THUMB}\n{er.END}\n"),
        ("junk inside", f"{er.BEGIN}\n{d}\nthanks!\n{er.END}\n"),
        ("empty block", f"{er.BEGIN}\n{er.END}\n"),
    ]


@pytest.mark.parametrize(
    ("name", "text"), refused_variants(), ids=[n for n, _ in refused_variants()]
)
def test_response_refused(name: str, text: str) -> None:
    with pytest.raises(AcmeProblem) as info:
        er.parse_response(text)
    assert info.value.type is ProblemType.INCORRECT_RESPONSE


def test_response_size_limit() -> None:
    with pytest.raises(AcmeProblem):
        er.parse_response("x" * (er.MAX_REPLY_TEXT + 1))


# --- the CA's checks of a reply ---------------------------------------------------------------


@pytest.fixture
def challenge() -> er.EmailChallenge:
    return er.EmailChallenge(
        address="alice@example.test",
        token_part1=T1,
        token_part2=T2,
        from_address="acme@ca.example.test",
        message_id="<c1.abc@ca.example.test>",
        account_thumbprint=THUMB,
        created=NOW,
        expires=NOW + timedelta(hours=24),
    )


def good_headers(ch: er.EmailChallenge) -> dict[str, str]:
    return {
        "From": "Alice <alice@example.test>",
        "To": ch.reply_address,
        "Subject": f"Re: ACME: {ch.token_part1}",
        "In-Reply-To": ch.message_id,
        "References": ch.message_id,
    }


def test_good_reply_accepted(challenge: er.EmailChallenge) -> None:
    text = er.build_response_body(challenge.expected_digest)
    assert challenge.expected_digest == definition_digest(T1, T2, THUMB)
    assert er.check_reply(good_headers(challenge), text, challenge=challenge, now=NOW) is None
    for subject in (
        f"ACME: {T1}",
        f"RE: ACME: {T1}",
        f"re:ACME: {T1}",
        f"Re: ACME: {T1[:20]} {T1[20:]}",
    ):
        headers = {**good_headers(challenge), "Subject": subject}
        assert er.check_reply(headers, text, challenge=challenge, now=NOW) is None, subject
    lower = {k.lower(): v for k, v in good_headers(challenge).items()}
    assert er.check_reply(lower, text, challenge=challenge, now=NOW) is None
    encoded = {**good_headers(challenge), "Subject": f"=?UTF-8?Q?Re:_ACME:_{T1}?="}
    assert er.check_reply(encoded, text, challenge=challenge, now=NOW) is None
    upper_domain = {**good_headers(challenge), "From": "alice@EXAMPLE.TEST"}
    assert er.check_reply(upper_domain, text, challenge=challenge, now=NOW) is None


def test_reply_through_the_email_package(challenge: er.EmailChallenge) -> None:
    """A real MIME reply (quoted-printable text, folded headers) parsed the way a server would."""
    msg = EmailMessage()
    for k, v in good_headers(challenge).items():
        msg[k] = v
    msg.set_content(
        "Thanks!\n\n"
        + er.build_response_body(challenge.expected_digest)
        + "\n> quoted challenge\n",
        cte="quoted-printable",
    )
    parsed = message_from_bytes(msg.as_bytes(policy=policy.SMTP), policy=policy.default)
    text = parsed.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    headers = {k: str(v) for k, v in parsed.items()}
    assert er.check_reply(headers, text, challenge=challenge, now=NOW) is None


def mismatch_cases(ch: er.EmailChallenge) -> list[tuple[str, dict[str, Any]]]:
    other = "<c2.abc@ca.example.test>"
    return [
        ("subject without ACME", {"Subject": f"Re: {T1}"}),
        ("subject other prefix", {"Subject": f"Fwd: ACME: {T1}"}),
        ("subject twice Re", {"Subject": f"Re: Re: ACME: {T1}"}),
        ("subject lowercase acme", {"Subject": f"Re: acme: {T1}"}),
        ("subject other token", {"Subject": f"Re: ACME: {T2}"}),
        ("subject token truncated", {"Subject": f"Re: ACME: {T1[:-1]}"}),
        ("subject token extended", {"Subject": f"Re: ACME: {T1}x"}),
        ("subject token part2", {"Subject": f"Re: ACME: {T1}{T2}"}),
        ("subject missing", {"Subject": None}),
        ("in-reply-to other", {"In-Reply-To": other}),
        ("in-reply-to missing", {"In-Reply-To": None}),
        ("in-reply-to no brackets", {"In-Reply-To": ch.message_id.strip("<>")}),
        ("in-reply-to two ids", {"In-Reply-To": f"{ch.message_id} {other}"}),
        ("from other address", {"From": "mallory@example.test"}),
        ("from other case local part", {"From": "ALICE@example.test"}),
        ("from other domain", {"From": "alice@example.org"}),
        ("from two addresses", {"From": "alice@example.test, mallory@example.test"}),
        ("from missing", {"From": None}),
        ("to other", {"To": "someone@ca.example.test"}),
        ("to two", {"To": f"{ch.reply_address}, mallory@example.test"}),
        ("to missing", {"To": None}),
    ]


@pytest.mark.parametrize("case", range(21))
def test_reply_mismatch_refused(challenge: er.EmailChallenge, case: int) -> None:
    cases = mismatch_cases(challenge)
    assert len(cases) == 21
    name, change = cases[case]
    headers = {**good_headers(challenge), **change}
    headers = {k: v for k, v in headers.items() if v is not None}
    text = er.build_response_body(challenge.expected_digest)
    problem = er.check_reply(headers, text, challenge=challenge, now=NOW)
    assert isinstance(problem, AcmeProblem), name
    assert problem.type is ProblemType.INCORRECT_RESPONSE, (name, problem)


def test_wrong_digest_refused(challenge: er.EmailChallenge) -> None:
    headers = good_headers(challenge)
    for digest in (
        er.response_digest(T1, T2, jws.thumbprint(jws.public_jwk(_other_key()))),  # other account
        er.response_digest(T1, er.new_token(), THUMB),  # other token-part2
        er.response_digest(T2, T1, THUMB),  # parts swapped
    ):
        problem = er.check_reply(
            headers, er.build_response_body(digest), challenge=challenge, now=NOW
        )
        assert problem is not None and problem.type is ProblemType.INCORRECT_RESPONSE
        assert "does not match" in problem.detail
    problem = er.check_reply(headers, "no block here", challenge=challenge, now=NOW)
    assert problem is not None and problem.type is ProblemType.INCORRECT_RESPONSE


def _other_key() -> Any:
    from cryptography.hazmat.primitives.asymmetric import ed25519

    return ed25519.Ed25519PrivateKey.generate()


def test_duplicate_header_refused(challenge: er.EmailChallenge) -> None:
    headers = {**good_headers(challenge), "subject": "Re: ACME: other"}
    problem = er.check_reply(
        headers, er.build_response_body(challenge.expected_digest), challenge=challenge, now=NOW
    )
    assert problem is not None and problem.type is ProblemType.INCORRECT_RESPONSE


def test_reply_to_is_the_target_when_set(challenge: er.EmailChallenge) -> None:
    ch = er.EmailChallenge(**{**challenge.__dict__, "reply_to": "replies@ca.example.test"})
    text = er.build_response_body(ch.expected_digest)
    headers = good_headers(ch)
    assert headers["To"] == "replies@ca.example.test"
    assert er.check_reply(headers, text, challenge=ch, now=NOW) is None
    to_from = {**headers, "To": ch.from_address}
    problem = er.check_reply(to_from, text, challenge=ch, now=NOW)
    assert problem is not None and problem.type is ProblemType.INCORRECT_RESPONSE


def test_expiry(challenge: er.EmailChallenge) -> None:
    text = er.build_response_body(challenge.expected_digest)
    headers = good_headers(challenge)
    last = challenge.expires - timedelta(microseconds=1)
    assert er.check_reply(headers, text, challenge=challenge, now=last) is None
    problem = er.check_reply(headers, text, challenge=challenge, now=challenge.expires)
    assert problem is not None and problem.type is ProblemType.UNAUTHORIZED
    with pytest.raises(ValueError):
        er.EmailChallenge(**{**challenge.__dict__, "expires": NOW + timedelta(hours=24, seconds=1)})
    with pytest.raises(ValueError):
        er.EmailChallenge(**{**challenge.__dict__, "expires": NOW})
    with pytest.raises(ValueError):
        er.new_challenge(
            address="a@b.test",
            from_address="c@d.test",
            account_thumbprint=THUMB,
            now=NOW,
            lifetime=timedelta(hours=25),
        )


# --- both sides together ----------------------------------------------------------------------


def test_new_challenge_and_client_round_trip() -> None:
    ch = er.new_challenge(
        address="Alice@EXAMPLE.test",
        from_address="acme@CA.example.test",
        account_thumbprint=THUMB,
        now=NOW,
    )
    assert ch.address == "Alice@example.test" and ch.expires == NOW + timedelta(hours=24)
    assert ch.token_part1 != ch.token_part2
    assert re.fullmatch(r"<[A-Za-z0-9_-]+@ca\.example\.test>", ch.message_id)
    headers = er.build_challenge_headers(ch, date=NOW)
    assert headers["Auto-Submitted"] == "auto-generated; type=acme"
    assert headers["Subject"] == f"ACME: {ch.token_part1}"
    assert headers["From"] == "acme@ca.example.test" and headers["To"] == "Alice@example.test"
    assert "Reply-To" not in headers and headers["Date"] == "Sat, 01 Mar 2025 12:00:00 +0000"

    # the client, knowing token-part2 and its own key, reads the mail and answers
    mail = er.check_challenge_mail(
        headers, challenge_from="acme@ca.example.test", address="Alice@example.test"
    )
    assert mail.token_part1 == ch.token_part1 and mail.message_id == ch.message_id
    reply_headers = er.build_reply_headers(mail, address="Alice@example.test")
    digest = er.response_digest(mail.token_part1, ch.token_part2, THUMB)
    assert (
        er.check_reply(reply_headers, er.build_response_body(digest), challenge=ch, now=NOW) is None
    )


@pytest.mark.parametrize(
    "change",
    [
        {"From": "acme@evil.example"},
        {"To": "bob@example.test"},
        {"Auto-Submitted": "auto-replied"},
        {"Auto-Submitted": "auto-generated"},
        {"Auto-Submitted": None},
        {"Subject": "Re: ACME: abc"},
        {"Subject": "Hello"},
        {"Message-ID": None},
    ],
)
def test_client_refuses_odd_challenge_mail(change: dict[str, Any]) -> None:
    ch = er.new_challenge(
        address="alice@example.test",
        from_address="acme@ca.example.test",
        account_thumbprint=THUMB,
        now=NOW,
    )
    headers = {**er.build_challenge_headers(ch), **change}
    headers = {k: v for k, v in headers.items() if v is not None}
    with pytest.raises(AcmeProblem):
        er.check_challenge_mail(
            headers, challenge_from="acme@ca.example.test", address="alice@example.test"
        )
