"""Export your keys (every key this profile ever held, or one address's) as a PKCS#12 file for
Outlook, Thunderbird or gpgsm: p12 (modern, AES-256) or p12-legacy (3DES, RSA keys only, for
older clients and gpgsm). The file's password comes from --password-env VAR or stdin."""

from __future__ import annotations

import argparse
import os
from typing import Any

from native_host.commands import op_runner
from native_host.commands.op_runner import out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", choices=["p12", "p12-legacy"], default="p12")
    parser.add_argument("--out", required=True, metavar="FILE", help="where to write (0600)")
    parser.add_argument("--address", help="only the keys of this address")
    parser.add_argument(
        "--password-env", metavar="VAR", help="the environment variable holding the password"
    )
    op_runner.add_common_arguments(parser)


def run(args: argparse.Namespace) -> int:
    def params() -> dict[str, Any]:
        values = {
            "flavour": "legacy" if args.format == "p12-legacy" else "modern",
            "password": op_runner.secret_from(args.password_env, "PKCS#12 password"),
        }
        if args.address:
            values["address"] = args.address
        return values

    def finish(result: dict[str, Any]) -> tuple[dict[str, Any], int]:
        import base64

        op_runner.write_private_file(args.out, base64.b64decode(result.pop("pkcs12")))
        result["file"] = os.path.abspath(args.out)
        return result, 0

    def show(result: dict[str, Any]) -> None:
        out(f"Wrote {len(result['keyIds'])} key(s) to {result['file']} ({result['flavour']}).")
        for key_id, why in result["leftOut"].items():
            out(f"Left out {key_id}: {why}")

    return op_runner.call("export", "keys.export", params, args, show, finish)
