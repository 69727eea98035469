"""S/MIME figures next to `openssl cms` doing the same work in the same run (medians).

sign+encrypt and decrypt+verify of a 100 KB and a 10 MB message, for 1 and for 10 recipients
(RSA-2048, AES-256-CBC, SHA-256, signer RSA-2048). OpenSSL runs as whole processes (two per
operation: cms -sign | cms -encrypt, cms -decrypt | cms -verify); ours runs in-process (the
library, as the native host uses it) and as a whole process (`autosmime encrypt --sign`,
`autosmime decrypt --ca`). Ratios are ours / OpenSSL: below 1 is faster.

Then the command line alone: decrypting a 10 MB AES-256-GCM message (RSA recipient, unsigned)
as a whole process, its time and peak memory (the process's own maximum resident set, from
wait4) next to `openssl cms -decrypt`; and the floor under every command: the interpreter
starting, importing what decrypt imports and loading the RSA key (its numbers checked for
consistency, keys.rsa_consistent), before any message is read. The project's modules are compiled to
bytecode first, as an installed package is.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from harness import pki

from shared_pki import smime
from shared_pki.keys import Credential

SIZES = {"100 KB": 100 * 1000, "10 MB": 10 * 1000 * 1000}
RECIPIENTS = (1, 10)


def message(size: int) -> bytes:
    """A text message of about size bytes: realistic MIME, mixed line lengths."""
    line = b"The quick brown fox jumps over the lazy dog, 0123456789 times.\r\n"
    body = (line * (size // len(line) + 1))[:size]
    return (
        b"From: alice@example.test\r\nTo: bob@example.test\r\nSubject: bench\r\n"
        b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n" + body
    )


def interleaved(actions: list[Callable[[], object]], repeat: int) -> list[float]:
    """Median milliseconds of each action, run in turn round after round (each round starting
    with the next one), so that ours and the peer see the same moments of a shared machine."""
    samples: list[list[float]] = [[] for _ in actions]
    for round_number in range(repeat):
        for offset in range(len(actions)):
            index = (round_number + offset) % len(actions)
            start = time.perf_counter()
            actions[index]()
            samples[index].append(time.perf_counter() - start)
    return [statistics.median(values) * 1000 for values in samples]


def shell(command: str) -> Callable[[], None]:
    def action() -> None:
        subprocess.run(["/bin/sh", "-c", command], check=True, stdout=subprocess.DEVNULL)

    return action


# Started from a small interpreter, not from this process: a child's peak resident set counts
# the image it was forked from (Linux keeps the larger of before and after exec), and this one
# holds megabytes of test messages.
_SPAWN = """import os, sys, time
start = time.perf_counter()
pid = os.posix_spawn(sys.argv[1], sys.argv[1:], os.environ, file_actions=[
    (os.POSIX_SPAWN_OPEN, 1, "/dev/null", os.O_WRONLY, 0),
    (os.POSIX_SPAWN_OPEN, 2, "/dev/null", os.O_WRONLY, 0)])
