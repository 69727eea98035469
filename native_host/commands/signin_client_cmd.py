"""Set up "Sign in with Google / Microsoft" on this computer: the OAuth client an organisation
registered with the provider (its client id, and for Google's web clients the client secret).
Client ids are never built into autosmime; the extension shows a sign-in button for each
provider set up here (or in the machine-wide sign-in.json an organisation deploys).

    autosmime signin-client set google --client-id ID --client-secret-stdin
    autosmime signin-client set microsoft --client-id ID [--tenant contoso.onmicrosoft.com]
    autosmime signin-client set NAME --client-id ID --authorize-url URL --token-url URL
                                     --scope S [--scope S ...] [--param KEY=VALUE ...]
    autosmime signin-client list | remove PROVIDER"""

from __future__ import annotations

import argparse
from typing import Any

from native_host.commands import op_runner
from native_host.commands.op_runner import CommandError, fail, out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="signin_action", metavar="ACTION", required=True)
    put = sub.add_parser("set", help="set up (or replace) a provider's OAuth client")
    put.add_argument("provider", help="google, microsoft, or a name for another provider")
    put.add_argument("--client-id", required=True, help="the OAuth client's id")
    put.add_argument(
        "--client-secret-stdin",
        action="store_true",
        help="read the client secret (Google web clients) from the first line of stdin",
    )
    put.add_argument("--tenant", help="Microsoft: the directory (default: common)")
    put.add_argument("--name", help="the provider's name on the sign-in button")
    put.add_argument("--authorize-url", help="the provider's authorization endpoint")
    put.add_argument("--token-url", help="the provider's token endpoint")
    put.add_argument("--scope", action="append", help="a scope to ask for (repeatable)")
    put.add_argument(
        "--param", action="append", metavar="KEY=VALUE", help="an extra authorization parameter"
    )
    sub.add_parser("list", help="the providers set up on this computer")
    remove = sub.add_parser("remove", help="forget a provider's client in this profile")
    remove.add_argument("provider")


def run(args: argparse.Namespace) -> int:
    from native_host.errors import HostError
    from native_host.infrastructure import oauth
    from native_host.infrastructure.profile import open_profile

    command = f"signin-client {args.signin_action}"
    try:
        root = open_profile().root
        if args.signin_action == "list":
            clients = oauth.sign_in_clients(root)
            if not clients:
                out("No sign-in is set up: `autosmime signin-client set google --client-id ID`.")
            for client in clients.values():
                out(f"{client.provider}: {client.name}, client {client.client_id}")
            return 0
        if args.signin_action == "remove":
            oauth.save_client_settings(root, args.provider, None)
            out(f"Sign in with {args.provider} is no longer set up in this profile.")
            return 0
        entry = _entry(args)
        secret = op_runner.secret_from(None, "client secret") if args.client_secret_stdin else None
        path = oauth.save_client_settings(root, args.provider, entry)
        if secret:  # kept in the keyring, never in the settings file
            profile = open_profile()
            profile.keyring().set_password(
                profile.keyring_service, oauth.client_secret_name(args.provider), secret
            )
    except CommandError as error:
        return fail(command, "bad_params", str(error), op_runner.EXIT_USAGE)
    except HostError as error:
        return fail(command, error.protocol_code, error.protocol_message())
    client = oauth.sign_in_clients(root)[args.provider]
    out(f"Sign in with {client.name} is set up ({path}).")
    return 0


def _entry(args: argparse.Namespace) -> dict[str, Any]:
    entry: dict[str, Any] = {"clientId": args.client_id}
    for key, value in (
        ("tenant", args.tenant),
        ("name", args.name),
        ("authorizationEndpoint", args.authorize_url),
        ("tokenEndpoint", args.token_url),
    ):
        if value:
            entry[key] = value
    if args.scope:
        entry["scopes"] = args.scope
    if args.param:
        pairs = [p.partition("=") for p in args.param]
        if any(not sep or not key for key, sep, _ in pairs):
            raise CommandError("--param takes KEY=VALUE.")
        entry["params"] = {key: value for key, _, value in pairs}
    return entry
