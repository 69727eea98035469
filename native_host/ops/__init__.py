"""The registry of operations the extension may ask for: op name -> "module:function".

Modules are imported only when their op is first called, so the host starts fast. A handler
takes (params, ctx) and returns a JSON-able result or raises ProtocolError.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

OPS: dict[str, str] = {
    "hello": "native_host.ops.diagnostics:hello",
    "echo": "native_host.ops.diagnostics:echo",
}

Handler = Callable[[dict[str, Any], Any], Any]


def resolve(op: str) -> Handler | None:
    """Return the handler of op, or None when no such op exists."""
    target = OPS.get(op)
    if target is None:
        return None
    module, _, function = target.partition(":")
    return getattr(importlib.import_module(module), function)
