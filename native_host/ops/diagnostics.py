"""Operations for diagnostics and tests: hello (versions, capabilities) and echo."""

from __future__ import annotations

import os
import platform
import sys
from typing import Any

from native_host import __version__
from native_host.errors import BadParams
from native_host.protocol import LIMITS, VERSION


def hello(params: dict[str, Any], ctx: Any) -> dict[str, Any]:
    from native_host.ops import OPS

    return {
        "name": "autosmime",
        "version": __version__,
        "protocol": VERSION,
        "python": platform.python_version(),
        "platform": sys.platform,
        "origin": ctx.origin,
        "pid": os.getpid(),
        "ops": sorted(OPS),
        "limits": LIMITS,
        "capabilities": ["chunking", "progress"],
    }


def echo(params: dict[str, Any], ctx: Any) -> Any:
    """Return params["payload"]; with params["progress"] = N, first report N progress steps."""
    steps = params.get("progress", 0)
    if not isinstance(steps, int) or isinstance(steps, bool) or not 0 <= steps <= 1000:
        raise BadParams("progress must be an integer from 0 to 1000.")
    if "payload" not in params:
        raise BadParams("echo needs a payload.")
    for done in range(1, steps + 1):
        ctx.progress(done, steps, "echoing")
    return params["payload"]
