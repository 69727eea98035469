"""shared_pki.acme.jws: round trips for every algorithm in both key forms, JWKs, the RFC 7638
thumbprint example, and one refusal per rule (each with the problem type and HTTP status)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed448, rsa

from shared_pki.acme import jws
from shared_pki.acme.problems import AcmeProblem, ProblemType

ALGS = ("ES256", "ES384", "RS256", "EdDSA")


def verify(kit: Any, body: bytes, **kw: Any) -> jws.VerifiedRequest:
    kw.setdefault("expected_url", kit.URL)
    kw.setdefault(
        "key_lookup", lambda kid: kit.jwk_for(kit.key_for("ES256")) if kid == kit.KID else None
    )
    return jws.parse_and_verify(body, **kw)


def refused(kit: Any, body: bytes, ptype: ProblemType, status: int, **kw: Any) -> AcmeProblem:
    with pytest.raises(AcmeProblem) as info:
        verify(kit, body, **kw)
    assert info.value.type is ptype, info.value
    assert info.value.status == status
    return info.value


# --- round trips ------------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ALGS)
@pytest.mark.parametrize(
    "payload", [{"identifiers": [{"type": "email", "value": "a@b.example"}]}, {}, None]
)
def test_round_trip_jwk_form(kit: Any, alg: str, payload: dict[str, Any] | None) -> None:
    key = kit.key_for(alg)
    body = jws.serialize(jws.sign(payload, key=key, url=kit.URL, nonce=kit.NONCE))
    req = verify(kit, body, require="jwk")
    assert req.payload == payload
    assert req.is_post_as_get is (payload is None)
    assert req.alg == alg and req.kid is None and req.nonce == kit.NONCE and req.url == kit.URL
    assert req.jwk == kit.jwk_for(key)
    assert req.protected["jwk"] == kit.jwk_for(key)
    assert req.thumbprint == jws.thumbprint(key)


@pytest.mark.parametrize("alg", ALGS)
def test_round_trip_kid_form(kit: Any, alg: str) -> None:
    key = kit.key_for(alg)
    body = jws.serialize(jws.sign({"x": 1}, key=key, url=kit.URL, nonce=kit.NONCE, kid=kit.KID))
    seen: list[str] = []

    def lookup(kid: str) -> dict[str, str]:
        seen.append(kid)
        return kit.jwk_for(key)

    req = verify(kit, body, key_lookup=lookup, require="kid")
    assert seen == [kit.KID]
    assert req.kid == kit.KID and "jwk" not in req.protected and req.payload == {"x": 1}
    assert req.thumbprint == jws.thumbprint(kit.jwk_for(key))
    # key_lookup may also hand back a key object
    assert verify(kit, body, key_lookup=lambda kid: key.public_key()).kid == kit.KID


@pytest.mark.parametrize("alg", ALGS)
def test_forged_by_independent_code_verifies(kit: Any, alg: str) -> None:
    """The test's own signer (cryptography only) against our verifier, per algorithm."""
    req = verify(kit, kit.forge(kit.header(alg), {"hello": "wörld"}, key=kit.key_for(alg)))
    assert req.payload == {"hello": "wörld"}


@pytest.mark.parametrize("alg", ALGS)
def test_signature_is_raw_fixed_width(kit: Any, alg: str) -> None:
    key = kit.key_for(alg)
    signed = jws.sign({}, key=key, url=kit.URL, nonce=kit.NONCE)
    sig = base64.urlsafe_b64decode(signed["signature"] + "==")
    expected = {"ES256": 64, "ES384": 96, "RS256": 256, "EdDSA": 64}[alg]
    assert len(sig) == expected
    assert "=" not in "".join(signed.values())
    protected = json.loads(base64.urlsafe_b64decode(signed["protected"] + "=="))
    assert protected == {"alg": alg, "jwk": kit.jwk_for(key), "nonce": kit.NONCE, "url": kit.URL}


# --- JWK and thumbprint -----------------------------------------------------------------------

# RFC 7638 section 3.1 (the key of RFC 7517 appendix A.1), and its thumbprint.
RFC7638_JWK = {
    "kty": "RSA",
    "n": (
        "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_B"
        "JECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_F"
        "DW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4"
        "vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
    ),
    "e": "AQAB",
    "alg": "RS256",
    "kid": "2011-04-29",
}


