"""Get S/MIME certificates for an account automatically from its PKI service (RFC 8555 +
RFC 8823): keys made here, the confirmation email answered from your mailbox, certificates
stored, keys backed up in your mailbox. Interrupted, it resumes where it stopped. The first
enrollment prints a recovery code ONCE: write it down, it restores your keys on a new device."""

from __future__ import annotations

import argparse
from typing import Any

from native_host.commands import op_runner
from native_host.commands.op_runner import out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("address", nargs="?", help="the account (default: the only one)")
    parser.add_argument(
        "--suite", action="append", choices=["intl", "sm"], help="only this suite (repeatable)"
    )
    parser.add_argument(
        "--intl-key",
        choices=["ecdsa-p256", "rsa-3072"],
        default="rsa-3072",
        help="the international key (default rsa-3072: Thunderbird 115 and other NSS before "
        "3.100 cannot read mail with an ECDH recipient)",
    )
    parser.add_argument(
        "--recovery-code-stdin",
        action="store_true",
        help="read the recovery code of your earlier backups from stdin",
    )
    parser.add_argument(
        "--keep-recovery-code",
        action="store_true",
        help="keep the recovery code in this device's keyring",
    )
    op_runner.add_common_arguments(parser)


def run(args: argparse.Namespace) -> int:
    def params() -> dict[str, Any]:
        values: dict[str, Any] = {
            "intlKey": args.intl_key,
            "keepRecoveryCode": args.keep_recovery_code,
        }
        if args.address:
            values["address"] = args.address
        if args.suite:
            values["suites"] = list(dict.fromkeys(args.suite))
        if args.recovery_code_stdin:
            values["recoveryCode"] = op_runner.secret_from(None, "recovery code")
        return values

    def show(result: dict[str, Any]) -> None:
        how = "resumed and finished" if result["resumed"] else "finished"
        out(f"Enrollment of {result['address']} {how} in {result['seconds']:.1f} s.")
        for suite, key_id in result["keyIds"].items():
            out(f"  {suite}: key {key_id}")
        out(f"  backup: {result['backupMessageId']}")
        if result["recoveryCode"]:
            out("Your recovery code (shown once; keep it safe, it restores your keys):")
            out(f"  {result['recoveryCode']}")

    return op_runner.call("enroll", "enroll", params, args, show)
