"""Your own keys and certificates (`certs list`: status, suite, expiry, backup), or the
certificates of correspondents (`certs lookup ADDRESS...`: usable ones and where they came
from: the directory, the cache, or harvested from signed mail)."""

from __future__ import annotations

import argparse
from typing import Any

from native_host.commands import op_runner
from native_host.commands.op_runner import out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="certs_action", metavar="ACTION", required=True)
    listing = sub.add_parser("list", help="your own keys and certificates")
    listing.add_argument("--address", help="only the keys of this address")
    op_runner.add_common_arguments(listing)
    lookup = sub.add_parser("lookup", help="correspondents' usable certificates")
    lookup.add_argument("addresses", nargs="+", metavar="ADDRESS")
    lookup.add_argument("--account", help="whose PKI service to ask (default: the only account)")
    op_runner.add_common_arguments(lookup)


def run(args: argparse.Namespace) -> int:
    if args.certs_action == "list":

        def show_list(result: dict[str, Any]) -> None:
            if not result["keys"]:
                out("No keys yet: run `autosmime enroll`.")
            for key in result["keys"]:
                until = key["notAfter"] or "no certificate"
                backup = key["backup"]["state"].replace("_", " ")
                out(
                    f"{key['address']}  {key['suite']:4}  {key['keyType']:9}  "
                    f"{key['status']:10}  until {until}  backup: {backup}  {key['keyId']}"
                )

        params = {"address": args.address} if args.address else {}
        return op_runner.call("certs list", "certs.list", params, args, show_list)

    def show(result: dict[str, Any]) -> None:
        for item in result["results"]:
            if not item["certificates"]:
                reasons = "; ".join(p["message"] for p in item["problems"]) or "none found"
                out(f"{item['address']}: no usable certificate ({reasons})")
                continue
            for cert in item["certificates"]:
                out(
                    f"{item['address']}: {cert['suite']} {cert['algorithm']} until "
                    f"{cert['notAfter']} from {cert['origin']} ({item['source']}) "
                    f"{cert['fingerprint'][:16]}"
                )

    def finish(result: dict[str, Any]) -> tuple[dict[str, Any], int]:
        missing = [item["address"] for item in result["results"] if not item["certificates"]]
        if missing:
            text = f"No usable certificate for {', '.join(missing)}."
            op_runner.fail("certs lookup", "not_found", text)
        return result, op_runner.EXIT_FAILED if missing else 0

    params = {"addresses": list(args.addresses)}
    if args.account:
        params["account"] = args.account
    return op_runner.call("certs lookup", "certs.lookup", params, args, show, finish)
