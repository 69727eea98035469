"""shared_pki.backup: the recovery code, and backup messages built, read back and refused."""

from __future__ import annotations

import collections
import datetime
import email
import email.policy
import inspect
import re
import subprocess
from pathlib import Path

import pytest
from asn1crypto import pkcs12 as asn1_p12
from cryptography.hazmat.primitives import serialization
from harness import pki, sm_pki

from shared_pki import backup, pkcs12, sm2
from shared_pki.errors import KeyLoadError, MalformedInput

FAST = 2000
NOW = datetime.datetime(2025, 3, 4, 5, 6, 7, tzinfo=datetime.UTC)
ADDRESS = "alice@example.com"


def _der(key) -> bytes:
    if isinstance(key, sm2.SM2PrivateKey):
        return key.to_der()
    return key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@pytest.fixture(scope="module")
def held() -> list[backup.BackupKey]:
    ca = pki.root().intermediate("backup test CA")
    rsa_old, rsa, ec = (ca.smime(ADDRESS, kind) for kind in ("rsa2048", "rsa2048", "p256"))
    sm = sm_pki.SmPki(intermediate=True).person(ADDRESS)

    return [
        backup.BackupKey(rsa_old.key, rsa_old.asn1, tuple(rsa_old.chain_asn1), "superseded",
                         "intl", key_id="k-old", created="2024-01-01T00:00:00Z"),
        backup.BackupKey(rsa.key, rsa.asn1, tuple(rsa.chain_asn1), "current", "intl",
                         key_id="k-rsa"),
        backup.BackupKey(ec.key, ec.asn1, tuple(ec.chain_asn1), "revoked", "intl"),
        backup.BackupKey(sm.key, sm.cert, tuple(sm.chain), "current", "sm", key_id="k-sm"),
        backup.BackupKey(sm2.generate_private_key(), None, (), "pending", "sm"),
    ]  # fmt: skip


@pytest.fixture(scope="module")
def code() -> str:
    return backup.new_recovery_code()


@pytest.fixture(scope="module")
def message(held, code) -> bytes:
    return backup.build_backup(ADDRESS, held, code, NOW, iterations=FAST)


# ---- the code --------------------------------------------------------------------------------


def test_code_format() -> None:
    code = backup.new_recovery_code()
    assert re.fullmatch(r"\d{4}(-\d{4}){8}", code)
    assert backup.parse_recovery_code(code) == code


def test_code_distribution_is_loosely_uniform() -> None:
    """2000 codes = 72,000 digits: each digit value about 10 %, no repeats, every position
    varies. Loose bounds (about 6 sigma) so this fails for a broken generator, not by chance."""
    codes = [backup.new_recovery_code().replace("-", "") for _ in range(2000)]
    assert len(set(codes)) == len(codes)
    counts = collections.Counter("".join(codes))
    assert set(counts) == set("0123456789")
    for digit, count in counts.items():
        assert 6600 <= count <= 7800, (digit, count)
    for position in range(36):
        column = collections.Counter(code[position] for code in codes)
        assert len(column) == 10 and max(column.values()) < 300, position
    # Leading zeros are kept (the code is 36 digits, not an integer that lost them).
    assert any(code.startswith("0") for code in codes)


def test_entropy_source_is_secrets() -> None:
    source = inspect.getsource(backup.new_recovery_code)
    assert "secrets.randbelow(10**CODE_DIGITS)" in source
    assert backup.CODE_DIGITS == 36  # log2(10**36) = 119.6 bits


@pytest.mark.parametrize(
    "typed",
    [
        "{c}",
        "{c}\n",
        "  {spaced}  ",
        "{bare}",
        "{fullwidth}",
        "{lines}",
    ],
)
def test_code_parsing_is_lenient(typed: str) -> None:
    code = "0123-4567-8901-2345-6789-0123-4567-8901-2345"
    bare = code.replace("-", "")
    variants = {
        "c": code,
        "spaced": code.replace("-", " "),
        "bare": bare,
        "fullwidth": "".join(chr(ord(ch) + 0xFEE0) if ch.isdigit() else ch for ch in code),
        "lines": code[:19] + "\r\n" + code[20:],
    }
    assert backup.parse_recovery_code(typed.format(**variants)) == code


