"""SM2, SM3 and SM4 figures next to OpenSSL and gmssl measured in the same run (medians).

- SM2 sign / verify: ours (pure Python, shared_pki.sm2) per operation, next to
  `openssl speed sm2` and to the `gmssl` package.
- SM2 encrypt / decrypt (32 bytes, a content-encryption key): ours next to gmssl, and next to
  `openssl pkeyutl` per process minus the OpenSSL process floor (`openssl version`), since
  `openssl speed` has no SM2 encryption.
- SM4-CBC and SM3 over 10 MB: ours (through `cryptography`) next to `openssl enc -sm4-cbc` and
  `openssl dgst -sm3` (whole processes; the floor is small next to 10 MB).
Ratios are ours / peer: below 1 is faster.
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from shared_pki import sm2

MESSAGE = b"message digest" * 8
BULK = 10 * 1000 * 1000


def per_op(action: Callable[[], object], seconds: float = 1.0, minimum: int = 20) -> float:
    """Median milliseconds of one call, over at least `minimum` calls and about `seconds`."""
    samples: list[float] = []
    deadline = time.perf_counter() + seconds
    while len(samples) < minimum or time.perf_counter() < deadline:
        start = time.perf_counter()
        action()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1000


def process_ms(argv: list[str], runs: int = 15) -> float:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1000


def openssl_speed_sm2() -> tuple[float, float]:
    """(sign ms, verify ms) from `openssl speed sm2`."""
    out = subprocess.run(
        ["openssl", "speed", "-seconds", "2", "sm2"], capture_output=True, text=True, check=True
    ).stdout
    match = re.search(r"SM2 \(CurveSM2\)\s+([\d.]+)s\s+([\d.]+)s\s+([\d.]+)\s+([\d.]+)", out)
    if not match:
        raise RuntimeError(f"cannot read openssl speed output:\n{out}")
    return 1000 / float(match.group(3)), 1000 / float(match.group(4))


def gmssl_figures(key: sm2.SM2PrivateKey) -> dict[str, float]:
    from gmssl import func
    from gmssl import sm2 as gm

    public = key.public_key
    point = public.point().hex()[2:]
    crypt = gm.CryptSM2(private_key=f"{key.d:064x}", public_key=point)
    crypt.public_key = point  # gmssl's lstrip("04") corrupts some keys; set it directly
    random_hex = func.random_hex(crypt.para_len)
    signature = crypt.sign_with_sm3(MESSAGE, random_hex)
    ciphertext = crypt.encrypt(MESSAGE[:32])
    return {
        "sign": per_op(lambda: crypt.sign_with_sm3(MESSAGE, func.random_hex(crypt.para_len))),
        "verify": per_op(lambda: crypt.verify_with_sm3(signature, MESSAGE)),
        "encrypt": per_op(lambda: crypt.encrypt(MESSAGE[:32])),
        "decrypt": per_op(lambda: crypt.decrypt(ciphertext)),
    }


def run(repeat: int = 5) -> list[str]:
    key = sm2.generate_private_key()
    public = key.public_key
    signature = key.sign(MESSAGE)
    cek = os.urandom(32)
    ciphertext = public.encrypt(cek)
    ours = {
        "sign": per_op(lambda: key.sign(MESSAGE)),
        "verify": per_op(lambda: public.verify(signature, MESSAGE)),
        "encrypt": per_op(lambda: public.encrypt(cek)),
        "decrypt": per_op(lambda: key.decrypt(ciphertext)),
    }
    gm = gmssl_figures(key)
    openssl_sign, openssl_verify = openssl_speed_sm2()
    lines = [
        "| figure (median) | ours | peer | peer figure | ratio |",
        "|---|---|---|---|---|",
        _row("SM2 sign", ours["sign"], "openssl speed sm2", openssl_sign),
        _row("SM2 verify", ours["verify"], "openssl speed sm2", openssl_verify),
        _row("SM2 sign", ours["sign"], "gmssl", gm["sign"]),
        _row("SM2 verify", ours["verify"], "gmssl", gm["verify"]),
        _row("SM2 encrypt (32 B)", ours["encrypt"], "gmssl", gm["encrypt"]),
        _row("SM2 decrypt (32 B)", ours["decrypt"], "gmssl", gm["decrypt"]),
    ]
    with tempfile.TemporaryDirectory(prefix="autosmime-bench-sm-") as scratch:
        folder = Path(scratch)
        (folder / "key.pem").write_bytes(key.to_pem())
        (folder / "pub.pem").write_bytes(public.to_pem())
        (folder / "cek").write_bytes(cek)
        (folder / "cek.sm2").write_bytes(ciphertext)
        floor = process_ms(["openssl", "version"])
        pkey_encrypt = process_ms(
            ["openssl", "pkeyutl", "-encrypt", "-pubin", "-inkey", str(folder / "pub.pem"),
             "-in", str(folder / "cek")]
        )  # fmt: skip
        pkey_decrypt = process_ms(
            ["openssl", "pkeyutl", "-decrypt", "-inkey", str(folder / "key.pem"),
             "-in", str(folder / "cek.sm2")]
        )  # fmt: skip
        lines += [
            _row("SM2 encrypt (32 B)", ours["encrypt"], "openssl pkeyutl - floor",
                 max(pkey_encrypt - floor, 0.001)),
            _row("SM2 decrypt (32 B)", ours["decrypt"], "openssl pkeyutl - floor",
                 max(pkey_decrypt - floor, 0.001)),
        ]  # fmt: skip
        bulk = os.urandom(BULK)
        (folder / "bulk").write_bytes(bulk)
        sm4_key, iv = os.urandom(16), os.urandom(16)

        def sm4_cbc() -> bytes:
            encryptor = Cipher(algorithms.SM4(sm4_key), modes.CBC(iv)).encryptor()
            return encryptor.update(bulk) + encryptor.finalize()

        def sm3() -> bytes:
            digest = hashes.Hash(hashes.SM3())
            digest.update(bulk)
            return digest.finalize()

        ours_sm4 = per_op(sm4_cbc, seconds=0, minimum=repeat)
        ours_sm3 = per_op(sm3, seconds=0, minimum=repeat)
        peer_sm4 = process_ms(
            ["openssl", "enc", "-sm4-cbc", "-K", sm4_key.hex(), "-iv", iv.hex(),
             "-in", str(folder / "bulk"), "-out", "/dev/null"], repeat,
        )  # fmt: skip
        peer_sm3 = process_ms(["openssl", "dgst", "-sm3", str(folder / "bulk")], repeat)
        lines += [
            _row("SM4-CBC encrypt 10 MB", ours_sm4, "openssl enc -sm4-cbc", peer_sm4),
            _row("SM3 of 10 MB", ours_sm3, "openssl dgst -sm3", peer_sm3),
        ]
    return lines


def _row(name: str, ours: float, peer_name: str, peer: float) -> str:
    return f"| {name} | {ours:.3f} ms | {peer_name} | {peer:.3f} ms | {ours / peer:.2f}x |"
