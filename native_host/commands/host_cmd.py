"""Run the native messaging host on stdin/stdout. Browsers start it through the launcher that
`autosmime install` writes; run by hand it refuses every request unless given an allowed origin."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="host configuration written by `autosmime install`")
    # Chrome on Windows adds --parent-window=HANDLE; it means nothing to the host.
    parser.add_argument("--parent-window", help=argparse.SUPPRESS)
    parser.add_argument(
        "caller",
        nargs="*",
        help="what the browser passes: chrome-extension://ID/, or a manifest path and add-on id",
    )


def run(args: argparse.Namespace) -> int:
    from native_host.transport.host import main

    argv = ["--config", args.config] if args.config else []
    return main(argv + list(args.caller))
