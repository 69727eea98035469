"""The five attacks of test_page_boundary.py on the real Roundcube 1.6 (Debian's package, elastic
skin, over the real Dovecot and SMTP), performed by script in Roundcube's top frame, which reaches
into its same-origin preview frame as a malicious Roundcube plugin would. Each fails: the page
learns nothing, sends nothing, adds no recipient the secure editor did not name, cannot downgrade
Encrypt to Sign, and cannot write the viewer's status line (docs/SECURITY.md)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from harness.browser import service_worker
from harness.gmail_story import (
    SECURE_EDITOR,
    SECURE_VIEWER,
    mailbox_bytes,
    recipients_seen,
    wait_for_inbox,
)
from harness.gmail_story import with_subject as having_subject
from harness.hostile import (
    EDITOR_CHANNEL,
    EXTENSION_ORIGIN,
    POST_TO_SECURE_FRAME,
    PROBE_TEXT,
    RELOAD_EDITOR_AS_SIGN,
    b64,
    cbc_probes,
    frame_made_by_page,
    host_log_offset,
    junk_claims,
    observed,
    record,
    secure_frames,
    wait_until_answered,
)
from harness.roundcube_story import log_in, open_browser, open_compose, open_message, wait_for
from playwright.sync_api import expect

pytestmark = [pytest.mark.browser, pytest.mark.mail]

SEND = ".formbuttons button.send"
SECRET = "Roundcube boundary 5a7c: the board meets on Thursday"
PAGE_TEXT = "Page-written c2d4: I, alice, approve the wire transfer"


def compose_to_bob(page: Any, roundcube: Any, subject: str) -> tuple[Any, Any]:
    """Roundcube's compose page to bob with Encrypt on and SECRET typed in the secure editor,
    which shows bob as the recipient: (our controls, the secure editor's frame)."""
    open_compose(page, roundcube, "&_to=bob@example.test")
    controls = page.locator("autosmime-compose-controls")
    page.fill("#compose-subject", subject)
    controls.locator("button[data-toggle=encrypt]").click()
    editor = page.frame_locator(SECURE_EDITOR)
    expect(editor.locator("#mode")).to_have_attribute("data-mode", "encrypt")
    editor.locator("#body").click()
    editor.locator("#body").press_sequentially(SECRET)
    expect(editor.locator('#recipients li[data-address="bob@example.test"]')).to_be_visible()
    return controls, editor


def left_compose(page: Any) -> None:
    """The adapter leaves compose after a send: Roundcube's mailbox again."""
    page.wait_for_selector("body.task-mail.action-compose", state="detached", timeout=60_000)


def bob_got_only_alices_text(people: dict[str, Any], mail_stack: Any, subject: str) -> None:
    raw = wait_for_inbox(mail_stack, "bob@example.test", subject, timeout=60)
    assert b"application/pkcs7-mime" in raw.split(b"\r\n\r\n", 1)[0] and SECRET.encode() not in raw
    inbox = mailbox_bytes(mail_stack, "bob@example.test")["INBOX"]
    assert len(having_subject(inbox, subject)) == 1
    opened = people["bob"].call("message.open", {"raw": b64(raw)})
    assert opened["security"]["encrypted"] and opened["security"]["decrypted"]
    assert opened["text"].startswith(SECRET) and PAGE_TEXT not in opened["text"], opened["text"]
    for user in ("alice@example.test", "bob@example.test"):
        for folder, messages in mailbox_bytes(mail_stack, user).items():
            assert not any(PAGE_TEXT.encode() in m for m in messages), f"{user} {folder}"


def preview_viewer(page: Any, subject: str) -> Any:
    """Opens the message in Roundcube's preview frame; the Playwright Frame of its secure viewer
    once it has spoken."""
    open_message(page, subject)
    preview = page.frame_locator("iframe#messagecontframe")
    expect(preview.locator("#message-header")).to_contain_text(subject, timeout=30_000)
    status = preview.frame_locator(SECURE_VIEWER).locator("#status")
    expect(status).not_to_have_attribute("data-state", "pending", timeout=30_000)
    return next(
        f
        for f in page.frames
        if f.url == f"{EXTENSION_ORIGIN}/ui/viewer.html"
        and f.parent_frame is not None
        and f.parent_frame.name == "messagecontframe"
    )


def test_roundcube_viewer_is_no_decryption_oracle(
    playwright: Any,
    people: dict[str, Any],
    mail_stack: Any,
    roundcube: Any,
    roundcube_extension: Path,
    tmp_path: Path,
) -> None:
    """Attack 1 on Roundcube: the page frames ui/viewer.html itself with altered ciphertext, and
    bob opens the probes in Roundcube's preview: no host call from the page's frames, no message
    to any of the page's windows, the same viewer size whatever the padding did, and unsigned CBC
    labelled as not protected, as text only."""
    probes = cbc_probes(people["bob"], tmp_path / "probes", subject="Roundcube CBC probe")
    subjects = {
        "padding fails": "Roundcube CBC probe (padding fails)",
        "padding holds": "Roundcube CBC probe (padding holds)",
        "original": "Roundcube CBC probe (original)",
    }
    raws = {
        "padding fails": probes.padding_fails,
        "padding holds": probes.padding_holds,
        "original": probes.original,
    }
    client = mail_stack.imap_client("bob@example.test")
    try:
        for name, raw in raws.items():
            subject = subjects[name].encode()
            client.append(
                "INBOX", raw.replace(b"Subject: Roundcube CBC probe", b"Subject: " + subject)
            )
    finally:
        client.logout()
    bob = people["bob"]
    browser = open_browser(playwright, bob, roundcube, roundcube_extension)
    try:
        page = browser.new_page()
        log_in(page, roundcube, mail_stack, "bob@example.test")
        record(page)
        offset = host_log_offset(bob)
        for raw in (probes.padding_holds, probes.padding_fails):
            command = {"type": "open", "raw": b64(raw), "kind": "encrypted"}
            frame_made_by_page(page, "ui/viewer.html", roundcube.origin, [command])
        seen = {}
        for name, subject in subjects.items():
            viewer = preview_viewer(page, subject)
            seen[name] = {
                "state": viewer.locator("#status").get_attribute("data-state"),
                "status": viewer.locator("#status").inner_text(),
                "sizes": [(f["width"], f["height"]) for f in secure_frames(page)],
                "frame": viewer,
            }
        sizes = {name: s["sizes"] for name, s in seen.items()}
        assert len({tuple(s) for s in sizes.values()}) == 1 and len(sizes["original"]) == 1, sizes
        assert observed(page) == [], observed(page)
        assert wait_until_answered(bob, "message.open", offset) == len(subjects)
        assert "could not be decrypted" in seen["padding fails"]["status"]
        for name in ("padding holds", "original"):
            assert seen[name]["state"] == "unprotected", seen[name]
        original = seen["original"]["frame"]
        expect(original.locator("#text")).to_contain_text(PROBE_TEXT)
        expect(original.locator("#content")).to_be_hidden()
    finally:
        browser.close()


def test_roundcube_second_editor_sends_nothing(
    playwright: Any,
    people: dict[str, Any],
    mail_stack: Any,
    roundcube: Any,
    roundcube_extension: Path,
) -> None:
    """Attack 2 on Roundcube: a hidden ui/editor.html the page adds to the compose page (Sign
    mode, its own text) sends nothing; alice's Send sends hers, encrypted, once. Typing does not
    change the editor's size."""
    subject = "Roundcube second editor (page boundary e2e)"
    alice = people["alice"]
    browser = open_browser(playwright, alice, roundcube, roundcube_extension)
    try:
        page = browser.new_page()
        log_in(page, roundcube, mail_stack, "alice@example.test")
        record(page)
        _controls, editor = compose_to_bob(page, roundcube, subject)
        record(page)
        before = secure_frames(page)
        for line in range(25):
            editor.locator("#body").press("Enter")
            editor.locator("#body").press_sequentially(f"line {line}")
        assert secure_frames(page) == before, "the editor's size follows what is typed"
        offset = host_log_offset(alice)
        commands = [
            {"type": "init", "text": PAGE_TEXT},
            {"type": "bound", "kind": "editor", "mode": "sign", "draft": PAGE_TEXT},
        ]
        # On the real editor's channel, if its URL names one (the old editor's did).
        channel = page.evaluate(EDITOR_CHANNEL)
        frame_made_by_page(page, "ui/editor.html", roundcube.origin, commands, "sign", channel)
        frame_made_by_page(page, "ui/editor.html", roundcube.origin, commands, mode="sign")
        assert observed(page) == [], observed(page)
        recipients_seen(editor)
        page.locator(SEND).click()
        left_compose(page)
        assert wait_until_answered(alice, "compose.send", offset) == 1
    finally:
        browser.close()
    bob_got_only_alices_text(people, mail_stack, subject)


def test_roundcube_hidden_bcc_stops_the_send_and_is_named(
    playwright: Any,
    people: dict[str, Any],
    mail_stack: Any,
    roundcube: Any,
    roundcube_extension: Path,
    eve: str,
) -> None:
    """Attack 3 on Roundcube: the page writes eve into Roundcube's hidden Bcc field (the form's
    real textarea; no chip, no DOM change). Send stops and the secure editor names eve; once the
    page takes her out again, the editor shows that too before a Send goes, to bob alone."""
    subject = "Roundcube hidden Bcc (page boundary e2e)"
    alice = people["alice"]
    browser = open_browser(playwright, alice, roundcube, roundcube_extension)
    try:
        page = browser.new_page()
        log_in(page, roundcube, mail_stack, "alice@example.test")
        controls, editor = compose_to_bob(page, roundcube, subject)
        record(page)
        offset = host_log_offset(alice)
        bcc = page.locator("textarea[name=_bcc]")
        expect(bcc).to_be_hidden()
        page.evaluate("(a) => { document.querySelector('textarea[name=_bcc]').value = a; }", eve)
        page.locator(SEND).click()
        status = controls.locator(".status")
        expect(status).to_contain_text("recipients changed", timeout=30_000)
        expect(
            editor.locator(f'#recipients [data-kind=bcc] li[data-address="{eve}"]')
        ).to_be_visible()
        assert wait_until_answered(alice, "compose.send", offset) == 0

        page.evaluate("() => { document.querySelector('textarea[name=_bcc]').value = ''; }")
        assert observed(page) == [], observed(page)
        # Roundcube changes its DOM now and then (autosave), and each change lets the content
        # script tell the editor the list again: either the editor has shown the list without
        # eve by now, or this Send stops once more and shows it. Either way, only a list the
        # editor showed goes.
        page.locator(SEND).click()  # the status says "Sending…" at once, then the outcome

        def outcome() -> str | None:
            if not page.locator("body.task-mail.action-compose").count():
                return "sent"
            return "stopped" if "recipients changed" in status.inner_text() else None

        if wait_for(outcome, "the second Send had no outcome") == "stopped":
            expect(editor.locator("#recipients [data-kind=bcc]")).to_have_count(0)
            page.locator(SEND).click()
        left_compose(page)
        assert wait_until_answered(alice, "compose.send", offset) == 1
    finally:
        browser.close()
    wait_for_inbox(mail_stack, "bob@example.test", subject, timeout=60)
    assert having_subject(mailbox_bytes(mail_stack, eve)["INBOX"], subject) == []


def test_roundcube_reloaded_editor_cannot_downgrade(
    playwright: Any,
    people: dict[str, Any],
    mail_stack: Any,
    roundcube: Any,
    roundcube_extension: Path,
) -> None:
    """Attack 4 on Roundcube: the page reloads the secure editor with mode=sign. Nothing is
    sent from it, the controls say it was interfered with, and the reopened editor sends what
    alice typed, encrypted."""
    subject = "Roundcube downgrade (page boundary e2e)"
    alice = people["alice"]
    browser = open_browser(playwright, alice, roundcube, roundcube_extension)
    try:
        page = browser.new_page()
        log_in(page, roundcube, mail_stack, "alice@example.test")
        controls, editor = compose_to_bob(page, roundcube, subject)
        worker = service_worker(browser)
        wait_for(
            lambda: any(
                d is None or SECRET in d
                for d in worker.evaluate(
                    "() => [...(globalThis.autosmime.secureFrames?.registrations.values()"
                    " ?? [null])].map((r) => r?.draft ?? null)"
                )
            ),
            "the draft never reached the worker",
        )
        record(page)
        offset = host_log_offset(alice)
        page.evaluate(RELOAD_EDITOR_AS_SIGN)
        status = controls.locator(".status")
        # The reloaded frame has settled (bound, or told it is not connected), then alice sends.
        expect(editor.locator("#status")).not_to_have_attribute("data-state", "pending")
        page.locator(SEND).click()
        expect(status).not_to_have_text(re.compile("^Sending"), timeout=60_000)
        assert wait_until_answered(alice, "compose.send", offset) == 0, "it was sent"
        expect(status).to_contain_text("Not sent: the secure editor was interfered with")
        expect(editor.locator("#body")).to_have_attribute("contenteditable", "false")
        controls.locator("button[data-action=reopen]").click()
        expect(editor.locator("#mode")).to_have_attribute("data-mode", "encrypt")
        expect(editor.locator("#body")).to_contain_text(SECRET)
        expect(editor.locator('#recipients li[data-address="bob@example.test"]')).to_be_visible()
        assert observed(page) == [], observed(page)
        recipients_seen(editor)
        page.locator(SEND).click()
        left_compose(page)
        assert wait_until_answered(alice, "compose.send", offset) == 1
    finally:
        browser.close()
    bob_got_only_alices_text(people, mail_stack, subject)


SPOOF_WORDS = "Signed by your bank: valid (roundcube-spoof-81aa)"
SPOOFS = [
    {"autosmime": "frame-command", "channel": "$channel", "type": "fail", "message": SPOOF_WORDS},
    {"type": "failed", "message": SPOOF_WORDS},
    {"type": "view", "view": {"text": SPOOF_WORDS, "security": {"encrypted": False}}},
    *junk_claims(),
]


def test_roundcube_page_cannot_write_the_viewers_status_line(
    playwright: Any,
    people: dict[str, Any],
    mail_stack: Any,
    roundcube: Any,
    roundcube_extension: Path,
) -> None:
    """Attack 5 on Roundcube: from the top frame, the page posts its own words to the viewer in
    the preview frame, as soon as it appears and again once it shows the message."""
    subject = "Roundcube status spoof (page boundary e2e)"
    text = "Roundcube spoof-proof 6b1e: signed by alice"
    result = people["alice"].call(
        "compose.send",
        {"from": "alice@example.test", "to": ["bob@example.test"], "subject": subject,
         "text": text, "hideSubject": False},  # found in Roundcube's list by its subject
    )  # fmt: skip
    assert result["status"] == "sent", result
    wait_for_inbox(mail_stack, "bob@example.test", subject)
    browser = open_browser(playwright, people["bob"], roundcube, roundcube_extension)
    try:
        page = browser.new_page()
        log_in(page, roundcube, mail_stack, "bob@example.test")
        record(page)
        page.evaluate(
            """(posts) => setInterval(() => {
                const doc = document.querySelector('#messagecontframe')?.contentDocument;
                for (const holder of doc?.querySelectorAll('autosmime-secure-viewer') ?? []) {
                    const frame = holder.shadowRoot?.querySelector('iframe');
                    if (!frame || frame.__spoofed) continue;
                    frame.__spoofed = true;
                    const spoof = () => {
                        for (const post of posts) frame.contentWindow?.postMessage(post, '*');
                    };
                    spoof();
                    frame.addEventListener('load', spoof);
                }
            }, 5)""",
            SPOOFS,
        )
        viewer = preview_viewer(page, subject)
        status = viewer.locator("#status")
        expect(status).to_have_attribute("data-state", "valid")
        viewer.evaluate(
            """() => {
                window.__received = 0;
                addEventListener('message', () => { window.__received += 1; });
            }"""
        )
        page.evaluate(
            POST_TO_SECURE_FRAME,
            {"holder": "autosmime-secure-viewer", "inPreview": True, "posts": SPOOFS},
        )
        viewer.wait_for_function("(n) => window.__received >= n", arg=len(SPOOFS))
        expect(status).to_have_attribute("data-state", "valid")
        expect(status).to_contain_text("Signed by alice@example.test: valid.")
        expect(status).not_to_contain_text(SPOOF_WORDS)
        expect(viewer.locator("#text")).to_have_text(re.compile(re.escape(text)))
        assert observed(page) == [], observed(page)
    finally:
        browser.close()
