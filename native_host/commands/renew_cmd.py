"""Renew your keys when a certificate is about to expire (within --window-days, default 30):
new key pairs by the same automatic enrollment; old keys are kept and still decrypt old mail.
Meant for a daily cron job or systemd timer; prints whether anything was renewed."""

from __future__ import annotations

import argparse
from typing import Any

from native_host.commands import op_runner
from native_host.commands.op_runner import out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("address", nargs="?", help="the account (default: the only one)")
    parser.add_argument("--window-days", type=float, default=30, help="renew this early")
    parser.add_argument(
        "--recovery-code-stdin",
        action="store_true",
        help="read the recovery code of your backups from stdin (unless kept in the keyring)",
    )
    op_runner.add_common_arguments(parser)


def run(args: argparse.Namespace) -> int:
    def params() -> dict[str, Any]:
        values: dict[str, Any] = {"windowDays": args.window_days}
        if args.address:
            values["address"] = args.address
        if args.recovery_code_stdin:
            values["recoveryCode"] = op_runner.secret_from(None, "recovery code")
        return values

    def show(result: dict[str, Any]) -> None:
        if result["renewed"]:
            out(f"Renewed the keys of {result['address']} in {result['seconds']:.1f} s.")
        else:
            out(f"No certificate of {result['address']} ends within the window: nothing to do.")

    return op_runner.call("renew", "keys.renew", params, args, show)
