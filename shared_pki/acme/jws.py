"""Flattened JWS for ACME (RFC 7515 with the profile of RFC 8555 section 6.2), JWKs
(RFC 7517, 7518, 8037) and JWK thumbprints (RFC 7638). Pure: bytes in, objects out.

Algorithms: ES256 (P-256), ES384 (P-384), RS256 (RSA 2048 to 8192 bits), EdDSA (Ed25519).
`sign()` makes a request body; `parse_and_verify()` checks one strictly and raises an
`AcmeProblem` for every refusal. Checking that the nonce is one the server issued and has not
seen is left to the caller (it needs the nonce store); so is checking the account's status.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from shared_pki.acme.problems import AcmeProblem, ProblemType, malformed, unauthorized

#: Algorithms we sign and verify with, in the order advertised in badSignatureAlgorithm.
ALGORITHMS: tuple[str, ...] = ("ES256", "ES384", "RS256", "EdDSA")
#: Largest request body accepted (a finalize with an RSA-8192 CSR is about 3 KB).
MAX_BODY_BYTES = 64 * 1024
#: Largest protected header (an RSA-8192 JWK is about 1.5 KB).
MAX_PROTECTED_BYTES = 8 * 1024
RSA_MIN_BITS = 2048
RSA_MAX_BITS = 8192

PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey
PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey

_PUBLIC_TYPES = (ec.EllipticCurvePublicKey, rsa.RSAPublicKey, ed25519.Ed25519PublicKey)
_PRIVATE_TYPES = (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey, ed25519.Ed25519PrivateKey)
_EC_CURVES: dict[str, tuple[type[ec.EllipticCurve], int, str, hashes.HashAlgorithm]] = {
    # crv: (curve class, coordinate size in bytes, JWS alg, hash)
    "P-256": (ec.SECP256R1, 32, "ES256", hashes.SHA256()),
    "P-384": (ec.SECP384R1, 48, "ES384", hashes.SHA384()),
}
_B64URL = re.compile(r"[A-Za-z0-9_-]*")
_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
#: Header parameters that would take the key from somewhere else, or change how the payload is
#: read: RFC 8555 allows only jwk or kid, and we understand no `crit` extension.
_REFUSED_HEADERS = frozenset({"crit", "b64", "jku", "x5u", "x5c", "x5t", "x5t#S256", "zip"})


# ---------------------------------------------------------------------------------------------
# base64url


def b64url_encode(data: bytes) -> str:
    """base64url without padding (RFC 7515 section 2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: Any, *, what: str = "value") -> bytes:
    """Strict base64url: the URL-safe alphabet only, no padding, no whitespace, and canonical
    (unused low bits zero). Anything else is `malformed`."""
    if not isinstance(text, str):
        raise malformed(f"{what} is not a base64url string")
    if not _B64URL.fullmatch(text) or len(text) % 4 == 1:
        raise malformed(f"{what} is not unpadded base64url")
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise malformed(f"{what} is not base64url") from exc
    if b64url_encode(data) != text:
        raise malformed(f"{what} is not canonical base64url")
    return data


# ---------------------------------------------------------------------------------------------
# JWK


def _uint_b64(value: int) -> str:
    return b64url_encode(value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big"))


def _public(key: PublicKey | PrivateKey) -> PublicKey:
    if isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey):
        return key.public_key()
    if isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey):
        return key
    raise TypeError(f"unsupported key type {type(key).__name__}")


def public_jwk(key: PublicKey | PrivateKey) -> dict[str, str]:
    """The public JWK of a key (public or private), with only the required members."""
    pub = _public(key)
    if isinstance(pub, ec.EllipticCurvePublicKey):
        crv = _ec_crv(pub.curve)
        size = _EC_CURVES[crv][1]
        nums = pub.public_numbers()
        return {
            "kty": "EC",
            "crv": crv,
            "x": b64url_encode(nums.x.to_bytes(size, "big")),
            "y": b64url_encode(nums.y.to_bytes(size, "big")),
        }
    if isinstance(pub, rsa.RSAPublicKey):
        nums = pub.public_numbers()
        return {"kty": "RSA", "n": _uint_b64(nums.n), "e": _uint_b64(nums.e)}
    raw = pub.public_bytes_raw()
    return {"kty": "OKP", "crv": "Ed25519", "x": b64url_encode(raw)}


