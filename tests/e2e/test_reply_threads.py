"""Secure replies stay in their thread: alice answers bob's message with Encrypt on, from the
Gmail-shaped page's inline reply and from the real Roundcube's Reply, and the message bob's INBOX
gets (real mail stack) carries In-Reply-To (the replied message's Message-ID) and References.

Gmail: the adapter reads the replied message's header from Gmail's own Show original (as
InboxSDK reads Message-IDs); Roundcube: from the reply_msgid Roundcube puts in the compose page.
The content script hands them to the worker with the envelope; the worker passes only
well-formed Message-IDs to compose.send. Nothing new is given to the page."""

from __future__ import annotations

import email
import email.policy
import uuid
from pathlib import Path
from typing import Any

import pytest
from harness.gmail_story import open_browser, recipients_seen, wait_for_inbox
from harness.mail import MailStack
from harness.roundcube import RoundcubeServer
from harness.roundcube_story import log_in, open_compose
from harness.roundcube_story import open_browser as open_roundcube_browser
from playwright.sync_api import expect

pytestmark = [pytest.mark.browser, pytest.mark.mail]

SECRET = "Reply-8e21: yes, Thursday works"


def header(raw: bytes, name: str) -> str:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    return " ".join(str(message[name] or "").split())


def type_and_send(page: Any, controls: Any, send: str) -> None:
    encrypt = controls.locator("button[data-toggle=encrypt]")
    # Roundcube builds its reply page on a shared, busy machine: give it time.
    expect(encrypt).to_have_attribute("aria-pressed", "false", timeout=45_000)
    encrypt.click()
    badge = controls.locator('.badge[data-address="bob@example.test"]')
    expect(badge).to_have_attribute("data-cert", "found", timeout=20_000)
    editor = page.frame_locator("autosmime-secure-editor iframe.autosmime-editor")
    expect(editor.locator('#recipients li[data-address="bob@example.test"]')).to_be_visible()
    editor.locator("#body").click()
    editor.locator("#body").press_sequentially(SECRET)
    recipients_seen(editor)  # as a person's Send comes (the hidden-recipient defense)
    page.locator(send).click()


def test_a_secure_reply_from_gmail_keeps_the_thread(
    playwright: Any, people: dict[str, Any], gmail: Any, mail_stack: Any
) -> None:
    """bob's message (the second of a thread: it has References) is open in alice's Gmail; she
    answers in the inline reply with Encrypt. bob's copy names bob's message in In-Reply-To and
    the whole thread in References."""
    tag = uuid.uuid4().hex[:8]
    root_id, parent_id = f"<root-{tag}@example.test>", f"<parent-{tag}@example.test>"
    subject = f"Planning {tag}"
    parent = (
        f"From: bob@example.test\r\nTo: alice@example.test\r\nSubject: {subject}\r\n"
        f"Message-ID:\r\n {parent_id}\r\nIn-Reply-To: {root_id}\r\nReferences: {root_id}\r\n"
        "Date: Mon, 1 Dec 2025 10:00:00 +0000\r\nContent-Type: text/plain\r\n\r\n"
        f"Message-ID: <in-the-body-{tag}@example.test>\r\nShall we meet on Thursday?\r\n"
    ).encode()
    perm_id = "msg-f:1700000000000009001"
    gmail.put_raw(perm_id, parent)
    browser = open_browser(playwright, people["alice"], gmail)
    try:
        page = browser.new_page()
        page.goto(gmail.url(f"/mail/u/0/#inbox/{perm_id}?reply"))
        controls = page.locator(".ip.adB autosmime-compose-controls")
        type_and_send(page, controls, ".ip.adB .T-I.aoO[role=button]")
        sent = page.locator("autosmime-status span[data-notice=sent]")
        expect(sent).to_have_text("autosmime: Message sent, signed and encrypted.", timeout=60_000)
    finally:
        browser.close()
    reply = wait_for_inbox(mail_stack, "bob@example.test", f"Re: {subject}")
    assert b"application/pkcs7-mime" in reply and SECRET.encode() not in reply
    assert header(reply, "In-Reply-To") == parent_id
    assert header(reply, "References") == f"{root_id} {parent_id}"


def test_a_secure_reply_from_roundcube_keeps_the_thread(
    playwright: Any,
    people: dict[str, Any],
    mail_stack: MailStack,
    roundcube: RoundcubeServer,
    roundcube_extension: Path,
) -> None:
    """bob mails alice; in the real Roundcube alice presses Reply on it and answers with
    Encrypt. bob's copy names bob's message in In-Reply-To and References."""
    tag = uuid.uuid4().hex[:8]
    parent_id = f"<rc-parent-{tag}@example.test>"
    subject = f"Roundcube planning {tag}"
    smtp = mail_stack.smtp_client("bob@example.test")
    try:
        smtp.sendmail(
            "bob@example.test",
            ["alice@example.test"],
            (
                f"From: bob@example.test\r\nTo: alice@example.test\r\nSubject: {subject}\r\n"
                f"Message-ID: {parent_id}\r\nDate: Mon, 1 Dec 2025 10:00:00 +0000\r\n"
                "Content-Type: text/plain\r\n\r\nShall we meet on Thursday?\r\n"
            ).encode(),
        )
    finally:
        smtp.quit()
    imap = mail_stack.imap_client("alice@example.test")
    try:
        imap.select_folder("INBOX", readonly=True)
        [uid] = imap.search(["SUBJECT", subject])
    finally:
        imap.logout()

    browser = open_roundcube_browser(playwright, people["alice"], roundcube, roundcube_extension)
    try:
        page = browser.new_page()
        log_in(page, roundcube, mail_stack, "alice@example.test")
        open_compose(page, roundcube, f"&_reply_uid={uid}&_mbox=INBOX")
        controls = page.locator("autosmime-compose-controls")
        type_and_send(page, controls, ".formbuttons button.send")
        reply = wait_for_inbox(mail_stack, "bob@example.test", f"Re: {subject}", timeout=60)
    finally:
        browser.close()
    assert b"application/pkcs7-mime" in reply and SECRET.encode() not in reply
    assert header(reply, "In-Reply-To") == parent_id
    assert header(reply, "References") == parent_id
