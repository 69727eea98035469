"""The Roundcube story with every part real: Debian's Roundcube 1.6 (elastic) on php -S in front
of the real Dovecot and SMTP, the extension built for an organisation's Roundcube address
(build.py --roundcube https://webmail.example.test), the real native hosts of alice and bob.

alice logs in to Roundcube, opens compose, turns Encrypt on, types in the secure editor, attaches
a file and presses Roundcube's Send; her host signs, timestamps, encrypts and submits it; the
compose page is discarded with its autosaved draft. bob logs in, opens the message, and the
secure viewer in Roundcube's preview frame shows the plaintext, the attachment, "Signed by
alice" and the trusted timestamp. Neither Roundcube page, nor Roundcube's draft (IMAP Drafts),
its local copy (localStorage), any folder of either mailbox, nor any byte that went between the
browsers and Roundcube ever contained the plaintext."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from harness.extension_ui import screenshot
from harness.gmail_story import (
    SECURE_EDITOR,
    SECURE_VIEWER,
    inbox_uid,
    mailbox_bytes,
    recipients_seen,
    wait_for_inbox,
    with_subject,
)
from harness.mail import MailStack
from harness.roundcube import RoundcubeServer
from harness.roundcube_story import (
    everything_the_page_holds,
    log_in,
    open_browser,
    open_compose,
    open_message,
    wait_for,
)
from playwright.sync_api import expect

pytestmark = [pytest.mark.browser, pytest.mark.mail]

SECRET = "Plaintext-b7e4: the Roundcube merger closes on Monday"
ATTACHMENT = b"figure-9c1e,42\r\nfigure-9c1f,43\r\n"
SUBJECT = "Roundcube figures (e2e)"
SIGNED_TEXT = "Signed-only 3d9f: Roundcube renders this itself."
SIGNED_SUBJECT = "Signed, not encrypted (Roundcube e2e)"


def test_alice_sends_encrypted_from_roundcube_and_bob_reads_it(
    playwright: Any,
    people: dict[str, Any],
    mail_stack: MailStack,
    roundcube: RoundcubeServer,
    roundcube_extension: Path,
    tmp_path: Path,
) -> None:
    alice_browser = open_browser(playwright, people["alice"], roundcube, roundcube_extension)
    try:
        page = alice_browser.new_page()
        log_in(page, roundcube, mail_stack, "alice@example.test")
        open_compose(page, roundcube, "&_to=bob@example.test")
        controls = page.locator("autosmime-compose-controls")
        encrypt = controls.locator("button[data-toggle=encrypt]")
        expect(encrypt).to_have_attribute("aria-pressed", "false", timeout=20_000)
        encrypt.click()
        expect(encrypt).to_have_attribute("aria-pressed", "true")
        expect(page.locator("textarea#composebody")).to_be_hidden()
        badge = controls.locator('.badge[data-address="bob@example.test"]')
        expect(badge).to_have_attribute("data-cert", "found", timeout=20_000)

        editor = page.frame_locator(SECURE_EDITOR)
        editor.locator("#body").click()
        editor.locator("#body").press_sequentially(SECRET)
        attachment = tmp_path / "figures.csv"
        attachment.write_bytes(ATTACHMENT)
        editor.locator("#files").set_input_files(str(attachment))
        expect(editor.locator("#attachments li")).to_contain_text("figures.csv")
        # The subject, typed after the secret, makes Roundcube autosave a draft: its own copy of
        # this compose window in IMAP Drafts, which must hold everything but the plaintext.
        page.fill("#compose-subject", SUBJECT)
        drafts = wait_for(
            lambda: with_subject(
                mailbox_bytes(mail_stack, "alice@example.test")["Drafts"], SUBJECT
            ),
            "Roundcube never autosaved a draft of the compose window",
        )
        assert b"bob@example.test" in drafts[-1]
        expect(page.locator("input[name=_draft_saveid]")).to_have_value(re.compile(r"^\d+$"))
        screenshot(page, "roundcube-compose")
        compose_view = everything_the_page_holds(page)
        assert SUBJECT in compose_view  # the look-everywhere helper does see the page's fields
        assert SECRET not in compose_view and "figure-9c1e" not in compose_view

        recipients_seen(editor)
        page.locator(".formbuttons button.send").click()
        raw = wait_for_inbox(mail_stack, "bob@example.test", SUBJECT, timeout=60)
        assert SECRET.encode() not in raw and b"application/pkcs7-mime" in raw
        # The compose page was discarded through Roundcube's own path: back in the mailbox.
        page.wait_for_selector("body.task-mail.action-compose", state="detached", timeout=30_000)
        page.wait_for_selector("table#messagelist", state="attached", timeout=30_000)
        alice_box = wait_for(
            lambda: (
                (box := mailbox_bytes(mail_stack, "alice@example.test"))
                and not with_subject(box["Drafts"], SUBJECT)
                and box
            ),
            "the autosaved draft is still in alice's Drafts",
        )
        # Roundcube did not send too: one copy in Sent (the host's, encrypted), one in bob's INBOX.
        sent = with_subject(alice_box["Sent"], SUBJECT)
        assert len(sent) == 1 and b"application/pkcs7-mime" in sent[0]
        assert (
            len(with_subject(mailbox_bytes(mail_stack, "bob@example.test")["INBOX"], SUBJECT)) == 1
        )
        assert SECRET not in everything_the_page_holds(page)
    finally:
        alice_browser.close()

    # RFC 9788: the servers and Roundcube's lists see "[...]"; the subject is inside.
    assert SUBJECT.encode() not in raw and b"\r\nSubject: [...]\r\n" in raw
    since = roundcube.connections()
    bob_browser = open_browser(playwright, people["bob"], roundcube, roundcube_extension)
    try:
        page = bob_browser.new_page()
        log_in(page, roundcube, mail_stack, "bob@example.test")
        open_message(page, SUBJECT, inbox_uid(mail_stack, "bob@example.test", raw))
        preview = page.frame_locator("iframe#messagecontframe")
        expect(preview.locator("#message-header")).to_contain_text("[...]")
        viewer = preview.frame_locator(SECURE_VIEWER)
        status = viewer.locator("#status")
        expect(status).to_have_attribute("data-state", "valid", timeout=30_000)
        subject = viewer.locator('#headers [data-field="subject"]')
        expect(subject).to_contain_text(SUBJECT)
        expect(subject).to_have_attribute("data-protection", "signed and encrypted")
        expect(status).to_contain_text("Signed by alice@example.test: valid")
        expect(status).to_contain_text(re.compile(r"Encrypted with \S+"))
        expect(status).to_contain_text(re.compile(r"Trusted timestamp: \d{4}-\d\d-\d\d"))
        expect(viewer.locator("#text")).to_contain_text(SECRET)
        link = viewer.locator("#attachments a")
        expect(link).to_contain_text("figures.csv")
        saved = link.evaluate(
            "a => fetch(a.href).then(r => r.arrayBuffer()).then(b => Array.from(new Uint8Array(b)))"
        )
        assert bytes(saved) == ATTACHMENT
        # Roundcube's "can not be displayed" notice gives way to the viewer.
        expect(preview.locator("#messagebody > .boxwarning")).to_be_hidden()
        screenshot(page, "roundcube-opened")
        bob_view = everything_the_page_holds(page)
        assert SECRET not in bob_view and SUBJECT not in bob_view
        # the content script fetched the message (ciphertext) from Roundcube's own source URL
        assert any(
            "_action=viewsource" in line and "_save=1" in line for line in roundcube.request_lines()
        )
    finally:
        bob_browser.close()

    for user in ("alice@example.test", "bob@example.test"):
        for folder, messages in mailbox_bytes(mail_stack, user).items():
            for message in messages:
                assert SECRET.encode() not in message, f"plaintext in {user}'s {folder}"
                assert b"figure-9c1e" not in message, f"attachment in {user}'s {folder}"
    for direction in (roundcube.sent_by_browser(), roundcube.sent_to_browser()):
        assert b"Plaintext-b7e4" not in direction and b"figure-9c1e" not in direction
    # alice typed the subject into Roundcube's own field; on bob's side no byte holds it.
    bobs_session = roundcube.sent_by_browser(since) + roundcube.sent_to_browser(since)
    assert b"/?_task=mail" in bobs_session and SUBJECT.encode() not in bobs_session
    # Roundcube posts its compose form with _draft=1 to save a draft and _draft= to send it.
    posted = roundcube.sent_by_browser()
    assert re.search(rb"[?&]_draft=1(&|\r?\n|$)", posted, re.MULTILINE), "no draft post seen"
    assert not re.search(rb"[?&]_draft=(&|\r?\n|$)", posted, re.MULTILINE), "Roundcube sent"


def test_signed_mail_shows_its_status_next_to_roundcubes_own_rendering(
    playwright: Any,
    people: dict[str, Any],
    mail_stack: MailStack,
    roundcube: RoundcubeServer,
    roundcube_extension: Path,
) -> None:
    """Signed, not encrypted: Roundcube renders the text itself (its "Digital Signature" part
    in the attachment list), and the status strip above it says the signature holds."""
    result = people["alice"].call(
        "compose.send",
        {
            "from": "alice@example.test",
            "to": ["bob@example.test"],
            "subject": SIGNED_SUBJECT,
            "text": f"{SIGNED_TEXT}\n",
            "encrypt": False,
        },
    )
    assert result["status"] == "sent" and result["timestamped"], result
    wait_for_inbox(mail_stack, "bob@example.test", SIGNED_SUBJECT)
    browser = open_browser(playwright, people["bob"], roundcube, roundcube_extension)
    try:
        page = browser.new_page()
        log_in(page, roundcube, mail_stack, "bob@example.test")
        open_message(page, SIGNED_SUBJECT)
        preview = page.frame_locator("iframe#messagecontframe")
        strip = preview.frame_locator("autosmime-secure-viewer iframe.autosmime-signature-status")
        status = strip.locator("#status")
        expect(status).to_have_attribute("data-state", "valid", timeout=30_000)
        expect(status).to_contain_text("Not encrypted.")
        expect(status).to_contain_text("Signed by alice@example.test: valid.")
        expect(status).to_contain_text(re.compile(r"Trusted timestamp: \d{4}"))
        expect(preview.locator("#messagebody")).to_contain_text(SIGNED_TEXT)
        expect(preview.locator("#attachment-list li.pkcs7-signature")).to_have_count(1)
        assert preview.locator("iframe.autosmime-viewer").count() == 0
    finally:
        browser.close()
