"""Keys and an independent flattened-JWS maker for the ACME tests, handed to them as the `kit`
fixture (this folder has no package to import helpers from).

`forge` builds a JWS from an arbitrary protected header with `cryptography` alone (not through
shared_pki.acme.jws), so negative cases can say exactly what is wrong, and so our verifier is
also checked against signing code it does not share.
"""

from __future__ import annotations

import base64
import functools
import json
import sys
from types import ModuleType
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

URL = "https://ca.example.test/acme/new-order"
NONCE = "bm9uY2UtMDAx"
KID = "https://ca.example.test/acme/acct/1"
ALGS = ("ES256", "ES384", "RS256", "EdDSA")


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@functools.cache
def key_for(alg: str) -> Any:
    if alg == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    if alg == "ES384":
        return ec.generate_private_key(ec.SECP384R1())
    if alg == "RS256":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if alg == "EdDSA":
        return ed25519.Ed25519PrivateKey.generate()
    raise ValueError(alg)


def jwk_for(key: Any) -> dict[str, str]:
    """Public JWK written out by hand from the key numbers (RFC 7518 6.2/6.3, RFC 8037)."""
    pub = key.public_key() if hasattr(key, "public_key") else key
    if isinstance(pub, ec.EllipticCurvePublicKey):
        size = (pub.curve.key_size + 7) // 8
        n = pub.public_numbers()
        crv = {"secp256r1": "P-256", "secp384r1": "P-384"}[pub.curve.name]
        return {
            "kty": "EC",
            "crv": crv,
            "x": b64(n.x.to_bytes(size, "big")),
            "y": b64(n.y.to_bytes(size, "big")),
        }
    if isinstance(pub, rsa.RSAPublicKey):
        n = pub.public_numbers()
        return {
            "kty": "RSA",
            "n": b64(n.n.to_bytes((n.n.bit_length() + 7) // 8, "big")),
            "e": b64(n.e.to_bytes((n.e.bit_length() + 7) // 8, "big")),
        }
    return {"kty": "OKP", "crv": "Ed25519", "x": b64(pub.public_bytes_raw())}


def raw_sign(key: Any, data: bytes) -> bytes:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        size = (key.curve.key_size + 7) // 8
        digest = hashes.SHA256() if size == 32 else hashes.SHA384()
        r, s = decode_dss_signature(key.sign(data, ec.ECDSA(digest)))
        return r.to_bytes(size, "big") + s.to_bytes(size, "big")
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    return key.sign(data)


def forge(
    protected: dict[str, Any],
    payload: Any = None,
    *,
    key: Any,
    payload_b64: str | None = None,
    protected_b64: str | None = None,
    extra: dict[str, Any] | None = None,
) -> bytes:
    """A flattened JWS body with exactly the header given, signed by `key`."""
    if protected_b64 is None:
        protected_b64 = b64(json.dumps(protected).encode())
    if payload_b64 is None:
        payload_b64 = "" if payload is None else b64(json.dumps(payload).encode())
    sig = raw_sign(key, f"{protected_b64}.{payload_b64}".encode())
    body = {"protected": protected_b64, "payload": payload_b64, "signature": b64(sig)}
    body.update(extra or {})
    return json.dumps(body).encode()


def header(alg: str, *, key: Any = None, kid: str | None = None, **more: Any) -> dict[str, Any]:
    """A well-formed protected header: alg, jwk (or kid), nonce, url; `more` overrides."""
    h: dict[str, Any] = {"alg": alg}
    if kid is not None:
        h["kid"] = kid
    else:
        h["jwk"] = jwk_for(key if key is not None else key_for(alg))
    h["nonce"] = NONCE
    h["url"] = URL
    h.update(more)
    return {k: v for k, v in h.items() if v is not None}


@pytest.fixture
def kit() -> ModuleType:
    """This module: keys, `forge`, `header`, `jwk_for`, `b64` and the constants."""
    return sys.modules[__name__]