def test_thumbprint_rfc7638_example() -> None:
    assert jws.thumbprint(RFC7638_JWK) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
    key = jws.jwk_to_public_key(RFC7638_JWK)
    assert jws.thumbprint(key) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
    assert jws.public_jwk(key) == {k: RFC7638_JWK[k] for k in ("kty", "n", "e")}


@pytest.mark.parametrize("alg", ALGS)
def test_jwk_export_import_round_trip(kit: Any, alg: str) -> None:
    key = kit.key_for(alg)
    jwk = jws.public_jwk(key)
    assert jwk == kit.jwk_for(key)
    assert jws.public_jwk(jws.jwk_to_public_key(jwk)) == jwk
    assert jws.alg_for_key(key) == alg


@pytest.mark.parametrize(
    ("mutate", "ptype"),
    [
        (lambda j: {**j, "d": "AAAA"}, ProblemType.MALFORMED),  # private member
        (lambda j: {**j, "crv": "P-521"}, ProblemType.BAD_PUBLIC_KEY),
        (lambda j: {**j, "kty": "oct"}, ProblemType.BAD_PUBLIC_KEY),
        (lambda j: {k: v for k, v in j.items() if k != "y"}, ProblemType.MALFORMED),
        (lambda j: {**j, "x": j["x"][:-2]}, ProblemType.MALFORMED),  # short coordinate
        (lambda j: {**j, "y": j["x"]}, ProblemType.BAD_PUBLIC_KEY),  # off the curve
        (lambda j: {**j, "x": j["x"] + "="}, ProblemType.MALFORMED),  # padded
    ],
)
def test_bad_ec_jwks_refused(kit: Any, mutate: Any, ptype: ProblemType) -> None:
    jwk = mutate(kit.jwk_for(kit.key_for("ES256")))
    with pytest.raises(AcmeProblem) as info:
        jws.jwk_to_public_key(jwk)
    assert info.value.type is ptype


def test_weak_or_odd_rsa_and_okp_jwks_refused(kit: Any) -> None:
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    with pytest.raises(AcmeProblem) as info:
        jws.jwk_to_public_key(kit.jwk_for(small))
    assert info.value.type is ProblemType.BAD_PUBLIC_KEY
    big = kit.jwk_for(kit.key_for("RS256"))
    padded_n = kit.b64(b"\x00" + base64.urlsafe_b64decode(big["n"] + "=="))
    with pytest.raises(AcmeProblem, match="minimal"):
        jws.jwk_to_public_key({**big, "n": padded_n})
    ed448_jwk = {
        "kty": "OKP",
        "crv": "Ed448",
        "x": kit.b64(ed448.Ed448PrivateKey.generate().public_key().public_bytes_raw()),
    }
    with pytest.raises(AcmeProblem) as info:
        jws.jwk_to_public_key(ed448_jwk)
    assert info.value.type is ProblemType.BAD_PUBLIC_KEY
    p521 = ec.generate_private_key(ec.SECP521R1())
    with pytest.raises(AcmeProblem):
        jws.sign({}, key=p521, url=kit.URL, nonce=kit.NONCE)


def test_b64url_decode_is_strict() -> None:
    assert jws.b64url_decode("AQAB") == b"\x01\x00\x01"
    for bad in ("AQAB=", "AQ==", "A", "AQ+B", "AQ/B", "AQ B", "AR", 5):
        with pytest.raises(AcmeProblem):
            jws.b64url_decode(bad)


# --- refusals ---------------------------------------------------------------------------------


def test_bad_signature(kit: Any) -> None:
    body = json.loads(kit.forge(kit.header("ES256"), {"a": 1}, key=kit.key_for("ES256")))
    other = json.loads(kit.forge(kit.header("ES256"), {"a": 2}, key=kit.key_for("ES256")))
    body["payload"] = other["payload"]  # valid signature over another payload
    refused(kit, json.dumps(body).encode(), ProblemType.MALFORMED, 400)
    # signed by another key of the same type than the one in the header
    stranger = ec.generate_private_key(ec.SECP256R1())
    forged = kit.forge(kit.header("ES256", key=kit.key_for("ES256")), {}, key=stranger)
    problem = refused(kit, forged, ProblemType.MALFORMED, 400)
    assert "signature" in problem.detail


