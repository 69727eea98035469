"""Smoke test of `python -m bench browser`: the whole open-to-plaintext code path once (one
measured open of each message, after the usual warm-ups), in a process of its own, as a person
runs it. It checks the figures are printed, never what they are (timings are not asserted)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.mail]

ROOT = Path(__file__).resolve().parents[2]


def test_the_browser_bench_prints_its_figures() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench", "browser", "--runs", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "## browser" in out
    assert "| open-to-plaintext in the secure viewer, 100 KB |" in out
    assert "| beyond the webmail's own rendering (per open pair) |" in out
    assert "| 5 host: message.open" in out
    assert "| 7 sandboxed frame loads the plaintext |" in out
