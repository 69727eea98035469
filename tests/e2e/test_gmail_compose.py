"""The Gmail story with every part real: alice composes on the Gmail-shaped page, turns Encrypt
on, types in the secure editor, attaches a file and presses Gmail's Send; her host signs,
timestamps, encrypts and submits it through the real mail stack; bob's INBOX (IMAP) has it; bob's
browser opens it on the Gmail-shaped page and the secure viewer shows the plaintext, the
attachment, "signed by alice" and the trusted timestamp. Neither page, nor alice's draft
autosave, nor any request either page made ever contained the plaintext."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
from harness.extension_ui import screenshot
from harness.gmail_story import (
    THREAD_ID,
    fixture_records,
    open_browser,
    open_compose,
    open_in_viewer,
    page_text_everywhere,
    recipients_seen,
    wait_for_inbox,
)
from harness.people import b64
from playwright.sync_api import expect

pytestmark = [pytest.mark.browser, pytest.mark.mail]

SECRET = "Plaintext-7f3a: the merger closes on Friday"
SUBJECT = "Figures for Q3 (e2e)"
ATTACHMENT = b"q,value\r\n1,10\r\n2,20\r\n"


def test_alice_sends_encrypted_from_gmail_and_bob_reads_it(
    playwright: Any,
    people: dict[str, Any],
    gmail: Any,
    mail_stack: Any,
    tmp_path: Path,
) -> None:
    alice_browser = open_browser(playwright, people["alice"], gmail)
    try:
        page = alice_browser.new_page()
        controls, editor = open_compose(page, gmail, "bob@example.test")
        encrypt = controls.locator("button[data-toggle=encrypt]")
        expect(encrypt).to_have_attribute("aria-pressed", "false")
        page.fill("input[name=subjectbox]", SUBJECT)
        encrypt.click()
        expect(encrypt).to_have_attribute("aria-pressed", "true")
        badge = controls.locator('.badge[data-address="bob@example.test"]')
        expect(badge).to_have_attribute("data-cert", "found", timeout=20_000)

        editor.locator("#body").click()
        editor.locator("#body").press_sequentially(SECRET)
        attachment = tmp_path / "figures.csv"
        attachment.write_bytes(ATTACHMENT)
        editor.locator("#files").set_input_files(str(attachment))
        expect(editor.locator("#attachments li")).to_contain_text("figures.csv")
        page.wait_for_timeout(700)  # the page's autosave runs every 300 ms
        screenshot(page, "gmail-compose")

        recipients_seen(editor)
        page.locator(".T-I.aoO[role=button]").click()
        sent = page.locator("autosmime-status span[data-notice=sent]")
        expect(sent).to_have_text("autosmime: Message sent, signed and encrypted.", timeout=60_000)
        expect(page.locator(".AD")).to_have_count(0)  # the compose window was discarded
        records = fixture_records(page)
        assert "gmail-send" not in records["events"], "Gmail's own Send ran"
        assert "discarded" in records["events"]
        assert records["draftStore"], "the fixture's autosave never ran"
        for seen in (
            page_text_everywhere(page),
            repr(records),
            gmail.all_bytes().decode("utf-8", "replace"),
        ):
            assert SECRET not in seen
    finally:
        alice_browser.close()

    raw = wait_for_inbox(mail_stack, "bob@example.test", SUBJECT)
    assert SECRET.encode() not in raw and b"application/pkcs7-mime" in raw

    bob_browser = open_browser(playwright, people["bob"], gmail)
    try:
        page = bob_browser.new_page()
        viewer = open_in_viewer(page, gmail, raw)
        status = viewer.locator("#status")
        expect(status).to_contain_text("Signed by alice@example.test: valid")
        expect(status).to_contain_text(re.compile(r"Encrypted with \S+"))
        expect(status).to_contain_text(re.compile(r"Trusted timestamp: \d{4}-\d\d-\d\d"))
        expect(viewer.locator("#text")).to_contain_text(SECRET)
        expect(viewer.locator("#attachments a")).to_contain_text("figures.csv")
        screenshot(page, "gmail-opened")
        assert SECRET not in page_text_everywhere(page)
        network = repr(fixture_records(page)["networkLog"])
        assert SECRET not in network
        # the content script fetched the original (ciphertext) from Gmail's Show original URL
        paths = [unquote(r.path) for r in gmail.requests]
        assert f"/mail/u/0/?view=om&permmsgid={THREAD_ID}" in paths
    finally:
        bob_browser.close()
    assert SECRET not in gmail.all_bytes().decode("utf-8", "replace")


def test_missing_certificate_stops_the_send_and_names_the_recipient(
    playwright: Any, people: dict[str, Any], gmail: Any, mail_stack: Any
) -> None:
    """carol has no certificate: her badge says so, Ctrl-Enter (in the editor and in the page)
    does not send, the error names her, and the compose window stays with Gmail's Send unused.
    What was typed before Encrypt moved into the editor and left the page's body."""
    browser = open_browser(playwright, people["alice"], gmail)
    try:
        page = browser.new_page()
        controls, editor = open_compose(page, gmail, "carol@example.test")
        body = page.locator("div.Am.Al[role=textbox]")
        body.click()
        body.press_sequentially("typed before Encrypt")
        page.fill("input[name=subjectbox]", "For carol")
        controls.locator("button[data-toggle=encrypt]").click()
        expect(body).to_be_hidden()
        assert page.evaluate("() => document.querySelector('div.Am.Al').innerHTML") == ""
        expect(editor.locator("#body")).to_have_text("typed before Encrypt")
        badge = controls.locator('.badge[data-address="carol@example.test"]')
        expect(badge).to_have_attribute("data-cert", "none", timeout=20_000)

        editor.locator("#body").press_sequentially(f" {SECRET}")
        recipients_seen(editor)
        editor.locator("#body").press("Control+Enter")
        status = controls.locator(".status")
        expect(status).to_have_attribute("data-state", "error", timeout=30_000)
        expect(status).to_contain_text("carol@example.test")
        page.locator("input[name=subjectbox]").press("Control+Enter")
        page.wait_for_timeout(500)
        expect(page.locator(".AD")).to_have_count(1)
        records = fixture_records(page)
        assert "gmail-send" not in records["events"] and "discarded" not in records["events"]
        assert SECRET not in page_text_everywhere(page) and SECRET not in repr(records)
    finally:
        browser.close()
    assert SECRET not in gmail.all_bytes().decode("utf-8", "replace")


