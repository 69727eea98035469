"""Write a new backup of every key of an account to its mailbox, read it back and prove it.
The recovery code comes from this device's keyring, or from stdin with --recovery-code-stdin;
it must open the newest existing backup, so all your keys stay under one code."""

from __future__ import annotations

import argparse
from typing import Any

from native_host.commands import op_runner
from native_host.commands.op_runner import out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("address", nargs="?", help="the account (default: the only one)")
    parser.add_argument(
        "--recovery-code-stdin", action="store_true", help="read the recovery code from stdin"
    )
    op_runner.add_common_arguments(parser)


def run(args: argparse.Namespace) -> int:
    def params() -> dict[str, Any]:
        values: dict[str, Any] = {}
        if args.address:
            values["address"] = args.address
        if args.recovery_code_stdin:
            values["recoveryCode"] = op_runner.secret_from(None, "recovery code")
        return values

    def show(result: dict[str, Any]) -> None:
        from native_host.commands.restore_cmd import warn_skipped

        count = len(result["keyIds"])
        out(f"Backed up {count} key(s) of {result['address']}: {result['messageId']} (proven).")
        warn_skipped("backup", result.get("skipped") or [])

    return op_runner.call("backup", "backup.create", params, args, show)
