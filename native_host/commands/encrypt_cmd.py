"""Encrypt a message (.eml) to each --to certificate and to yourself (--cert), choosing the
strongest cipher every recipient advertises unless --cipher says otherwise. With --sign, sign
first (needs --key)."""

from __future__ import annotations

import argparse

from native_host.commands import pki_files

CIPHERS = ["aes128-cbc", "aes256-cbc", "aes128-gcm", "aes256-gcm"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--to", action="append", required=True, metavar="CERT", help="recipient certificate"
    )
    parser.add_argument(
        "--cert", help="your own certificate: you are always a recipient of what you send"
    )
    parser.add_argument("--key", help="your private key or PKCS#12 file (for --sign)")
    pki_files.add_password_argument(parser)
    parser.add_argument("--sign", action="store_true", help="sign before encrypting")
    parser.add_argument("--cipher", choices=CIPHERS, help="content cipher (default: chosen)")
    parser.add_argument(
        "--ski", action="store_true", help="name recipients by subject key identifier"
    )
    pki_files.add_io_arguments(parser)


def run(args: argparse.Namespace) -> int:
    def action() -> int:
        from shared_pki.errors import KeyLoadError
        from shared_pki.smime import encrypt_message, sign_message

        message = pki_files.read_bytes(args.input)
        recipients = pki_files.certificates(args.to)
        sender = None
        if args.sign:
            if not args.key:
                raise KeyLoadError("--sign needs --key (and --cert unless --key is PKCS#12).")
            signer = pki_files.credential(args.key, args.cert, pki_files.password_bytes(args))
            message = sign_message(message, signer)
            sender = signer.certificate
        elif args.cert:
            sender = pki_files.certificates([args.cert])[0]
        cipher = args.cipher.replace("-", "_") if args.cipher else None
        encrypted = encrypt_message(
            message, recipients, sender=sender, cipher=cipher, use_ski=args.ski
        )
        pki_files.write_bytes(args.output, encrypted)
        return 0

    return pki_files.run_guarded("encrypt", action)
