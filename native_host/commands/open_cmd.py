"""Open a message (decrypt with every key this profile ever held, verify signatures and their
timestamps, sanitize HTML) from a file or from the mailbox by Message-ID, and print its content
and security summary. Exit status 0 only when the content is readable and every signature
holds (or it is not signed); 1 otherwise, with the reason on stderr."""

from __future__ import annotations

import argparse
import base64
from pathlib import Path
from typing import Any

from native_host.commands import op_runner
from native_host.commands.op_runner import out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--file", metavar="EML", help="the message file; - for stdin")
    source.add_argument("--message-id", metavar="ID", help="find it in the mailbox")
    parser.add_argument("--folder", metavar="NAME", help="the folder (default: INBOX, Sent, All)")
    parser.add_argument("--account", help="whose mailbox and keys (default: the only account)")
    parser.add_argument("--html", action="store_true", help="print the sanitized HTML too")
    parser.add_argument("--save-attachments", metavar="DIR", help="write the attachments into DIR")
    op_runner.add_common_arguments(parser)


def params_of(args: argparse.Namespace) -> dict[str, Any]:
    params: dict[str, Any] = {}
    if args.file:
        raw = op_runner.read_file(args.file, "message")
        params["raw"] = base64.b64encode(raw).decode("ascii")
    else:
        params["messageId"] = args.message_id
        if args.folder:
            params["folder"] = args.folder
    if args.account:
        params["account"] = args.account
    return params


def run(args: argparse.Namespace) -> int:
    def show(view: dict[str, Any]) -> None:
        for name in ("from", "to", "cc", "date", "subject", "message-id"):
            if name in view["headers"]:
                out(f"{name.title()}: {view['headers'][name]}")
        out()
        if view["text"] is not None:
            out(view["text"].rstrip("\n"))
        if view["html"] is not None and (args.html or view["text"] is None):
            out("--- HTML (sanitized) ---")
            out(view["html"])
        for item in view["attachments"]:
            out(
                f"[attachment] {item['name'] or '(no name)'} {item['contentType']} {item['size']} B"
            )
        out()
        out(f"Security: {view['security']['summary']}")
        for problem in view["problems"]:
            out(f"Note: {problem}")

    def finish(view: dict[str, Any]) -> tuple[dict[str, Any], int]:
        if args.save_attachments:
            folder = Path(args.save_attachments)
            folder.mkdir(parents=True, exist_ok=True)
            for index, item in enumerate(view["attachments"]):
                name = Path(item["name"] or f"attachment-{index}").name or f"attachment-{index}"
                op_runner.write_private_file(str(folder / name), base64.b64decode(item["data"]))
        security = view["security"]
        if security["encrypted"] and not security["decrypted"]:
            op_runner.fail("open", "not_decrypted", security["summary"])
            return view, op_runner.EXIT_FAILED
        if security["signed"] and not security["verified"]:
            op_runner.fail("open", "not_verified", security["summary"])
            return view, op_runner.EXIT_FAILED
        return view, 0

    return op_runner.call("open", "message.open", lambda: params_of(args), args, show, finish)
