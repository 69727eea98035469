"""The one console command: every subcommand has --help, and `host` runs the real host."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest
from harness.native import ORIGIN, encode, frame, write_host_config

from native_host.cli import COMMANDS
from native_host.transport.framing import read_frame


def autosmime(*args: str, **kwargs: object) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "native_host.cli", *args], capture_output=True, check=False, **kwargs
    )


def test_top_level_help_lists_every_command() -> None:
    done = autosmime("--help")
    assert done.returncode == 0
    for name in ("install", "uninstall", "doctor", "host"):
        assert name in COMMANDS and name.encode() in done.stdout


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_each_command_has_help(name: str) -> None:
    done = autosmime(name, "--help")
    assert done.returncode == 0, done.stderr
    assert f"usage: autosmime {name}".encode() in done.stdout


def test_unknown_command_fails_with_usage() -> None:
    done = autosmime("frobnicate")
    assert done.returncode == 2 and b"usage:" in done.stderr


def test_a_command_loads_only_its_own_module() -> None:
    """A one-shot command imports its module alone, whatever the global options are called."""
    code = (
        "import sys; from native_host import cli; sys.argv = ['autosmime', '--profile', "
        "'decrypt', 'sign', '--help']\ntry:\n    cli.main()\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in sys.modules if m.startswith('native_host.commands.')))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, check=True)
    assert b"usage: autosmime sign" in done.stdout
    loaded = done.stdout.splitlines()[-1].decode()
    assert "native_host.commands.sign_cmd" in loaded
    for other in ("decrypt_cmd", "install_cmd", "doctor_cmd", "enroll_cmd"):
        assert other not in loaded


def test_host_subcommand_answers_hello(tmp_path: Path) -> None:
    config, _ = write_host_config(tmp_path)
    request = frame(encode({"id": 1, "op": "hello", "params": {}}))
    done = autosmime("host", "--config", str(config), ORIGIN, input=request, timeout=30)
    assert done.returncode == 0, done.stderr
    reply = read_frame(io.BytesIO(done.stdout))
    assert reply is not None and b'"ok":true' in reply
