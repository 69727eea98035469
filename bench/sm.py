"""SM2, SM3 and SM4 figures next to OpenSSL and gmssl measured in the same run (medians).

- SM2 sign / verify: ours (shared_pki.sm2: the system's libcrypto through ctypes) per
  operation, next to `openssl speed sm2`, to the `gmssl` package, and to the pure Python ours
  was before (tests/harness/sm2_reference.py).
- SM2 encrypt / decrypt (32 bytes, a content-encryption key): ours next to gmssl, the pure
  Python before, and `openssl pkeyutl` per process minus the OpenSSL process floor (`openssl
  version`), since `openssl speed` has no SM2 encryption.
- SM4-CBC and SM3 over 10 MB: ours (through `cryptography`) next to `openssl enc -sm4-cbc` and
  `openssl dgst -sm3` (whole processes; the floor is small next to 10 MB).
- Timing spread of the operations with a secret, now and before: signing with nonces of very
  different size (ours: OpenSSL draws the nonce, so it is recovered from each signature with the
  key, k = s(1 + d) + r d mod n, and the signatures are sorted by its leading zero bits; before:
  the nonce is chosen), and the scalar multiplications by d (public key from d, decryption) for
  keys with d below 2^64 against full-size d. Each line gives both medians, their ratio and
  Welch's t over the fastest 90% of samples (|t| above about 4.5 is a measurable difference,
  the threshold dudect uses).
Ratios are ours / peer: below 1 is faster.
"""

from __future__ import annotations

import os
import re
import secrets
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from harness import sm2_reference as before

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
    pure = {
        "sign": per_op(lambda: before.sign(key.d, MESSAGE)),
        "verify": per_op(lambda: before.verify(public, signature, MESSAGE)),
        "encrypt": per_op(lambda: before.encrypt(public, cek)),
        "decrypt": per_op(lambda: before.decrypt(key.d, ciphertext)),
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
    lines += [
        _row(f"SM2 {name}", ours[name], "our pure Python before", pure[name])
        for name in ("sign", "verify", "encrypt", "decrypt")
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
    return [*lines, "", *timing_spread()]


# ---- timing spread over secret sizes ------------------------------------------------------------

SHORT_NONCE_ZERO_BITS = 8  # "many leading zero bits": 1 signature in 256 has at least this many


def _welch_t(a: list[float], b: list[float]) -> float:
    """Welch's t of two samples, each cut to its fastest 90% (interrupts only add time)."""
    a = sorted(a)[: max(2, len(a) * 9 // 10)]
    b = sorted(b)[: max(2, len(b) * 9 // 10)]
    va, vb = statistics.variance(a), statistics.variance(b)
    denominator = (va / len(a) + vb / len(b)) ** 0.5
    return (statistics.fmean(a) - statistics.fmean(b)) / denominator if denominator else 0.0


def _spread_row(name: str, small: list[float], full: list[float]) -> str:
    ms, mf = statistics.median(small) * 1000, statistics.median(full) * 1000
    return (
        f"| {name} | {ms:.3f} ms (n={len(small)}) | {mf:.3f} ms (n={len(full)}) "
        f"| {ms / mf:.3f} | {_welch_t(small, full):+.1f} |"
    )


def _timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def _nonce(key: sm2.SM2PrivateKey, signature: bytes) -> int:
    """The nonce OpenSSL drew, from the signature and the key: s = (1 + d)^-1 (k - r d)."""
    r, s = before._decode_signature(signature)  # type: ignore[misc]
    return (s * (1 + key.d) + r * key.d) % sm2.N


def timing_spread(signatures: int = 20_000, per_key: int = 40) -> list[str]:
    """Operations with a secret, timed for secrets of very different size, ours and before."""
    key = sm2.generate_private_key()
    short, full = [], []
    for index in range(signatures):
        message = index.to_bytes(4, "big")
        start = time.perf_counter()
        signature = key.sign(message)
        elapsed = time.perf_counter() - start
        zeros = 256 - _nonce(key, signature).bit_length()
        if zeros >= SHORT_NONCE_ZERO_BITS:
            short.append(elapsed)
        elif zeros == 0:
            full.append(elapsed)
    lines = [
        "| timing spread: secret small vs full-size | small | full-size | ratio | Welch t |",
        "|---|---|---|---|---|",
        _spread_row(
            f"ours: sign, OpenSSL's nonce with >= {SHORT_NONCE_ZERO_BITS} leading zero bits "
            f"vs none ({signatures} signatures)",
            short,
            full,
        ),
    ]
    # Before: the nonce chosen, interleaved so that machine load hits both alike.
    old_short, old_full = [], []
    small_k = [secrets.randbelow(2**128) + 1 for _ in range(200)]
    full_k = [sm2.N - 1 - secrets.randbelow(2**200) for _ in range(200)]
    for k_small, k_full in zip(small_k, full_k, strict=True):
        old_short.append(_timed(lambda k=k_small: before.sign_with_nonce(key.d, MESSAGE, k)))
        old_full.append(_timed(lambda k=k_full: before.sign_with_nonce(key.d, MESSAGE, k)))
    lines.append(
        _spread_row(
            "before: sign, chosen nonce below 2^128 vs full-size",
            old_short,
            old_full,
        )
    )
    # Scalar multiplications by d: keys with d < 2^64 against full-size ones.
    small_keys = [sm2.SM2PrivateKey(secrets.randbelow(2**64) + 1) for _ in range(8)]
    full_keys = [sm2.SM2PrivateKey(sm2.N - 2 - secrets.randbelow(2**200)) for _ in range(8)]
    cts = [(k.public_key.encrypt(MESSAGE[:32]), f.public_key.encrypt(MESSAGE[:32]))
           for k, f in zip(small_keys, full_keys, strict=True)]  # fmt: skip
    samples: dict[str, tuple[list[float], list[float]]] = {
        name: ([], []) for name in ("ours: d*G", "before: d*G", "ours: decrypt", "before: decrypt")
    }
    for _ in range(per_key):
        for (small, full), (ct_small, ct_full) in zip(
            zip(small_keys, full_keys, strict=True), cts, strict=True
        ):
            for index, (k, ct) in enumerate(((small, ct_small), (full, ct_full))):
                samples["ours: d*G"][index].append(_timed(lambda k=k: sm2.SM2PrivateKey(k.d)))
                samples["before: d*G"][index].append(_timed(lambda k=k: before.public_key(k.d)))
                samples["ours: decrypt"][index].append(_timed(lambda k=k, ct=ct: k.decrypt(ct)))
                samples["before: decrypt"][index].append(
                    _timed(lambda k=k, ct=ct: before.decrypt(k.d, ct))
                )
    for name, (small, full) in samples.items():
        lines.append(_spread_row(f"{name}, d < 2^64 vs full-size d (8 keys each)", small, full))
    return lines


def _row(name: str, ours: float, peer_name: str, peer: float) -> str:
    return f"| {name} | {ours:.3f} ms | {peer_name} | {peer:.3f} ms | {ours / peer:.2f}x |"
