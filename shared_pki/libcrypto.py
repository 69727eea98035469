"""SM2 private-key operations in the system's OpenSSL 3 libcrypto, reached through ctypes.

Why: shared_pki.sm2 is pure Python, and Python's big integers take time that depends on their
values. The CA signs SM2 certificates and CRLs on request, so its key would be exposed to remote
timing of nonce-dependent work, the leak that lattice attacks turn into the key. OpenSSL
multiplies secret scalars with a Montgomery ladder of fixed length (crypto/ec/ec_mult.c,
`ossl_ec_scalar_mul_ladder`, chosen for every secret scalar), inverts modulo n by Fermat, and
draws nonces from its own DRBG (`BN_priv_rand_range_ex`).

Why the system library: `cryptography` bundles its own OpenSSL in its wheel but exposes no SM2
API. Debian's OpenSSL 3 (package libssl3, libcrypto.so.3) ships SM2. ctypes (not cffi) because
the dozen functions used take plain pointers and sizes and the standard library suffices.

What runs here: every SM2 operation. Key generation, the public key of a private scalar,
signing a digest e = SM3(Z_A || M) and decryption because they involve the private key;
verification and encryption because OpenSSL does them 2.5 to 5 times faster than the pure Python
they replace (measured by `python -m bench sm`) and an encryption nonce is a secret too. Z_A
depends only on the public key and the signer ID, so shared_pki.sm2 computes e itself and every
ID works: the GB/T 32918 default 1234567812345678, the empty one OpenSSL uses, any other
(`openssl pkeyutl -sign` without -rawin signs such a digest the same way).
"""

from __future__ import annotations

import ctypes
import functools

from asn1crypto import core, keys

from shared_pki import sm_oids
from shared_pki.errors import BackendUnavailable

_P = ctypes.c_void_p
_SIZE = ctypes.c_size_t
_BYTES = ctypes.c_char_p
_OPENSSL_3 = 0x30000000
_PACKAGE = "Debian package libssl3 (libssl3t64 on Debian 13)"


class _Lib:
    """The functions used, with their C signatures declared (a pointer without a declared
    restype would be cut to 32 bits)."""

    def __init__(self, handle: ctypes.CDLL) -> None:
        def bind(name: str, restype: object, *argtypes: object) -> None:
            function = getattr(handle, name)
            function.restype = restype
            function.argtypes = list(argtypes)
            setattr(self, name, function)

        bind("OpenSSL_version_num", ctypes.c_ulong)
        bind("OpenSSL_version", _BYTES, ctypes.c_int)
        bind("ERR_clear_error", None)
        bind("d2i_AutoPrivateKey", _P, _P, ctypes.POINTER(_BYTES), ctypes.c_long)
        bind("d2i_PUBKEY", _P, _P, ctypes.POINTER(_BYTES), ctypes.c_long)
        bind("EVP_PKEY_free", None, _P)
        bind("EVP_PKEY_is_a", ctypes.c_int, _P, _BYTES)
        bind("EVP_PKEY_get_octet_string_param", ctypes.c_int, _P, _BYTES, _P, _SIZE,
             ctypes.POINTER(_SIZE))  # fmt: skip
        bind("EVP_PKEY_get_bn_param", ctypes.c_int, _P, _BYTES, ctypes.POINTER(_P))
        bind("BN_bn2binpad", ctypes.c_int, _P, _P, ctypes.c_int)
        bind("BN_clear_free", None, _P)
        bind("EVP_PKEY_CTX_new_from_name", _P, _P, _BYTES, _BYTES)
        bind("EVP_PKEY_CTX_new_from_pkey", _P, _P, _P, _BYTES)
        bind("EVP_PKEY_CTX_free", None, _P)
        bind("EVP_PKEY_keygen_init", ctypes.c_int, _P)
        bind("EVP_PKEY_generate", ctypes.c_int, _P, ctypes.POINTER(_P))
        bind("EVP_PKEY_sign_init", ctypes.c_int, _P)
        bind("EVP_PKEY_sign", ctypes.c_int, _P, _P, ctypes.POINTER(_SIZE), _BYTES, _SIZE)
        bind("EVP_PKEY_verify_init", ctypes.c_int, _P)
        bind("EVP_PKEY_verify", ctypes.c_int, _P, _BYTES, _SIZE, _BYTES, _SIZE)
        bind("EVP_PKEY_encrypt_init", ctypes.c_int, _P)
        bind("EVP_PKEY_encrypt", ctypes.c_int, _P, _P, ctypes.POINTER(_SIZE), _BYTES, _SIZE)
        bind("EVP_PKEY_decrypt_init", ctypes.c_int, _P)
        bind("EVP_PKEY_decrypt", ctypes.c_int, _P, _P, ctypes.POINTER(_SIZE), _BYTES, _SIZE)


