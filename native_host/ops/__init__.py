"""The registry of operations the extension may ask for: op name -> "module:function".

Modules are imported only when their op is first called, so the host starts fast. A handler
takes (params, ctx) and returns a JSON-able result or raises a native_host.errors.HostError
(its protocol code with it). Every op is defined in protocol.json's "ops" map: description,
callers, params and result schemas, and whether it is long. OPS must name exactly those ops
(tests/native_host/ops/test_registry.py); LONG is read from there. `check_params` validates
a request's params against the op's schema before its handler runs; the host and the
`autosmime` subcommands (native_host.commands.op_runner) both call it and then the same
handler, so both paths are one code path.

Long ops (network, mail, big messages, key derivation) run on the host's thread pool, so the
loop keeps answering hello, echo and short ops while they work.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from typing import Any

from native_host.errors import BadParams
from native_host.protocol import SCHEMA

OPS: dict[str, str] = {
    "hello": "native_host.ops.diagnostics:hello",
    "echo": "native_host.ops.diagnostics:echo",
    "account.configure": "native_host.ops.account:configure",
    "account.list": "native_host.ops.account:list_accounts",
    "account.signInOptions": "native_host.ops.account:sign_in_options",
    "account.signInStart": "native_host.ops.account:sign_in_start",
    "account.settings": "native_host.ops.account:settings",
    "pki.discover": "native_host.ops.account:discover",
    "certs.list": "native_host.ops.certs:list_own",
    "certs.lookup": "native_host.ops.certs:lookup",
    "compose.send": "native_host.ops.compose:send",
    "message.open": "native_host.ops.read:open_message",
    "keys.export": "native_host.ops.keys:export",
    "keys.import": "native_host.ops.keys:import_identity",
    "enroll": "native_host.ops.keys:enroll",
    "keys.renew": "native_host.ops.keys:renew",
    "backup.create": "native_host.ops.keys:backup",
    "backup.restore": "native_host.ops.keys:restore",
}

#: Ops run on the host's pool (network, mail, big messages, key derivation): "long" in
#: protocol.json.
LONG: frozenset[str] = frozenset(op for op, spec in SCHEMA["ops"].items() if spec["long"])

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


def check_params(op: str, params: dict[str, Any]) -> None:
    """BadParams naming the field when params do not fit the op's params schema in
    protocol.json; the handler never sees such a request."""
    try:
        _params_validator(op)(params)
    except _schema_error() as error:
        raise BadParams(_sentence(op, error)) from None


@functools.cache
def _params_validator(op: str) -> Callable[[Any], Any]:
    # fastjsonschema turns each schema into Python code once, on the op's first request:
    # importing it costs about 8 ms of the host's cold start where jsonschema costs 70-100 ms.
    import fastjsonschema

    return fastjsonschema.compile(SCHEMA["ops"][op]["params"])


def _schema_error() -> type[Exception]:
    import fastjsonschema

    return fastjsonschema.JsonSchemaValueException


def _sentence(op: str, error: Any) -> str:
    """A sentence naming the field: fastjsonschema says "data.to[0] must be string"."""
    field = str(error.name).removeprefix("data").lstrip(".") or "params"
    detail = str(error.message).replace(str(error.name), "", 1).strip()
    if error.rule == "required":
        missing = ", ".join(sorted(set(error.rule_definition) - set(error.value or {})))
        where = f" in {field}" if field != "params" else ""
        return f"{op}: {missing} is needed{where}."
    if error.rule == "additionalProperties":
        unknown = ", ".join(
            sorted(set(error.value or {}) - set(error.definition.get("properties", {})))
        )
        where = f" of {field}" if field != "params" else ""
        return f"{op}: {unknown} is not a parameter{where}."
    if error.rule in ("anyOf", "oneOf"):
        detail = "has the wrong type or value"
    return f"{op}: {field} {detail}."
