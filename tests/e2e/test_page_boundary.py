"""A hostile webmail page against the secure frames, on the Gmail-shaped page with every part
real (Chromium, the built extension, the native hosts, the PKI service and the mail stack).

Each test is one attack of issue 10, performed by the page's own script (`page.evaluate` in the
top frame, harness/hostile.py), and checks that it fails: the page learns nothing (no message
from a secure frame, frame sizes that do not depend on the outcome), sends nothing, adds no
recipient the secure editor did not name, cannot downgrade Encrypt to Sign, and cannot write the
viewer's status line. docs/SECURITY.md names the defense each test proves. The same attacks on
the real Roundcube are in test_roundcube_page_boundary.py."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from harness.browser import service_worker
from harness.gmail_story import (
    SECURE_VIEWER,
    THREAD_ID,
    mailbox_bytes,
    open_browser,
    open_compose,
    open_inbox,
    page_text_everywhere,
    placed_viewer,
    recipients_seen,
    spare_viewer,
    wait_for_inbox,
    with_subject,
)
from harness.hostile import (
    EXTENSION_ORIGIN,
    POST_TO_SECURE_FRAME,
    PROBE_TEXT,
    RELOAD_EDITOR_AS_SIGN,
    SPOOF,
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
from playwright.sync_api import expect

pytestmark = [pytest.mark.browser, pytest.mark.mail]

ORIGIN = "https://mail.google.com"
SEND = ".T-I.aoO[role=button]"
SENT = "autosmime-status span[data-notice=sent]"
SECRET = "Boundary-61f0: the acquisition price is 41 million"
PAGE_TEXT = "Page-written 9b3e: I, alice, approve the wire transfer"
UNREADABLE = "could not be decrypted"


def thread_from_alice(
    people: dict[str, Any], mail_stack: Any, gmail: Any, subject: str, text: str
) -> None:
    """alice's host sends bob `text` (signed and encrypted, her defaults); the Gmail fixture
    serves what reached bob's INBOX as THREAD_ID."""
    message = {"from": "alice@example.test", "to": ["bob@example.test"]}
    result = people["alice"].call("compose.send", {**message, "subject": subject, "text": text})
    assert result["status"] == "sent", result
    gmail.put_raw(THREAD_ID, wait_for_inbox(mail_stack, "bob@example.test", subject))


def open_thread(page: Any, perm_id: str) -> Any:
    """Shows one thread of the Gmail-shaped page (a hash change, the page stays) and returns the
    Playwright Frame of the secure viewer the content script placed in it, once it has spoken."""
    page.evaluate("() => { location.hash = '#inbox'; }")
    expect(page.locator("autosmime-secure-viewer")).to_have_count(0)
    page.evaluate("(id) => { location.hash = `#inbox/${id}`; }", perm_id)
    viewer = page.frame_locator(SECURE_VIEWER)
    expect(viewer.locator("#status")).not_to_have_attribute("data-state", "pending", timeout=30_000)
    return placed_viewer(page)


