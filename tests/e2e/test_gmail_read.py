"""Reading on the Gmail-shaped page with a message prepared by alice's real host (compose.send
through the real PKI service and mail stack, not through a browser): bob's page shows an
smime.p7m chip, the content script fetches Show original (ciphertext) and the secure viewer opens
it: sanitized HTML in a sandboxed frame (no scripts), the attachment to download, the status line;
a tampered message says why it is not valid; the page never holds the plaintext."""

from __future__ import annotations

import base64
import re
from typing import Any

import pytest
from harness.extension_ui import screenshot
from harness.gmail_story import (
    SECURE_EDITOR,
    SECURE_VIEWER,
    THREAD_ID,
    open_browser,
    page_text_everywhere,
    recipients_seen,
    wait_for_inbox,
)
from harness.people import b64
from playwright.sync_api import expect

pytestmark = [pytest.mark.browser, pytest.mark.mail]

SECRET = "Plaintext-c41d read side"
HTML = f'<p>Hello <b>Bob</b>, {SECRET}</p><script>document.title="pwned"</script>'
PDF = b"%PDF-1.4\n% test\n"


@pytest.fixture(scope="module")
def prepared(people: dict[str, Any], mail_stack: Any) -> bytes:
    subject = "Prepared by alice's host (e2e read)"
    result = people["alice"].call(
        "compose.send",
        {
            "from": "alice@example.test",
            "to": ["bob@example.test"],
            "subject": subject,
            "text": f"Hello Bob, {SECRET}\n",
            "html": HTML,
            "attachments": [
                {"name": "terms.pdf", "contentType": "application/pdf", "data": b64(PDF)}
            ],
        },
    )
    assert result["status"] == "sent" and result["timestamped"], result
    return wait_for_inbox(mail_stack, "bob@example.test", subject)


def test_bob_opens_an_encrypted_html_message_with_an_attachment(
    playwright: Any, people: dict[str, Any], gmail: Any, prepared: bytes
) -> None:
    from harness.gmail_story import open_in_viewer

    browser = open_browser(playwright, people["bob"], gmail)
    try:
        page = browser.new_page()
        viewer = open_in_viewer(page, gmail, prepared)
        expect(viewer.locator("#status")).to_contain_text("Signed by alice@example.test: valid")
        expect(viewer.locator("#status")).to_contain_text(re.compile(r"Trusted timestamp: \d{4}"))
        content = viewer.frame_locator("#content")
        expect(content.locator("body")).to_contain_text(SECRET)
        expect(content.locator("b")).to_have_text("Bob")
        assert content.locator("script").count() == 0
        frame = viewer.locator("#content")
        assert frame.get_attribute("sandbox") == ""
        link = viewer.locator("#attachments a")
        expect(link).to_contain_text("terms.pdf")
        assert link.get_attribute("download") == "terms.pdf"
        # the bytes behind the download link (the viewer's CSP allows connect-src blob: only)
        saved = link.evaluate(
            "a => fetch(a.href).then(r => r.arrayBuffer()).then(b => Array.from(new Uint8Array(b)))"
        )
        assert bytes(saved) == PDF
        expect(link).to_be_in_viewport()
        screenshot(page, "gmail-read-html")
        assert SECRET not in page_text_everywhere(page)
        assert page.title() != "pwned"
    finally:
        browser.close()


PREPARED_SUBJECT = "Prepared by alice's host (e2e read)"


def test_gmail_shows_dots_and_only_the_secure_viewer_the_subject(
    playwright: Any, people: dict[str, Any], gmail: Any, prepared: bytes
) -> None:
    """RFC 9788 on the page: Gmail renders the outer Subject, "[...]"; the secure viewer shows
    the real one from inside, marked as hidden from the servers and signed. Neither the page's
    DOM (open shadow roots and form values included) nor any byte it exchanged with Gmail holds
    the real subject."""
    head = prepared.split(b"\r\n\r\n", 1)[0]
    assert b"\r\nSubject: [...]\r\n" in b"\r\n" + head + b"\r\n"
    assert PREPARED_SUBJECT.encode() not in prepared
    before = len(gmail.requests)
    browser = open_browser(playwright, people["bob"], gmail)
    try:
        page = browser.new_page()
        from harness.gmail_story import open_in_viewer

        viewer = open_in_viewer(page, gmail, prepared)
        expect(page.locator("h2.hP")).to_have_text("[...]")
        subject = viewer.locator('#headers [data-field="subject"]')
        expect(subject).to_contain_text(PREPARED_SUBJECT)
        expect(subject).to_have_attribute("data-protection", "signed and encrypted")
        expect(viewer.locator('#headers [data-field="from"]')).to_have_attribute(
            "data-protection", "signed"
        )
        expect(viewer.locator("#status")).to_contain_text(
            "Protected headers: Subject hidden from the mail servers (encrypted) and signed"
        )
        expect(viewer.locator("#header-warnings")).to_be_hidden()
        # The Legacy Display Element ("Subject: ..." for clients without RFC 9788) is hidden.
        content = viewer.frame_locator("#content").locator("body")
        expect(content).to_contain_text(SECRET)
        expect(content).not_to_contain_text("Subject:")
        screenshot(page, "gmail-read-protected-subject")
        assert PREPARED_SUBJECT not in page_text_everywhere(page)
        assert PREPARED_SUBJECT not in repr(page.evaluate("() => window.__fixture"))
    finally:
        browser.close()
    exchanged = b"\n".join(r.path.encode() + b" " + r.body for r in gmail.requests[before:])
    assert PREPARED_SUBJECT.encode() not in exchanged