def _ec_crv(curve: ec.EllipticCurve) -> str:
    for crv, (cls, _size, _alg, _hash) in _EC_CURVES.items():
        if isinstance(curve, cls):
            return crv
    raise AcmeProblem(ProblemType.BAD_PUBLIC_KEY, f"curve {curve.name} is not supported")


def alg_for_key(key: PublicKey | PrivateKey) -> str:
    """The JWS algorithm we use with a key: ES256/ES384 by curve, RS256, EdDSA."""
    pub = _public(key)
    if isinstance(pub, ec.EllipticCurvePublicKey):
        return _EC_CURVES[_ec_crv(pub.curve)][2]
    if isinstance(pub, rsa.RSAPublicKey):
        return "RS256"
    return "EdDSA"


def _member(jwk: Mapping[str, Any], name: str) -> Any:
    if name not in jwk:
        raise malformed(f"jwk has no {name!r} member")
    return jwk[name]


def _uint(jwk: Mapping[str, Any], name: str) -> int:
    raw = b64url_decode(_member(jwk, name), what=f"jwk {name!r}")
    if not raw or (len(raw) > 1 and raw[0] == 0):
        # RFC 7518 6.3.1: Base64urlUInt uses the minimum number of octets. A leading zero would
        # also change the RFC 7638 thumbprint the client computes from what it sent.
        raise malformed(f"jwk {name!r} is not a minimal unsigned integer")
    return int.from_bytes(raw, "big")


def jwk_to_public_key(jwk: Any) -> PublicKey:
    """Import a public JWK strictly. Private members, unsupported key types or curves, RSA keys
    under 2048 or over 8192 bits and points off the curve are refused."""
    if not isinstance(jwk, Mapping):
        raise malformed("jwk is not a JSON object")
    private = _PRIVATE_MEMBERS & set(jwk)
    if private:
        raise malformed(f"jwk carries private key members {sorted(private)}")
    kty = _member(jwk, "kty")
    if kty == "EC":
        crv = _member(jwk, "crv")
        if crv not in _EC_CURVES:
            raise AcmeProblem(ProblemType.BAD_PUBLIC_KEY, f"EC curve {crv!r} is not supported")
        curve_cls, size, _alg, _hash = _EC_CURVES[crv]
        x = b64url_decode(_member(jwk, "x"), what="jwk 'x'")
        y = b64url_decode(_member(jwk, "y"), what="jwk 'y'")
        if len(x) != size or len(y) != size:
            raise malformed(f"jwk coordinates must be {size} bytes each for {crv}")
        try:
            return ec.EllipticCurvePublicNumbers(
                int.from_bytes(x, "big"), int.from_bytes(y, "big"), curve_cls()
            ).public_key()
        except ValueError as exc:
            raise AcmeProblem(ProblemType.BAD_PUBLIC_KEY, "EC point is not on the curve") from exc
    if kty == "RSA":
        n, e = _uint(jwk, "n"), _uint(jwk, "e")
        if not RSA_MIN_BITS <= n.bit_length() <= RSA_MAX_BITS:
            raise AcmeProblem(
                ProblemType.BAD_PUBLIC_KEY,
                f"RSA keys must have {RSA_MIN_BITS} to {RSA_MAX_BITS} bits, not {n.bit_length()}",
            )
        try:
            return rsa.RSAPublicNumbers(e, n).public_key()
        except ValueError as exc:
            raise AcmeProblem(ProblemType.BAD_PUBLIC_KEY, f"bad RSA public key: {exc}") from exc
    if kty == "OKP":
        crv = _member(jwk, "crv")
        if crv != "Ed25519":
            raise AcmeProblem(ProblemType.BAD_PUBLIC_KEY, f"OKP curve {crv!r} is not supported")
        x = b64url_decode(_member(jwk, "x"), what="jwk 'x'")
        if len(x) != 32:
            raise malformed("an Ed25519 jwk 'x' is 32 bytes")
        return ed25519.Ed25519PublicKey.from_public_bytes(x)
    raise AcmeProblem(ProblemType.BAD_PUBLIC_KEY, f"key type {kty!r} is not supported")


