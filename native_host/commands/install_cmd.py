"""Register the autosmime native messaging host with your browsers (per user, no admin rights).

Writes a launcher, the host configuration and one manifest per browser (on Windows also a
registry key), and records each in a receipt so that `autosmime uninstall` removes exactly
those. Without --browser it registers every supported browser found for this user. Running it
again is safe.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

BROWSER_CHOICES = ("chrome", "chromium", "edge", "brave", "firefox")


def add_browser_arguments(parser: argparse.ArgumentParser, browser_help: str) -> None:
    """--browser and --user-data-dir, shared by install, uninstall and doctor."""
    parser.add_argument(
        "--browser",
        action="append",
        choices=BROWSER_CHOICES,
        metavar="{" + ",".join(BROWSER_CHOICES) + "}",
        help=browser_help,
    )
    parser.add_argument(
        "--user-data-dir",
        type=Path,
        metavar="DIR",
        help="a Chromium-family browser started with a custom profile folder DIR; its "
        "manifest is DIR/NativeMessagingHosts/org.autosmime.native.json (browser: chromium "
        "unless named)",
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_browser_arguments(
        parser,
        "register with this browser only (repeatable); default: every supported browser found",
    )
    parser.add_argument(
        "--extension-id",
        action="append",
        default=[],
        metavar="ID",
        help="also allow this Chromium extension id, e.g. the store build's (repeatable); "
        "the development id is always allowed",
    )


def run(args: argparse.Namespace) -> int:
    from native_host.installation import browsers
    from native_host.installation.install import InstallError, install
    from native_host.transport.browser_ids import HOST_NAME

    try:
        result = install(args.browser, args.user_data_dir, args.extension_id)
    except InstallError as error:
        print(f"autosmime install: {error}", file=sys.stderr)
        return 1
    except OSError as error:
        where = error.filename or "a file"
        print(f"autosmime install: could not write {where}: {error.strerror}", file=sys.stderr)
        return 1
    for name, evidence in result.found.items():
        print(f"Found {browsers.get(name).label} ({evidence}).")
    for action in result.actions:
        print(f"  {action.verb:<9} {action.what}: {action.where}")
    for warning in result.warnings:
        print(f"Warning: {warning}")
    labels = ", ".join(target.label for target in result.targets)
    print(f"Registered the native messaging host {HOST_NAME} with {labels}.")
    print(f"Allowed callers: {', '.join(result.allowed_origins + result.allowed_extensions)}.")
    print(f"Receipt: {result.receipt} (`autosmime uninstall` removes exactly what it lists).")
    print("Check it with `autosmime doctor`.")
    return 0
