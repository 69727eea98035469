"""The pure-Python SM2 this project used for every operation until its private-key operations
moved into OpenSSL (shared_pki.libcrypto): the reference implementation, for tests and the bench
only. It is NOT constant-time (Python big integers, plain table lookups) and takes caller-chosen
nonces, which is why nothing outside tests/ and bench/ may import it.

It is kept for what only it can do: reproduce the GB/T 32918 examples, which fix the nonce
(OpenSSL draws its own); be a third independent implementation next to OpenSSL and gmssl; and
be the "before" in `python -m bench sm`'s timing comparison.

Speed: Jacobian coordinates with a = -3 formulas; k*G through a precomputed fixed-base table
(33 windows of 8 bits, signed odd digits: 32 mixed additions, no doublings); k*P through a
width-5 signed odd-digit window (255 doublings, 51 additions). Scalars are recoded into signed
odd digits with no zero digit (a regular recoding) and made odd by adding n without a branch.
"""

from __future__ import annotations

import functools
import hmac
import secrets

from cryptography.hazmat.primitives import hashes

from shared_pki.errors import DecryptionFailed
from shared_pki.sm2 import (
    DEFAULT_ID,
    GX,
    GY,
    N,
    P,
    SM2Ciphertext,
    SM2PublicKey,
    _decode_ciphertext,
    _decode_signature,
    _encode_signature,
)

_FIXED_W = 8  # fixed-base window (bits); table of 33 x 128 affine points, about 1 MB
_VAR_W = 5  # variable-base window (bits); 16 odd multiples per scalar multiplication
_SCALAR_BITS = 257  # recoded scalars are < 2n < 2**257

Jacobian = tuple[int, int, int]  # (X, Y, Z) with x = X/Z^2, y = Y/Z^3; Z == 0 is infinity
_INFINITY: Jacobian = (1, 1, 0)


# --- field and group arithmetic -----------------------------------------------------------


def _double(X: int, Y: int, Z: int) -> Jacobian:
    """2P in Jacobian coordinates (dbl-2001-b, a = -3). The curve has odd order: no y = 0."""
    if Z == 0:
        return _INFINITY
    delta = Z * Z % P
    gamma = Y * Y % P
    beta = X * gamma % P
    alpha = 3 * (X - delta) * (X + delta) % P
    X3 = (alpha * alpha - 8 * beta) % P
    Z3 = 2 * Y * Z % P
    Y3 = (alpha * (4 * beta - X3) - 8 * gamma * gamma) % P
    return X3, Y3, Z3


def _add_mixed(X1: int, Y1: int, Z1: int, x2: int, y2: int) -> Jacobian:
    """P + Q with Q affine. The equal/opposite branches only fire on degenerate inputs."""
    if Z1 == 0:
        return x2, y2, 1
    z1z1 = Z1 * Z1 % P
    h = (x2 * z1z1 - X1) % P
    r = (y2 * Z1 * z1z1 - Y1) % P
    if h == 0:
        return _double(x2, y2, 1) if r == 0 else _INFINITY
    hh = h * h % P
    hhh = h * hh % P
    v = X1 * hh % P
    X3 = (r * r - hhh - 2 * v) % P
    Y3 = (r * (v - X3) - Y1 * hhh) % P
    return X3, Y3, Z1 * h % P


def _add(p1: Jacobian, p2: Jacobian) -> Jacobian:
    """P + Q, both Jacobian (used once per verification)."""
    X1, Y1, Z1 = p1
    X2, Y2, Z2 = p2
    if Z1 == 0:
        return p2
    if Z2 == 0:
        return p1
    z1z1 = Z1 * Z1 % P
    z2z2 = Z2 * Z2 % P
    u1 = X1 * z2z2 % P
    s1 = Y1 * Z2 * z2z2 % P
    h = (X2 * z1z1 - u1) % P
    r = (Y2 * Z1 * z1z1 - s1) % P
    if h == 0:
        return _double(X1, Y1, Z1) if r == 0 else _INFINITY
    hh = h * h % P
    hhh = h * hh % P
    v = u1 * hh % P
    X3 = (r * r - hhh - 2 * v) % P
    Y3 = (r * (v - X3) - s1 * hhh) % P
    return X3, Y3, Z1 * Z2 * h % P


def _to_affine(point: Jacobian) -> tuple[int, int] | None:
    X, Y, Z = point
    if Z == 0:
        return None
    zi = pow(Z, -1, P)
    zi2 = zi * zi % P
    return X * zi2 % P, Y * zi2 * zi % P


