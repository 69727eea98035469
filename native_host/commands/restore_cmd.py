"""Restore every key of an account from the newest backup in its mailbox that the recovery code
opens (set the account up first with `autosmime account add`), and say which backup that was
(when it was made, how many keys it holds). The recovery code is read from stdin; a wrong code
changes nothing. A message that looks like a newer backup but does not open (planted or
damaged) is skipped, with a warning naming it."""

from __future__ import annotations

import argparse
import sys
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


def warn_skipped(command: str, skipped: list[dict[str, Any]]) -> None:
    """Say on stderr which newer-looking backups did not open (they were skipped, not used)."""
    for item in skipped:
        claimed = (item.get("claimedCreated") or "no time").replace("T", " ").replace("Z", " UTC")
        print(
            f"autosmime {command}: warning: a newer-looking backup did not open and was "
            f"skipped: {item['messageId']} (claiming {claimed}): {item['reason']}",
            file=sys.stderr,
        )


def run(args: argparse.Namespace) -> int:
    def params() -> dict[str, Any]:
        return {
            "address": args.address,
            "recoveryCode": op_runner.secret_from(None, "recovery code"),
            "keepRecoveryCode": args.keep_recovery_code,
        }

    def show(result: dict[str, Any]) -> None:
        made = (result.get("created") or "an unknown time").replace("T", " ").replace("Z", " UTC")
        out(
            f"Restored {len(result['restored'])} key(s) of {result['address']} "
            f"({len(result['alreadyHeld'])} already here) from the backup made {made}, "
            f"holding {result.get('keys')} key(s): {result['messageId']}."
        )
        warn_skipped("restore", result.get("skipped") or [])

    return op_runner.call("restore", "backup.restore", params, args, show)