def thumbprint(key_or_jwk: PublicKey | PrivateKey | Mapping[str, Any]) -> str:
    """RFC 7638 JWK thumbprint with SHA-256, base64url. A JWK is imported first (strictly), so
    the thumbprint is always that of the canonical form of the key."""
    if isinstance(key_or_jwk, Mapping):
        key_or_jwk = jwk_to_public_key(key_or_jwk)
    jwk = public_jwk(key_or_jwk)
    # The required members only, in lexicographic order, no whitespace (RFC 7638 section 3).
    canonical = json.dumps(jwk, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return b64url_encode(hashlib.sha256(canonical.encode("ascii")).digest())


# ---------------------------------------------------------------------------------------------
# Signing


def _json_bytes(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _raw_signature(key: PrivateKey, alg: str, data: bytes) -> bytes:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        _cls, size, _alg, digest = _EC_CURVES[_ec_crv(key.curve)]
        r, s = decode_dss_signature(key.sign(data, ec.ECDSA(digest)))
        return r.to_bytes(size, "big") + s.to_bytes(size, "big")
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    return key.sign(data)


def sign(
    payload: Mapping[str, Any] | None,
    *,
    key: PrivateKey,
    url: str,
    nonce: str | None,
    kid: str | None = None,
) -> dict[str, str]:
    """A flattened JWS request body (serialise with `serialize`). `payload` None makes a
    POST-as-GET (empty payload), `{}` an empty object. With `kid` the account URL identifies the
    key, without it the public key is embedded as `jwk` (newAccount, revokeCert by certificate
    key, the inner JWS of keyChange). `nonce` None only for the inner JWS of keyChange."""
    if not isinstance(key, _PRIVATE_TYPES):
        raise TypeError(f"cannot sign with {type(key).__name__}")
    alg = alg_for_key(key)
    protected: dict[str, Any] = {"alg": alg}
    if kid is not None:
        protected["kid"] = kid
    else:
        protected["jwk"] = public_jwk(key)
    if nonce is not None:
        protected["nonce"] = nonce
    protected["url"] = url
    protected_b64 = b64url_encode(_json_bytes(protected))
    payload_b64 = "" if payload is None else b64url_encode(_json_bytes(dict(payload)))
    signature = _raw_signature(key, alg, f"{protected_b64}.{payload_b64}".encode("ascii"))
    return {
        "protected": protected_b64,
        "payload": payload_b64,
        "signature": b64url_encode(signature),
    }


def serialize(jws: Mapping[str, str]) -> bytes:
    """The request body for a JWS made by `sign` (Content-Type application/jose+json)."""
    return _json_bytes(dict(jws))


# ---------------------------------------------------------------------------------------------
# Verification


@dataclass(frozen=True)
class VerifiedRequest:
    """A request whose signature checked. `jwk` is the canonical public JWK of the signing key
    in both forms; `kid` is the account URL, or None when the request embedded its `jwk`.
    `payload` is None for POST-as-GET. `nonce` is yet to be checked by the caller."""

    payload: dict[str, Any] | None
    protected: dict[str, Any]
    jwk: dict[str, str]
    kid: str | None
    thumbprint: str
    alg: str
    nonce: str | None
    url: str
    public_key: PublicKey

    @property
    def is_post_as_get(self) -> bool:
        return self.payload is None


KeyLookup = Callable[[str], Mapping[str, Any] | PublicKey | None]


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise malformed(f"duplicate JSON member {k!r}")
        out[k] = v
    return out


def _refuse_constant(name: str) -> Any:
    raise malformed(f"JSON constant {name} is not allowed")


def _strict_json(data: bytes, *, what: str) -> Any:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise malformed(f"{what} is not UTF-8") from exc
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as exc:
        raise malformed(f"{what} is not JSON") from exc


def _bad_alg(detail: str) -> AcmeProblem:
    return AcmeProblem(
        ProblemType.BAD_SIGNATURE_ALGORITHM, detail, extra={"algorithms": list(ALGORITHMS)}
    )


def _check_alg_matches_key(alg: str, key: PublicKey) -> None:
    if isinstance(key, ec.EllipticCurvePublicKey):
        expected = _EC_CURVES[_ec_crv(key.curve)][2]
    elif isinstance(key, rsa.RSAPublicKey):
        expected = "RS256"
    else:
        expected = "EdDSA"
    if alg != expected:
        raise _bad_alg(f"alg {alg} does not match the key (which signs with {expected})")


def _verify_signature(alg: str, key: PublicKey, signature: bytes, data: bytes) -> None:
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            _cls, size, _alg, digest = _EC_CURVES[_ec_crv(key.curve)]
            if len(signature) != 2 * size:
                raise InvalidSignature
            r = int.from_bytes(signature[:size], "big")
            s = int.from_bytes(signature[size:], "big")
            key.verify(encode_dss_signature(r, s), data, ec.ECDSA(digest))
        elif isinstance(key, rsa.RSAPublicKey):
            if len(signature) != (key.key_size + 7) // 8:
                raise InvalidSignature
            key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
        else:
            key.verify(signature, data)
    except InvalidSignature as exc:
        raise malformed("JWS signature does not verify") from exc


def parse_and_verify(
    body: bytes,
    *,
    expected_url: str,
    key_lookup: KeyLookup | None = None,
    require: Literal["any", "jwk", "kid"] = "any",
    require_nonce: bool = True,
    max_body: int = MAX_BODY_BYTES,
) -> VerifiedRequest:
    """Parse and verify an ACME request body (flattened JWS, RFC 8555 section 6.2).

    `key_lookup(kid)` returns the account's public JWK (or key), None for an unknown account
    (accountDoesNotExist); it may raise an AcmeProblem itself (a deactivated account). Use
    `require="jwk"` for newAccount and `require="kid"` for requests that need an account.
    Raises AcmeProblem: malformed, badSignatureAlgorithm, badPublicKey, badNonce (missing or not
    base64url; whether it is fresh is the caller's check), unauthorized (url), accountDoesNotExist.
    """
    if not isinstance(body, bytes | bytearray):
        raise TypeError("body must be bytes")
    if len(body) > max_body:
        raise malformed(f"request body larger than {max_body} bytes")
    obj = _strict_json(bytes(body), what="request body")
    return _verify_object(
        obj,
        expected_url=expected_url,
        key_lookup=key_lookup,
        require=require,
        require_nonce=require_nonce,
    )


def _verify_object(
    obj: Any,
    *,
    expected_url: str,
    key_lookup: KeyLookup | None,
    require: str,
    require_nonce: bool,
    forbid_nonce: bool = False,
) -> VerifiedRequest:
    if not isinstance(obj, dict):
        raise malformed("request body is not a JSON object")
    if "signatures" in obj:
        raise malformed("only the flattened JWS serialization is allowed")
    if "header" in obj:
        raise malformed("the JWS unprotected header must not be used")
    members = set(obj)
    if members != {"protected", "payload", "signature"}:
        missing = {"protected", "payload", "signature"} - members
        if missing:
            raise malformed(f"JWS lacks {sorted(missing)}")
        raise malformed(
            f"unexpected JWS members {sorted(members - {'protected', 'payload', 'signature'})}"
        )
    protected_b64, payload_b64, signature_b64 = obj["protected"], obj["payload"], obj["signature"]
    if isinstance(protected_b64, str) and len(protected_b64) > MAX_PROTECTED_BYTES * 4 // 3 + 4:
        raise malformed("protected header too large")
    protected = _strict_json(b64url_decode(protected_b64, what="protected"), what="protected")
    if not isinstance(protected, dict):
        raise malformed("protected header is not a JSON object")
    payload_raw = b64url_decode(payload_b64, what="payload")
    signature = b64url_decode(signature_b64, what="signature")

    refused = _REFUSED_HEADERS & set(protected)
    if refused:
        raise malformed(f"header parameters {sorted(refused)} are not supported")

    alg = protected.get("alg")
    if not isinstance(alg, str):
        raise malformed("protected header has no 'alg'")
    if alg not in ALGORITHMS:
        raise _bad_alg(f"alg {alg!r} is not supported")

    has_jwk, has_kid = "jwk" in protected, "kid" in protected
    if has_jwk and has_kid:
        raise malformed("protected header has both 'jwk' and 'kid'")
    if not has_jwk and not has_kid:
        raise malformed("protected header has neither 'jwk' nor 'kid'")
    if require == "jwk" and not has_jwk:
        raise malformed("this request must carry its key as 'jwk', not 'kid'")
    if require == "kid" and not has_kid:
        raise malformed("this request must name its account with 'kid', not 'jwk'")

    kid: str | None = None
    if has_jwk:
        key = jwk_to_public_key(protected["jwk"])
    else:
        kid = protected["kid"]
        if not isinstance(kid, str) or not kid:
            raise malformed("'kid' is not a non-empty string")
        if key_lookup is None:
            raise malformed("'kid' is not accepted for this request")
        found = key_lookup(kid)
        if found is None:
            raise AcmeProblem(ProblemType.ACCOUNT_DOES_NOT_EXIST, f"no account {kid}")
        key = jwk_to_public_key(found) if isinstance(found, Mapping) else _public(found)
    _check_alg_matches_key(alg, key)
    _verify_signature(alg, key, signature, f"{protected_b64}.{payload_b64}".encode("ascii"))

    nonce = protected.get("nonce")
    if forbid_nonce and "nonce" in protected:
        raise malformed("the inner JWS of keyChange must not carry a nonce")
    if require_nonce:
        if nonce is None:
            raise AcmeProblem(ProblemType.BAD_NONCE, "protected header has no 'nonce'")
        try:
            if not b64url_decode(nonce, what="nonce"):
                raise malformed("empty nonce")
        except AcmeProblem as exc:
            raise AcmeProblem(ProblemType.BAD_NONCE, "nonce is not base64url") from exc

    url = protected.get("url")
    if not isinstance(url, str):
        raise malformed("protected header has no 'url'")
    if url != expected_url:
        raise unauthorized(f"JWS url {url!r} is not the request URL")

    payload: dict[str, Any] | None = None
    if payload_b64 != "":
        payload = _strict_json(payload_raw, what="payload")
        if not isinstance(payload, dict):
            raise malformed("payload is not a JSON object")

    jwk = public_jwk(key)
    return VerifiedRequest(
        payload=payload,
        protected=protected,
        jwk=jwk,
        kid=kid,
        thumbprint=thumbprint(key),
        alg=alg,
        nonce=nonce if isinstance(nonce, str) else None,
        url=url,
        public_key=key,
    )


@dataclass(frozen=True)
class KeyChange:
    """The new account key of a verified keyChange request (RFC 8555 section 7.3.5)."""

    new_jwk: dict[str, str]
    new_thumbprint: str
    new_public_key: PublicKey


def verify_key_change(outer: VerifiedRequest) -> KeyChange:
    """Check the inner JWS of a keyChange request whose outer JWS `parse_and_verify` accepted
    (with require="kid"): inner signed by the new key given as `jwk`, no nonce, the same url,
    payload `{"account": <outer kid>, "oldKey": <the key that signed the outer JWS>}`. Whether
    another account already uses the new key (409 Conflict) is the caller's check."""
    if outer.kid is None:
        raise malformed("keyChange must be signed with the account's 'kid'")
    if outer.payload is None:
        raise malformed("keyChange needs the inner JWS as payload")
    inner = _verify_object(
        outer.payload,
        expected_url=outer.url,
        key_lookup=None,
        require="jwk",
        require_nonce=False,
        forbid_nonce=True,
    )
    body = inner.payload
    if body is None or set(body) - {"account", "oldKey"} or len(body) != 2:
        raise malformed("the inner keyChange payload must be exactly {account, oldKey}")
    if body["account"] != outer.kid:
        raise unauthorized("the inner keyChange 'account' is not the account that signed")
    if thumbprint(body["oldKey"]) != outer.thumbprint:
        raise unauthorized("the inner keyChange 'oldKey' is not the key that signed")
    if inner.thumbprint == outer.thumbprint:
        raise malformed("the new key is the current key")
    return KeyChange(inner.jwk, inner.thumbprint, inner.public_key)


def sign_key_change(
    *, account_url: str, old_key: PrivateKey, new_key: PrivateKey, url: str, nonce: str
) -> dict[str, str]:
    """The client's keyChange request body: the inner JWS signed by the new key (jwk, no
    nonce) inside an outer JWS signed by the old key (kid)."""
    inner = sign(
        {"account": account_url, "oldKey": public_jwk(old_key)},
        key=new_key,
        url=url,
        nonce=None,
    )
    return sign(inner, key=old_key, url=url, nonce=nonce, kid=account_url)
