"""Typed errors of shared_pki: every failure a caller can meet, each with a stable code and a
sentence a person can read. Nothing else escapes the public functions (a parser that meets bad
bytes raises MalformedInput, never IndexError or ValueError)."""

from __future__ import annotations


class PkiError(Exception):
    """Base of every shared_pki error; `code` is stable, the message is for people."""

    code = "pki_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class MalformedInput(PkiError):
    """Bytes that do not parse as what they claim to be (CMS, MIME, ASN.1, PEM, certificate)."""

    code = "malformed_input"


class UnsupportedAlgorithm(PkiError):
    """A well-formed structure naming an algorithm, key type or version we do not implement."""

    code = "unsupported_algorithm"


class KeyLoadError(PkiError):
    """A key or certificate file that cannot be read (wrong format, wrong password)."""

    code = "key_load_error"


class NoMatchingKey(PkiError):
    """None of the private keys at hand is a recipient of the message."""

    code = "no_matching_key"


class DecryptionFailed(PkiError):
    """The recipient key matched but the content did not decrypt: a GCM tag, key-unwrap or
    padding check failed. Never returns garbage instead."""

    code = "decryption_failed"


class SigningError(PkiError):
    """A signature could not be made with the key and certificate given (mismatch, bad choice)."""

    code = "signing_error"


class EncryptionError(PkiError):
    """A message could not be encrypted (no recipients, unusable recipient certificate)."""

    code = "encryption_error"


class BackendUnavailable(PkiError):
    """A library the operation needs is missing or unusable here (for SM2 private keys: the
    system's OpenSSL 3 libcrypto with SM2). The message says what to install."""

    code = "backend_unavailable"
