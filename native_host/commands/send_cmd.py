"""Sign, timestamp, encrypt and send a message from a configured account: the same path as the
extension's compose.send. Every recipient needs a certificate (else nothing is sent and the
missing ones are named). If the server cannot take it now, the message stays in the outbox and
goes out before the next one (exit status 75)."""

from __future__ import annotations

import argparse
import base64
import mimetypes
from pathlib import Path
from typing import Any

from native_host.commands import op_runner
from native_host.commands.op_runner import out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--from", dest="sender", required=True, metavar="A", help="your address")
    parser.add_argument("--to", action="append", default=[], metavar="B", help="a recipient")
    parser.add_argument("--cc", action="append", default=[], metavar="C", help="a copy")
    parser.add_argument("--bcc", action="append", default=[], metavar="D", help="a blind copy")
    parser.add_argument("--subject", default="", metavar="S")
    parser.add_argument("--body-file", metavar="F", help="the text body (UTF-8); - for stdin")
    parser.add_argument("--html-file", metavar="F", help="an HTML body (UTF-8)")
    parser.add_argument("--attach", action="append", default=[], metavar="F", help="a file")
    parser.add_argument("--no-sign", dest="sign", action="store_false", help="do not sign")
    parser.add_argument("--no-encrypt", dest="encrypt", action="store_false", help="do not encrypt")
    parser.add_argument(
        "--suite",
        choices=["intl", "sm", "auto"],
        default="auto",
        help="algorithms: intl (RSA/ECDSA, AES), sm (SM2/SM3/SM4), auto (default)",
    )
    op_runner.add_common_arguments(parser)


def params_of(args: argparse.Namespace) -> dict[str, Any]:
    attachments = []
    for name in args.attach:
        data = op_runner.read_file(name, "attachment")
        kind = mimetypes.guess_type(name)[0] or "application/octet-stream"
        attachments.append(
            {
                "name": Path(name).name,
                "contentType": kind,
                "data": base64.b64encode(data).decode("ascii"),
            }
        )
    text = op_runner.read_text(args.body_file, "body file") if args.body_file else None
    html = op_runner.read_text(args.html_file, "HTML file") if args.html_file else None
    return {
        "from": args.sender,
        "to": args.to,
        "cc": args.cc,
        "bcc": args.bcc,
        "subject": args.subject,
        "text": text if text is not None or html is not None else "",
        "html": html,
        "attachments": attachments,
        "sign": args.sign,
        "encrypt": args.encrypt,
        "suite": args.suite,
    }


def show(result: dict[str, Any]) -> None:
    what = [
        "signed" if result["signed"] else "not signed",
        f"encrypted ({result['cipher']})" if result["encrypted"] else "not encrypted",
        f"suite {result['suite']}",
    ]
    if result["timestamped"]:
        what.append("timestamped")
    elif result["signed"]:
        what.append(f"no timestamp ({result['timestampProblem']})")
    verb = "Sent" if result["status"] == "sent" else "Kept in the outbox"
    out(f"{verb}: {result['messageId']} — {', '.join(what)}.")
    for address, reason in result["refused"].items():
        out(f"Refused by the server: {address}: {reason}")


def finish(result: dict[str, Any]) -> tuple[dict[str, Any], int]:
    if result["status"] == "queued":
        op_runner.fail("send", "queued", result.get("problem") or "Kept in the outbox.")
        return result, op_runner.EXIT_QUEUED
    if result["refused"]:
        refused = ", ".join(result["refused"])
        op_runner.fail("send", "refused", f"The server refused {refused}.")
        return result, op_runner.EXIT_FAILED
    return result, 0


def run(args: argparse.Namespace) -> int:
    return op_runner.call("send", "compose.send", lambda: params_of(args), args, show, finish)
