"""Bring your own certificate: import an S/MIME identity (key and certificate) from a PKCS#12
file made by another program (a commercial CA, Thunderbird, Outlook). It is kept like an
enrolled key, backed up in your mailbox under your recovery code, and becomes the key in use
for its kind; it is published in your organisation's certificate directory only with
--publish. The file's password comes from --password-env VAR or stdin."""

from __future__ import annotations

import argparse
import base64
from typing import Any

from native_host.commands import op_runner
from native_host.commands.op_runner import out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="the PKCS#12 file (.p12 or .pfx)")
    parser.add_argument("--address", help="the account the identity is for (default: the only)")
    parser.add_argument(
        "--password-env", metavar="VAR", help="the environment variable holding the password"
    )
    parser.add_argument(
        "--recovery-code-env",
        metavar="VAR",
        help="the environment variable holding your recovery code (default: the kept one)",
    )
    parser.add_argument(
        "--publish",
        action="store_true",
        help="publish the certificate in your organisation's directory (confirms your address "
        "by mail first)",
    )
    op_runner.add_common_arguments(parser)


def run(args: argparse.Namespace) -> int:
    def params() -> dict[str, Any]:
        values: dict[str, Any] = {
            "pkcs12": base64.b64encode(op_runner.read_file(args.file, "PKCS#12 file")).decode(),
            "password": op_runner.secret_from(args.password_env, "PKCS#12 password"),
            "publish": args.publish,
        }
        if args.address:
            values["address"] = args.address
        if args.recovery_code_env:
            values["recoveryCode"] = op_runner.secret_from(args.recovery_code_env, "code")
        return values

    def show(result: dict[str, Any]) -> None:
        out(f"Imported {result['subject']} ({result['keyType']}), issued by {result['issuer']}.")
        out(f"It is now your {result['suite']} key, backed up in your mailbox.")
        if not result["trusted"]:
            out(f"Not under your organisation's roots: {result['trustProblem']}")
        if result["recoveryCode"]:
            out(f"Your recovery code (write it down, shown once): {result['recoveryCode']}")
        if result["published"]:
            out("Published in your organisation's certificate directory.")
        elif result["publishProblem"]:
            out(f"Not published: {result['publishProblem']}")

    return op_runner.call("import", "keys.import", params, args, show)
