"""SM2 (GB/T 32918) on the curve sm2p256v1, in pure Python: keys, signatures, encryption.

Why our own: `cryptography` has SM3 and SM4 but no SM2, and the `gmssl` package has defects that
must not reach users (non-CSPRNG nonces, no C3 check, no curve checks, `lstrip("04")` key
corruption). `gmssl` stays in the tests as an independent cross-check.

Speed: Jacobian coordinates with a = -3 formulas; k*G through a precomputed fixed-base table
(33 windows of 8 bits, signed odd digits: 32 mixed additions, no doublings); k*P through a
width-5 signed odd-digit window (255 doublings, 51 additions). Signature verification is
s*G (table) + t*Q (window), added once.

Side channels: scalars are recoded into signed odd digits with no zero digit (a regular
recoding: the sequence of point operations does not depend on the scalar), and even scalars are
made odd by adding n without a branch. That removes the obvious secret-dependent branches, but
this is NOT constant-time: Python big-integer arithmetic takes data-dependent time and the table
lookups are plain list indexing. Nonces come from `secrets` (a CSPRNG).

Signatures are DER SEQUENCE{r, s}; ciphertexts are DER SM2Ciphertext (GM/T 0009) in C1C3C2 order,
the form OpenSSL's `pkeyutl` reads and writes. Keys are PKCS#8 / SubjectPublicKeyInfo with
id-ecPublicKey and the SM2 curve OID, as OpenSSL 3 writes them.
"""

from __future__ import annotations

import functools
import hmac
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field

from asn1crypto import algos, core, keys, pem
from cryptography.hazmat.primitives import hashes

from shared_pki import sm_oids
from shared_pki.errors import DecryptionFailed, MalformedInput, UnsupportedAlgorithm

# sm2p256v1, GB/T 32918.5 (GM/T 0003.5) section 5.
P = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFF
A = P - 3
B = 0x28E9FA9E9D9F5E344D5A9E4BCF6509A7F39789F515AB8F92DDBCBD414D940E93
N = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123
GX = 0x32C4AE2C1F1981195F9904466A39C9948FE30BBFF2660BE1715A4589334C74C7
GY = 0xBC3736A2F4F6779C59BDCEE36B692153D0A9877CC62A474002DF32E52139F0A0

DEFAULT_ID = b"1234567812345678"  # GM/T 0009 section 10; OpenSSL 3 uses b"" unless told
MAX_ID_LENGTH = 8191  # ENTL is a 16-bit count of bits

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


def _on_curve(x: int, y: int) -> bool:
    return 0 <= x < P and 0 <= y < P and (y * y - (x * x * x + A * x + B)) % P == 0


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