def test_the_viewer_is_no_decryption_oracle(
    playwright: Any, people: dict[str, Any], gmail: Any, tmp_path: Path
) -> None:
    """Attack 1: the page frames ui/viewer.html itself and asks it to open ciphertext it altered,
    then opens the same probes in the viewer the content script placed, watching every message
    and the frame's size. Nothing reaches the host from the page's frames, no frame posts the page
    anything, and the real viewer's size is the same whether the padding held or not. Unsigned
    CBC content is labelled "not protected against alteration" and shown as text only."""
    probes = cbc_probes(people["bob"], tmp_path / "probes")
    ids = {
        "padding fails": "msg-f:1700000000000000101",
        "padding holds": "msg-f:1700000000000000102",
        "original": "msg-f:1700000000000000103",
    }
    gmail.put_raw(ids["padding fails"], probes.padding_fails)
    gmail.put_raw(ids["padding holds"], probes.padding_holds)
    gmail.put_raw(ids["original"], probes.original)
    bob = people["bob"]
    browser = open_browser(playwright, bob, gmail)
    try:
        page = browser.new_page()
        page.goto(gmail.url("/mail/u/0/#inbox"))
        expect(page.locator("autosmime-status span[data-state=ok]")).to_have_count(1)
        record(page)
        offset = host_log_offset(bob)
        for raw in (probes.padding_holds, probes.padding_fails):
            command = {"type": "open", "raw": b64(raw), "kind": "encrypted"}
            frame_made_by_page(page, "ui/viewer.html", ORIGIN, [command])

        seen = {}
        for name, perm_id in ids.items():
            viewer = open_thread(page, perm_id)
            record(page)
            seen[name] = {
                "state": viewer.locator("#status").get_attribute("data-state"),
                "status": viewer.locator("#status").inner_text(),
                "sizes": [(f["width"], f["height"]) for f in secure_frames(page)],
                "frame": viewer,
            }
        sizes = {name: s["sizes"] for name, s in seen.items()}
        assert len({tuple(s) for s in sizes.values()}) == 1, sizes
        assert len(sizes["original"]) == 1, sizes  # the page made its own frames, not these
        assert observed(page) == [], observed(page)
        # The real viewer opened each probe once; the page's own frames never reached the host.
        assert wait_until_answered(bob, "message.open", offset) == len(ids)

        # What bob sees inside the viewer (the page cannot read it): one failure, and garbage or
        # text that is labelled as unprotected, never rendered as HTML.
        assert UNREADABLE in seen["padding fails"]["status"], seen["padding fails"]["status"]
        assert seen["padding fails"]["state"] == "invalid"
        for name in ("padding holds", "original"):
            assert seen[name]["state"] == "unprotected", seen[name]
            assert "Not protected against alteration" in seen[name]["status"]
        original = seen["original"]["frame"]
        expect(original.locator("#text")).to_contain_text(PROBE_TEXT)
        expect(original.locator("#content")).to_be_hidden()
        expect(original.locator("#remote")).to_be_hidden()
        assert PROBE_TEXT not in page_text_everywhere(page)
    finally:
        browser.close()


def assert_bob_got_only_alices_text(people: dict[str, Any], mail_stack: Any, subject: str) -> None:
    """bob has exactly one message with this subject: encrypted, and what his host opens of it is
    what alice typed, nothing the page wrote. No folder of either holds the page's text."""
    raw = wait_for_inbox(mail_stack, "bob@example.test", subject)
    assert b"application/pkcs7-mime" in raw.split(b"\r\n\r\n", 1)[0] and SECRET.encode() not in raw
    assert len(with_subject(mailbox_bytes(mail_stack, "bob@example.test")["INBOX"], subject)) == 1
    opened = people["bob"].call("message.open", {"raw": b64(raw)})
    assert opened["security"]["encrypted"] and opened["security"]["decrypted"], opened["security"]
    assert opened["text"].startswith(SECRET) and PAGE_TEXT not in opened["text"], opened["text"]
    for user in ("alice@example.test", "bob@example.test"):
        for folder, messages in mailbox_bytes(mail_stack, user).items():
            assert not any(PAGE_TEXT.encode() in m for m in messages), f"{user} {folder}"


def test_a_second_editor_the_page_adds_sends_nothing(
    playwright: Any, people: dict[str, Any], gmail: Any, mail_stack: Any
) -> None:
    """Attack 2: the page adds a hidden ui/editor.html of its own (on the real editor's channel if
    it can read one, in Sign mode, with its own text). alice's one Send sends one message, hers,
    encrypted; nothing the page wrote goes anywhere. Typing does not change the editor's size."""
    subject = "Second editor (page boundary e2e)"
    alice = people["alice"]
    browser = open_browser(playwright, alice, gmail)
    try:
        page = browser.new_page()
        controls, editor = open_compose(page, gmail, "bob@example.test")
        page.fill("input[name=subjectbox]", subject)
        record(page)
        controls.locator("button[data-toggle=encrypt]").click()
        expect(editor.locator("#mode")).to_have_attribute("data-mode", "encrypt")
        expect(editor.locator('#recipients li[data-address="bob@example.test"]')).to_be_visible()
        before = secure_frames(page)
        editor.locator("#body").click()
        editor.locator("#body").press_sequentially(SECRET)
        for line in range(25):
            editor.locator("#body").press("Enter")
            editor.locator("#body").press_sequentially(f"line {line}")
        assert secure_frames(page) == before, "the editor's size follows what is typed"

        offset = host_log_offset(alice)
        channel = page.evaluate(
            """() => new URLSearchParams(new URL(document.querySelector('autosmime-secure-editor')
                .shadowRoot.querySelector('iframe').src).hash.slice(1)).get('channel')"""
        )
        commands = [
            {"type": "init", "text": PAGE_TEXT},
            {"type": "bound", "kind": "editor", "mode": "sign", "draft": PAGE_TEXT},
        ]
        url = f"{EXTENSION_ORIGIN}/ui/editor.html#channel={channel}&origin={ORIGIN}&mode=sign"
        page.evaluate(
            """async ({ url, posts }) => {
                const frame = document.createElement('iframe');
                frame.src = url;
                frame.style.cssText = 'position:absolute;left:-9999px;width:10px;height:10px';
                document.querySelector('div.M9').append(frame);
                await new Promise((done) => frame.addEventListener('load', done, { once: true }));
                for (const post of posts) frame.contentWindow.postMessage(post, '*');
            }""",
            {
                "url": url,
                "posts": [
                    *junk_claims(),
                    *[
                        {"autosmime": "frame-command", "channel": channel, **command}
                        for command in commands
                    ],
                ],
            },
        )
        frame_made_by_page(page, "ui/editor.html", ORIGIN, commands, mode="sign")

        recipients_seen(editor)
        page.locator(SEND).click()
        expect(page.locator(SENT)).to_have_text(
            "autosmime: Message sent, signed and encrypted.", timeout=60_000
        )
        assert wait_until_answered(alice, "compose.send", offset) == 1
        assert observed(page) == [], observed(page)
    finally:
        browser.close()
    assert_bob_got_only_alices_text(people, mail_stack, subject)


