"""Host-side figures next to `openssl cms` doing the same crypto in the same run (medians).

- message.open of an encrypted, signed 100 KB and 10 MB message: the host's reader
  (domain.reading.open_message: decrypt, verify, timestamps, MIME, sanitizing) in-process,
  plus the native-messaging transfer of the raw message into the real host process (an `echo`
  of the same size), next to `openssl cms -decrypt | openssl cms -verify`.
- compose.send to 10 recipients, SMTP excluded: building the signed and encrypted copies
  (native_host.domain.sending.build_messages, no TSA) next to `openssl cms -sign | -encrypt`.
- enrollment wall time: `autosmime enroll` (both suites, real RFC 8823 mail through the local
  Dovecot + SMTP stack, `autosmime pki serve`) from start to stored certificates and proven
  backup, next to the floor of the same command failing fast (process start and imports).
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

from bench.cms import interleaved
from native_host.domain.keystore import Keystore
from native_host.domain.reading import open_message
from native_host.domain.sending import Attachment, ComposeRequest, build_messages
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


def _quoted(text: str) -> str:
    return text.replace("%", "%25").replace("@", "%40").replace(":", "%3A")


def enrollment_seconds(runs: int = 3) -> tuple[float, float]:
    """(median enroll seconds, median seconds of `autosmime enroll` refusing at once)."""
    import os
    import signal
    import sys
    import urllib.request

    from harness.acme_client import free_port
    from harness.mail import MailStack

    ca, user = "carol@example.test", "alice@example.test"
    with MailStack() as stack, tempfile.TemporaryDirectory(prefix="autosmime-enroll-") as tmp:
        folder = Path(tmp)
        login = f"{_quoted(ca)}:{_quoted(stack.users[ca])}@{stack.host}"
        port = free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "native_host.cli", "pki", "serve", "--data",
             str(folder / "pki"), "--listen", f"127.0.0.1:{port}", "--mail-from", ca,
             "--smtp", f"smtp://{login}:{stack.smtp_port}",
             "--imap", f"imaps://{login}:{stack.imaps_port}",
             "--mail-ca-file", str(stack.ca_cert_path), "--dkim", "off"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    with urllib.request.urlopen(f"{url}/ca/roots.pem", timeout=2) as answer:
                        (folder / "roots.pem").write_bytes(answer.read())
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)  # still starting
            samples, floors = [], []
            for n in range(runs):
                env = {
                    **os.environ,
                    "PYTHON_KEYRING_BACKEND": "keyrings.alt.file.PlaintextKeyring",
                    "XDG_DATA_HOME": str(folder / f"xdg{n}"),
                }
                cli = [sys.executable, "-m", "native_host.cli", "--profile",
                       str(folder / f"profile{n}")]  # fmt: skip
                quoted = _quoted(user)
                subprocess.run(
                    [*cli, "account", "add", user, "--imap",
                     f"imaps://{quoted}@127.0.0.1:{stack.imaps_port}", "--smtp",
                     f"smtp://{quoted}@127.0.0.1:{stack.smtp_port}", "--ca-file",
                     str(stack.ca_cert_path), "--pki", url, "--pki-roots",
                     str(folder / "roots.pem"), "--password-stdin"],
                    input=stack.users[user] + "\n", text=True, check=True, env=env,
                    capture_output=True,
                )  # fmt: skip
                with stack.imap_client(user) as imap:  # each run is a first enrollment
                    if imap.folder_exists("autosmime-backup"):
                        imap.delete_folder("autosmime-backup")
                start = time.perf_counter()
                subprocess.run([*cli, "enroll"], check=True, env=env, capture_output=True)
                samples.append(time.perf_counter() - start)
                start = time.perf_counter()
                subprocess.run([*cli, "enroll", "nobody@example.test"], env=env,
                               capture_output=True)  # fmt: skip
                floors.append(time.perf_counter() - start)
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=30)
    return statistics.median(samples), statistics.median(floors)


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
                times = max(5, repeat)
                sealed = smime.encrypt_message(
                    smime.sign_message(plain_message(size), signer), [bob.asn1],
                    sender=alice.asn1,
                )  # fmt: skip
                (folder / "sealed.eml").write_bytes(sealed)
                payload = base64.b64encode(sealed).decode("ascii")
                reader, transfer, peer = interleaved(
                    [
                        lambda s=sealed: open_message(
                            s, keystore=keystore, trust_anchors=[root.asn1]
                        ),
                        lambda p=payload: host.call("echo", {"payload": p}),
                        shell(
                            f"openssl cms -decrypt -recip {bob_files['cert']} -inkey "
                            f"{bob_files['key']} -in {folder / 'sealed.eml'} | openssl cms "
                            f"-verify -CAfile {folder / 'root.pem'} > /dev/null 2>&1"
                        ),
                    ],
                    times,
                )  # fmt: skip
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
    enroll, floor = enrollment_seconds()
    lines.append(
        f"| enrollment to stored certificates (both suites, real mail) | - | {enroll:.2f} s "
        f"| autosmime enroll refusing at once | {floor:.2f} s | {enroll / floor:.1f}x |"
    )
    return lines