def _decompress(prefix: int, x: int) -> int:
    """y for x on the curve with parity prefix - 2; p = 3 mod 4, so sqrt is a power."""
    if not 0 <= x < P:
        raise MalformedInput("SM2 point: x coordinate out of range")
    rhs = (x * x * x + A * x + B) % P
    y = pow(rhs, (P + 1) // 4, P)
    if y * y % P != rhs:
        raise MalformedInput("SM2 point: x is not on the curve")
    if (y & 1) != (prefix & 1):
        y = P - y
    return y


# --- hashing ----------------------------------------------------------------------------------


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


_CURVE_BYTES = _b32(A) + _b32(B) + _b32(GX) + _b32(GY)


def _check_id(signer_id: bytes) -> None:
    if len(signer_id) > MAX_ID_LENGTH:
        raise MalformedInput(f"SM2 signer ID longer than {MAX_ID_LENGTH} bytes")


# --- DER structures ---------------------------------------------------------------------------


class SM2Ciphertext(core.Sequence):
    """GM/T 0009 SM2Cipher: C1 as two integers, C3 (SM3, 32 bytes), C2."""

    _fields = [
        ("x", core.Integer),
        ("y", core.Integer),
        ("hash", core.OctetString),
        ("ciphertext", core.OctetString),
    ]


def _encode_signature(r: int, s: int) -> bytes:
    return algos.DSASignature({"r": r, "s": s}).dump()


def _decode_signature(signature: bytes) -> tuple[int, int] | None:
    """(r, s) from strict DER, or None: a BER variant is another byte string for the same
    signature, and accepting it would make signatures malleable."""
    try:
        parsed = algos.DSASignature.load(signature, strict=True)
        r, s = parsed["r"].native, parsed["s"].native
    except (ValueError, TypeError, KeyError):
        return None
    if not isinstance(r, int) or not isinstance(s, int):
        return None
    try:
        if _encode_signature(r, s) != signature:
            return None
    except (ValueError, OverflowError):
        return None
    return r, s


# --- keys -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SM2PublicKey:
    """A point on sm2p256v1, validated on construction (not infinity, on the curve)."""

    x: int
    y: int

    def __post_init__(self) -> None:
        if not (isinstance(self.x, int) and isinstance(self.y, int) and _on_curve(self.x, self.y)):
            raise MalformedInput("Not a valid SM2 public key: the point is not on sm2p256v1")

    # encodings

    @classmethod
    def from_point(cls, data: bytes) -> SM2PublicKey:
        """From SEC 1 octets: 04 || x || y, or compressed 02/03 || x."""
        if len(data) == 65 and data[0] == 4:
            return cls(int.from_bytes(data[1:33], "big"), int.from_bytes(data[33:], "big"))
        if len(data) == 33 and data[0] in (2, 3):
            x = int.from_bytes(data[1:], "big")
            return cls(x, _decompress(data[0], x))
        raise MalformedInput("Not an SM2 point encoding (expected 65 or 33 octets)")

    def point(self) -> bytes:
        """Uncompressed SEC 1 octets 04 || x || y."""
        return b"\x04" + _b32(self.x) + _b32(self.y)

    def to_spki(self) -> keys.PublicKeyInfo:
        return keys.PublicKeyInfo(
            {
                "algorithm": {
                    "algorithm": "ec",
                    "parameters": keys.ECDomainParameters(name="named", value=sm_oids.CURVE_NAME),
                },
                "public_key": self.point(),
            }
        )

    @classmethod
    def from_spki(cls, info: keys.PublicKeyInfo) -> SM2PublicKey:
        """From an asn1crypto SubjectPublicKeyInfo (e.g. a certificate's)."""
        try:
            algorithm = info["algorithm"]["algorithm"].dotted
            curve = _named_curve(info["algorithm"]["parameters"])
            point = info["public_key"].native
        except (ValueError, TypeError, KeyError, AttributeError) as error:
            raise MalformedInput(f"Broken SubjectPublicKeyInfo: {error}") from None
        if algorithm != "1.2.840.10045.2.1" or curve != sm_oids.SM2_CURVE:
            raise UnsupportedAlgorithm("Not an SM2 public key (id-ecPublicKey on sm2p256v1)")
        if not isinstance(point, bytes):
            raise MalformedInput("SubjectPublicKeyInfo: the public key is not an octet string")
        return cls.from_point(point)

    def to_der(self) -> bytes:
        """SubjectPublicKeyInfo DER."""
        return self.to_spki().dump()

    def to_pem(self) -> bytes:
        return pem.armor("PUBLIC KEY", self.to_der())

    @classmethod
    def load(cls, data: bytes) -> SM2PublicKey:
        """SubjectPublicKeyInfo in PEM ("PUBLIC KEY") or DER."""
        der = _unarmor(data, ("PUBLIC KEY",))
        try:
            info = keys.PublicKeyInfo.load(der, strict=True)
            info.native  # noqa: B018  force a full parse
        except (ValueError, TypeError, KeyError) as error:
            raise MalformedInput(f"Not a SubjectPublicKeyInfo: {error}") from None
        return cls.from_spki(info)

    # operations

    def z_digest(self, signer_id: bytes = DEFAULT_ID) -> bytes:
        """Z_A = SM3(ENTL || ID || a || b || xG || yG || xA || yA), GB/T 32918.2 section 5.5."""
        _check_id(signer_id)
        entl = (len(signer_id) * 8).to_bytes(2, "big")
        return _sm3(entl, signer_id, _CURVE_BYTES, _b32(self.x), _b32(self.y))

    def message_digest(self, message: bytes, signer_id: bytes = DEFAULT_ID) -> bytes:
        """e = SM3(Z_A || M), the value SM2 actually signs."""
        return _sm3(self.z_digest(signer_id), message)

    def verify(self, signature: bytes, message: bytes, *, signer_id: bytes = DEFAULT_ID) -> bool:
        """True only for a valid DER signature of message by this key under signer_id."""
        decoded = _decode_signature(signature)
        if decoded is None:
            return False
        e = int.from_bytes(self.message_digest(message, signer_id), "big")
        return _verify_e(self, e, *decoded)

    def encrypt(self, plaintext: bytes) -> bytes:
        """DER SM2Ciphertext (C1C3C2) under a fresh CSPRNG nonce; retried if the KDF gives
        all zeros (GB/T 32918.4 step A5)."""
        while True:
            k = secrets.randbelow(N - 1) + 1
            ciphertext = _encrypt_with_nonce(self, plaintext, k)
            if ciphertext is not None:
                return ciphertext


@dataclass(frozen=True)
class SM2PrivateKey:
    """d in [1, n-2] (1 + d must be invertible mod n) and its public key, computed once."""

    d: int = field(repr=False)
    public_key: SM2PublicKey = field(init=False, compare=False)
    _inv_1_plus_d: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not (isinstance(self.d, int) and 1 <= self.d <= N - 2):
            raise MalformedInput("Not a valid SM2 private key: d must be in [1, n-2]")
        point = _to_affine(_mul_g(self.d))
        assert point is not None
        object.__setattr__(self, "public_key", SM2PublicKey(*point))
        object.__setattr__(self, "_inv_1_plus_d", pow(1 + self.d, -1, N))

    @classmethod
    def generate(cls) -> SM2PrivateKey:
        """A new key, d uniform in [1, n-2] from `secrets`."""
        return cls(secrets.randbelow(N - 2) + 1)

    # encodings

    def _ec_private_key(self, with_parameters: bool) -> keys.ECPrivateKey:
        # RFC 5915: the private key is ceil(log2(n)/8) = 32 octets, leading zeros kept.
        private = core.IntegerOctetString(self.d)
        private.set_encoded_width(32)
        value = {
            "version": "ecPrivkeyVer1",
            "private_key": private,
            "public_key": self.public_key.point(),
        }
        if with_parameters:
            value["parameters"] = keys.ECDomainParameters(name="named", value=sm_oids.CURVE_NAME)
        return keys.ECPrivateKey(value)

    def to_der(self) -> bytes:
        """Unencrypted PKCS#8 PrivateKeyInfo, the form `openssl genpkey -algorithm SM2` writes."""
        info = keys.PrivateKeyInfo(
            {
                "version": 0,
                "private_key_algorithm": {
                    "algorithm": "ec",
                    "parameters": keys.ECDomainParameters(name="named", value=sm_oids.CURVE_NAME),
                },
                "private_key": self._ec_private_key(with_parameters=False),
            }
        )
        return info.dump()

    def to_pem(self) -> bytes:
        return pem.armor("PRIVATE KEY", self.to_der())

    @classmethod
    def load(cls, data: bytes) -> SM2PrivateKey:
        """PKCS#8 ("PRIVATE KEY", what OpenSSL 3 writes) or SEC 1 ("EC PRIVATE KEY", what
        OpenSSL 1.1.1 `ecparam -genkey -name SM2` wrote), PEM or DER. An embedded public key
        must match d."""
        der = _unarmor(data, ("PRIVATE KEY", "EC PRIVATE KEY"))
        try:
            try:
                info = keys.PrivateKeyInfo.load(der, strict=True)
                algorithm = info["private_key_algorithm"]
            except ValueError:
                # Not PKCS#8: SEC 1 ECPrivateKey, which names its curve itself.
                ec_key = keys.ECPrivateKey.load(der, strict=True)
                curve = _named_curve(ec_key["parameters"])
            else:
                if algorithm["algorithm"].dotted != "1.2.840.10045.2.1":
                    raise UnsupportedAlgorithm("Not an SM2 private key (not an EC key)")
                ec_key = keys.ECPrivateKey.load(info["private_key"].contents, strict=True)
                curve = _named_curve(algorithm["parameters"])
            raw_d = ec_key["private_key"].contents
            public = ec_key["public_key"]
            public_point = None if isinstance(public, core.Void) else public.native
        except (ValueError, TypeError, KeyError, AttributeError) as error:
            raise MalformedInput(f"Not an SM2 private key: {error}") from None
        if curve != sm_oids.SM2_CURVE:
            raise UnsupportedAlgorithm("Not an SM2 private key (the curve is not sm2p256v1)")
        key = cls(int.from_bytes(raw_d, "big"))
        if public_point is not None and SM2PublicKey.from_point(public_point) != key.public_key:
            raise MalformedInput("SM2 private key: the embedded public key does not match d")
        return key

    # operations

    def sign(self, message: bytes, *, signer_id: bytes = DEFAULT_ID) -> bytes:
        """DER SEQUENCE{r, s} over e = SM3(Z_A || message), nonce from `secrets`."""
        e = int.from_bytes(self.public_key.message_digest(message, signer_id), "big")
        while True:
            rs = _sign_e(self, e, secrets.randbelow(N - 1) + 1)
            if rs is not None:
                return _encode_signature(*rs)

    def decrypt(self, ciphertext: bytes) -> bytes:
        """Plaintext of a DER SM2Ciphertext (C1C3C2). MalformedInput for bytes that are not
        one (or whose C1 is not on the curve); DecryptionFailed when C3 does not match."""
        c1x, c1y, c3, c2 = _decode_ciphertext(ciphertext)
        point = _to_affine(_mul(self.d, c1x, c1y))
        assert point is not None  # C1 has order n and 0 < d < n
        x2, y2 = _b32(point[0]), _b32(point[1])
        t = _kdf(x2 + y2, len(c2))
        if c2 and not any(t):
            raise DecryptionFailed("SM2 decryption failed (KDF output all zero)")
        plaintext = _xor(c2, t)
        if not hmac.compare_digest(_sm3(x2, plaintext, y2), c3):
            raise DecryptionFailed(
                "SM2 decryption failed: C3 does not match (wrong key or tampered)"
            )
        return plaintext


def _unarmor(data: bytes, labels: Iterable[str]) -> bytes:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise MalformedInput("Key data must be bytes")
    data = bytes(data)
    if pem.detect(data):
        try:
            label, _headers, der = pem.unarmor(data)
        except ValueError as error:
            raise MalformedInput(f"Broken PEM: {error}") from None
        if label not in labels:
            raise MalformedInput(f"PEM block {label!r} where {' or '.join(labels)} was expected")
        return der
    return data


def _named_curve(params: object) -> str | None:
    """The dotted OID of a namedCurve ECParameters, None for explicit or absent parameters."""
    if isinstance(params, keys.ECDomainParameters) and params.name == "named":
        return params.chosen.dotted
    return None


def _xor(data: bytes, mask: bytes) -> bytes:
    if not data:
        return b""
    return (int.from_bytes(data, "big") ^ int.from_bytes(mask, "big")).to_bytes(len(data), "big")


def _decode_ciphertext(ciphertext: bytes) -> tuple[int, int, bytes, bytes]:
    try:
        parsed = SM2Ciphertext.load(bytes(ciphertext), strict=True)
        x, y = parsed["x"].native, parsed["y"].native
        c3, c2 = parsed["hash"].native, parsed["ciphertext"].native
    except (ValueError, TypeError, KeyError) as error:
        raise MalformedInput(f"Not a DER SM2Ciphertext: {error}") from None
    if len(c3) != 32:
        raise MalformedInput("SM2Ciphertext: the hash is not 32 octets (SM3)")
    if not _on_curve(x, y):
        raise MalformedInput("SM2Ciphertext: C1 is not a point on sm2p256v1")
    return x, y, c3, c2


# --- the algorithms, with the nonce as a parameter ---------------------------------------------


def _sign_e(key: SM2PrivateKey, e: int, k: int) -> tuple[int, int] | None:
    """GB/T 32918.2 section 6.1 steps A4-A6 for digest value e and nonce k; None means "pick
    another k" (r = 0, r + k = n or s = 0)."""
    point = _to_affine(_mul_g(k))
    assert point is not None
    r = (e + point[0]) % N
    if r == 0 or r + k == N:
        return None
    s = key._inv_1_plus_d * (k - r * key.d) % N
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


def _encrypt_with_nonce(key: SM2PublicKey, plaintext: bytes, k: int) -> bytes | None:
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


def _sign_with_nonce(
    key: SM2PrivateKey, message: bytes, k: int, *, signer_id: bytes = DEFAULT_ID
) -> bytes | None:
    """HAZARDOUS, for known-answer tests: a signature with a caller-chosen nonce k. Reusing k
    for two messages reveals the private key. None when k is unusable for this message."""
    if not 1 <= k < N:
        raise ValueError("nonce out of range")
    e = int.from_bytes(key.public_key.message_digest(message, signer_id), "big")
    rs = _sign_e(key, e, k)
    return None if rs is None else _encode_signature(*rs)


def _verify_digest(key: SM2PublicKey, digest: bytes, signature: bytes) -> bool:
    """Verification of a precomputed e (OpenSSL's `pkeyutl -verify` without -rawin, and its
    evppkey_sm2.txt vectors); the e is taken whole as an integer, as OpenSSL does."""
    decoded = _decode_signature(signature)
    return decoded is not None and _verify_e(key, int.from_bytes(digest, "big"), *decoded)


# --- module-level conveniences ------------------------------------------------------------------


def generate_private_key() -> SM2PrivateKey:
    return SM2PrivateKey.generate()


def load_private_key(data: bytes) -> SM2PrivateKey:
    return SM2PrivateKey.load(data)


def load_public_key(data: bytes) -> SM2PublicKey:
    return SM2PublicKey.load(data)
