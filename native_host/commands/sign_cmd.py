"""Sign a message (.eml) with S/MIME: multipart/signed by default (readable by everyone),
opaque signed-data with --no-detached. The key comes from a PKCS#12 file or --key with --cert.
An SM2 key signs with SM2/SM3 (micalg "sm3"); --sm2-id empty makes `openssl cms -verify` agree."""

from __future__ import annotations

import argparse

from native_host.commands import pki_files


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--key", required=True, help="private key (PEM/DER) or PKCS#12 file")
    parser.add_argument("--cert", help="certificate of --key, optionally followed by its chain")
    pki_files.add_password_argument(parser)
    parser.add_argument(
        "--detached",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="multipart/signed (default) or, with --no-detached, opaque signed-data",
    )
    parser.add_argument(
        "--digest",
        choices=["sha256", "sha384", "sha512", "sm3"],
        help="hash (default: sha256, or sm3 for an SM2 key)",
    )
    parser.add_argument("--pss", action="store_true", help="RSA-PSS instead of PKCS#1 v1.5")
    parser.add_argument(
        "--suite", choices=["intl", "sm"], help="algorithm suite (default: the key's)"
    )
    pki_files.add_sm2_id_argument(parser, verifying=False)
    pki_files.add_convention_argument(parser)
    pki_files.add_io_arguments(parser)


def run(args: argparse.Namespace) -> int:
    def action() -> int:
        from shared_pki.smime import sign_message

        signer = pki_files.credential(args.key, args.cert, pki_files.password_bytes(args))
        message = pki_files.read_bytes(args.input)
        signed = sign_message(
            message,
            signer,
            detached=args.detached,
            digest=args.digest,
            pss=args.pss,
            suite=args.suite,
            sm2_id=args.sm2_id,
            convention=args.convention,
        )
        pki_files.write_bytes(args.output, signed)
        return 0

    return pki_files.run_guarded("sign", action)