@pytest.mark.parametrize("alg", ALGS)
def test_truncated_signature(kit: Any, alg: str) -> None:
    body = json.loads(kit.forge(kit.header(alg), {}, key=kit.key_for(alg)))
    sig = base64.urlsafe_b64decode(body["signature"] + "==")
    body["signature"] = kit.b64(sig[:-1])
    refused(kit, json.dumps(body).encode(), ProblemType.MALFORMED, 400)


@pytest.mark.parametrize(
    ("header_alg", "key_alg"),
    [
        ("ES384", "ES256"),
        ("ES256", "ES384"),
        ("RS256", "ES256"),
        ("EdDSA", "ES256"),
        ("ES256", "EdDSA"),
        ("ES256", "RS256"),
    ],
)
def test_alg_mismatch(kit: Any, header_alg: str, key_alg: str) -> None:
    key = kit.key_for(key_alg)
    problem = refused(
        kit,
        kit.forge(kit.header(header_alg, key=key), {}, key=key),
        ProblemType.BAD_SIGNATURE_ALGORITHM,
        400,
    )
    assert problem.to_json()["algorithms"] == list(ALGS)


@pytest.mark.parametrize(
    "alg", ["none", "None", "HS256", "HS512", "PS256", "RS512", "ES512", "Ed25519"]
)
def test_unsupported_alg(kit: Any, alg: str) -> None:
    key = kit.key_for("ES256")
    if alg.lower() == "none":
        b = json.loads(kit.forge(kit.header(alg, key=key), {}, key=key))
        b["signature"] = ""
        body = json.dumps(b).encode()
    else:
        body = kit.forge(kit.header(alg, key=key), {}, key=key)
    problem = refused(kit, body, ProblemType.BAD_SIGNATURE_ALGORITHM, 400)
    assert problem.to_json()["type"] == "urn:ietf:params:acme:error:badSignatureAlgorithm"


def test_hs256_with_public_key_as_secret_refused(kit: Any) -> None:
    """The classic confusion attack: HMAC keyed with the public JWK's bytes."""
    import hashlib
    import hmac

    jwk = kit.jwk_for(kit.key_for("RS256"))
    protected = kit.b64(json.dumps(kit.header("HS256", key=kit.key_for("RS256"))).encode())
    payload = kit.b64(b"{}")
    mac = hmac.new(json.dumps(jwk).encode(), f"{protected}.{payload}".encode(), hashlib.sha256)
    body = json.dumps(
        {"protected": protected, "payload": payload, "signature": kit.b64(mac.digest())}
    )
    refused(kit, body.encode(), ProblemType.BAD_SIGNATURE_ALGORITHM, 400)


def test_both_jwk_and_kid(kit: Any) -> None:
    key = kit.key_for("ES256")
    h = kit.header("ES256", key=key)
    h["kid"] = kit.KID
    refused(kit, kit.forge(h, {}, key=key), ProblemType.MALFORMED, 400)


def test_neither_jwk_nor_kid(kit: Any) -> None:
    key = kit.key_for("ES256")
    h = kit.header("ES256", key=key)
    del h["jwk"]
    refused(kit, kit.forge(h, {}, key=key), ProblemType.MALFORMED, 400)


def test_required_form(kit: Any) -> None:
    key = kit.key_for("ES256")
    with_jwk = kit.forge(kit.header("ES256", key=key), {}, key=key)
    with_kid = kit.forge(kit.header("ES256", kid=kit.KID), {}, key=key)
    refused(kit, with_jwk, ProblemType.MALFORMED, 400, require="kid")
    refused(kit, with_kid, ProblemType.MALFORMED, 400, require="jwk")
    refused(kit, with_kid, ProblemType.MALFORMED, 400, key_lookup=None)
    assert verify(kit, with_kid, require="kid").kid == kit.KID


def test_unknown_kid(kit: Any) -> None:
    body = kit.forge(kit.header("ES256", kid=kit.KID + "9"), {}, key=kit.key_for("ES256"))
    refused(kit, body, ProblemType.ACCOUNT_DOES_NOT_EXIST, 400)


def test_kid_of_another_account_key(kit: Any) -> None:
    """A kid that exists but whose key did not sign: the signature check fails."""
    body = kit.forge(
        kit.header("ES256", kid=kit.KID), {}, key=ec.generate_private_key(ec.SECP256R1())
    )
    refused(kit, body, ProblemType.MALFORMED, 400)


