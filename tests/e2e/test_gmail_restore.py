"""A new device restores alice's keys from her mailbox with the recovery code and reads her old
mail, everything real: the PKI service (`autosmime pki serve`, RFC 8823 mail on the real stack),
real hosts, Chromium with the built extension, the Gmail-shaped page.

Device 1 (alice's host, no browser needed) enrolls, gets mail from bob under her first keys,
renews (so those keys are old), and gets mail under her new keys; every enrollment and renewal
backs her keys up in her mailbox. Device 2 is a new home and a new browser profile: nothing of
device 1 but what alice knows (her address, her mail password, her recovery code) and what her
administrator deployed (the PKI and mail server settings). Onboarding refuses a wrong code in
words and changes nothing, restores with the right one, and both messages open in the secure
viewer; the keys are exactly device 1's and no private key lies on device 2's disk in the clear.
"""

from __future__ import annotations

import base64
import concurrent.futures
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from harness.extension_ui import configure_extension, page_url, screenshot
from harness.gmail_story import (
    SUBJECT_READERS,
    open_in_viewer,
    page_text_everywhere,
    wait_for_inbox,
)
from harness.mail import MailStack
from harness.new_device import (
    account_params,
    browser_device,
    call_within,
    envelope_recipients,
    files_holding,
    host_device,
    names_certificate,
    regular_files,
    secret_forms,
)
from harness.people import BrowserPerson, b64
from harness.pki_service import PkiServe, forget_backups
from playwright.sync_api import expect

from native_host.domain.backups import FOLDER, OLD_KEYWORD
from shared_pki import backup as backup_format
from shared_pki.pkcs12 import parse_pfx

pytestmark = [pytest.mark.browser, pytest.mark.mail]

ALICE = "alice@example.test"
BOB = "bob@example.test"
OLD_SECRET = "Plaintext-7a31 under alice's first key"
NEW_SECRET = "Plaintext-b8e2 under alice's renewed key"
OLD_SUBJECT = "Before the renewal (restore story)"
NEW_SUBJECT = "After the renewal (restore story)"
RESTORE_TIMEOUT_MS = 120_000
EXPORT_PASSWORD = "only for this test's key comparison"


@pytest.fixture(scope="module")
def pki(mail_stack: MailStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PkiServe]:
    with PkiServe(mail_stack, tmp_path_factory.mktemp("pki")) as service:
        yield service


@dataclass
class Story:
    alice: BrowserPerson  # device 1
    bob: BrowserPerson
    code: str
    first_keys: list[dict[str, Any]]  # certs.list on device 1 after enrollment
    keys: list[dict[str, Any]]  # certs.list on device 1 after the renewal
    superseded: list[str]  # what keys.renew said it superseded
    old_mail: bytes  # bob -> alice under her first keys
    new_mail: bytes  # bob -> alice under her renewed keys


def send(person: BrowserPerson, to: str, subject: str, text: str) -> None:
    sent = call_within(
        person,
        "compose.send",
        {"from": person.address, "to": [to], "subject": subject, "text": text},
    )
    assert sent["status"] == "sent" and sent["timestamped"], sent


@pytest.fixture(scope="module")
def story(
    mail_stack: MailStack, pki: PkiServe, extension_dir: Path, tmp_path_factory: Any
) -> Story:
    """Device 1: alice and bob enrolled by their hosts; bob writes alice; alice renews; alice
    writes bob with her new keys (so bob's host harvests her new certificate) and bob answers."""
    for address in (ALICE, BOB):  # first enrollments (earlier modules may have left backups)
        forget_backups(mail_stack, address)
    root = tmp_path_factory.mktemp("restore-story")
    alice = host_device(root / "alice-device-1", extension_dir, ALICE)
    bob = host_device(root / "bob", extension_dir, BOB)

    def enroll(person: BrowserPerson) -> dict[str, Any]:
        params = account_params(pki, person.address, mail_stack.users[person.address])
        call_within(person, "account.configure", params)
        return call_within(person, "enroll", {})

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        enrolled = dict(zip((ALICE, BOB), pool.map(enroll, (alice, bob)), strict=True))
    code = enrolled[ALICE]["recoveryCode"]
    assert code and len(code.split("-")) == 9
    # Their encrypted mail says "[...]" outside: the harness finds it by what their hosts read.
    for person in (alice, bob):
        SUBJECT_READERS.append(
            lambda raw, person=person: call_within(person, "message.open", {"raw": b64(raw)})[
                "headers"
            ].get("subject")
        )
    first_keys = call_within(alice, "certs.list", {})["keys"]

    send(bob, ALICE, OLD_SUBJECT, f"Hello Alice, {OLD_SECRET}.\n")
    old_mail = wait_for_inbox(mail_stack, ALICE, OLD_SUBJECT)

    renewed = call_within(alice, "keys.renew", {"windowDays": 365, "recoveryCode": code})
    assert renewed["renewed"] is True, renewed

    send(alice, BOB, "My new keys (restore story)", "Hello Bob, I renewed my keys.\n")
    news = wait_for_inbox(mail_stack, BOB, "My new keys (restore story)")
    opened = call_within(bob, "message.open", {"raw": b64(news)})
    assert opened["security"]["decrypted"] and opened["security"]["verified"], opened["security"]
    send(bob, ALICE, NEW_SUBJECT, f"Hello again, {NEW_SECRET}.\n")
    new_mail = wait_for_inbox(mail_stack, ALICE, NEW_SUBJECT)
    keys = call_within(alice, "certs.list", {})["keys"]
    return Story(alice, bob, code, first_keys, keys, renewed["superseded"], old_mail, new_mail)