def test_a_hidden_recipient_is_named_in_the_editor_and_stops_the_send(
    playwright: Any, people: dict[str, Any], gmail: Any, mail_stack: Any, eve: str
) -> None:
    """Attack 3: at the moment alice presses Send, the page adds a hidden Bcc chip for eve (who
    has a certificate). The send stops, and the secure editor names eve under Bcc. Once the page
    takes the chip away, the editor shows the list without eve, and the message goes to exactly
    that list: bob gets it, eve does not."""
    subject = "Hidden recipient (page boundary e2e)"
    alice = people["alice"]
    browser = open_browser(playwright, alice, gmail)
    try:
        page = browser.new_page()
        # The webmail's own script (the fixture's page.js) runs before the extension's content
        # script (document_idle), so its capture listener on Send runs before the extension's
        # gate: armed, it adds a hidden Bcc chip the instant Send is pressed, before the content
        # script could tell the secure editor.
        controls, editor = open_compose(page, gmail, "bob@example.test")
        page.fill("input[name=subjectbox]", subject)
        controls.locator("button[data-toggle=encrypt]").click()
        editor.locator("#body").click()
        editor.locator("#body").press_sequentially(SECRET)
        expect(editor.locator('#recipients li[data-address="bob@example.test"]')).to_be_visible()
        expect(editor.locator("#recipients [data-kind=bcc]")).to_have_count(0)
        record(page)
        offset = host_log_offset(alice)
        page.evaluate("(address) => { window.__bccOnSend = address; }", eve)
        page.locator(SEND).click()
        status = controls.locator(".status")
        expect(status).to_contain_text("recipients changed", timeout=30_000)
        expect(status).to_have_attribute("data-state", "error")
        expect(
            editor.locator(f'#recipients [data-kind=bcc] li[data-address="{eve}"]')
        ).to_be_visible()
        expect(editor.locator("#status")).to_contain_text("recipients changed")
        assert wait_until_answered(alice, "compose.send", offset) == 0
        expect(page.locator(SENT)).to_have_count(0)

        page.evaluate("() => document.querySelector('.page-bcc').remove()")
        expect(editor.locator("#recipients [data-kind=bcc]")).to_have_count(0)
        recipients_seen(editor)
        page.locator(SEND).click()
        expect(page.locator(SENT)).to_have_text(
            "autosmime: Message sent, signed and encrypted.", timeout=60_000
        )
        assert wait_until_answered(alice, "compose.send", offset) == 1
        assert observed(page) == [], observed(page)
    finally:
        browser.close()
    wait_for_inbox(mail_stack, "bob@example.test", subject)
    assert with_subject(mailbox_bytes(mail_stack, eve)["INBOX"], subject) == []