def _open(candidates: list[str | None], errors: list[str]) -> tuple[str, ctypes.CDLL | None]:
    """The first of candidates that loads (and its name), noting why the others did not."""
    for candidate in filter(None, candidates):
        try:
            return candidate, ctypes.CDLL(candidate)
        except OSError as error:
            errors.append(str(error))
    return "", None


def load(path: str | None = None, *, algorithm: bytes = b"SM2") -> _Lib:
    """libcrypto with its SM2 checked, or BackendUnavailable saying what is missing and how to
    get it. `path` and `algorithm` exist so that tests can show those words."""
    errors: list[str] = []
    candidate, handle = _open([path] if path else ["libcrypto.so.3"], errors)
    if handle is None and not path:
        import ctypes.util  # only now: its import (4 ms) and find_library (ldconfig) are slow

        candidate, handle = _open([ctypes.util.find_library("crypto")], errors)
    if handle is None:
        raise BackendUnavailable(
            "SM2 private-key operations need OpenSSL 3's libcrypto (libcrypto.so.3, "
            f"{_PACKAGE}), and it was not found: {'; '.join(errors) or 'no candidate'}."
        )
    try:
        lib = _Lib(handle)
    except AttributeError as error:
        raise BackendUnavailable(
            f"{candidate} is not OpenSSL 3's libcrypto ({error}); SM2 private-key operations "
            f"need libcrypto.so.3 ({_PACKAGE})."
        ) from None
    version = lib.OpenSSL_version_num()
    if version < _OPENSSL_3:
        raise BackendUnavailable(
            f"{candidate} is OpenSSL {lib.OpenSSL_version(0).decode()}; SM2 private-key "
            f"operations need OpenSSL 3 ({_PACKAGE})."
        )
    context = lib.EVP_PKEY_CTX_new_from_name(None, algorithm, None)
    if not context:
        lib.ERR_clear_error()
        raise BackendUnavailable(
            f"The OpenSSL at {candidate} ({lib.OpenSSL_version(0).decode()}) has no "
            f"{algorithm.decode()}: it was built without it or its configuration does not load "
            f"the default provider. SM2 keys need Debian's OpenSSL 3 ({_PACKAGE})."
        )
    lib.EVP_PKEY_CTX_free(context)
    return lib


@functools.cache
def _lib() -> _Lib:
    return load()


def available() -> bool:
    """Whether SM2 private-key operations can run here (no exception)."""
    try:
        _lib()
    except BackendUnavailable:
        return False
    return True


class _Context:
    """An EVP_PKEY_CTX for one operation, freed on exit."""

    def __init__(self, lib: _Lib, pointer: int | None) -> None:
        if not pointer:
            lib.ERR_clear_error()
            raise MemoryError("OpenSSL could not make an EVP_PKEY_CTX")
        self.lib, self.pointer = lib, pointer

    def __enter__(self) -> int:
        return self.pointer  # type: ignore[return-value]

    def __exit__(self, *_exc: object) -> None:
        self.lib.EVP_PKEY_CTX_free(self.pointer)