def _batch_affine(points: list[Jacobian]) -> list[tuple[int, int]]:
    """Many Jacobian points (none at infinity) to affine with one inversion (Montgomery)."""
    prefix = [1] * (len(points) + 1)
    for i, (_, _, Z) in enumerate(points):
        prefix[i + 1] = prefix[i] * Z % P
    inv = pow(prefix[-1], -1, P)
    out: list[tuple[int, int]] = [(0, 0)] * len(points)
    for i in range(len(points) - 1, -1, -1):
        X, Y, Z = points[i]
        zi = inv * prefix[i] % P
        inv = inv * Z % P
        zi2 = zi * zi % P
        out[i] = (X * zi2 % P, Y * zi2 * zi % P)
    return out


def _recode(k: int, w: int) -> list[int]:
    """Signed odd digits d_i in [-(2^w - 1), 2^w - 1], k = sum d_i 2^(w i), most significant
    first. Regular: the digit count depends only on w, and no digit is zero. k must be odd."""
    count = -(-(_SCALAR_BITS + 1 - w) // w)  # smallest c with 257 - c*w <= w - 1
    mask = (1 << (w + 1)) - 1
    half = 1 << w
    digits = []
    for _ in range(count):
        d = (k & mask) - half
        digits.append(d)
        k = (k - d) >> w
    digits.append(k)  # odd, positive, below 2^w
    digits.reverse()
    return digits


def _make_odd(k: int) -> int:
    """k or k + n, whichever is odd (n is odd); both give the same point on a curve of order n."""
    return k + N * (1 - (k & 1))


def _odd_multiples(x: int, y: int, count: int) -> list[tuple[int, int, int]]:
    """[(x, y, -y)] of P, 3P, 5P, ... (count entries), affine, with the negated y ready."""
    two = _double(x, y, 1)
    two_affine = _to_affine(two)
    assert two_affine is not None
    jac: list[Jacobian] = [(x, y, 1)]
    for _ in range(count - 1):
        X, Y, Z = jac[-1]
        # (2i+1)P = (2i-1)P + 2P; mixed with 2P affine.
        jac.append(_add_mixed(X, Y, Z, *two_affine))
    return [(ax, ay, (P - ay) % P) for ax, ay in _batch_affine(jac)]


@functools.cache
def _fixed_table() -> tuple[tuple[tuple[int, int, int], ...], ...]:
    """table[j][i] = (2i+1) * 2^(8j) * G for the digits of `_recode(k, 8)`, built on first use
    (about 30 ms) so that importing the module stays cheap."""
    windows = len(_recode(1, _FIXED_W))
    half = 1 << (_FIXED_W - 1)
    table = []
    x, y = GX, GY
    for _ in range(windows):
        row = _odd_multiples(x, y, half)
        table.append(tuple(row))
        # next base 2^w * B = (2^w - 1) B + B: the last odd multiple plus one more B.
        last_x, last_y, _ = row[-1]
        nxt = _to_affine(_add_mixed(last_x, last_y, 1, x, y))
        assert nxt is not None
        x, y = nxt
    return tuple(table)


def _mul_g(k: int) -> Jacobian:
    """k*G for 0 < k < n: one table lookup and one mixed addition per 8-bit signed digit."""
    table = _fixed_table()
    digits = _recode(_make_odd(k), _FIXED_W)
    # Least significant window first, so window j uses table[j].
    digits.reverse()
    acc: Jacobian = _INFINITY
    for row, d in zip(table, digits, strict=True):
        neg = d < 0
        entry = row[(abs(d) - 1) >> 1]
        acc = _add_mixed(*acc, entry[0], entry[1 + neg])
    return acc


def _mul(k: int, x: int, y: int) -> Jacobian:
    """k*P for 0 < k < n and P a valid point (order n): fixed-width signed odd-digit window."""
    table = _odd_multiples(x, y, 1 << (_VAR_W - 1))
    digits = _recode(_make_odd(k), _VAR_W)
    first = table[(digits[0] - 1) >> 1]
    acc: Jacobian = (first[0], first[1], 1)
    for d in digits[1:]:
        for _ in range(_VAR_W):
            acc = _double(*acc)
        neg = d < 0
        entry = table[(abs(d) - 1) >> 1]
        acc = _add_mixed(*acc, entry[0], entry[1 + neg])
    return acc


# --- hashing


def _sm3(*parts: bytes) -> bytes:
    h = hashes.Hash(hashes.SM3())
    for part in parts:
        h.update(part)
    return h.finalize()


def _kdf(z: bytes, length: int) -> bytes:
    """GB/T 32918.4 section 5.4.3: SM3(Z || ct) for ct = 1, 2, ... (32-bit big endian)."""
    blocks = [_sm3(z, ct.to_bytes(4, "big")) for ct in range(1, -(-length // 32) + 1)]
    return b"".join(blocks)[:length]


def _b32(value: int) -> bytes:
    return value.to_bytes(32, "big")


def _sign_e(d: int, e: int, k: int) -> tuple[int, int] | None:
    """GB/T 32918.2 section 6.1 steps A4-A6 for digest value e and nonce k; None means "pick
    another k" (r = 0, r + k = n or s = 0)."""
    point = _to_affine(_mul_g(k))
    assert point is not None
    r = (e + point[0]) % N
    if r == 0 or r + k == N:
        return None
    s = pow(1 + d, -1, N) * (k - r * d) % N
    if s == 0:
        return None
    return r, s


def _verify_e(key: SM2PublicKey, e: int, r: int, s: int) -> bool:
    """GB/T 32918.2 section 7.1 steps B1, B2, B5-B7 (the key is validated on construction)."""
    if not (1 <= r < N and 1 <= s < N):
        return False
    t = (r + s) % N
    if t == 0:
        return False
    point = _to_affine(_add(_mul_g(s), _mul(t, key.x, key.y)))
    if point is None:
        return False
    return (e + point[0]) % N == r


def encrypt_with_nonce(key: SM2PublicKey, plaintext: bytes, k: int) -> bytes | None:
    """HAZARDOUS, for known-answer tests: encryption with a caller-chosen nonce k. A repeated or
    predictable k reveals the plaintext. None when the KDF output is all zero (retry)."""
    if not 1 <= k < N:
        raise ValueError("nonce out of range")
    c1 = _to_affine(_mul_g(k))
    # S = [h]P_B is not infinity: h = 1 and the key was validated.
    shared = _to_affine(_mul(k, key.x, key.y))
    assert c1 is not None and shared is not None
    x2, y2 = _b32(shared[0]), _b32(shared[1])
    plaintext = bytes(plaintext)
    t = _kdf(x2 + y2, len(plaintext))
    if plaintext and not any(t):
        return None
    return SM2Ciphertext(
        {
            "x": c1[0],
            "y": c1[1],
            "hash": _sm3(x2, plaintext, y2),
            "ciphertext": _xor(plaintext, t),
        }
    ).dump()


def public_key(d: int) -> SM2PublicKey:
    """d*G, the public key of d."""
    point = _to_affine(_mul_g(d))
    assert point is not None
    return SM2PublicKey(*point)


def _xor(data: bytes, mask: bytes) -> bytes:
    if not data:
        return b""
    return (int.from_bytes(data, "big") ^ int.from_bytes(mask, "big")).to_bytes(len(data), "big")


def sign_with_nonce(
    d: int, message: bytes, k: int, *, signer_id: bytes = DEFAULT_ID
) -> bytes | None:
    """A DER signature with a caller-chosen nonce k (reusing k for two messages reveals d);
    None when k is unusable for this message."""
    if not 1 <= k < N:
        raise ValueError("nonce out of range")
    e = int.from_bytes(public_key(d).message_digest(message, signer_id), "big")
    rs = _sign_e(d, e, k)
    return None if rs is None else _encode_signature(*rs)


def sign(d: int, message: bytes, *, signer_id: bytes = DEFAULT_ID) -> bytes:
    """A DER signature under a fresh `secrets` nonce."""
    while True:
        signature = sign_with_nonce(d, message, secrets.randbelow(N - 1) + 1, signer_id=signer_id)
        if signature is not None:
            return signature


def verify(
    key: SM2PublicKey, signature: bytes, message: bytes, *, signer_id: bytes = DEFAULT_ID
) -> bool:
    decoded = _decode_signature(signature)
    if decoded is None:
        return False
    e = int.from_bytes(key.message_digest(message, signer_id), "big")
    return _verify_e(key, e, *decoded)


def verify_digest(key: SM2PublicKey, digest: bytes, signature: bytes) -> bool:
    """Verification of a precomputed e, taken whole as an integer as OpenSSL does."""
    decoded = _decode_signature(signature)
    return decoded is not None and _verify_e(key, int.from_bytes(digest, "big"), *decoded)


def encrypt(key: SM2PublicKey, plaintext: bytes) -> bytes:
    """DER SM2Ciphertext under a fresh nonce, retried if the KDF gives all zeros."""
    while True:
        ciphertext = encrypt_with_nonce(key, plaintext, secrets.randbelow(N - 1) + 1)
        if ciphertext is not None:
            return ciphertext


def decrypt(d: int, ciphertext: bytes) -> bytes:
    """Plaintext of a DER SM2Ciphertext, GB/T 32918.4 section 7.1 (all-zero KDF output and a
    C3 mismatch raise DecryptionFailed)."""
    c1x, c1y, c3, c2 = _decode_ciphertext(ciphertext)
    point = _to_affine(_mul(d, c1x, c1y))
    assert point is not None
    x2, y2 = _b32(point[0]), _b32(point[1])
    t = _kdf(x2 + y2, len(c2))
    if c2 and not any(t):
        raise DecryptionFailed("SM2 decryption failed (KDF output all zero)")
    plaintext = _xor(c2, t)
    if not hmac.compare_digest(_sm3(x2, plaintext, y2), c3):
        raise DecryptionFailed("SM2 decryption failed: C3 does not match (wrong key or tampered)")
    return plaintext