#: The page clicks Sign, then Encrypt, in our compose controls; returns what they then say.
CLICK_OUR_TOGGLES = """() => {
    const shadow = document.querySelector('autosmime-compose-controls').shadowRoot;
    const button = (name) => shadow.querySelector(`[data-toggle=${name}]`);
    button('sign').click();
    button('encrypt').click();
    return {
        sign: button('sign').getAttribute('aria-pressed'),
        encrypt: button('encrypt').getAttribute('aria-pressed'),
    };
}"""


def test_reloading_the_editor_cannot_downgrade_encrypt_to_sign(
    playwright: Any, people: dict[str, Any], gmail: Any, mail_stack: Any
) -> None:
    """Attack 4: after alice chose Encrypt and typed, the page reloads the secure editor with
    mode=sign in its URL. The reloaded frame is inert (it cannot claim the editor again), Send
    sends nothing and the controls say the editor was interfered with; reopening it brings back
    what alice typed, still encrypted, and her Send delivers it encrypted, once."""
    subject = "Downgrade (page boundary e2e)"
    alice = people["alice"]
    browser = open_browser(playwright, alice, gmail)
    try:
        page = browser.new_page()
        controls, editor = open_compose(page, gmail, "bob@example.test")
        page.fill("input[name=subjectbox]", subject)
        # The page can click our buttons from its script (the shadow root is open), but its
        # clicks are not trusted: they choose nothing.
        pressed = page.evaluate(CLICK_OUR_TOGGLES)
        assert pressed == {"sign": "false", "encrypt": "false"}, pressed
        controls.locator("button[data-toggle=encrypt]").click()
        expect(editor.locator("#mode")).to_have_attribute("data-mode", "encrypt")
        editor.locator("#body").click()
        editor.locator("#body").press_sequentially(SECRET)
        assert page.evaluate(CLICK_OUR_TOGGLES) == {"sign": "true", "encrypt": "true"}
        expect(editor.locator("#mode")).to_have_attribute("data-mode", "encrypt")
        worker = service_worker(browser)
        # The editor keeps what is typed in the worker's memory: wait until it has all of it.
        for _ in range(100):
            drafts = worker.evaluate(
                "() => [...(globalThis.autosmime.secureFrames?.registrations.values() ?? [null])]"
                ".map((r) => r?.draft ?? null)"
            )
            if any(d is None or SECRET in d for d in drafts):  # None: no such memory at all
                break
            page.wait_for_timeout(50)
        else:
            raise AssertionError(f"the draft never reached the worker: {drafts}")
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
        expect(editor.locator("#status")).to_contain_text("not connected")
        expect(editor.locator("#body")).to_have_attribute("contenteditable", "false")
        expect(controls.locator("button[data-toggle=encrypt]")).to_have_attribute(
            "aria-pressed", "true"
        )

        controls.locator("button[data-action=reopen]").click()
        expect(editor.locator("#mode")).to_have_attribute("data-mode", "encrypt")
        expect(editor.locator("#body")).to_contain_text(SECRET)
        expect(editor.locator('#recipients li[data-address="bob@example.test"]')).to_be_visible()
        recipients_seen(editor)
        page.locator(SEND).click()
        expect(page.locator(SENT)).to_have_text(
            "autosmime: Message sent, signed and encrypted.", timeout=60_000
        )
        assert wait_until_answered(alice, "compose.send", offset) == 1
        assert observed(page) == [], observed(page)
    finally:
        browser.close()
    assert_bob_got_only_alices_text(people, mail_stack, subject)


SPOOFS = [
    {"autosmime": "frame-command", "channel": "$channel", "type": "fail", "message": SPOOF},
    {"type": "failed", "message": SPOOF},
    {"type": "bound", "kind": "viewer"},
    {
        "type": "view",
        "view": {
            "text": SPOOF,
            "security": {"encrypted": False, "signatures": [{"valid": True, "signer": SPOOF}]},
        },
    },
    *junk_claims(),
]


