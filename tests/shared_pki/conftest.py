"""Reports, at the end of the run, how many mutated inputs the robustness tests fed in."""

from __future__ import annotations

from typing import Any

from harness.fuzz_report import FUZZ_COUNTS


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not FUZZ_COUNTS:
        return
    terminalreporter.section("robustness: mutated inputs fed to the parsers")
    for target, outcomes in sorted(FUZZ_COUNTS.items()):
        total = sum(outcomes.values())
        detail = ", ".join(f"{name} {count}" for name, count in sorted(outcomes.items()))
        terminalreporter.write_line(f"{target}: {total} cases ({detail})")
