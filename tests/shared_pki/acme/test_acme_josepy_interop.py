"""Our JWS against an independent implementation: certbot's `acme` and `josepy` packages.

They sign ACME requests (ES256, ES384, RS256, both key forms) that we verify, and verify the
requests we sign; their RFC 7638 thumbprints equal ours. josepy has no EdDSA: Ed25519 is
cross-checked against the test's own cryptography-only signer in test_acme_jws.py.
"""

from __future__ import annotations

import json
from typing import Any

import josepy
import pytest
from acme import jws as acme_jws
from cryptography.hazmat.primitives.asymmetric import rsa

from shared_pki.acme import jws
from shared_pki.acme.problems import AcmeProblem, ProblemType

ALGS = {"ES256": "ES256", "ES384": "ES384", "RS256": "RS256"}


def their_jwk(key: Any) -> Any:
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        return josepy.JWKRSA(key=key)
    return josepy.JWKEC(key=key)


def their_sign(kit: Any, alg: str, payload: bytes, *, kid: str | None) -> bytes:
    key = kit.key_for(alg)
    signed = acme_jws.JWS.sign(
        payload,
        key=their_jwk(key),
        alg=getattr(josepy, alg),
        nonce=b"\x01\x02nonce-bytes",
        url=kit.URL,
        kid=kid,
    )
    return signed.json_dumps().encode()


@pytest.mark.parametrize("alg", list(ALGS))
@pytest.mark.parametrize("form", ["jwk", "kid"])
@pytest.mark.parametrize("payload", [b'{"termsOfServiceAgreed": true}', b""])
def test_we_verify_josepy(kit: Any, alg: str, form: str, payload: bytes) -> None:
    kid = kit.KID if form == "kid" else None
    body = their_sign(kit, alg, payload, kid=kid)
    req = jws.parse_and_verify(
        body,
        expected_url=kit.URL,
        key_lookup=lambda k: kit.jwk_for(kit.key_for(alg)),
        require=form,  # type: ignore[arg-type]
    )
    assert req.alg == alg and req.kid == kid
    assert req.payload == (json.loads(payload) if payload else None)
    assert jws.b64url_decode(req.nonce) == b"\x01\x02nonce-bytes"
    assert req.thumbprint == jws.b64url_encode(
        their_jwk(kit.key_for(alg)).public_key().thumbprint()
    )


@pytest.mark.parametrize("alg", list(ALGS))
def test_we_refuse_tampered_josepy(kit: Any, alg: str) -> None:
    body = json.loads(their_sign(kit, alg, b'{"a": 1}', kid=None))
    body["payload"] = jws.b64url_encode(b'{"a": 2}')
    with pytest.raises(AcmeProblem) as info:
        jws.parse_and_verify(json.dumps(body).encode(), expected_url=kit.URL)
    assert info.value.type is ProblemType.MALFORMED
    with pytest.raises(AcmeProblem) as info:
        jws.parse_and_verify(their_sign(kit, alg, b"{}", kid=None), expected_url=kit.URL + "x")
    assert info.value.type is ProblemType.UNAUTHORIZED


@pytest.mark.parametrize("alg", list(ALGS))
@pytest.mark.parametrize("kid", [None, "https://ca.example.test/acme/acct/7"])
@pytest.mark.parametrize("payload", [{"csr": "AAAA"}, None])
def test_josepy_verifies_ours(kit: Any, alg: str, kid: str | None, payload: Any) -> None:
    key = kit.key_for(alg)
    body = jws.serialize(jws.sign(payload, key=key, url=kit.URL, nonce=kit.NONCE, kid=kid))
    parsed = acme_jws.JWS.json_loads(body)
    assert parsed.verify(their_jwk(key).public_key())
    sig = parsed.signature
    assert sig.combined.alg == getattr(josepy, alg)
    assert sig.combined.url == kit.URL
    assert sig.combined.nonce == jws.b64url_decode(kit.NONCE)
    assert sig.combined.kid == kid
    if kid is None:
        assert sig.combined.jwk == their_jwk(key).public_key()
    else:
        assert sig.combined.jwk is None
    assert parsed.payload == (
        b"" if payload is None else json.dumps(payload, separators=(",", ":")).encode()
    )
    # and a tampered one does not verify for them either
    tampered = json.loads(body)
    tampered["payload"] = jws.b64url_encode(b'{"csr":"BBBB"}')
    assert not acme_jws.JWS.json_loads(json.dumps(tampered)).verify(their_jwk(key).public_key())


@pytest.mark.parametrize("alg", list(ALGS))
def test_thumbprints_agree(kit: Any, alg: str) -> None:
    key = kit.key_for(alg)
    theirs = jws.b64url_encode(their_jwk(key).public_key().thumbprint())
    assert jws.thumbprint(key) == theirs
    assert jws.thumbprint(their_jwk(key).public_key().to_json()) == theirs
    assert jws.public_jwk(key) == their_jwk(key).public_key().to_json()