def test_the_page_cannot_write_the_viewers_status_line(
    playwright: Any, people: dict[str, Any], gmail: Any, mail_stack: Any
) -> None:
    """Attack 5: the page posts its own words (as a failure, as a verified view, as claims) to
    the real viewer, from the moment the frame appears and again once it shows the message. The
    status line keeps saying what the host verified, and nothing comes back to the page."""
    text = "Spoof-proof 2c8d: signed by alice, read by bob"
    thread_from_alice(people, mail_stack, gmail, "Status spoof (page boundary e2e)", text)
    browser = open_browser(playwright, people["bob"], gmail)
    try:
        page = browser.new_page()
        open_inbox(page, gmail)
        record(page)
        # From the moment the viewer is inserted, and on each of its loads.
        page.evaluate(
            """(posts) => new MutationObserver(() => {
                for (const holder of document.querySelectorAll('autosmime-secure-viewer')) {
                    const frame = holder.shadowRoot?.querySelector('iframe');
                    if (!frame || frame.__spoofed) continue;
                    frame.__spoofed = true;
                    const spoof = () => {
                        for (const post of posts) frame.contentWindow?.postMessage(post, '*');
                    };
                    spoof();
                    frame.addEventListener('load', spoof);
                }
            }).observe(document.body, { childList: true, subtree: true })""",
            SPOOFS,
        )
        viewer = open_thread(page, THREAD_ID)
        status = viewer.locator("#status")
        expect(status).to_have_attribute("data-state", "valid")
        # Again once it shows the message: the viewer counts what it receives (test
        # instrumentation, in the extension's frame), so the check waits for every post to land.
        viewer.evaluate(
            """() => {
                window.__received = 0;
                addEventListener('message', () => { window.__received += 1; });
            }"""
        )
        page.evaluate(
            POST_TO_SECURE_FRAME,
            {"holder": "autosmime-secure-viewer", "inPreview": False, "posts": SPOOFS},
        )
        viewer.wait_for_function("(n) => window.__received >= n", arg=len(SPOOFS))
        expect(status).to_have_attribute("data-state", "valid")
        expect(status).to_contain_text("Signed by alice@example.test: valid.")
        expect(status).not_to_contain_text(SPOOF)
        expect(viewer.locator("#text")).to_have_text(re.compile(re.escape(text)))
        assert observed(page) == [], observed(page)
    finally:
        browser.close()


#: The page spends the claims of every viewer the moment it appears in a message (through the
#: holder's open shadow root), and again on each of its loads: 40 made-up claims, more than the
#: 32 a frame listens to (ui/frame_channel.js). The spare viewer loaded ahead is ready to claim
#: before the content script has even registered its message.
SPEND_EACH_VIEWERS_CLAIMS = """(claims) => new MutationObserver(() => {
    for (const holder of document.querySelectorAll('autosmime-secure-viewer')) {
        const frame = holder.shadowRoot?.querySelector('iframe');
        if (!frame || frame.__spent) continue;
        frame.__spent = true;
        const spend = () => {
            for (const claim of claims) frame.contentWindow?.postMessage(claim, '*');
        };
        spend();
        frame.addEventListener('load', spend);
    }
}).observe(document.body, { childList: true, subtree: true })"""


def test_a_viewer_the_page_spent_its_claims_on_is_replaced(
    playwright: Any, people: dict[str, Any], gmail: Any, mail_stack: Any
) -> None:
    """Attack 6: the page posts made-up claims into the viewer as soon as it is placed, more
    than a frame listens to, so that the claim the content script hands over is never heard.
    The spare viewer loaded ahead (parked in a closed shadow root, out of the page's reach until
    then) hears the page first; the message opens all the same, because a viewer that has not
    bound within a second is replaced by a new one, which binds before its load event."""
    text = "Spare-7e21: opened although the page spent the viewer's claims"
    thread_from_alice(people, mail_stack, gmail, "Spent viewer (page boundary e2e)", text)
    browser = open_browser(playwright, people["bob"], gmail)
    try:
        page = browser.new_page()
        open_inbox(page, gmail)
        spare = spare_viewer(page)
        assert page.evaluate("() => window.frames.length") == 0  # the page cannot reach it
        record(page)
        page.evaluate(SPEND_EACH_VIEWERS_CLAIMS, junk_claims(40))
        page.evaluate("(id) => { location.hash = `#inbox/${id}`; }", THREAD_ID)
        # The frame in the message's holder, whichever it is by then.
        status = page.frame_locator(SECURE_VIEWER).locator("#status")
        expect(status).to_have_attribute("data-state", "valid", timeout=30_000)
        viewer = placed_viewer(page)
        expect(viewer.locator("#text")).to_contain_text(text)
        assert viewer is not spare and spare.is_detached()  # a new viewer took the spent's place
        assert observed(page) == [], observed(page)
        assert text not in page_text_everywhere(page)
    finally:
        browser.close()