def test_key_lookup_problem_passes_through(kit: Any) -> None:
    def deactivated(kid: str) -> None:
        raise AcmeProblem(ProblemType.UNAUTHORIZED, "account deactivated")

    body = kit.forge(kit.header("ES256", kid=kit.KID), {}, key=kit.key_for("ES256"))
    refused(kit, body, ProblemType.UNAUTHORIZED, 403, key_lookup=deactivated)


def test_wrong_url(kit: Any) -> None:
    key = kit.key_for("ES256")
    body = kit.forge(kit.header("ES256", url=kit.URL + "/"), {}, key=key)
    refused(kit, body, ProblemType.UNAUTHORIZED, 403)
    refused(
        kit,
        kit.forge(kit.header("ES256"), {}, key=key),
        ProblemType.UNAUTHORIZED,
        403,
        expected_url="https://ca.example.test/acme/new-acct",
    )
    h = kit.header("ES256")
    del h["url"]
    refused(kit, kit.forge(h, {}, key=key), ProblemType.MALFORMED, 400)


def test_missing_or_bad_nonce(kit: Any) -> None:
    key = kit.key_for("ES256")
    h = kit.header("ES256")
    del h["nonce"]
    refused(kit, kit.forge(h, {}, key=key), ProblemType.BAD_NONCE, 400)
    for bad in ("", "bm9uY2U=", "has space", 12):
        refused(
            kit, kit.forge(kit.header("ES256", nonce=bad), {}, key=key), ProblemType.BAD_NONCE, 400
        )
    # without the nonce requirement (the inner JWS of keyChange) it passes
    assert verify(kit, kit.forge(h, {}, key=key), require_nonce=False).nonce is None


@pytest.mark.parametrize("part", ["protected", "payload", "signature"])
def test_padded_b64_refused(kit: Any, part: str) -> None:
    b = json.loads(kit.forge(kit.header("ES256"), {"abc": 1}, key=kit.key_for("ES256")))
    assert len(b[part]) % 4, "pick a payload whose encodings need padding"
    b[part] += "=" * (-len(b[part]) % 4)
    refused(kit, json.dumps(b).encode(), ProblemType.MALFORMED, 400)


def test_standard_base64_alphabet_refused(kit: Any) -> None:
    key = kit.key_for("ES256")
    for _ in range(50):  # find a signature with '-' or '_' and swap in '+' or '/'
        b = json.loads(kit.forge(kit.header("ES256"), {}, key=key))
        if "-" in b["signature"] or "_" in b["signature"]:
            break
    b["signature"] = b["signature"].replace("-", "+").replace("_", "/")
    refused(kit, json.dumps(b).encode(), ProblemType.MALFORMED, 400)


@pytest.mark.parametrize(
    "payload_json",
    [
        b"[1, 2]",
        b'"text"',
        b"42",
        b"null",
        b"{not json",
        b'{"a": 1, "a": 2}',
        b"\xff\xfe",
        b'{"a": NaN}',
    ],
)
def test_non_object_or_bad_json_payload(kit: Any, payload_json: bytes) -> None:
    body = kit.forge(
        kit.header("ES256"), payload_b64=kit.b64(payload_json), key=kit.key_for("ES256")
    )
    refused(kit, body, ProblemType.MALFORMED, 400)


def test_bad_protected_header(kit: Any) -> None:
    key = kit.key_for("ES256")
    for raw in (b"[]", b"not json", b'{"alg": "ES256", "alg": "ES256"}'):
        refused(
            kit, kit.forge({}, {}, key=key, protected_b64=kit.b64(raw)), ProblemType.MALFORMED, 400
        )
    h = kit.header("ES256")
    del h["alg"]
    refused(kit, kit.forge(h, {}, key=key), ProblemType.MALFORMED, 400)
    for name, value in (
        ("crit", ["exp"]),
        ("b64", False),
        ("jku", "https://evil.example/jwks"),
        ("x5c", ["AAAA"]),
    ):
        refused(
            kit,
            kit.forge(kit.header("ES256", **{name: value}), {}, key=key),
            ProblemType.MALFORMED,
            400,
        )