def backups_in_mailbox(stack: MailStack) -> list[tuple[int, bytes, tuple[bytes, ...]]]:
    """(uid, raw, flags) of every message in alice's backup folder, oldest first."""
    client = stack.imap_client(ALICE)
    try:
        client.select_folder(FOLDER, readonly=True)
        found = client.fetch(client.search(["ALL"]), ["BODY.PEEK[]", "FLAGS"])
        return [(uid, found[uid][b"BODY[]"], found[uid][b"FLAGS"]) for uid in sorted(found)]
    finally:
        client.logout()


def by_id(keys: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {k["keyId"]: k for k in keys}


def described(keys: list[dict[str, Any]]) -> dict[str, tuple[Any, ...]]:
    """What must be the same on both devices: key, suite, type, status, certificates, backup."""
    return {
        k["keyId"]: (
            k["address"],
            k["suite"],
            k["keyType"],
            k["status"],
            tuple(c["fingerprint"] for c in k["certificates"]),
            k["backup"]["state"],
            k["backup"]["messageId"],
        )
        for k in keys
    }


def encrypted_to(raw: bytes, keys: list[dict[str, Any]]) -> set[str]:
    """The key ids among keys whose certificate this message is encrypted to."""
    rids = envelope_recipients(raw)
    return {
        k["keyId"]
        for k in keys
        for cert in k["certificates"]
        if any(names_certificate(rid, cert) for rid in rids)
    }


def test_first_device_old_and_new_keys_are_backed_up_in_the_mailbox(
    story: Story, mail_stack: MailStack
) -> None:
    first = {k["keyId"] for k in story.first_keys}
    assert sorted(k["suite"] for k in story.first_keys) == ["intl", "sm"]
    keys = by_id(story.keys)
    new = set(keys) - first
    assert len(keys) == 4 and first < set(keys) and len(new) == 2
    assert sorted(story.superseded) == sorted(first)
    assert {keys[k]["status"] for k in first} == {"superseded"}
    assert {keys[k]["status"] for k in new} == {"current"}
    assert sorted(keys[k]["suite"] for k in new) == ["intl", "sm"]

    # The first message is encrypted to a first key of alice's, the second to a renewed one.
    assert encrypted_to(story.old_mail, story.keys) & first
    assert not encrypted_to(story.old_mail, story.keys) & new
    assert encrypted_to(story.new_mail, story.keys) & new
    assert not encrypted_to(story.new_mail, story.keys) & first

    # Enrollment and renewal each left a backup; the newest holds all four keys under the one
    # code, with their statuses; the older one stays, flagged as replaced.
    stored = backups_in_mailbox(mail_stack)
    assert len(stored) == 2, [uid for uid, _raw, _flags in stored]
    (_old_uid, old_raw, old_flags), (_new_uid, new_raw, _new_flags) = stored
    assert OLD_KEYWORD.encode() in old_flags
    assert {k.key_id for k in backup_format.read_backup(old_raw, story.code)} == first
    newest = {k.key_id: k.status for k in backup_format.read_backup(new_raw, story.code)}
    assert newest == {key_id: key["status"] for key_id, key in keys.items()}
    assert {k["backup"]["state"] for k in story.keys} == {"proven"}


def wait_for_account_hint(setup: Any, address: str) -> None:
    """Until the Gmail content script has told the worker who is signed in (read where the
    setup page reads it)."""
    setup.wait_for_function(
        """(address) => chrome.storage.session.get('accountHint')
            .then((stored) => stored.accountHint?.address === address)""",
        arg=address,
        timeout=20_000,
    )


def onboarding_page(context: Any) -> Any:
    """The setup tab the extension opened on install."""
    url = page_url("ui/onboarding.html")
    opened = [p for p in context.pages if p.url == url]
    return opened[0] if opened else context.wait_for_event("page", lambda p: p.url == url)


def read_in_viewer(context: Any, gmail: Any, raw: bytes, secret: str, shot: Path) -> None:
    page = context.new_page()
    viewer = open_in_viewer(page, gmail, raw)  # waits for the status line's valid state
    status = viewer.locator("#status")
    expect(status).to_contain_text("Signed by bob@example.test: valid.")
    expect(status).to_contain_text("Encrypted with")
    expect(status).to_contain_text("Trusted timestamp:")
    expect(viewer.locator("#text")).to_contain_text(secret)  # a text/plain message
    page.screenshot(path=str(shot), timeout=30_000)  # as test_gmail_read (a full-page one hangs)
    assert secret not in page_text_everywhere(page)
    page.close()


def test_a_new_device_restores_with_the_code_and_reads_old_mail(
    playwright: Any,
    story: Story,
    pki: PkiServe,
    gmail: Any,
    mail_stack: MailStack,
    extension_dir: Path,
    tmp_path: Path,
    artifacts: Path,
) -> None:
    device = tmp_path / "alice-device-2"
    gmail_args = [f"--host-resolver-rules={gmail.resolver_rule}", "--ignore-certificate-errors"]
    with browser_device(playwright, device, extension_dir, gmail_args) as context:
        alice = BrowserPerson(ALICE, context.autosmime_profile)
        setup = onboarding_page(context)
        configure_extension(context, pki.extension_config(ALICE))  # the administrator's part
        inbox = context.new_page()
        inbox.goto(gmail.url("/mail/u/0/#inbox"))
        wait_for_account_hint(setup, ALICE)
        setup.reload()
        expect(setup.locator("#address")).to_have_value(ALICE)
        expect(setup.locator("#address-hint")).to_contain_text("Found in your webmail")

        # A wrong code (well formed, just not hers) is refused in words and changes nothing.
        backups_before = backups_in_mailbox(mail_stack)
        setup.get_by_label("Mail password or app password").fill(mail_stack.users[ALICE])
        setup.get_by_label("No, restore my keys from my mailbox").check()
        code_field = setup.get_by_role("textbox", name="Recovery code")
        code_field.fill(backup_format.new_recovery_code())
        setup.get_by_role("button", name="Restore from my mailbox").click()
        error = setup.get_by_role("alert").filter(has_text="recovery code")
        expect(error).to_contain_text(
            "That recovery code does not open your backup.", timeout=RESTORE_TIMEOUT_MS
        )
        expect(error).to_contain_text("nothing was changed")
        screenshot(setup, "restore-1-code")
        assert call_within(alice, "certs.list", {})["keys"] == []
        assert backups_in_mailbox(mail_stack) == backups_before

        # The right code brings all four keys back, old ones included.
        setup.get_by_label("Mail password or app password").fill(mail_stack.users[ALICE])
        code_field.fill(story.code)
        setup.get_by_role("button", name="Restore from my mailbox").click()
        expect(setup.get_by_role("heading", name="Secure mail is on")).to_be_visible(
            timeout=RESTORE_TIMEOUT_MS
        )
        expect(setup.locator("#done-text")).to_contain_text("Your 4 keys are back")
        assert story.code not in setup.content()
        screenshot(setup, "restore-2-restored")

        # Both of bob's messages open in the secure viewer, the one under the old key too.
        read_in_viewer(
            context, gmail, story.old_mail, OLD_SECRET, artifacts / "restore-3-old-mail.png"
        )
        read_in_viewer(
            context, gmail, story.new_mail, NEW_SECRET, artifacts / "restore-4-new-mail.png"
        )

        # Exactly device 1's keys: the same key ids, statuses, certificates and backup.
        restored = call_within(alice, "certs.list", {})["keys"]
        assert described(restored) == described(story.keys)
        assert backups_in_mailbox(mail_stack) == backups_before  # restoring wrote nothing

    # Nothing of a private key (nor the recovery code) on device 2's disk outside the sealed
    # keystore: no PKCS#8, no PEM, no private scalar in any file of its home or browser profile.
    exported = call_within(story.alice, "keys.export", {"password": EXPORT_PASSWORD})
    entries = parse_pfx(base64.b64decode(exported["pkcs12"]), EXPORT_PASSWORD)
    assert len(entries) == 4
    needles = {f"{n}:{i}": v for i, e in enumerate(entries) for n, v in secret_forms(e.key).items()}
    needles["recovery code"] = story.code.encode()
    needles["recovery code digits"] = story.code.replace("-", "").encode()
    probe = tmp_path / "probe"  # the search finds a key where one is
    probe.mkdir()
    (probe / "leak.json").write_bytes(b'{"k": "' + needles["pkcs8-base64:0"] + b'"}')
    assert files_holding(probe, needles) == [(probe / "leak.json", "pkcs8-base64:0")]
    keys_dir = device / "home" / ".local" / "share" / "autosmime" / "keys"
    assert set(keys_dir.glob("*.key")) <= set(regular_files(device))  # the search covers them
    assert files_holding(device, needles) == []

    # The keystore: one sealed file per key, private folder and files.
    names = {p.name for p in keys_dir.iterdir()}
    assert names - {"index.json", ".lock"} == {f"{k['keyId']}.key" for k in story.keys}
    assert keys_dir.stat().st_mode & 0o777 == 0o700
    for path in keys_dir.iterdir():
        assert path.stat().st_mode & 0o077 == 0, path