def _private_key_info(d: int) -> bytes:
    """PKCS#8 of d on sm2p256v1 without the public key, which OpenSSL then computes itself
    (d2i_ECPrivateKey: `keygenpub`, a scalar multiplication by the ladder)."""
    private = core.IntegerOctetString(d)
    private.set_encoded_width(32)
    curve = keys.ECDomainParameters(name="named", value=sm_oids.CURVE_NAME)
    ec_key = keys.ECPrivateKey({"version": "ecPrivkeyVer1", "private_key": private})
    return keys.PrivateKeyInfo(
        {
            "version": 0,
            "private_key_algorithm": {"algorithm": "ec", "parameters": curve},
            "private_key": ec_key,
        }
    ).dump()


class Sm2Key:
    """One SM2 key held by OpenSSL (an EVP_PKEY of type SM2, private or public only), freed
    with this object. It holds no Python copy of a secret; the caller keeps d for its own
    encodings."""

    def __init__(self, lib: _Lib, pointer: int) -> None:
        self._lib = lib
        self._pointer = pointer

    def __del__(self) -> None:
        pointer, self._pointer = getattr(self, "_pointer", None), None
        if pointer:
            self._lib.EVP_PKEY_free(pointer)

    def __copy__(self) -> Sm2Key:
        return self  # immutable; a copy would free the same EVP_PKEY twice

    def __deepcopy__(self, _memo: object) -> Sm2Key:
        return self

    def __reduce__(self) -> object:
        raise TypeError("An OpenSSL SM2 key cannot be pickled; pickle the SM2PrivateKey.")

    @classmethod
    def from_private_scalar(cls, d: int) -> Sm2Key:
        """The key for d (1 <= d <= n - 2, checked by the caller)."""
        return cls._load(_private_key_info(d), "d2i_AutoPrivateKey")

    @classmethod
    def from_public_key_info(cls, der: bytes) -> Sm2Key:
        """The public key of a DER SubjectPublicKeyInfo (validated by the caller)."""
        return cls._load(der, "d2i_PUBKEY")

    @classmethod
    def _load(cls, der: bytes, decoder: str) -> Sm2Key:
        lib = _lib()
        cursor = _BYTES(der)
        pointer = getattr(lib, decoder)(None, ctypes.byref(cursor), len(der))
        if not pointer:
            lib.ERR_clear_error()
            raise BackendUnavailable("OpenSSL refused an SM2 key that we consider valid.")
        key = cls(lib, pointer)
        if lib.EVP_PKEY_is_a(pointer, b"SM2") != 1:
            raise BackendUnavailable(
                "OpenSSL loaded a key on sm2p256v1 as another key type than SM2, so it would "
                "sign and verify ECDSA rather than SM2: this libcrypto is not usable for SM2."
            )
        return key

    def public_point(self) -> bytes:
        """The public key as SEC 1 octets 04 || x || y."""
        buffer = ctypes.create_string_buffer(65)
        length = _SIZE()
        ok = self._lib.EVP_PKEY_get_octet_string_param(
            self._pointer, b"pub", buffer, 65, ctypes.byref(length)
        )
        if ok != 1 or length.value != 65:
            self._lib.ERR_clear_error()
            raise BackendUnavailable("OpenSSL did not give the SM2 public key as a full point.")
        return buffer.raw

    def sign_digest(self, e: bytes) -> bytes:
        """DER SEQUENCE{r, s} over the 32-byte digest e, with a nonce from OpenSSL's DRBG."""
        lib = self._lib
        with _Context(lib, lib.EVP_PKEY_CTX_new_from_pkey(None, self._pointer, None)) as ctx:
            signature = ctypes.create_string_buffer(80)  # DER of two 256-bit integers: <= 72
            length = _SIZE(len(signature))
            if lib.EVP_PKEY_sign_init(ctx) != 1 or (
                lib.EVP_PKEY_sign(ctx, signature, ctypes.byref(length), e, len(e)) != 1
            ):
                lib.ERR_clear_error()
                raise BackendUnavailable("OpenSSL failed to make an SM2 signature.")
            return signature.raw[: length.value]

    def verify_digest(self, signature: bytes, e: bytes) -> bool:
        """Whether signature (DER) is valid over digest e; OpenSSL checks strict DER, r and s
        in [1, n - 1] and t = r + s != 0."""
        lib = self._lib
        with _Context(lib, lib.EVP_PKEY_CTX_new_from_pkey(None, self._pointer, None)) as ctx:
            ok = lib.EVP_PKEY_verify_init(ctx) == 1 and (
                lib.EVP_PKEY_verify(ctx, signature, len(signature), e, len(e)) == 1
            )
            if not ok:
                lib.ERR_clear_error()
            return ok

    def encrypt(self, plaintext: bytes) -> bytes:
        """DER SM2Ciphertext (C1C3C2, SM3) of a non-empty plaintext, nonce from the DRBG."""
        lib = self._lib
        with _Context(lib, lib.EVP_PKEY_CTX_new_from_pkey(None, self._pointer, None)) as ctx:
            size = _SIZE()
            if lib.EVP_PKEY_encrypt_init(ctx) != 1 or (
                lib.EVP_PKEY_encrypt(ctx, None, ctypes.byref(size), plaintext, len(plaintext)) != 1
            ):
                lib.ERR_clear_error()
                raise BackendUnavailable("OpenSSL could not set up SM2 encryption.")
            ciphertext = ctypes.create_string_buffer(size.value)
            if (
                lib.EVP_PKEY_encrypt(ctx, ciphertext, ctypes.byref(size), plaintext, len(plaintext))
                != 1
            ):
                lib.ERR_clear_error()
                raise BackendUnavailable("OpenSSL failed to encrypt with SM2.")
            return ciphertext.raw[: size.value]

    def decrypt(self, ciphertext: bytes) -> bytes | None:
        """The plaintext of a DER SM2Ciphertext (C1C3C2) whose message is not empty, or None
        when OpenSSL refuses it (C3 does not match: wrong key or altered)."""
        lib = self._lib
        with _Context(lib, lib.EVP_PKEY_CTX_new_from_pkey(None, self._pointer, None)) as ctx:
            size = _SIZE()
            if lib.EVP_PKEY_decrypt_init(ctx) != 1 or (
                lib.EVP_PKEY_decrypt(ctx, None, ctypes.byref(size), ciphertext, len(ciphertext))
                != 1
            ):
                lib.ERR_clear_error()
                return None
            plaintext = ctypes.create_string_buffer(max(size.value, 1))
            length = _SIZE(len(plaintext))
            ok = lib.EVP_PKEY_decrypt(
                ctx, plaintext, ctypes.byref(length), ciphertext, len(ciphertext)
            )
            try:
                if ok != 1:
                    lib.ERR_clear_error()
                    return None
                return plaintext.raw[: length.value]
            finally:
                ctypes.memset(plaintext, 0, len(plaintext))


