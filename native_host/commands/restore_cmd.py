"""Restore every key of an account from the newest backup in its mailbox (set the account up
first with `autosmime account add`). The recovery code is read from stdin; a wrong code or a
tampered backup changes nothing."""

from __future__ import annotations

import argparse
from typing import Any

from native_host.commands import op_runner
from native_host.commands.op_runner import out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("address", help="the account whose keys to restore")
    parser.add_argument(
        "--keep-recovery-code",
        action="store_true",
        help="keep the recovery code in this device's keyring",
    )
    op_runner.add_common_arguments(parser)


def run(args: argparse.Namespace) -> int:
    def params() -> dict[str, Any]:
        return {
            "address": args.address,
            "recoveryCode": op_runner.secret_from(None, "recovery code"),
            "keepRecoveryCode": args.keep_recovery_code,
        }

    def show(result: dict[str, Any]) -> None:
        out(
            f"Restored {len(result['restored'])} key(s) of {result['address']} "
            f"({len(result['alreadyHeld'])} already here) from {result['messageId']}."
        )

    return op_runner.call("restore", "backup.restore", params, args, show)
