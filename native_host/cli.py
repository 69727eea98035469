"""`autosmime`: one console command, one subcommand per job.

Each subcommand lives in its own module exposing `add_arguments(parser)` and `run(args) -> int`;
later issues add rows to COMMANDS. Modules import their heavy dependencies inside `run`.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "install": (
        "native_host.commands.install_cmd",
        "register the native messaging host with your browsers",
    ),
    "uninstall": (
        "native_host.commands.uninstall_cmd",
        "remove exactly what `autosmime install` wrote",
    ),
    "doctor": (
        "native_host.commands.doctor_cmd",
        "check, per browser, that the host is registered and answers",
    ),
    "sign": ("native_host.commands.sign_cmd", "sign a message with S/MIME"),
    "verify": ("native_host.commands.verify_cmd", "verify the S/MIME signatures of a message"),
    "encrypt": ("native_host.commands.encrypt_cmd", "encrypt a message with S/MIME"),
    "decrypt": ("native_host.commands.decrypt_cmd", "decrypt (and verify) an S/MIME message"),
    "pki": ("native_host.commands.pki_cmd", "run the shared PKI service (ACME CA, directory, TSA)"),
    "host": (
        "native_host.commands.host_cmd",
        "run the native messaging host on stdin/stdout (browsers start this)",
    ),
}


def build_parser() -> argparse.ArgumentParser:
    from native_host import __version__

    parser = argparse.ArgumentParser(
        prog="autosmime",
        description="Automatic S/MIME for webmail: native host, installer and tools.",
    )
    parser.add_argument("--version", action="version", version=f"autosmime {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, help_text) in COMMANDS.items():
        module = importlib.import_module(module_name)
        command = sub.add_parser(name, help=help_text, description=module.__doc__)
        module.add_arguments(command)
        command.set_defaults(run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    return int(args.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
