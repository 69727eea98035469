"""Content-encryption algorithms by OID and by name: AES-CBC for EnvelopedData, AES-GCM for
AuthEnvelopedData (RFC 5083/5084). A registry, so that SM4-CBC (or anything else) plugs in from
its own module with `register(...)` and enveloped.py never names an algorithm itself.

Every failure to decrypt (bad padding, wrong length, GCM tag) raises the same DecryptionFailed
message, BAD_CONTENT, which is also what a key that did not decrypt gives (recipients.py):
the error must not tell an attacker which check failed (padding oracles, Bleichenbacher).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from asn1crypto import algos, core
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import (
    AEADDecryptionContext,
    Cipher,
    CipherContext,
    algorithms,
    modes,
)

from shared_pki import oids
from shared_pki.errors import DecryptionFailed, MalformedInput, UnsupportedAlgorithm

BAD_CONTENT = "The message content did not decrypt: wrong key, or the message was altered."

GCM_NONCE_BYTES = 12
GCM_TAG_BYTES = 16
# decrypting in place goes through a scratch buffer of this size (see _update_into): small
# beside a 10 MB content, and no slower than 1 MiB (4 ms for 10 MB of AES-GCM either way)
_CHUNK_BYTES = 1 << 16


@dataclass(frozen=True)
class Sealed:
    """What encrypting yields: the AlgorithmIdentifier to write, the ciphertext, and for AEAD
    ciphers the tag (AuthEnvelopedData's `mac`)."""

    algorithm: algos.EncryptionAlgorithm
    ciphertext: bytes | bytearray  # CBC writes into one buffer rather than copy it to bytes
    mac: bytes | None = None


# (key, AlgorithmIdentifier, ciphertext, mac, aad, into) -> plaintext length
OpenInto = Callable[
    [bytes, algos.EncryptionAlgorithm, memoryview, bytes | None, bytes, memoryview], int
]


@dataclass(frozen=True)
class ContentCipher:
    """One content-encryption algorithm. `aead` ciphers go in AuthEnvelopedData, the others in
    EnvelopedData. `preference` orders the choice: higher is stronger (choice.py). `suite`
    ("intl" or "sm", see suite.py) keeps a message within one family of algorithms."""

    name: str
    oid: str
    key_size: int
    aead: bool
    preference: int
    seal: Callable[[bytes, bytes, bytes], Sealed]  # (key, plaintext, aad) -> Sealed
    # (key, AlgorithmIdentifier, ciphertext, mac, aad) -> plaintext
    open: Callable[[bytes, algos.EncryptionAlgorithm, bytes, bytes | None, bytes], bytes]
    suite: str = "intl"
    # open, the plaintext written to the front of `into` (the buffer the ciphertext lies in, or
    # another), its length returned; on failure what was written is zeroed. None: open only.
    open_into: OpenInto | None = None


_BY_NAME: dict[str, ContentCipher] = {}
_BY_OID: dict[str, ContentCipher] = {}


def register(cipher: ContentCipher) -> None:
    """Make a cipher available to encrypt (by name) and decrypt (by OID)."""
    _BY_NAME[cipher.name] = cipher
    _BY_OID[cipher.oid] = cipher


def by_name(name: str) -> ContentCipher:
    try:
        return _BY_NAME[name]
    except KeyError:
        known = ", ".join(sorted(_BY_NAME))
        raise UnsupportedAlgorithm(f"Unknown content cipher {name!r} (known: {known}).") from None


def by_oid(oid: str) -> ContentCipher:
    try:
        return _BY_OID[oid]
    except KeyError:
        raise UnsupportedAlgorithm(
            f"Content encryption algorithm {oid} is not supported."
        ) from None


def registered() -> tuple[ContentCipher, ...]:
    """Every registered cipher, strongest first."""
    return tuple(sorted(_BY_NAME.values(), key=lambda c: -c.preference))


def cbc_cipher(
    name: str,
    oid: str,
    key_size: int,
    preference: int,
    block_cipher: Callable[[bytes], algorithms.BlockCipherAlgorithm],
) -> ContentCipher:
    """A CBC cipher with PKCS#7 padding and the IV as an OCTET STRING parameter (RFC 3565);
    exported so that SM4-CBC is one call in its own module."""
    block_bytes = block_cipher(bytes(key_size)).block_size // 8

    def seal(key: bytes, plaintext: bytes, _aad: bytes) -> Sealed:
        iv = os.urandom(block_bytes)
        encryptor = Cipher(block_cipher(key), modes.CBC(iv)).encryptor()
        # PKCS#7 padding on the last block only, and the ciphertext written into one buffer:
        # padder.update + finalize and update + finalize copied a 10 MB message four times.
        whole = len(plaintext) - len(plaintext) % block_bytes
        pad = block_bytes - len(plaintext) % block_bytes
        last = bytes(plaintext[whole:]) + bytes((pad,)) * pad
        buffer = bytearray(whole + len(last) + block_bytes - 1)
        view = memoryview(buffer)
        written = encryptor.update_into(memoryview(plaintext)[:whole], view)
        written += encryptor.update_into(last, view[written:])
        if encryptor.finalize() or written != whole + len(last):
            raise AssertionError("CBC over whole blocks leaves nothing to finalize")
        del view
        del buffer[written:]  # in place: the block_bytes - 1 spare bytes update_into asks for
        ciphertext = buffer
        algorithm = algos.EncryptionAlgorithm(
            {"algorithm": oid, "parameters": core.OctetString(iv)}
        )
        return Sealed(algorithm, ciphertext)

    def decryptor(
        key: bytes, algorithm: algos.EncryptionAlgorithm, ciphertext: bytes | memoryview
    ) -> CipherContext:
        iv = _octets(algorithm["parameters"], "CBC IV")
        if len(iv) != block_bytes:
            raise MalformedInput(f"The {name} IV is {len(iv)} bytes, not {block_bytes}.")
        if len(key) != key_size or not ciphertext or len(ciphertext) % block_bytes:
            raise DecryptionFailed(BAD_CONTENT)
        return Cipher(block_cipher(key), modes.CBC(iv)).decryptor()

    def open_(
        key: bytes,
        algorithm: algos.EncryptionAlgorithm,
        ciphertext: bytes,
        _mac: bytes | None,
        _aad: bytes,
    ) -> bytes:
        context = decryptor(key, algorithm, ciphertext)
        padded = context.update(ciphertext) + context.finalize()
        unpadder = padding.PKCS7(block_bytes * 8).unpadder()
        try:
            return unpadder.update(padded) + unpadder.finalize()
        except ValueError:
            raise DecryptionFailed(BAD_CONTENT) from None

    def open_into(
        key: bytes,
        algorithm: algos.EncryptionAlgorithm,
        ciphertext: memoryview,
        _mac: bytes | None,
        _aad: bytes,
        into: memoryview,
    ) -> int:
        context = decryptor(key, algorithm, ciphertext)
        written = _update_into(context, ciphertext, into)
        if context.finalize():
            raise AssertionError("CBC over whole blocks leaves nothing to finalize")
        unpadder = padding.PKCS7(block_bytes * 8).unpadder()  # the padding is in the last block
        try:
            last = unpadder.update(bytes(into[written - block_bytes : written]))
            last += unpadder.finalize()
        except ValueError:
            _wipe(into, written)
            raise DecryptionFailed(BAD_CONTENT) from None
        return written - block_bytes + len(last)

    return ContentCipher(name, oid, key_size, False, preference, seal, open_, open_into=open_into)


def gcm_cipher(name: str, oid: str, key_size: int, preference: int) -> ContentCipher:
    """AES-GCM with a random 96-bit nonce and a 128-bit tag in GCMParameters (RFC 5084)."""

    def seal(key: bytes, plaintext: bytes, aad: bytes) -> Sealed:
        nonce = os.urandom(GCM_NONCE_BYTES)
        encryptor = Cipher(algorithms.AES(key), modes.GCM(nonce)).encryptor()
        encryptor.authenticate_additional_data(aad)
        ciphertext = encryptor.update(plaintext) + encryptor.finalize()
        parameters = oids.GcmParameters({"aes_nonce": nonce, "aes_icv_len": GCM_TAG_BYTES})
        algorithm = algos.EncryptionAlgorithm({"algorithm": oid, "parameters": parameters})
        return Sealed(algorithm, ciphertext, encryptor.tag)

    def decryptor(
        key: bytes, algorithm: algos.EncryptionAlgorithm, mac: bytes | None, aad: bytes
    ) -> AEADDecryptionContext:
        parameters = algorithm["parameters"]
        if not isinstance(parameters, oids.GcmParameters):
            raise MalformedInput(f"{name} without GCMParameters.")
        nonce = parameters["aes_nonce"].native
        icv_len = parameters["aes_icv_len"].native
        if not 8 <= len(nonce) <= 128:
            raise MalformedInput(f"The {name} nonce is {len(nonce)} bytes.")
        if not 12 <= icv_len <= 16:
            raise MalformedInput(f"The {name} tag length {icv_len} is not 12 to 16.")
        if mac is None or len(mac) != icv_len or len(key) != key_size:
            raise DecryptionFailed(BAD_CONTENT)
        context = Cipher(
            algorithms.AES(key), modes.GCM(nonce, mac, min_tag_length=icv_len)
        ).decryptor()
        context.authenticate_additional_data(aad)
        return context

    def open_(
        key: bytes,
        algorithm: algos.EncryptionAlgorithm,
        ciphertext: bytes,
        mac: bytes | None,
        aad: bytes,
    ) -> bytes:
        context = decryptor(key, algorithm, mac, aad)
        plaintext = context.update(ciphertext)
        try:
            context.finalize()
        except InvalidTag:
            raise DecryptionFailed(BAD_CONTENT) from None
        return plaintext

    def open_into(
        key: bytes,
        algorithm: algos.EncryptionAlgorithm,
        ciphertext: memoryview,
        mac: bytes | None,
        aad: bytes,
        into: memoryview,
    ) -> int:
        context = decryptor(key, algorithm, mac, aad)
        written = _update_into(context, ciphertext, into)
        try:
            context.finalize()
        except InvalidTag:
            _wipe(into, written)  # plaintext whose tag did not verify is nobody's to read
            raise DecryptionFailed(BAD_CONTENT) from None
        return written

    return ContentCipher(name, oid, key_size, True, preference, seal, open_, open_into=open_into)


def _update_into(context: CipherContext, ciphertext: memoryview, into: memoryview) -> int:
    """context.update over the ciphertext, the output copied to the front of `into` chunk by
    chunk through a small scratch buffer, so that a 10 MB content is decrypted in the buffer
    it came in rather than beside it. `into` may be that buffer, the ciphertext lying further
    on: each chunk is read before its output, never longer, is written at or before it."""
    scratch = bytearray(_CHUNK_BYTES + 31)  # update_into asks for block size - 1 spare bytes
    written = 0
    with memoryview(scratch) as out:
        for start in range(0, len(ciphertext), _CHUNK_BYTES):
            count = context.update_into(ciphertext[start : start + _CHUNK_BYTES], out)
            into[written : written + count] = out[:count]
            written += count
    return written


def _wipe(into: memoryview, length: int) -> None:
    """Zero the first length bytes of into (without allocating length zeros)."""
    zeros = bytes(min(length, _CHUNK_BYTES))
    for start in range(0, length, _CHUNK_BYTES):
        end = min(start + _CHUNK_BYTES, length)
        into[start:end] = zeros[: end - start]


def _octets(value: core.Asn1Value, what: str) -> bytes:
    """The bytes of an OCTET STRING parameter, whatever type asn1crypto parsed it as."""
    if isinstance(value, core.OctetString):
        return value.native
    if isinstance(value, core.Any):
        try:
            return core.OctetString.load(value.dump()).native
        except ValueError:
            pass
    raise MalformedInput(f"The {what} is not an OCTET STRING.")


register(cbc_cipher("aes128_cbc", "2.16.840.1.101.3.4.1.2", 16, 10, algorithms.AES))
register(cbc_cipher("aes256_cbc", "2.16.840.1.101.3.4.1.42", 32, 20, algorithms.AES))
register(gcm_cipher("aes128_gcm", "2.16.840.1.101.3.4.1.6", 16, 30))
register(gcm_cipher("aes256_gcm", "2.16.840.1.101.3.4.1.46", 32, 40))
