"""Encrypt a message (.eml) to each --to certificate and to yourself (--cert), choosing the
strongest cipher every recipient advertises unless --cipher says otherwise. With --sign, sign
first (needs --key).

Suites: a message is all-international or all-SM (SM2, SM3, SM4). --to and --cert may name
both kinds of certificate; certificates naming the same address are one correspondent. With
--suite auto (the default) SM is used when every certificate given is SM2, or with --prefer-sm
when the sender and every correspondent have a usable SM2 certificate; otherwise
international. --suite sm or intl insists."""

from __future__ import annotations

import argparse

from native_host.commands import pki_files

CIPHERS = ["aes128-cbc", "aes256-cbc", "aes128-gcm", "aes256-gcm", "sm4-cbc"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--to", action="append", required=True, metavar="CERT", help="recipient certificate"
    )
    parser.add_argument(
        "--cert",
        action="append",
        default=[],
        help="your own certificate(s): you are always a recipient of what you send",
    )
    parser.add_argument(
        "--key", action="append", default=[], help="your private key or PKCS#12 (for --sign)"
    )
    pki_files.add_password_argument(parser)
    parser.add_argument("--sign", action="store_true", help="sign before encrypting")
    parser.add_argument("--cipher", choices=CIPHERS, help="content cipher (default: chosen)")
    parser.add_argument(
        "--ski", action="store_true", help="name recipients by subject key identifier"
    )
    parser.add_argument(
        "--suite", choices=["auto", "intl", "sm"], default="auto", help="algorithm suite"
    )
    parser.add_argument(
        "--prefer-sm", action="store_true", help="with --suite auto: SM whenever possible"
    )
    pki_files.add_sm2_id_argument(parser, verifying=False)
    pki_files.add_convention_argument(parser)
    pki_files.add_io_arguments(parser)


def _parties(certificates: list, suite_module: object) -> list:
    """Certificates grouped into correspondents by their first mail address."""
    from shared_pki.x509.validate import certificate_addresses

    grouped: dict[object, dict] = {}
    for index, certificate in enumerate(certificates):
        addresses = certificate_addresses(certificate)
        who = addresses[0].lower() if addresses else index
        kind = "sm" if suite_module.is_sm2_certificate(certificate) else "intl"  # type: ignore[attr-defined]
        grouped.setdefault(who, {}).setdefault(kind, certificate)
    return [suite_module.Party(**found) for found in grouped.values()]  # type: ignore[attr-defined]


def run(args: argparse.Namespace) -> int:
    def action() -> int:
        from shared_pki.cms import suite as suites
        from shared_pki.errors import KeyLoadError
        from shared_pki.smime import encrypt_message, sign_message

        message = pki_files.read_bytes(args.input)
        to = pki_files.certificates(args.to)
        signers = []
        if args.sign:
            if not args.key:
                raise KeyLoadError("--sign needs --key (and --cert unless --key is PKCS#12).")
            signers = pki_files.credentials(args.key, args.cert, pki_files.password_bytes(args))
            own = [signer.certificate for signer in signers]
        else:
            # The first certificate of each --cert file is yours; the rest is its chain.
            own = [pki_files.certificates([path])[0] for path in args.cert]
        recipients = _parties(to, suites)
        sender = _parties(own, suites)[0] if own else suites.Party()
        if args.suite == "auto":
            everyone = [*to, *own]
            prefer_sm = args.prefer_sm or all(suites.is_sm2_certificate(c) for c in everyone)
            chosen = suites.choose_suite(
                prefer_sm, sender, recipients, signing=args.sign
            ) if own else suites.infer(to)  # fmt: skip
        else:
            chosen = suites.by_name(args.suite)
        recipient_certs = suites.certificates_for(chosen, recipients)
        sender_cert = sender.certificate(chosen)
        if own and sender_cert is None:
            kind = "SM2" if chosen.is_sm else "international"
            raise KeyLoadError(f"--cert names none of your {kind} certificates ({chosen} suite).")
        if signers:
            signer = next(s for s in signers if s.certificate is sender_cert)
            message = sign_message(
                message, signer, suite=chosen, sm2_id=args.sm2_id, convention=args.convention
            )
        cipher = args.cipher.replace("-", "_") if args.cipher else None
        encrypted = encrypt_message(
            message,
            recipient_certs,
            sender=sender_cert,
            cipher=cipher,
            use_ski=args.ski,
            suite=chosen,
            convention=args.convention,
        )
        pki_files.write_bytes(args.output, encrypted)
        return 0

    return pki_files.run_guarded("encrypt", action)
