"""Verify a signed message (.eml; multipart/signed or opaque, also inside encryption when
--key is given) against trusted roots (--ca). Says on standard error what holds and what does
not; when every signature is valid, writes the signed content to standard output (or to -o
FILE) and exits 0; otherwise writes nothing and exits 1."""

from __future__ import annotations

import argparse
import sys

from native_host.commands import pki_files


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ca", action="append", required=True, help="trusted root certificate(s)")
    parser.add_argument("--untrusted", action="append", help="extra intermediate certificates")
    parser.add_argument("--key", action="append", default=[], help="key to decrypt an outer layer")
    parser.add_argument("--cert", action="append", default=[], help="certificate of each --key")
    pki_files.add_password_argument(parser)
    pki_files.add_sm2_id_argument(parser, verifying=True)
    parser.add_argument("-q", "--quiet", action="store_true", help="print only failures")
    pki_files.add_io_arguments(parser)


def report(command: str, opened: object, failure: str | None, quiet: bool = False) -> int:
    """Print one line per signature on stderr; 0 only if there is one and all are valid."""
    from shared_pki.errors import one_line

    signatures = opened.signatures  # type: ignore[attr-defined]
    if failure is None and not signatures:
        failure = "the message is not signed"
    if failure:
        print(f"autosmime {command}: {one_line(failure)}", file=sys.stderr)
        return 1
    for result in signatures:
        if not quiet or not result.valid:
            print(f"autosmime {command}: {one_line(result.summary)}", file=sys.stderr)
    return 0 if all(result.valid for result in signatures) else 1


def run(args: argparse.Namespace) -> int:
    def action() -> int:
        opened = pki_files.open_from_arguments(args)
        status = report("verify", opened, None, args.quiet)
        if status == 0:  # content is passed on only when every signature vouches for it
            pki_files.write_bytes(args.output, *opened.message_pieces())
        return status

    return pki_files.run_guarded("verify", action)
