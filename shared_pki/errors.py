"""Typed errors of shared_pki: every failure a caller can meet, each with a stable code and a
sentence a person can read. Nothing else escapes the public functions (a parser that meets bad
bytes raises MalformedInput, never IndexError or ValueError)."""

from __future__ import annotations

import re

# asn1crypto's parse errors name its classes and add one "while parsing ..." line per level.
_PARSING = re.compile(r"^\s*while parsing (?:asn1crypto\.)?(?:\w+\.)*(\w+)\s*$")
_ASN1_CLASS = re.compile(r"\basn1crypto\.(?:\w+\.)*(\w+)")


def one_line(text: str) -> str:
    """An error text as one short line: asn1crypto's "while parsing X" context lines become
    "(in X)" for the innermost structure, its module paths are dropped, whitespace collapses."""
    lines = str(text).splitlines() or [""]
    kept, inside = [], []
    for line in lines:
        parsing = _PARSING.match(line)
        if parsing:
            inside.append(parsing.group(1))
        elif line.strip():
            kept.append(line.strip())
    joined = " ".join(_ASN1_CLASS.sub(r"\1", " ".join(kept)).split())
    return f"{joined} (in {inside[0]})" if inside else joined


class PkiError(Exception):
    """Base of every shared_pki error; `code` is stable, the message is for people, always one
    line (a parser's multi-line context is folded by one_line)."""

    code = "pki_error"

    def __init__(self, message: str) -> None:
        message = one_line(message)
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
