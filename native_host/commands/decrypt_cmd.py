"""Decrypt a message (.eml) with any of your keys (repeat --key/--cert, or PKCS#12 files; old
keys too). Signatures found inside are verified against --ca when given; exit 1 if one fails.
Content encrypted with a cipher that does not detect changes (CBC) and carried by no valid
signature is written all the same, with a warning on standard error that it is not protected
against alteration."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from native_host.commands import pki_files

if TYPE_CHECKING:
    from shared_pki.smime import OpenedMessage


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--key", action="append", required=True, help="private key or PKCS#12 (repeatable)"
    )
    parser.add_argument(
        "--cert", action="append", default=[], help="certificate of the --key at the same place"
    )
    pki_files.add_password_argument(parser)
    pki_files.add_sm2_id_argument(parser, verifying=True)
    parser.add_argument("--ca", action="append", help="trusted root(s) to verify signatures")
    parser.add_argument("--untrusted", action="append", help="extra intermediate certificates")
    pki_files.add_io_arguments(parser)


def unprotected_warning(opened: OpenedMessage, *, checked: bool) -> str | None:
    """Why the decrypted content may have been altered, or None: an encrypted layer whose
    cipher does not detect changes (CBC: whoever holds the ciphertext can flip bits of the
    plaintext), and no valid signature vouching for the content."""
    from shared_pki.cms import ciphers
    from shared_pki.errors import PkiError

    unauthenticated = []
    for layer in opened.layers:
        if layer.kind != "encrypted" or not layer.cipher:
            continue
        try:
            aead = ciphers.by_name(layer.cipher).aead
        except (PkiError, KeyError, ValueError):
            aead = False  # a cipher we do not know never counts as detecting changes
        if not aead:
            unauthenticated.append(layer.cipher)
    if not unauthenticated or opened.signed_and_valid:
        return None
    if not opened.signatures:
        why = "it is not signed"
    elif not checked:
        why = "its signature was not checked (give --ca to check it)"
    else:
        why = "its signature is not valid"
    return (
        f"the content is not protected against alteration: it was encrypted with "
        f"{', '.join(unauthenticated)}, which does not detect changes, and {why}, so anyone "
        "on the way could have changed it."
    )


def run(args: argparse.Namespace) -> int:
    def action() -> int:
        from native_host.commands.verify_cmd import report

        opened = pki_files.open_from_arguments(args)
        pki_files.write_bytes(args.output, *opened.message_pieces())
        if not opened.encrypted:
            return report("decrypt", opened, "the message was not encrypted")
        warning = unprotected_warning(opened, checked=bool(args.ca))
        if warning:
            print(f"autosmime decrypt: warning: {warning}", file=sys.stderr)
        return report("decrypt", opened, None) if args.ca else 0

    return pki_files.run_guarded("decrypt", action)
