"""`autosmime`: one console command, one subcommand per job.

Each subcommand lives in its own module exposing `add_arguments(parser)` and `run(args) -> int`;
later issues add rows to COMMANDS. Modules import their heavy dependencies inside `run`.

Global options, before the subcommand: `--profile DIR` selects the host state (it sets
AUTOSMIME_PROFILE for this process, so every module, and a host started from here, sees it);
`--json` prints machine-readable results on stdout. The commands that run host operations
(account, certs, send, open, export, import, enroll, backup, restore) call the same handlers as the
native host; see native_host.commands.op_runner for their output and exit codes.
"""

from __future__ import annotations

import argparse
import importlib
import os
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
    "pki": ("shared_pki.service.cli", "run the shared PKI service (ACME CA, directory, TSA)"),
    "host": (
        "native_host.commands.host_cmd",
        "run the native messaging host on stdin/stdout (browsers start this)",
    ),
    "account": ("native_host.commands.account_cmd", "set up and list mail accounts"),
    "enroll": (
        "native_host.commands.enroll_cmd",
        "get S/MIME certificates for an account automatically (resumes if interrupted)",
    ),
    "renew": (
        "native_host.commands.renew_cmd",
        "renew keys whose certificates end soon (for cron; old keys are kept)",
    ),
    "certs": (
        "native_host.commands.certs_cmd",
        "list your own keys and certificates, or look up correspondents' certificates",
    ),
    "send": ("native_host.commands.send_cmd", "sign, encrypt and send a message"),
    "open": (
        "native_host.commands.open_cmd",
        "open (decrypt and verify) a message from a file or the mailbox",
    ),
    "export": (
        "native_host.commands.export_cmd",
        "export your keys as PKCS#12 for other mail programs",
    ),
    "import": (
        "native_host.commands.import_cmd",
        "bring your own certificate: import an S/MIME identity from PKCS#12",
    ),
    "backup": (
        "native_host.commands.backup_cmd",
        "write a new backup of your keys to your mailbox and prove it",
    ),
    "restore": (
        "native_host.commands.restore_cmd",
        "restore your keys from the backup in your mailbox (recovery code on stdin)",
    ),
}


def build_parser() -> argparse.ArgumentParser:
    from native_host import __version__

    parser = argparse.ArgumentParser(
        prog="autosmime",
        description="Automatic S/MIME for webmail: native host, installer and tools.",
    )
    parser.add_argument("--version", action="version", version=f"autosmime {__version__}")
    parser.add_argument(
        "--profile",
        metavar="DIR",
        help="the host state folder to use (default: $AUTOSMIME_PROFILE, else the user's data "
        "folder); tests run alice and bob side by side this way",
    )
    parser.add_argument(
        "--json", action="store_true", help="print results as JSON on stdout (for scripts)"
    )
    parser.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="show progress on stderr (default: when stderr is a terminal)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, help_text) in COMMANDS.items():
        module = importlib.import_module(module_name)
        command = sub.add_parser(name, help=help_text, description=module.__doc__)
        module.add_arguments(command)
        command.set_defaults(run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    if args.profile:
        from native_host.infrastructure.profile import ENV_PROFILE

        os.environ[ENV_PROFILE] = os.path.abspath(os.path.expanduser(args.profile))
    return int(args.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