@pytest.mark.parametrize(
    ("typed", "says"),
    [
        ("0123-4567-8901-2345-6789-0123-4567-8901-234", "35 digits"),
        ("0123-4567-8901-2345-6789-0123-4567-8901-23456", "37 digits"),
        ("0123-4567-890-12345-6789-0123-4567-8901-2345", "Group 3"),
        ("0123-4567-8901-2345-6789-0123-4567-8901-234O", "only digits"),
        ("", "only digits"),
    ],
)
def test_code_typos_are_refused(typed: str, says: str) -> None:
    with pytest.raises(backup.RecoveryCodeError, match=says):
        backup.parse_recovery_code(typed)


# ---- the message ------------------------------------------------------------------------------


def test_message_shape(message: bytes, held) -> None:
    assert b"\r\n" in message and b"\n" not in message.replace(b"\r\n", b"")
    parsed = email.message_from_bytes(message, policy=email.policy.default)
    assert parsed["From"] == ADDRESS and parsed["To"] == ADDRESS
    assert parsed["Subject"] == "autosmime key backup"
    assert parsed["Date"].datetime == NOW
    assert parsed["Message-ID"].endswith("@example.com>")
    assert parsed["Autosmime-Backup"] == f"v1; created=2025-03-04T05:06:07Z; keys={len(held)}"
    assert parsed.get_content_type() == "multipart/mixed"
    text, attachment = parsed.iter_parts()
    assert text.get_content_type() == "text/plain"
    body = text.get_content()
    for needed in ("autosmime restore alice@example.com", "recovery code", "Never share"):
        assert needed in body
    assert attachment.get_content_type() == "application/x-autosmime-backup"
    assert attachment.get_filename() == "autosmime-backup.p12"
    assert backup.is_backup(parsed)
    assert backup.is_backup(message.split(b"\r\n\r\n")[0])
    assert backup.is_backup({"autosmime-backup": "v1"})
    info = backup.backup_info(parsed)
    assert info == backup.BackupInfo("v1", NOW, len(held))


def test_not_backups() -> None:
    assert not backup.is_backup({"Subject": "autosmime key backup"})
    assert not backup.is_backup({"Autosmime-Backup": "v2; keys=1"})
    assert not backup.is_backup(b"From: a@b\r\nSubject: hi\r\n")


def test_round_trip(message: bytes, held, code) -> None:
    typed = code.replace("-", " ")  # as a person might type it
    restored = backup.read_backup(message, typed)
    assert len(restored) == len(held)
    for wrote, read in zip(held, restored, strict=True):
        assert _der(read.key) == _der(wrote.key)
        assert type(read.key) is type(wrote.key)
        assert (read.status, read.suite, read.key_id) == (wrote.status, wrote.suite, wrote.key_id)
        assert read.address == ADDRESS
        assert read.created == wrote.created
        if wrote.certificate is None:
            assert read.certificate is None
        else:
            assert read.certificate.dump() == wrote.certificate.dump()
            assert [c.dump() for c in read.chain] == [c.dump() for c in wrote.chain]


def test_the_attachment_is_a_pkcs12_under_the_code(message: bytes, code, tmp_path: Path) -> None:
    """Default iterations in production; OpenSSL opens the attachment with the code as shown."""
    parsed = email.message_from_bytes(message, policy=email.policy.default)
    data = next(parsed.iter_attachments()).get_content()
    assert len(pkcs12.parse_pfx(data, code)) == 5
    path = tmp_path / "backup.p12"
    path.write_bytes(data)
    info = subprocess.run(
        ["openssl", "pkcs12", "-info", "-nokeys", "-passin", f"pass:{code}", "-in", str(path)],
        capture_output=True,
        check=False,
    )
    assert info.returncode == 0, info.stderr
    assert b"PBES2, PBKDF2, AES-256-CBC" in info.stderr and b"MAC: sha256" in info.stderr


def test_default_iterations(held, code) -> None:
    data = backup.build_backup(ADDRESS, held[:1], code, NOW)
    p12 = next(email.message_from_bytes(data, policy=email.policy.default).iter_attachments())
    pfx = asn1_p12.Pfx.load(p12.get_content())
    assert pfx["mac_data"]["iterations"].native == 600_000
    assert len(backup.read_backup(data, code)) == 1


def test_wrong_code(message: bytes, code) -> None:
    digits = code.replace("-", "")
    other = backup._format(digits[:-1] + str((int(digits[-1]) + 1) % 10))
    with pytest.raises(backup.WrongRecoveryCode) as raised:
        backup.read_backup(message, other)
    assert isinstance(raised.value, KeyLoadError)
    with pytest.raises(backup.RecoveryCodeError):
        backup.read_backup(message, code[:-1])


