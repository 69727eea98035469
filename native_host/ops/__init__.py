"""The registry of operations the extension may ask for: op name -> "module:function".

Modules are imported only when their op is first called, so the host starts fast. A handler
takes (params, ctx) and returns a JSON-able result or raises a
native_host.errors.HostError (its protocol code with it). Every op is
described in protocol.json's "ops" map (its one definition); the `autosmime` subcommands call
the same handlers (native_host.commands.op_runner), so both paths are one code path.

LONG ops (network, mail, big messages, key derivation) run on the host's thread pool, so the
loop keeps answering hello, echo and short ops while they work.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

OPS: dict[str, str] = {
    "hello": "native_host.ops.diagnostics:hello",
    "echo": "native_host.ops.diagnostics:echo",
    "account.configure": "native_host.ops.account:configure",
    "account.list": "native_host.ops.account:list_accounts",
    "certs.list": "native_host.ops.certs:list_own",
    "certs.lookup": "native_host.ops.certs:lookup",
    "compose.send": "native_host.ops.compose:send",
    "message.open": "native_host.ops.read:open_message",
    "keys.export": "native_host.ops.keys:export",
    "enroll": "native_host.ops.keys:enroll",
    "keys.renew": "native_host.ops.keys:renew",
    "backup.create": "native_host.ops.keys:backup",
    "backup.restore": "native_host.ops.keys:restore",
}

LONG: frozenset[str] = frozenset(
    {
        "account.configure",  # real IMAP and SMTP logins
        "certs.lookup",  # the directory over HTTP
        "compose.send",
        "message.open",  # IMAP fetches, big messages
        "keys.export",  # PKCS#12 key derivation
        "enroll",
        "keys.renew",
        "backup.create",
        "backup.restore",
    }
)

Handler = Callable[[dict[str, Any], Any], Any]


def resolve(op: str) -> Handler | None:
    """Return the handler of op, or None when no such op exists."""
    target = OPS.get(op)
    if target is None:
        return None
    module, _, function = target.partition(":")
    return getattr(importlib.import_module(module), function)


def is_long(op: str) -> bool:
    """Whether op runs on the host's pool rather than in the reading loop."""
    return op in LONG
