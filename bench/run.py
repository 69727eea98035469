"""Benchmark runner: `python -m bench [SECTION ...]` (or `python bench/run.py`).

Each section prints one table: every figure next to a peer measured in the same run, and the
ratio. Sections: native (extension <-> host), cms (S/MIME against `openssl cms`), sm
(SM2/SM3/SM4 against OpenSSL and gmssl), pki (directory, TSA and ACME under load against the
framework's floor), host (message.open and compose.send against `openssl cms`), browser
(open-to-plaintext of a 100 KB message in the real browser against the webmail showing it plain).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

SECTIONS = ("native", "cms", "sm", "pki", "host", "browser")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sections", nargs="*", help=f"any of {', '.join(SECTIONS)} (default all)")
    parser.add_argument("--calls", type=int, default=1000, help="sequential echo calls (native)")
    parser.add_argument(
        "--runs",
        type=int,
        default=20,
        help="cold starts and spawns (native); opens of each message (browser)",
    )
    parser.add_argument("--repeat", type=int, default=5, help="repetitions per CMS figure")
    args = parser.parse_args(argv)
    unknown = set(args.sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections: {', '.join(sorted(unknown))}")
    for section in args.sections or SECTIONS:
        if section == "native":
            from bench import native_port

            lines = native_port.run(args.calls, args.runs)
        elif section == "cms":
            from bench import cms

            lines = cms.run(args.repeat)
        elif section == "sm":
            from bench import sm

            lines = sm.run(args.repeat)
        elif section == "pki":
            from bench import pki

            lines = pki.run()
        elif section == "browser":
            from bench import browser

            lines = browser.run(args.runs)
        else:
            from bench import host

            lines = host.run(args.repeat)
        print(f"\n## {section}\n")
        print("\n".join(lines), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
