"""SM2 (GB/T 32918) on the curve sm2p256v1: keys, signatures, encryption.

Why not a Python package: `cryptography` has SM3 and SM4 but no SM2, and the `gmssl` package has
defects that must not reach users (non-CSPRNG nonces, no C3 check, no curve checks,
`lstrip("04")` key corruption); `gmssl` stays in the tests as an independent cross-check.

Every operation on a point runs in the system's OpenSSL 3 libcrypto (shared_pki.libcrypto):
those with the private key because OpenSSL's scalar multiplication with a secret is a
fixed-length Montgomery ladder and its nonces come from its DRBG (the pure Python this module
used to be took value-dependent time, and the CA signs on request), verification and encryption
because OpenSSL is faster at them. What stays here is everything about bytes and public values:
the encodings, the checks that give each malformed input its own words (point on the curve, r
and s, strict DER), and Z_A, which depends on the signer ID. The pure-Python implementation
lives on in tests/harness/sm2_reference.py for known answers with fixed nonces and the bench.

Signatures are DER SEQUENCE{r, s}; ciphertexts are DER SM2Ciphertext (GM/T 0009) in C1C3C2 order,
the form OpenSSL's `pkeyutl` reads and writes. Keys are PKCS#8 / SubjectPublicKeyInfo with
id-ecPublicKey and the SM2 curve OID, as OpenSSL 3 writes them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from asn1crypto import algos, core, keys, pem
from cryptography.hazmat.primitives import hashes

from shared_pki import libcrypto, sm_oids
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


# --- public points -------------------------------------------------------------------------


def _on_curve(x: int, y: int) -> bool:
    return 0 <= x < P and 0 <= y < P and (y * y - (x * x * x + A * x + B)) % P == 0


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
    # The same key held by OpenSSL, made on first use (most keys are only compared or encoded).
    _openssl: libcrypto.Sm2Key | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not (isinstance(self.x, int) and isinstance(self.y, int) and _on_curve(self.x, self.y)):
            raise MalformedInput("Not a valid SM2 public key: the point is not on sm2p256v1")

    def __reduce__(self) -> tuple[type[SM2PublicKey], tuple[int, int]]:
        return (SM2PublicKey, (self.x, self.y))

    def _held(self) -> libcrypto.Sm2Key:
        if self._openssl is None:
            object.__setattr__(
                self, "_openssl", libcrypto.Sm2Key.from_public_key_info(self.to_der())
            )
        assert self._openssl is not None
        return self._openssl

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
        return _verify_digest(self, self.message_digest(message, signer_id), signature)

    def encrypt(self, plaintext: bytes) -> bytes:
        """DER SM2Ciphertext (C1C3C2) under a fresh nonce from OpenSSL's DRBG. An empty
        plaintext is refused (MalformedInput): OpenSSL 3 neither encrypts nor decrypts one."""
        plaintext = bytes(plaintext)
        if not plaintext:
            raise MalformedInput("SM2 encryption of an empty message: there is nothing to hide")
        return self._held().encrypt(plaintext)


@dataclass(frozen=True)
class SM2PrivateKey:
    """d in [1, n-2] (1 + d must be invertible mod n), its public key, and the same key held by
    OpenSSL, which does every operation with d (shared_pki.libcrypto)."""

    d: int = field(repr=False)
    public_key: SM2PublicKey = field(init=False, compare=False)
    _openssl: libcrypto.Sm2Key = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not (isinstance(self.d, int) and 1 <= self.d <= N - 2):
            raise MalformedInput("Not a valid SM2 private key: d must be in [1, n-2]")
        held = libcrypto.Sm2Key.from_private_scalar(self.d)
        object.__setattr__(self, "_openssl", held)
        object.__setattr__(self, "public_key", SM2PublicKey.from_point(held.public_point()))

    def __reduce__(self) -> tuple[type[SM2PrivateKey], tuple[int]]:
        # Copies and pickles are made from d: the OpenSSL handle is not data.
        return (SM2PrivateKey, (self.d,))

    @classmethod
    def generate(cls) -> SM2PrivateKey:
        """A new key, d uniform in [1, n-2] from OpenSSL's DRBG."""
        return cls(libcrypto.generate_private_scalar())

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
        """DER SEQUENCE{r, s} over e = SM3(Z_A || message), made by OpenSSL with its own nonce.
        Z_A involves only the public key and signer_id, so e is computed here."""
        return self._openssl.sign_digest(self.public_key.message_digest(message, signer_id))

    def decrypt(self, ciphertext: bytes) -> bytes:
        """Plaintext of a DER SM2Ciphertext (C1C3C2), decrypted by OpenSSL. MalformedInput for
        bytes that are not one (or whose C1 is not on the curve, or whose message is empty);
        DecryptionFailed when C3 does not match."""
        *_c1_and_c3, c2 = _decode_ciphertext(ciphertext)  # public checks, each in its words
        if not c2:
            # OpenSSL 3.0 cannot decrypt an empty message (it allocates zero bytes and fails),
            # and no use of SM2 here sends one: a content key is never empty.
            raise MalformedInput("SM2Ciphertext: the message is empty, there is nothing to decrypt")
        plaintext = self._openssl.decrypt(bytes(ciphertext))
        if plaintext is None:
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


def _verify_digest(key: SM2PublicKey, digest: bytes, signature: bytes) -> bool:
    """Verification of a precomputed e = SM3(Z_A || M), taken whole as an integer as OpenSSL
    does (its `pkeyutl -verify` without -rawin and its evppkey_sm2.txt vectors). Strict DER is
    checked here too: a BER variant is another byte string for the same signature, and
    accepting it would make signatures malleable."""
    if _decode_signature(signature) is None:
        return False
    return key._held().verify_digest(bytes(signature), bytes(digest))


# --- module-level conveniences ------------------------------------------------------------------


def generate_private_key() -> SM2PrivateKey:
    return SM2PrivateKey.generate()


def load_private_key(data: bytes) -> SM2PrivateKey:
    return SM2PrivateKey.load(data)


def load_public_key(data: bytes) -> SM2PublicKey:
    return SM2PublicKey.load(data)