def test_sign_alone_sends_signed_mail_through_the_host(
    playwright: Any, people: dict[str, Any], gmail: Any, mail_stack: Any
) -> None:
    """Sign without Encrypt: the body moves into the secure editor, which says the mail will be
    readable by anyone; Send goes through alice's host and bob receives multipart/signed mail
    that his host verifies, timestamp included. Gmail's own Send never runs."""
    text = "Signed-only from Gmail 91c4: readable, provably alice's."
    subject = "Signed from Gmail (e2e)"
    browser = open_browser(playwright, people["alice"], gmail)
    try:
        page = browser.new_page()
        controls, editor = open_compose(page, gmail, "bob@example.test")
        sign = controls.locator("button[data-toggle=sign]")
        expect(sign).to_have_attribute("aria-pressed", "false")
        page.fill("input[name=subjectbox]", subject)
        sign.click()
        expect(sign).to_have_attribute("aria-pressed", "true")
        encrypt = controls.locator("button[data-toggle=encrypt]")
        expect(encrypt).to_have_attribute("aria-pressed", "false")
        expect(editor.locator("#mode")).to_have_attribute("data-mode", "sign")
        editor.locator("#body").click()
        editor.locator("#body").press_sequentially(text)
        recipients_seen(editor)
        page.locator(".T-I.aoO[role=button]").click()
        sent = page.locator("autosmime-status span[data-notice=sent]")
        expect(sent).to_have_text("autosmime: Message sent, signed.", timeout=60_000)
        assert "gmail-send" not in fixture_records(page)["events"], "Gmail's own Send ran"
    finally:
        browser.close()

    raw = wait_for_inbox(mail_stack, "bob@example.test", subject)
    assert b"multipart/signed" in raw.split(b"\r\n\r\n", 1)[0]
    opened = people["bob"].call("message.open", {"raw": b64(raw)})
    assert opened["text"].strip() == text
    (signature,) = opened["security"]["signatures"]
    assert signature["valid"] and signature["signer"] == "alice@example.test", signature
    assert signature["timestamp"]["valid"], signature["timestamp"]
    assert opened["security"]["encrypted"] is False


def test_controls_the_webmail_redraws_away_come_back(
    playwright: Any, people: dict[str, Any], gmail: Any
) -> None:
    """A webmail may redraw the part of its compose form our controls sat in (Roundcube does
    while it sets the form up, and the content script now sets a compose up right after the
    task that drew it): the same controls come back, and still work."""
    browser = open_browser(playwright, people["alice"], gmail)
    try:
        page = browser.new_page()
        controls, editor = open_compose(page, gmail, "bob@example.test")
        encrypt = controls.locator("button[data-toggle=encrypt]")
        expect(encrypt).to_have_attribute("aria-pressed", "false")
        page.evaluate("() => document.querySelector('autosmime-compose-controls').remove()")
        expect(controls).to_have_count(1)
        encrypt.click()
        expect(encrypt).to_have_attribute("aria-pressed", "true")
        expect(editor.locator("#mode")).to_have_attribute("data-mode", "encrypt")
    finally:
        browser.close()


def test_a_file_attached_with_gmails_paperclip_stops_the_secure_send(
    playwright: Any, people: dict[str, Any], gmail: Any
) -> None:
    """A file given to Gmail's own Attach is uploaded to Gmail, not into the secure editor: the
    send stops and names it rather than send the message without it."""
    browser = open_browser(playwright, people["alice"], gmail)
    try:
        page = browser.new_page()
        controls, editor = open_compose(page, gmail, "bob@example.test")
        controls.locator("button[data-toggle=encrypt]").click()
        editor.locator("#body").click()
        editor.locator("#body").press_sequentially("see the plan")
        # What Gmail shows once its paperclip has uploaded a file (GMAIL_DOM.md: div.dL > div.vI).
        page.evaluate(
            """() => document.querySelector('div.M9').insertAdjacentHTML('beforeend',
                '<div class="dL"><div class="vI">plan.pdf</div><div class="vJ">12K</div></div>')"""
        )
        page.locator(".T-I.aoO[role=button]").click()
        status = controls.locator(".status")
        expect(status).to_have_attribute("data-state", "error")
        expect(status).to_contain_text("Not sent: plan.pdf was attached outside the secure editor")
        expect(page.locator(".AD")).to_have_count(1)
        assert "gmail-send" not in fixture_records(page)["events"]
        expect(page.locator("autosmime-status span[data-notice=sent]")).to_have_count(0)
    finally:
        browser.close()
