"""Decrypt a message (.eml) with any of your keys (repeat --key/--cert, or PKCS#12 files; old
keys too). Signatures found inside are verified against --ca when given; exit 1 if one fails."""

from __future__ import annotations

import argparse

from native_host.commands import pki_files


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


def run(args: argparse.Namespace) -> int:
    def action() -> int:
        from native_host.commands.verify_cmd import report

        opened = pki_files.open_from_arguments(args)
        pki_files.write_bytes(args.output, opened.message)
        if not opened.encrypted:
            return report("decrypt", opened, "the message was not encrypted")
        return report("decrypt", opened, None) if args.ca else 0

    return pki_files.run_guarded("decrypt", action)
