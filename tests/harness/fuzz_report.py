"""Counts of mutated inputs per robustness target, printed by tests/shared_pki/conftest.py."""

from __future__ import annotations

FUZZ_COUNTS: dict[str, dict[str, int]] = {}


def counter(target: str) -> dict[str, int]:
    """The outcome counts of one target (outcome name -> cases)."""
    return FUZZ_COUNTS.setdefault(target, {})