def test_an_opened_message_takes_the_viewer_loaded_ahead(
    playwright: Any, people: dict[str, Any], gmail: Any, prepared: bytes
) -> None:
    """Opening encrypted mail does not wait for the viewer page to load (issue 16): the content
    script loaded one ahead, out of sight, and moves it into the message (moveBefore keeps its
    document; insertBefore would load it again). The viewer that shows the message is that
    document, older than the click, and the next spare is loaded afterwards."""
    from harness.gmail_story import open_inbox, placed_viewer, spare_viewer

    gmail.put_raw(THREAD_ID, prepared)
    browser = open_browser(playwright, people["bob"], gmail)
    try:
        page = browser.new_page()
        open_inbox(page, gmail)
        spare = spare_viewer(page)
        loaded_at = spare.evaluate("() => performance.timeOrigin")
        opened_at = page.evaluate("() => performance.timeOrigin + performance.now()")
        page.evaluate("(id) => { location.hash = `#inbox/${id}`; }", THREAD_ID)
        status = page.frame_locator(SECURE_VIEWER).locator("#status")
        expect(status).to_have_attribute("data-state", "valid", timeout=30_000)
        viewer = placed_viewer(page)
        assert viewer.evaluate("() => performance.timeOrigin") == loaded_at < opened_at
        expect(viewer.frame_locator("#content").locator("body")).to_contain_text(SECRET)
        assert spare_viewer(page) is not viewer  # the next one, for the next message
    finally:
        browser.close()


