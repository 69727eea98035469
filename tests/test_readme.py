"""The README's screenshots are committed, and each is one a browser test still writes."""

from __future__ import annotations

from pathlib import Path

from harness.publish_screenshots import PUBLISHED, ROOT, shown_in_readme

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_the_readme_shows_screenshots_that_exist() -> None:
    shown = shown_in_readme()
    assert len(shown) >= 4, "the README shows compose, the opened message and onboarding"
    for name in shown:
        path = PUBLISHED / name
        assert path.exists(), f"{path} is missing: run tests/harness/publish_screenshots.py"
        assert path.read_bytes()[:8] == PNG_MAGIC, f"{path} is not a PNG"


def test_each_screenshot_is_written_by_a_browser_test() -> None:
    sources = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "tests/e2e").glob("*.py"))
    for name in shown_in_readme():
        assert f'"{Path(name).stem}"' in sources, f"no browser test writes {name} any more"


def test_no_stale_screenshot_is_kept() -> None:
    kept = {p.name for p in PUBLISHED.glob("*.png")}
    assert kept <= set(shown_in_readme()), (
        f"not shown in the README: {kept - set(shown_in_readme())}"
    )


def test_the_pattern_finds_images_only() -> None:
    text = (
        "![a](docs/screenshots/gmail-compose.png) and [b](docs/other.png)"
        " ![c](docs/screenshots/x-1.png)"
    )
    assert shown_in_readme(text) == ["gmail-compose.png", "x-1.png"]
