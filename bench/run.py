"""Benchmark runner: `python -m bench [SECTION ...]` (or `python bench/run.py`).

Each section prints one table whose figures stand next to a peer measured in the same run,
with the ratio. Sections: native (extension <-> host), cms (S/MIME against `openssl cms`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

SECTIONS = ("native", "cms")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sections", nargs="*", help=f"any of {', '.join(SECTIONS)} (default all)")
    parser.add_argument("--calls", type=int, default=1000, help="sequential echo calls (native)")
    parser.add_argument("--runs", type=int, default=20, help="cold starts and spawns (native)")
    parser.add_argument("--repeat", type=int, default=5, help="repetitions per CMS figure")
    args = parser.parse_args(argv)
    unknown = set(args.sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections: {', '.join(sorted(unknown))}")
    for section in args.sections or SECTIONS:
        if section == "native":
            from bench import native_port

            lines = native_port.run(args.calls, args.runs)
        else:
            from bench import cms

            lines = cms.run(args.repeat)
        print(f"\n## {section}\n")
        print("\n".join(lines), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
