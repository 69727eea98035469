"""Host behaviour that needs an op the product does not have: a handler that crashes."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from native_host import ops
from native_host.protocol import SCHEMA, encode
from native_host.transport.framing import read_frame
from native_host.transport.host import Host, Log

ORIGIN = "chrome-extension://test/"


def boom(params: dict, ctx: object) -> None:
    raise RuntimeError("secret detail " + params.get("payload", ""))


def test_a_crashing_handler_becomes_an_internal_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(ops.OPS, "test.boom", f"{__name__}:boom")
    monkeypatch.setitem(SCHEMA["ops"], "test.boom", {"params": {"type": "object"}, "long": False})
    requests = [
        {"id": 1, "op": "test.boom", "params": {"payload": "SECRET"}},
        {"id": 2, "op": "echo", "params": {"payload": "ok"}},
    ]
    inp = io.BytesIO(b"".join(len(b).to_bytes(4, "little") + b for b in map(encode, requests)))
    out = io.BytesIO()
    log = Log(tmp_path / "host.log")
    assert Host(inp, out, ORIGIN, {ORIGIN}, log).serve() == 0
    out.seek(0)
    first, second = (json.loads(read_frame(out) or b"") for _ in range(2))
    assert first["ok"] is False and first["error"]["code"] == "internal"
    assert "SECRET" not in first["error"]["message"]
    assert second == {"id": 2, "ok": True, "result": "ok"}
    assert "SECRET" not in (tmp_path / "host.log").read_text()
    assert "RuntimeError" in (tmp_path / "host.log").read_text()