def test_a_tampered_message_says_it_is_not_valid(
    playwright: Any, people: dict[str, Any], gmail: Any, prepared: bytes
) -> None:
    head, _, body = prepared.partition(b"\r\n\r\n")
    der = bytearray(base64.b64decode(b"".join(body.split())))
    der[len(der) // 2] ^= 0x01
    tampered = head + b"\r\n\r\n" + base64.encodebytes(bytes(der)).replace(b"\n", b"\r\n")
    browser = open_browser(playwright, people["bob"], gmail)
    try:
        page = browser.new_page()
        gmail.put_raw("msg-f:1665118316230599953", tampered)
        page.goto(gmail.url("/mail/u/0/#inbox/msg-f:1665118316230599953"))
        viewer = page.frame_locator(SECURE_VIEWER)
        status = viewer.locator("#status")
        expect(status).to_have_attribute("data-state", re.compile("invalid|error"), timeout=30_000)
        expect(status).not_to_contain_text("valid.")
    finally:
        browser.close()


SIGNED_TEXT = "Signed-only hello 5e2a: Gmail renders this itself."


@pytest.fixture(scope="module")
def signed_only(people: dict[str, Any], mail_stack: Any) -> bytes:
    subject = "Signed, not encrypted (e2e read)"
    result = people["alice"].call(
        "compose.send",
        {
            "from": "alice@example.test",
            "to": ["bob@example.test"],
            "subject": subject,
            "text": f"{SIGNED_TEXT}\n",
            "encrypt": False,
        },
    )
    assert result["status"] == "sent" and result["timestamped"], result
    raw = wait_for_inbox(mail_stack, "bob@example.test", subject)
    assert b"multipart/signed" in raw.split(b"\r\n\r\n", 1)[0]
    return raw


def open_signed(page: Any, gmail: Any, raw: bytes) -> Any:
    """Opens raw on the Gmail-shaped page; the signature status strip's frame."""
    from harness.gmail_story import THREAD_ID

    gmail.put_raw(THREAD_ID, raw)
    page.goto(gmail.url(f"/mail/u/0/#inbox/{THREAD_ID}"))
    return page.frame_locator("autosmime-secure-viewer iframe.autosmime-signature-status")


def test_signed_mail_shows_its_status_next_to_gmails_own_rendering(
    playwright: Any, people: dict[str, Any], gmail: Any, signed_only: bytes
) -> None:
    browser = open_browser(playwright, people["bob"], gmail)
    try:
        page = browser.new_page()
        strip = open_signed(page, gmail, signed_only)
        status = strip.locator("#status")
        expect(status).to_have_attribute("data-state", "valid", timeout=30_000)
        expect(status).to_contain_text("Not encrypted.")
        expect(status).to_contain_text("Signed by alice@example.test: valid.")
        expect(status).to_contain_text(re.compile(r"Trusted timestamp: \d{4}"))
        # Gmail's own rendering stays, with the strip above it and no second copy of the text.
        body = page.locator(".a3s")
        expect(body).to_contain_text(SIGNED_TEXT)
        expect(body).to_be_visible()
        assert page.locator("autosmime-secure-viewer + .a3s").count() == 1
        assert page.locator("iframe.autosmime-viewer").count() == 0
        expect(strip.locator("#content")).to_be_hidden()
        expect(strip.locator("#text")).to_be_hidden()
        screenshot(page, "gmail-signed-status")
    finally:
        browser.close()


def test_altered_signed_mail_says_it_is_not_valid_next_to_gmails_rendering(
    playwright: Any, people: dict[str, Any], gmail: Any, signed_only: bytes
) -> None:
    altered = signed_only.replace(b"Gmail renders this itself", b"Gmail renders this ITSELF")
    assert altered != signed_only
    browser = open_browser(playwright, people["bob"], gmail)
    try:
        page = browser.new_page()
        status = open_signed(page, gmail, altered).locator("#status")
        expect(status).to_have_attribute("data-state", "invalid", timeout=30_000)
        expect(status).to_contain_text("Signed by alice@example.test: NOT valid")
        expect(page.locator(".a3s")).to_contain_text("Gmail renders this ITSELF")
    finally:
        browser.close()


def test_bob_replies_encrypted_from_gmails_inline_reply(
    playwright: Any, people: dict[str, Any], gmail: Any, mail_stack: Any, prepared: bytes
) -> None:
    """The reply box under an opened message is a compose window too: Encrypt, the secure
    editor, Send; alice's host opens the reply, signed by bob, with the real subject of the
    message it answers, which the page never held (Gmail's box says "Re: [...]")."""
    reply_text = "Reply-8d0e: received, thank you"
    before = len(gmail.requests)
    browser = open_browser(playwright, people["bob"], gmail)
    try:
        page = browser.new_page()
        gmail.put_raw(THREAD_ID, prepared)
        page.goto(gmail.url(f"/mail/u/0/#inbox/{THREAD_ID}?reply"))
        viewer = page.frame_locator(SECURE_VIEWER)
        expect(viewer.locator("#status")).to_have_attribute("data-state", "valid", timeout=30_000)
        reply = page.locator(".ip.adB")
        controls = reply.locator("autosmime-compose-controls")
        controls.locator("button[data-toggle=encrypt]").click()
        badge = controls.locator('.badge[data-address="alice@example.test"]')
        expect(badge).to_have_attribute("data-cert", "found", timeout=20_000)
        editor = reply.frame_locator(SECURE_EDITOR)
        expect(editor.locator("#reply")).to_contain_text(f"Replying to “{PREPARED_SUBJECT}”")
        editor.locator("#body").click()
        editor.locator("#body").press_sequentially(reply_text)
        # Gmail's shortcut from inside the secure editor (the first story clicks Send).
        recipients_seen(editor)
        editor.locator("#body").press("Control+Enter")
        sent = page.locator("autosmime-status span[data-notice=sent]")
        expect(sent).to_have_text("autosmime: Message sent, signed and encrypted.", timeout=60_000)
        expect(reply).to_have_count(0)  # the reply box was discarded
        assert reply_text not in page_text_everywhere(page)
        assert PREPARED_SUBJECT not in page_text_everywhere(page)
    finally:
        browser.close()
    assert PREPARED_SUBJECT.encode() not in b"\n".join(
        r.path.encode() + b" " + r.body for r in gmail.requests[before:]
    )
    # Gmail's reply box said "Re: [...]": the reply carries the real subject, hidden again, and
    # threads under alice's message.
    subject = f"Re: {PREPARED_SUBJECT}"
    raw = wait_for_inbox(mail_stack, "alice@example.test", subject)
    assert reply_text.encode() not in raw and PREPARED_SUBJECT.encode() not in raw
    assert b"\r\nSubject: [...]\r\n" in raw.split(b"\r\n\r\n", 1)[0] + b"\r\n"
    original = people["bob"].call("message.open", {"raw": b64(prepared)})["headers"]
    assert f"In-Reply-To: {original['message-id']}".encode() in raw
    opened = people["alice"].call("message.open", {"raw": b64(raw)})
    assert opened["headers"]["subject"] == subject
    assert opened["headerProtection"]["fields"]["subject"] == "signed and encrypted"
    assert opened["text"].strip() == reply_text
    assert opened["security"]["encrypted"] and opened["security"]["decrypted"]
    assert [s["signer"] for s in opened["security"]["signatures"]] == ["bob@example.test"]