def _replace_attachment(message: bytes, mutate) -> bytes:
    parsed = email.message_from_bytes(message, policy=email.policy.SMTP)
    attachment = next(parsed.iter_attachments())
    data = mutate(attachment.get_content())
    attachment.set_content(
        data, maintype="application", subtype="x-autosmime-backup", filename="autosmime-backup.p12"
    )
    return parsed.as_bytes()


def test_tampered_pkcs12_is_refused(message: bytes, code) -> None:
    def flip(data: bytes) -> bytes:
        altered = bytearray(data)
        altered[len(altered) // 2] ^= 0x01
        return bytes(altered)

    with pytest.raises(KeyLoadError) as raised:  # BackupTampered or (damage in every
        backup.read_backup(_replace_attachment(message, flip), code)  # encrypted part) wrong code
    assert isinstance(raised.value, backup.BackupTampered | backup.WrongRecoveryCode)

    def rename(data: bytes) -> bytes:  # a friendly name is outside the encryption: MAC only
        return data.replace(
            "(intl, current)".encode("utf-16-be"), "(intl, revoked)".encode("utf-16-be")
        )

    renamed = _replace_attachment(message, rename)
    assert renamed != _replace_attachment(message, lambda data: data)
    with pytest.raises(backup.BackupTampered):
        backup.read_backup(renamed, code)
    with pytest.raises(backup.BackupTampered):
        backup.read_backup(_replace_attachment(message, lambda data: data[:-10]), code)


def test_header_must_match_contents(message: bytes, code) -> None:
    newer = message.replace(b"created=2025-03-04T05:06:07Z", b"created=2026-03-04T05:06:07Z")
    assert newer != message
    with pytest.raises(backup.BackupTampered):
        backup.read_backup(newer, code)
    fewer = message.replace(b"; keys=5", b"; keys=4")
    assert fewer != message
    with pytest.raises(backup.BackupTampered):
        backup.read_backup(fewer, code)


def test_a_backup_under_another_code_is_refused(held, message: bytes) -> None:
    """Someone who mails the user a backup of their own keys cannot get it restored."""
    with pytest.raises(backup.WrongRecoveryCode):
        backup.read_backup(message, backup.new_recovery_code())


def test_tampered_text_part_is_irrelevant(message: bytes, code) -> None:
    parsed = email.message_from_bytes(message, policy=email.policy.SMTP)
    text = next(part for part in parsed.walk() if part.get_content_type() == "text/plain")
    text.set_content("Send your recovery code to evil@example.net")
    changed = parsed.as_bytes()
    assert b"evil@example.net" in changed
    assert len(backup.read_backup(changed, code)) == 5


def test_missing_or_duplicated_backup_part(message: bytes, code) -> None:
    parsed = email.message_from_bytes(message, policy=email.policy.SMTP)
    attachment = next(parsed.iter_attachments())
    parsed.add_attachment(
        attachment.get_content(),
        maintype="application",
        subtype="x-autosmime-backup",
        filename="autosmime-backup.p12",
    )
    with pytest.raises(backup.MalformedBackup, match="has 2"):
        backup.read_backup(parsed.as_bytes(), code)
    parsed = email.message_from_bytes(message, policy=email.policy.SMTP)
    parsed.set_payload([next(parsed.iter_parts())])
    with pytest.raises(backup.MalformedBackup, match="has 0"):
        backup.read_backup(parsed.as_bytes(), code)


def test_not_a_backup_message(code) -> None:
    with pytest.raises(backup.MalformedBackup):
        backup.read_backup(b"From: a@example.com\r\nSubject: hi\r\n\r\nhello\r\n", code)
    with pytest.raises(MalformedInput):
        backup.read_backup(b"", code)


def test_build_checks_its_input(held, code) -> None:
    with pytest.raises(KeyLoadError):
        backup.build_backup(ADDRESS, [], code, NOW, iterations=FAST)
    bad = backup.BackupKey(held[0].key, None, status="lost")
    with pytest.raises(KeyLoadError):
        backup.build_backup(ADDRESS, [bad], code, NOW, iterations=FAST)
    with pytest.raises(backup.RecoveryCodeError):
        backup.build_backup(ADDRESS, held[:1], "1234", NOW, iterations=FAST)
