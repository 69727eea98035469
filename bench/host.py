"""Host-side figures next to `openssl cms` doing the same crypto in the same run (medians).

- message.open of an encrypted, signed 100 KB and 10 MB message: the host's reader
  (native_host.reading.open_message: decrypt, verify, timestamps, MIME, sanitizing) in-process,
  plus the native-messaging transfer of the raw message into the real host process (an `echo`
  of the same size), next to `openssl cms -decrypt | openssl cms -verify`.
- compose.send to 10 recipients, SMTP excluded: building the signed and encrypted copies
  (native_host.sending.build_messages, no TSA) next to `openssl cms -sign | -encrypt`.
Keys: P-256 for everyone (what enrollment makes by default).
"""

from __future__ import annotations

import base64
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from harness import pki
from harness.native import HostProcess, write_host_config

from native_host.keystore import Keystore
from native_host.reading import open_message
from native_host.sending import Attachment, ComposeRequest, build_messages
from shared_pki import smime
from shared_pki.keys import Credential

SIZES = {"100 KB": 100 * 1000, "10 MB": 10 * 1000 * 1000}


def timed(action: Callable[[], object], repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        action()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1000


def shell(command: str) -> Callable[[], None]:
    return lambda: subprocess.run(["/bin/sh", "-c", command], check=True)


def plain_message(size: int) -> bytes:
    line = b"The quick brown fox jumps over the lazy dog, 0123456789 times.\r\n"
    return (
        b"From: alice@example.test\r\nTo: bob@example.test\r\nSubject: bench\r\n"
        b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
        + (line * (size // len(line) + 1))[:size]
    )


def run(repeat: int = 5) -> list[str]:
    lines = [
        "| figure | size | ours | peer | peer figure | ratio |",
        "|---|---|---|---|---|---|",
    ]
    root = pki.root("bench root", "p256")
    alice = root.smime("alice@example.test", "p256")
    bob = root.smime("bob@example.test", "p256")
    others = [root.smime(f"user{n}@example.test", "p256") for n in range(9)]
    signer = Credential(alice.key, alice.asn1, tuple(alice.chain_asn1))
    with tempfile.TemporaryDirectory(prefix="autosmime-bench-host-") as scratch:
        folder = Path(scratch)
        keystore = Keystore(folder / "keys", b"b" * 32)
        key_id = keystore.add_key("bob@example.test", "intl", bob.key)
        keystore.attach_certificate(key_id, bob.asn1.dump(), bob.chain_asn1)
        keystore.mark(key_id, "current")
        (folder / "root.pem").write_bytes(root.cert_pem())
        bob_files = bob.write(folder, "bob")
        config, _log = write_host_config(folder / "host")
        host = HostProcess(config)
        try:
            for size_name, size in SIZES.items():
                times = repeat if size < 1_000_000 else max(3, repeat // 2)
                sealed = smime.encrypt_message(
                    smime.sign_message(plain_message(size), signer), [bob.asn1],
                    sender=alice.asn1,
                )  # fmt: skip
                (folder / "sealed.eml").write_bytes(sealed)
                reader = timed(
                    lambda s=sealed: open_message(s, keystore=keystore, trust_anchors=[root.asn1]),
                    times,
                )
                payload = base64.b64encode(sealed).decode("ascii")
                transfer = timed(lambda p=payload: host.call("echo", {"payload": p}), times)
                peer = timed(
                    shell(
                        f"openssl cms -decrypt -recip {bob_files['cert']} -inkey {bob_files['key']}"
                        f" -in {folder / 'sealed.eml'} | openssl cms -verify -CAfile "
                        f"{folder / 'root.pem'} > /dev/null 2>&1"
                    ),
                    times,
                )
                ours = reader + transfer
                lines.append(
                    f"| message.open (reader {reader:.1f} ms + transfer {transfer:.1f} ms) "
                    f"| {size_name} | {ours:.1f} ms | openssl cms -decrypt, -verify "
                    f"| {peer:.1f} ms | {ours / peer:.2f}x |"
                )
        finally:
            host.close()
        recipients = {
            p.asn1.subject.native.get("email_address", ""): p.asn1 for p in [bob, *others]
        }
        request = ComposeRequest(
            sender="alice@example.test",
            to=tuple(recipients),
            subject="bench",
            text="Hello all.\n" * 2000,
            attachments=(Attachment("data.bin", "application/octet-stream", b"\x01" * 50_000),),
        )
        ours = timed(
            lambda: build_messages(
                request, credential=signer, suite="intl", sender_certificate=alice.asn1,
                recipient_certificates=recipients, tsa_url=None,
            ),
            repeat,
        )  # fmt: skip
        alice_files = alice.write(folder, "alice")
        certs = " ".join(str(p.write(folder, f"r{n}")["cert"]) for n, p in enumerate(others))
        (folder / "plain.eml").write_bytes(plain_message(72_000))
        peer = timed(
            shell(
                f"openssl cms -sign -signer {alice_files['cert']} -inkey {alice_files['key']} "
                f"-in {folder / 'plain.eml'} | openssl cms -encrypt -aes256 "
                f"{alice_files['cert']} {bob_files['cert']} {certs} > /dev/null"
            ),
            repeat,
        )
        lines.append(
            f"| compose.send to 10 recipients, SMTP excluded (build + sign + encrypt) | ~72 KB "
            f"| {ours:.1f} ms | openssl cms -sign, -encrypt | {peer:.1f} ms | {ours / peer:.2f}x |"
        )
    return lines
