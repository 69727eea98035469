"""Check, per browser, that the native messaging host is registered correctly and answers.

For each browser found (or the one named, or a --user-data-dir profile) it reads the manifest
the browser would read, checks its name, host path and allowed extension, then starts the host
the way the browser does and exchanges a hello. Exits 0 only if every checked browser is fine.
"""

from __future__ import annotations

import argparse
import sys

from native_host.commands.install_cmd import add_browser_arguments


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_browser_arguments(
        parser,
        "check this browser only (repeatable); default: the browsers found and those installed",
    )
    parser.add_argument(
        "--extension-id",
        action="append",
        default=[],
        metavar="ID",
        help="check this Chromium extension id instead of the development id (repeatable)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="how long to wait for the host's answer (default: 5)",
    )


def run(args: argparse.Namespace) -> int:
    from native_host.installation.doctor import diagnose
    from native_host.installation.install import InstallError

    try:
        findings = diagnose(
            args.browser, args.user_data_dir, args.extension_id, timeout=args.timeout
        )
    except InstallError as error:
        print(f"autosmime doctor: {error}", file=sys.stderr)
        return 1
    for finding in findings:
        print(f"{finding.label}: {'fine' if finding.ok else 'NOT WORKING'}")
        for check in finding.checks:
            print(f"  {'ok  ' if check.ok else 'FAIL'}  {check.text}")
    broken = [finding.label for finding in findings if not finding.ok]
    if broken:
        print(f"Problems found for: {', '.join(broken)}.")
        return 1
    print(f"All {len(findings)} checked browser(s) are fine.")
    return 0