def test_bad_envelope(kit: Any) -> None:
    key = kit.key_for("ES256")
    good = json.loads(kit.forge(kit.header("ES256"), {}, key=key))
    cases = [
        {**good, "header": {"kid": kit.KID}},  # unprotected header
        {**good, "extra": 1},
        {k: v for k, v in good.items() if k != "payload"},  # detached payload
        {
            "payload": good["payload"],
            "signatures": [{"protected": good["protected"], "signature": good["signature"]}],
        },
        [good],
    ]
    for case in cases:
        refused(kit, json.dumps(case).encode(), ProblemType.MALFORMED, 400)
    for raw in (b"", b"\xff", b"{", b"[" * 100000 + b"]" * 100000):
        refused(kit, raw, ProblemType.MALFORMED, 400, max_body=10**6)
    with pytest.raises(TypeError):
        jws.parse_and_verify("text", expected_url=kit.URL)  # type: ignore[arg-type]


def test_oversize(kit: Any) -> None:
    key = kit.key_for("ES256")
    body = kit.forge(kit.header("ES256"), {"pad": "x" * (jws.MAX_BODY_BYTES)}, key=key)
    problem = refused(kit, body, ProblemType.MALFORMED, 400)
    assert "larger" in problem.detail
    small = kit.forge(kit.header("ES256"), {"pad": "x" * 100}, key=key)
    assert verify(kit, small).payload == {"pad": "x" * 100}
    refused(kit, small, ProblemType.MALFORMED, 400, max_body=len(small) - 1)
    huge = kit.forge(kit.header("ES256", padding="y" * 20000), {}, key=key)
    refused(kit, huge, ProblemType.MALFORMED, 400, max_body=10**6)


def test_post_as_get_differs_from_empty_object(kit: Any) -> None:
    key = kit.key_for("EdDSA")
    assert verify(kit, kit.forge(kit.header("EdDSA"), None, key=key)).payload is None
    assert verify(kit, kit.forge(kit.header("EdDSA"), {}, key=key)).payload == {}


# --- keyChange --------------------------------------------------------------------------------


def test_key_change_round_trip(kit: Any) -> None:
    old, new = kit.key_for("ES256"), kit.key_for("EdDSA")
    body = jws.serialize(
        jws.sign_key_change(
            account_url=kit.KID, old_key=old, new_key=new, url=kit.URL, nonce=kit.NONCE
        )
    )
    outer = verify(kit, body, require="kid")
    change = jws.verify_key_change(outer)
    assert change.new_jwk == kit.jwk_for(new)
    assert change.new_thumbprint == jws.thumbprint(new)


def test_key_change_refusals(kit: Any) -> None:
    old, new = kit.key_for("ES256"), kit.key_for("EdDSA")

    def outer_with(inner: dict[str, Any]) -> jws.VerifiedRequest:
        return verify(
            kit, jws.serialize(jws.sign(inner, key=old, url=kit.URL, nonce=kit.NONCE, kid=kit.KID))
        )

    def inner(payload: Any, **kw: Any) -> dict[str, Any]:
        return json.loads(kit.forge(kit.header("EdDSA", key=new, **kw), payload, key=new))

    good = {"account": kit.KID, "oldKey": kit.jwk_for(old)}
    cases = [
        (inner(good, nonce=kit.NONCE), ProblemType.MALFORMED),  # inner carries a nonce
        (inner(good, nonce=None, url=kit.URL + "x"), ProblemType.UNAUTHORIZED),
        (inner({**good, "account": kit.KID + "2"}, nonce=None), ProblemType.UNAUTHORIZED),
        (inner({**good, "oldKey": kit.jwk_for(new)}, nonce=None), ProblemType.UNAUTHORIZED),
        (inner({"account": kit.KID}, nonce=None), ProblemType.MALFORMED),
        (
            json.loads(kit.forge(kit.header("EdDSA", kid=kit.KID, nonce=None), good, key=new)),
            ProblemType.MALFORMED,
        ),
    ]
    for payload, ptype in cases:
        with pytest.raises(AcmeProblem) as info:
            jws.verify_key_change(outer_with(payload))
        assert info.value.type is ptype, (payload, info.value)
    assert jws.verify_key_change(outer_with(inner(good, nonce=None))).new_jwk == kit.jwk_for(new)
