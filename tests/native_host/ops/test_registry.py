"""protocol.json is the one definition of every op: the Python registry names exactly its ops,
every op says who may call it and what its params and result are, and the host checks each
request's params before the handler runs (a bad one gets bad_params naming the field)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import pytest
from harness.native import HostProcess, write_host_config

from native_host import ops
from native_host.errors import BadParams
from native_host.protocol import SCHEMA

CALLERS = {"content-script", "worker", "extension-page"}
SPECS: dict[str, dict[str, Any]] = SCHEMA["ops"]


def test_the_registry_names_exactly_the_ops_protocol_json_declares() -> None:
    assert set(ops.OPS) == set(SPECS)
    for op in SPECS:
        assert callable(ops.resolve(op)), op
    assert {op for op, spec in SPECS.items() if spec["long"]} == ops.LONG


@pytest.mark.parametrize("op", sorted(SPECS))
def test_every_op_has_callers_and_schemas(op: str) -> None:
    spec = SPECS[op]
    assert set(spec) == {"description", "callers", "long", "params", "result"}
    assert spec["callers"] and set(spec["callers"]) <= CALLERS
    assert "extension-page" in spec["callers"]  # the extension's own pages may ask for anything
    for part in ("params", "result"):
        jsonschema.Draft7Validator.check_schema(spec[part])  # what the host's validator reads
        jsonschema.Draft202012Validator.check_schema(spec[part])  # what the tests use
    assert spec["params"]["type"] == "object" and spec["params"]["additionalProperties"] is False


@pytest.mark.parametrize(
    ("op", "params", "words"),
    [
        ("echo", {}, "echo: payload is needed."),
        ("echo", {"payload": 1, "progress": "3"}, "echo: progress must be integer."),
        ("hello", {"verbose": True}, "hello: verbose is not a parameter."),
        ("compose.send", {"from": "a@example.test", "sign": "yes"}, "sign must be boolean"),
        ("compose.send", {"from": "a@example.test", "suite": "rot13"}, "suite must be one of"),
        (
            "compose.send",
            {"from": "a@example.test", "attachments": [{"name": "x", "contentType": "a/b"}]},
            "data is needed in attachments[0]",
        ),
        ("certs.lookup", {"addresses": [7]}, "addresses has the wrong type or value"),
        ("keys.renew", {"windowDays": 0}, "windowDays must be bigger than 0"),
    ],
)
def test_bad_params_are_refused_naming_the_field(op: str, params: dict, words: str) -> None:
    with pytest.raises(BadParams) as refused:
        ops.check_params(op, params)
    assert words in refused.value.protocol_message()


def test_good_params_pass() -> None:
    ops.check_params("hello", {})
    ops.check_params("echo", {"payload": {"any": ["thing"]}, "progress": 3})
    ops.check_params(
        "compose.send",
        {"from": "a@example.test", "to": ["b@example.test"], "cc": "c@example.test",
         "text": "hi", "attachments": [{"name": "a.txt", "contentType": "text/plain", "data": ""}],
         "sign": True, "encrypt": False, "suite": "auto"},
    )  # fmt: skip


def test_the_host_refuses_bad_params_before_the_handler_runs(tmp_path: Path) -> None:
    """account.configure with a misspelt field: refused at once, no login tried, nothing
    written to the profile."""
    config, _log = write_host_config(tmp_path / "host")
    profile = tmp_path / "profile"
    host = HostProcess(config, env={"AUTOSMIME_PROFILE": str(profile)})
    try:
        reply = host.call(
            "account.configure", {"address": "alice@example.test", "passwrd": "x"}, msg_id=9
        )
        echoed = host.call("echo", {"payload": "still here"}, msg_id=10)
    finally:
        host.close()
    assert reply == {
        "id": 9,
        "ok": False,
        "error": {
            "code": "bad_params",
            "message": "account.configure: passwrd is not a parameter.",
        },
    }
    assert not (profile / "accounts.json").exists()
    assert echoed["result"] == "still here"
