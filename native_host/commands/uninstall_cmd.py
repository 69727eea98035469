"""Remove exactly what `autosmime install` wrote, as listed in its receipt.

A file or registry value changed since install wrote it is left in place with a warning. With
--browser or --user-data-dir only that registration goes; the launcher, host configuration and
receipt go with the last one, and so do the folders install created once they are empty.
"""

from __future__ import annotations

import argparse
import sys

from native_host.commands.install_cmd import add_browser_arguments


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_browser_arguments(
        parser, "unregister from this browser only (repeatable); default: everything installed"
    )


def run(args: argparse.Namespace) -> int:
    from native_host.installation.install import InstallError, uninstall

    try:
        result = uninstall(args.browser, args.user_data_dir)
    except InstallError as error:
        print(f"autosmime uninstall: {error}", file=sys.stderr)
        return 1
    if not result.had_receipt:
        print(f"Nothing to remove: there is no install receipt at {result.receipt}.")
        return 0
    for action in result.actions:
        print(f"  {action.verb:<9} {action.what}: {action.where}")
    for warning in result.warnings:
        print(f"Warning: {warning}")
    if result.remaining:
        print("Still registered (remove with `autosmime uninstall` without a filter):")
        for where in result.remaining:
            print(f"  {where}")
    elif not any(action.verb in ("removed", "kept", "gone") for action in result.actions):
        print("Nothing matched; nothing was removed.")
    else:
        print("autosmime's native messaging host is no longer registered.")
    return 0
