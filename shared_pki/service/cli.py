"""The shared PKI service: `autosmime pki serve` runs the ACME CA, the certificate directory,
the time-stamp authority, CRLs and CA bundles as one ASGI application. First start creates the
CA hierarchy in the data folder (keys sealed) and prints the root fingerprints."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

#: Top-level modules of the `server` extra's distributions (pyproject.toml).
SERVER_MODULES = frozenset({"starlette", "uvicorn", "sqlalchemy", "psycopg"})


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="pki_command", metavar="ACTION", required=True)
    serve = sub.add_parser("serve", help="run the service", description=__doc__)
    serve.add_argument(
        "--data", default="autosmime-pki", help="data folder (CA, configuration, SQLite database)"
    )
    serve.add_argument("--listen", help="HOST:PORT to listen on (default 127.0.0.1:8555)")
    serve.add_argument("--db", help="sqlite:///PATH (default in --data) or postgresql://...")
    serve.add_argument("--workers", type=int, help="server processes (default 1)")
    serve.add_argument("--public-url", help="URL clients use (default http://HOST:PORT)")
    serve.add_argument("--mail-from", help="the CA's From address for RFC 8823 challenges")
    serve.add_argument("--smtp", help="smtp[s]://USER:PASSWORD@HOST:PORT to send challenges")
    serve.add_argument("--imap", help="imap[s]://USER:PASSWORD@HOST:PORT to read replies")
    serve.add_argument("--mail-ca-file", help="CA file to trust the mail servers' TLS")
    serve.add_argument(
        "--dkim",
        choices=["auto", "on", "off"],
        help="DKIM on challenge replies (default auto: on when the service has DNS; off: the "
        "RFC 8823 response alone is accepted, see pki.toml)",
    )


def overrides(args: argparse.Namespace) -> dict[str, object]:
    values: dict[str, object] = {
        "db_url": args.db,
        "workers": args.workers,
        "public_url": args.public_url,
        "mail_from": args.mail_from,
        "smtp_url": args.smtp,
        "imap_url": args.imap,
        "mail_ca_file": args.mail_ca_file,
        "dkim_required": args.dkim,
    }
    if args.listen:
        host, _, port = args.listen.rpartition(":")
        if not host or not port.isdigit():
            raise SystemExit(f"autosmime pki serve: --listen wants HOST:PORT, not {args.listen!r}")
        values["listen_host"], values["listen_port"] = host.strip("[]"), int(port)
    return {k: v for k, v in values.items() if v not in (None, "")}


def run(args: argparse.Namespace) -> int:
    try:
        # Imported here, not above: the server stack is an optional extra, and this module is
        # read by every `autosmime` command to build its parser (desktop installs lack it).
        from shared_pki.service import serve
    except ModuleNotFoundError as missing:
        if missing.name and missing.name.split(".")[0] in SERVER_MODULES:
            print(
                f"autosmime pki serve: the PKI service needs the server extra ({missing.name} "
                f"is not installed): pip install 'autosmime[server]'",
                file=sys.stderr,
            )
            return 2
        raise
    return serve.start(Path(args.data).resolve(), overrides(args))
