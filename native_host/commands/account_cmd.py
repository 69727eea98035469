"""Set up a mail account (`account add`: servers proven by a real login, the password kept in
the keyring, the PKI service and its roots remembered) or list them (`account list`).

URLs as for the PKI service's mail options: imaps://USER@HOST:993, imap://USER@HOST:143
(STARTTLS), smtps://USER@HOST:465, smtp://USER@HOST:587 (STARTTLS); USER defaults to the
address. Without them the servers come from the provider table or the domain's autoconfig."""

from __future__ import annotations

import argparse
from typing import Any

from native_host.commands import op_runner
from native_host.commands.op_runner import out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="account_action", metavar="ACTION", required=True)
    add = sub.add_parser("add", help="set up (or replace) an account", description=__doc__)
    add.add_argument("address", help="the mail address")
    add.add_argument("--imap", metavar="URL", help="IMAP server, e.g. imaps://USER@HOST:993")
    add.add_argument("--smtp", metavar="URL", help="SMTP submission, e.g. smtp://USER@HOST:587")
    secret = add.add_mutually_exclusive_group()
    secret.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password (or app password) from the first line of stdin",
    )
    secret.add_argument(
        "--password-env", metavar="VAR", help="take the password from the environment variable VAR"
    )
    secret.add_argument(
        "--xoauth2-token-stdin",
        action="store_true",
        help="read an OAuth2 access token (XOAUTH2) from the first line of stdin",
    )
    add.add_argument("--ca-file", metavar="PEM", help="CA certificates to trust the mail servers")
    add.add_argument("--pki", metavar="URL", help="the PKI service (ACME CA, directory, TSA)")
    add.add_argument(
        "--pki-roots", metavar="FILE", help="the PKI service's root certificates (PEM)"
    )
    add.add_argument(
        "--pki-ca-file", metavar="PEM", help="CA certificates to trust the PKI service's HTTPS"
    )
    add.add_argument(
        "--acme-directory", metavar="URL", help="the ACME directory (default: URL/acme/directory)"
    )
    add.add_argument(
        "--certs-url", metavar="URL", help="the certificate directory (default: URL/certs)"
    )
    add.add_argument("--tsa-url", metavar="URL", help="the RFC 3161 TSA (default: URL/tsa)")
    add.add_argument(
        "--tsa-roots", metavar="FILE", help="the TSA's root certificates (default: --pki-roots)"
    )
    add.add_argument(
        "--no-acme-contact",
        action="store_true",
        help="register with the CA without giving the address as a mailto: contact",
    )
    add.add_argument(
        "--unauthenticated-challenge-from",
        metavar="ADDRESS",
        action="append",
        help="your organisation's CA address whose challenge mail may come without DKIM or "
        "S/MIME (repeatable)",
    )
    op_runner.add_common_arguments(add)
    listing = sub.add_parser("list", help="list the accounts of this profile")
    op_runner.add_common_arguments(listing)


def show_account(account: dict[str, Any]) -> None:
    out(f"{account['address']}")
    out(f"  IMAP  {account['imap']}")
    out(f"  SMTP  {account['smtp']}")
    pki = account.get("pki")
    if not pki:
        out("  PKI   (none: add --pki URL --pki-roots FILE)")
        return
    out(f"  ACME  {pki['acmeDirectory']}")
    out(f"  Certificate directory  {pki['certs'] or '(none)'}")
    out(f"  Time-stamp authority   {pki['tsa'] or '(none)'}")


def run(args: argparse.Namespace) -> int:
    if args.account_action == "list":

        def show_list(result: dict[str, Any]) -> None:
            if not result["accounts"]:
                out("No account is set up yet: run `autosmime account add ADDRESS`.")
            for account in result["accounts"]:
                show_account(account)

        return op_runner.call("account list", "account.list", {}, args, show_list)

    def params() -> dict[str, Any]:
        values: dict[str, Any] = {
            "address": args.address,
            "imapUrl": args.imap,
            "smtpUrl": args.smtp,
            "caFile": args.ca_file,
            "pkiUrl": args.pki,
            "pkiCaFile": args.pki_ca_file,
            "acmeDirectoryUrl": args.acme_directory,
            "certsUrl": args.certs_url,
            "tsaUrl": args.tsa_url,
            "acmeContact": False if args.no_acme_contact else None,
            "unauthenticatedChallengeFrom": args.unauthenticated_challenge_from,
        }
        if args.pki_roots:
            values["pkiRoots"] = op_runner.read_text(args.pki_roots, "roots file")
        if args.tsa_roots:
            values["tsaRoots"] = op_runner.read_text(args.tsa_roots, "TSA roots file")
        if args.password_stdin or args.password_env:
            values["password"] = op_runner.secret_from(args.password_env, "password")
        elif args.xoauth2_token_stdin:
            values["xoauth2Token"] = op_runner.secret_from(None, "XOAUTH2 token")
        return {k: v for k, v in values.items() if v is not None}

    def show(account: dict[str, Any]) -> None:
        out("Account set up (IMAP and SMTP login checked):")
        show_account(account)

    return op_runner.call("account add", "account.configure", params, args, show)