_, status, usage = os.wait4(pid, 0)
print((time.perf_counter() - start) * 1000, usage.ru_maxrss, os.waitstatus_to_exitcode(status))
"""


def process(argv: list[str]) -> tuple[float, float]:
    """(milliseconds, peak resident MiB) of one whole process, its output thrown away."""
    import shutil

    program = argv[0] if "/" in argv[0] else shutil.which(argv[0])
    assert program, argv[0]
    out = subprocess.run(
        [sys.executable, "-S", "-c", _SPAWN, program, *argv[1:]],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    if out[2] != "0":
        raise RuntimeError(f"{argv[:4]} failed ({out[2]})")
    return float(out[0]), int(out[1]) / 1024  # ru_maxrss is in kilobytes on Linux


def processes(commands: list[list[str]], repeat: int) -> list[tuple[float, float]]:
    """Median milliseconds and the largest peak MiB of each command over repeat rounds, run in
    turn (see interleaved)."""
    runs: list[list[tuple[float, float]]] = [[] for _ in commands]
    for round_number in range(repeat):
        for offset in range(len(commands)):
            index = (round_number + offset) % len(commands)
            runs[index].append(process(commands[index]))
    return [(statistics.median(t for t, _ in one), max(m for _, m in one)) for one in runs]


def compile_project() -> None:
    """Bytecode for native_host and shared_pki, as `pip install` leaves it: a checkout run
    with PYTHONDONTWRITEBYTECODE=1 would otherwise compile every module on every start."""
    import compileall

    for package in ("native_host", "shared_pki"):
        compileall.compile_dir(Path(__file__).resolve().parent.parent / package, quiet=1)


def command_line_rows(folder: Path, bob: dict, plain: bytes, bob_cert, repeat: int) -> list[str]:
    gcm = smime.encrypt_message(plain, [bob_cert], sender=None, cipher="aes256_gcm")
    (folder / "gcm.eml").write_bytes(gcm)
    ours, peer, floor, bare = processes(
        [
            [sys.executable, "-m", "native_host.cli", "decrypt", "--key", str(bob["key"]),
             "--cert", str(bob["cert"]), str(folder / "gcm.eml")],
            ["openssl", "cms", "-decrypt", "-recip", str(bob["cert"]), "-inkey",
             str(bob["key"]), "-in", str(folder / "gcm.eml")],
            [sys.executable, "-c", "import sys, native_host.commands.decrypt_cmd, "
             "shared_pki.smime; from shared_pki.keys import load_private_key;"
             "load_private_key(open(sys.argv[1], 'rb').read(), None)", str(bob["key"])],
            [sys.executable, "-c", "pass"],
        ],
        repeat,
    )  # fmt: skip
    return [
        "",
        "| command line (whole process) | ours | openssl cms -decrypt | ratio |",
        "|---|---|---|---|",
        f"| decrypt 10 MB AES-256-GCM (RSA recipient, unsigned): time | {ours[0]:.0f} ms "
        f"| {peer[0]:.0f} ms | {ours[0] / peer[0]:.2f}x |",
        f"| the same: peak memory | {ours[1]:.0f} MiB | {peer[1]:.0f} MiB "
        f"| {ours[1] / peer[1]:.2f}x |",
        f"| floor: interpreter + decrypt's imports + loading the RSA key | {floor[0]:.0f} ms, "
        f"{floor[1]:.0f} MiB | {peer[0]:.0f} ms | {floor[0] / peer[0]:.2f}x |",
        f"| floor: interpreter alone (`python -c pass`) | {bare[0]:.0f} ms, {bare[1]:.0f} MiB "
        f"| {peer[0]:.0f} ms | {bare[0] / peer[0]:.2f}x |",
    ]


def run(repeat: int = 5) -> list[str]:
    lines = [
        "| operation | size | recipients | ours in-process | ours process | openssl cms "
        "| ratio in-process | ratio process |",
        "|---|---|---|---|---|---|---|---|",
    ]
    root = pki.root("bench root", "rsa2048")
    alice = root.smime("alice@example.test", "rsa2048")
    recipients = [root.smime(f"user{n}@example.test", "rsa2048") for n in range(10)]
    signer = Credential(alice.key, alice.asn1, tuple(alice.chain_asn1))
    autosmime = f"{sys.executable} -m native_host.cli"
    compile_project()
    with tempfile.TemporaryDirectory(prefix="autosmime-bench-cms-") as scratch:
        folder = Path(scratch)
        files = alice.write(folder, "alice")
        (folder / "root.pem").write_bytes(root.cert_pem())
        bob = recipients[0].write(folder, "bob")
        for n, party in enumerate(recipients):
            party.write(folder, f"r{n}")
        for size_name, size in SIZES.items():
            plain = message(size)
            (folder / "plain.eml").write_bytes(plain)
            times = max(5, repeat)
            for count in RECIPIENTS:
                certs = [p.asn1 for p in recipients[:count]]
                to_args = " ".join(str(folder / f"r{n}.cert.pem") for n in range(count))
                to_ours = " ".join(f"--to {folder / f'r{n}.cert.pem'}" for n in range(count))
                sealed = smime.encrypt_message(
                    smime.sign_message(plain, signer), certs, sender=alice.asn1,
                    cipher="aes256_cbc",
                )  # fmt: skip
                (folder / "sealed.eml").write_bytes(sealed)
                ours, ours_process, peer = interleaved(
                    [
                        lambda c=certs, p=plain: smime.encrypt_message(
                            smime.sign_message(p, signer), c, sender=alice.asn1,
                            cipher="aes256_cbc",
                        ),
                        shell(
                            f"{autosmime} encrypt --sign --key {files['key']} "
                            f"--cert {files['cert']} --cipher aes256-cbc {to_ours} "
                            f"{folder / 'plain.eml'} > /dev/null"
                        ),
                        shell(
                            f"openssl cms -sign -signer {files['cert']} -inkey {files['key']} "
                            f"-in {folder / 'plain.eml'} | openssl cms -encrypt -aes256 "
                            f"{files['cert']} {to_args} > /dev/null"
                        ),
                    ],
                    times,
                )  # fmt: skip
                lines.append(_row("sign+encrypt", size_name, count, ours, ours_process, peer))
                opened, opened_process, peer_open = interleaved(
                    [
                        lambda s=sealed: smime.open_message(
                            s, keys=[(recipients[0].asn1, recipients[0].key)],
                            trust_anchors=[root.asn1],
                        ),
                        shell(
                            f"{autosmime} decrypt --key {bob['key']} --cert {bob['cert']} "
                            f"--ca {folder / 'root.pem'} {folder / 'sealed.eml'} > /dev/null"
                            " 2>/dev/null"
                        ),
                        shell(
                            f"openssl cms -decrypt -recip {bob['cert']} -inkey {bob['key']} "
                            f"-in {folder / 'sealed.eml'} | openssl cms -verify "
                            f"-CAfile {folder / 'root.pem'} > /dev/null 2>&1"
                        ),
                    ],
                    times,
                )  # fmt: skip
                lines.append(
                    _row("decrypt+verify", size_name, count, opened, opened_process, peer_open)
                )
        lines += command_line_rows(
            folder, bob, message(SIZES["10 MB"]), recipients[0].asn1, max(5, repeat)
        )
    return lines


def _row(op: str, size: str, count: int, ours: float, process: float, peer: float) -> str:
    return (
        f"| {op} | {size} | {count} | {ours:.1f} ms | {process:.1f} ms | {peer:.1f} ms "
        f"| {ours / peer:.2f}x | {process / peer:.2f}x |"
    )


if __name__ == "__main__":  # pragma: no cover
    os.environ.setdefault("PYTHONHASHSEED", "0")
    print("\n".join(run()))
