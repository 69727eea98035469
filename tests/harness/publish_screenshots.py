"""Copies the screenshots the README shows from tests/e2e/artifacts (written by the browser
tests on every run) to docs/screenshots, where git keeps them:

    .venv/bin/python tests/harness/publish_screenshots.py

tests/test_readme.py checks that every screenshot the README shows is there and is one a test
still writes."""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "tests" / "e2e" / "artifacts"
PUBLISHED = ROOT / "docs" / "screenshots"
README = ROOT / "README.md"
SHOWN = re.compile(r"\]\(docs/screenshots/([a-z0-9-]+\.png)\)")


def shown_in_readme(text: str | None = None) -> list[str]:
    """File names of the screenshots the README shows, in order."""
    return SHOWN.findall(README.read_text(encoding="utf-8") if text is None else text)


def main() -> int:
    missing = [n for n in shown_in_readme() if not (ARTIFACTS / n).exists()]
    if missing:
        print(f"Run the browser tests first; not in {ARTIFACTS}: {', '.join(missing)}")
        return 1
    PUBLISHED.mkdir(parents=True, exist_ok=True)
    for name in shown_in_readme():
        shutil.copyfile(ARTIFACTS / name, PUBLISHED / name)
        print(f"docs/screenshots/{name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
