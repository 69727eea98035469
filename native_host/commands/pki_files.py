"""Reading keys, certificates and messages named on the command line (the I/O edge of the
sign/verify/encrypt/decrypt commands); parsing itself is shared_pki.keys'."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from shared_pki.errors import KeyLoadError, PkiError

if TYPE_CHECKING:  # the key modules pull in cryptography: only commands that need them pay
    from shared_pki.keys import Certificate, Credential, PrivateKey
    from shared_pki.smime import OpenedMessage

PKCS12_SUFFIXES = (".p12", ".pfx")


def read_bytes(path: str) -> bytes:
    """The file's bytes, or stdin's when path is "-"; a missing file is a KeyLoadError."""
    if path == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise KeyLoadError(f"Cannot read {path}: {error.strerror}") from None


def read_buffer(path: str) -> bytearray:
    """read_bytes into a bytearray, for a reader that takes it over (smime.open_message decodes
    and decrypts a message in it rather than beside it)."""
    try:
        if path == "-":
            return _read_all(sys.stdin.buffer, bytearray())
        with open(path, "rb") as stream:
            buffer = bytearray(os.fstat(stream.fileno()).st_size)
            del buffer[stream.readinto(buffer) :]
            return _read_all(stream, buffer)  # a file that grew meanwhile
    except OSError as error:
        raise KeyLoadError(f"Cannot read {path}: {error.strerror}") from None


def _read_all(stream: BinaryIO, buffer: bytearray) -> bytearray:
    while chunk := stream.read(1 << 20):
        buffer += chunk
    return buffer


def write_bytes(path: str | None, *pieces: bytes | memoryview) -> None:
    """Write the pieces one after the other to the file (atomically) or to stdout when path is
    None or "-" (a decrypted message as its header block and a view of its body, not joined)."""
    if path in (None, "-"):
        for piece in pieces:
            sys.stdout.buffer.write(piece)
        sys.stdout.buffer.flush()
        return
    target = Path(path)
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        with temporary.open("wb") as stream:
            for piece in pieces:
                stream.write(piece)
        temporary.replace(target)
    except OSError:
        temporary.unlink(missing_ok=True)  # nothing half-written is left behind
        raise


def password_bytes(args: argparse.Namespace) -> bytes | None:
    """The key password from --password-env VAR (never from argv, where ps shows it)."""
    name = getattr(args, "password_env", None)
    if not name:
        return None
    value = os.environ.get(name)
    if value is None:
        raise KeyLoadError(f"The environment variable {name} named by --password-env is not set.")
    return value.encode("utf-8")


def certificates(paths: list[str] | None) -> list[Certificate]:
    from shared_pki.keys import load_certificates

    found: list[Certificate] = []
    for path in paths or []:
        found.extend(load_certificates(read_bytes(path)))
    return found


def credential(key: str, cert: str | None, password: bytes | None) -> Credential:
    """A signing/decryption credential from a PKCS#12 file, or from a key file plus a cert file
    (the cert file may hold the chain after the end-entity certificate)."""
    from shared_pki.keys import Credential, load_private_key

    data = read_bytes(key)
    if key.lower().endswith(PKCS12_SUFFIXES) or (cert is None and not data.startswith(b"-----")):
        from shared_pki.pkcs12 import load_pkcs12  # only then: it is a large module

        return load_pkcs12(data, password)
    if cert is None:
        raise KeyLoadError("--cert is needed with a PEM or DER key (or give a .p12 as --key).")
    chain = certificates([cert])
    if not chain:
        raise KeyLoadError(f"{cert} holds no certificate.")
    return Credential(load_private_key(data, password), chain[0], tuple(chain[1:]))


def credentials(keys: list[str], certs: list[str], password: bytes | None) -> list[Credential]:
    """Credentials from --key files, each with the --cert at the same position (PKCS#12 keys
    need none). RSA, EC and SM2 keys alike."""
    if len(certs) > len(keys):
        raise KeyLoadError("More --cert than --key options.")
    paired = [*certs, *[None] * (len(keys) - len(certs))]
    return [credential(key, cert, password) for key, cert in zip(keys, paired, strict=True)]


def decryption_keys(
    keys: list[str], certs: list[str], password: bytes | None
) -> list[tuple[Certificate, PrivateKey]]:
    """(certificate, key) pairs from --key files, each with the --cert at the same position
    (PKCS#12 keys need none)."""
    return [(c.certificate, c.key) for c in credentials(keys, certs, password)]


def open_from_arguments(args: argparse.Namespace) -> OpenedMessage:
    """Open (decrypt and verify) the input message with --key/--cert, --ca and --untrusted."""
    from shared_pki.smime import open_message

    return open_message(
        read_buffer(args.input),
        keys=decryption_keys(args.key, args.cert, password_bytes(args)),
        trust_anchors=certificates(args.ca),
        intermediates=certificates(args.untrusted),
        sm2_ids=getattr(args, "sm2_id", None),
    )


def _sm2_id(text: str) -> bytes:
    from shared_pki.cms.sm import parse_sm2_id

    try:
        return parse_sm2_id(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _sm2_ids(text: str) -> tuple[bytes, ...]:
    from shared_pki.cms.sm import parse_sm2_ids

    try:
        return parse_sm2_ids(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def add_sm2_id_argument(parser: argparse.ArgumentParser, *, verifying: bool) -> None:
    """--sm2-id: the SM2 signer ID, "standard" (1234567812345678, the default), "empty" (what
    OpenSSL 3 uses and verifies) or hex; when verifying also "both"."""
    if verifying:
        parser.add_argument(
            "--sm2-id",
            type=_sm2_ids,
            default=None,
            metavar="standard|empty|both|HEX",
            help="SM2 signer ID(s) to accept on SM2 signatures and certificates "
            "(default: standard)",
        )
    else:
        parser.add_argument(
            "--sm2-id",
            type=_sm2_id,
            default=None,
            metavar="standard|empty|HEX",
            help="SM2 signer ID to sign with (default: standard 1234567812345678; "
            "empty for OpenSSL's openssl cms -verify)",
        )


def add_convention_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--convention",
        choices=["pkcs7", "gmt"],
        default="pkcs7",
        help="CMS content types: pkcs7 (default; OpenSSL, Tongsuo) or gmt (GM/T 0010; GmSSL)",
    )


def add_io_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", nargs="?", default="-", help="message (.eml); - for stdin")
    parser.add_argument("-o", "--output", help="where to write the result (default: stdout)")


def add_password_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--password-env",
        metavar="VAR",
        help="environment variable holding the key or PKCS#12 password",
    )


def refuse(command: str, code: str, message: str) -> None:
    """One short line on stderr, whatever the message held (shared_pki.errors.one_line)."""
    from shared_pki.errors import one_line

    print(f"autosmime {command}: {code}: {one_line(message)}", file=sys.stderr)


def run_guarded(command: str, action: Callable[[], int]) -> int:
    """Run a command body; any typed failure becomes one line on stderr and a non-zero exit
    (1: the message failed a check or could not be opened, or the result could not be
    written; 2: unusable input files)."""
    try:
        return action()
    except KeyLoadError as error:
        refuse(command, error.code, error.message)
        return 2
    except PkiError as error:
        refuse(command, error.code, error.message)
        return 1
    except OSError as error:  # the output could not be written (a full disk, a closed pipe)
        where = f" {error.filename}" if error.filename else ""
        refuse(command, "write_failed", f"Cannot write{where}: {error.strerror or error}.")
        return 1