def generate_private_scalar() -> int:
    """A new private scalar d in [1, n - 2] from OpenSSL's DRBG."""
    lib = _lib()
    with _Context(lib, lib.EVP_PKEY_CTX_new_from_name(None, b"SM2", None)) as context:
        pointer = _P()
        if lib.EVP_PKEY_keygen_init(context) != 1 or (
            lib.EVP_PKEY_generate(context, ctypes.byref(pointer)) != 1
        ):
            lib.ERR_clear_error()
            raise BackendUnavailable("OpenSSL could not generate an SM2 key.")
    key = Sm2Key(lib, pointer.value)  # type: ignore[arg-type]
    number = _P()
    if lib.EVP_PKEY_get_bn_param(key._pointer, b"priv", ctypes.byref(number)) != 1:
        lib.ERR_clear_error()
        raise BackendUnavailable("OpenSSL did not hand out the SM2 key it generated.")
    buffer = ctypes.create_string_buffer(32)
    try:
        if lib.BN_bn2binpad(number, buffer, 32) != 32:
            raise BackendUnavailable("OpenSSL's SM2 private key is longer than 32 bytes.")
        return int.from_bytes(buffer.raw, "big")
    finally:
        lib.BN_clear_free(number)
        ctypes.memset(buffer, 0, 32)
