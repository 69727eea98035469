"""The Gmail story in Debian's Firefox ESR with the built dist/firefox.xpi and the real native
host (registered by `autosmime install --browser firefox`): alice turns Encrypt on in the
Gmail-shaped compose, types in the secure editor and presses Gmail's Send; her host signs,
timestamps, encrypts and submits through the real mail stack; bob opens it in his Firefox and
the secure viewer shows the plaintext, signed by alice with a trusted timestamp. Neither page
ever holds the plaintext.

Then the page's own script (Marionette, no sandbox: the page's realm) attacks the secure frames
as test_page_boundary.py does in Chromium (docs/SECURITY.md, attacks 2 to 4), and fails: frames
it makes itself send nothing and post it nothing, a Bcc it slips in at Send stops the send and is
named in the editor, and reloading the editor as Sign sends nothing."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness.firefox import EXTENSION_ORIGIN, Firefox
from harness.gmail_story import THREAD_ID, mailbox_bytes, wait_for_inbox, with_subject
from harness.hostile import (
    RELOAD_EDITOR_AS_SIGN,
    frame_made_by_page,
    host_log_offset,
    host_ops,
    observed,
    record,
    wait_until_answered,
)

pytestmark = [pytest.mark.browser, pytest.mark.mail, pytest.mark.firefox]

ORIGIN = "https://mail.google.com"
SECRET = "Firefox-plaintext-5d2e: the board meets on Monday"
PAGE_WORDS = "Page-written 3f9c: I, alice, approve the wire transfer"
SEND_BUTTON = ".T-I.aoO[role=button]"
SENT_SIGNED_ENCRYPTED = "autosmime: Message sent, signed and encrypted."

#: The page's DOM as its own scripts see it: light DOM, open shadow roots, field values, and
#: the fixture's records (its draft autosave, its network log, Gmail's own send).
PAGE_TEXT = """
    const parts = [document.documentElement.outerHTML, document.body.innerText];
    const walk = (root) => {
        for (const el of root.querySelectorAll('*')) {
            if (el.shadowRoot) { parts.push(el.shadowRoot.innerHTML); walk(el.shadowRoot); }
            if (el.value) parts.push(String(el.value));
        }
    };
    walk(document);
    parts.push(JSON.stringify(window.__fixture));
    return parts.join('\\n');
"""


@pytest.fixture(scope="module")
def xpi(extension_dir: Path) -> Path:
    return extension_dir.parent / "firefox.xpi"


@pytest.fixture(scope="module")
def firefox_people(people: dict[str, Any]) -> dict[str, Any]:
    """alice and bob with the host registered for Firefox too (in their own HOME)."""
    for person in people.values():
        done = person.browser.autosmime("install", "--browser", "firefox")
        assert done.returncode == 0, done.stdout + done.stderr
    return people


def open_firefox(person: Any, gmail: Any, xpi: Path) -> Firefox:
    routes = {"mail.google.com:443": ("127.0.0.1", gmail.port)}
    return Firefox(person.browser.root / "firefox", person.browser.env, xpi, routes).start()


@pytest.fixture
def alice_firefox(firefox_people: dict[str, Any], gmail: Any, xpi: Path) -> Iterator[Firefox]:
    browser = open_firefox(firefox_people["alice"], gmail, xpi)
    try:
        yield browser
    finally:
        browser.close()


# ---- steps ------------------------------------------------------------------------------------


def css(browser: Firefox, selector: str) -> Any:
    from marionette_driver.by import By

    return browser.client.find_element(By.CSS_SELECTOR, selector)


def in_shadow(browser: Firefox, host: str, selector: str) -> Any:
    from marionette_driver.by import By

    return css(browser, host).shadow_root.find_element(By.CSS_SELECTOR, selector)


def control(browser: Firefox, selector: str) -> Any:
    return in_shadow(browser, "autosmime-compose-controls", selector)


def badge_text(browser: Firefox) -> str:
    return browser.page(
        "return document.querySelector('autosmime-status')?.shadowRoot"
        "?.querySelector('span')?.textContent ?? ''"
    )


def controls_status(browser: Firefox) -> str:
    return browser.page(
        "return document.querySelector('autosmime-compose-controls')?.shadowRoot"
        "?.querySelector('.status')?.textContent ?? ''"
    )


def in_editor(browser: Firefox, script: str) -> Any:
    """A script run inside the secure editor (Marionette's view, not the page's)."""
    frame = in_shadow(browser, "autosmime-secure-editor", "iframe")
    return browser.in_frame(frame, lambda: browser.client.execute_script(script))


def recipients_seen(browser: Firefox) -> None:
    """Waits until the secure editor's recipient list has been on screen long enough to count as
    seen (RECIPIENTS_SETTLE_MS in extension/background/secure_frames.js), as a person's Send
    comes: a Send a moment after the list changed stops once to show it."""
    browser.wait(
        lambda: in_editor(
            browser, "return document.getElementById('recipients')?.dataset.settled === 'true'"
        ),
        "the recipient list on screen long enough to be seen",
        timeout=30,
    )


def compose_encrypted(browser: Firefox, gmail: Any, subject: str, to: str = "bob@example.test"):
    """A Gmail compose to `to`, Encrypt pressed by the person, the secure editor bound and
    showing the recipients; returns once SECRET is typed in it."""
    client = browser.client
    client.navigate(gmail.url(f"/mail/u/0/#inbox?compose=new&to={to}"))
    browser.wait(lambda: "ready" in badge_text(browser), "the native host's hello in the badge")
    encrypt = browser.wait(
        lambda: control(browser, "button[data-toggle=encrypt]"), "our Encrypt button"
    )
    css(browser, "input[name=subjectbox]").send_keys(subject)
    encrypt.click()
    browser.wait(lambda: encrypt.get_attribute("aria-pressed") == "true", "Encrypt pressed")
    browser.wait(
        lambda: control(browser, f'.badge[data-address="{to}"][data-cert=found]'),
        f"{to}'s certificate found in the directory",
    )
    editor = browser.wait(
        lambda: in_shadow(browser, "autosmime-secure-editor", "iframe"), "the secure editor"
    )

    def type_secret() -> None:
        browser.wait(
            lambda: client.execute_script(
                "return document.querySelector('#mode')?.dataset.mode === 'encrypt'"
                f" && !!document.querySelector('#recipients li[data-address=\"{to}\"]')"
            ),
            "the editor bound, saying Encrypt and showing the recipient",
        )
        body = css(browser, "#body")
        body.click()
        body.send_keys(SECRET)
        browser.wait(
            lambda: SECRET in client.execute_script("return document.body.innerText"),
            "the text in the editor",
        )

    browser.in_frame(editor, type_secret)
    recipients_seen(browser)


def press_send(browser: Firefox) -> None:
    css(browser, SEND_BUTTON).click()  # a person's (trusted) click


def assert_bob_got_only_alices_text(people: dict[str, Any], mail_stack: Any, subject: str) -> None:
    raw = wait_for_inbox(mail_stack, "bob@example.test", subject)
    assert b"application/pkcs7-mime" in raw.split(b"\r\n\r\n", 1)[0] and SECRET.encode() not in raw
    assert len(with_subject(mailbox_bytes(mail_stack, "bob@example.test")["INBOX"], subject)) == 1
    from harness.people import b64

    opened = people["bob"].call("message.open", {"raw": b64(raw)})
    assert opened["security"]["encrypted"] and opened["security"]["decrypted"], opened["security"]
    assert opened["text"].startswith(SECRET) and PAGE_WORDS not in opened["text"], opened["text"]


# ---- the story --------------------------------------------------------------------------------


def test_alice_sends_encrypted_from_firefox_and_bob_reads_it_in_firefox(
    firefox_people: dict[str, Any], gmail: Any, mail_stack: Any, xpi: Path
) -> None:
    subject = "From Firefox (e2e)"
    alice = open_firefox(firefox_people["alice"], gmail, xpi)
    try:
        compose_encrypted(alice, gmail, subject)
        press_send(alice)
        alice.wait(
            lambda: badge_text(alice) == SENT_SIGNED_ENCRYPTED,
            "the send reported in the badge",
            timeout=60,
        )
        seen = alice.page(PAGE_TEXT)
        assert '"draftStore":[{' in seen  # the page's own script: its autosave ran and is seen
        assert SECRET not in seen
        assert '"gmail-send"' not in seen  # Gmail's own Send never ran
    finally:
        alice.close()
    assert SECRET not in gmail.all_bytes().decode("utf-8", "replace")

    raw = wait_for_inbox(mail_stack, "bob@example.test", subject)
    assert SECRET.encode() not in raw and b"application/pkcs7-mime" in raw

    bob = open_firefox(firefox_people["bob"], gmail, xpi)
    try:
        gmail.put_raw(THREAD_ID, raw)
        bob.client.navigate(gmail.url(f"/mail/u/0/#inbox/{THREAD_ID}"))
        viewer = bob.wait(
            lambda: in_shadow(bob, "autosmime-secure-viewer", "iframe"), "the secure viewer"
        )
        status, text = bob.in_frame(
            viewer,
            lambda: bob.wait(
                lambda: bob.client.execute_script(
                    "const status = document.querySelector('#status[data-state=valid]');"
                    "return status && [status.textContent, "
                    "document.getElementById('text').textContent];"
                ),
                "the viewer's verdict",
            ),
        )
        assert "Signed by alice@example.test: valid" in status
        assert re.search(r"Trusted timestamp: \d{4}-\d\d-\d\d", status), status
        assert SECRET in text
        assert SECRET not in bob.page(PAGE_TEXT)
        paths = [r.path for r in gmail.requests]
        assert f"/mail/u/0/?view=om&permmsgid={THREAD_ID.replace(':', '%3A')}" in paths
    finally:
        bob.close()


# ---- the page attacks (docs/SECURITY.md) ------------------------------------------------------


def test_frames_the_page_makes_in_firefox_send_nothing_and_post_it_nothing(
    firefox_people: dict[str, Any], alice_firefox: Firefox, gmail: Any, mail_stack: Any
) -> None:
    """Attack 2 in Firefox: with alice's secure editor open, the page frames ui/editor.html
    (Sign mode, its own text, on any channel it can read) and ui/viewer.html itself and posts
    them claims and commands. alice's one Send sends one message, hers, encrypted; the page's
    frames never reach the host and nothing any frame posts reaches the page."""
    subject = "Second editor in Firefox (e2e)"
    alice, browser = firefox_people["alice"], alice_firefox
    compose_encrypted(browser, gmail, subject)
    record(browser, EXTENSION_ORIGIN)
    offset = host_log_offset(alice)
    commands = [
        {"type": "init", "text": PAGE_WORDS},
        {"type": "bound", "kind": "editor", "mode": "sign", "draft": PAGE_WORDS},
        {"type": "collect", "id": "page"},
    ]
    for page_path in ("ui/editor.html", "ui/viewer.html"):
        frame_made_by_page(
            browser, page_path, ORIGIN, commands, mode="sign", extension_origin=EXTENSION_ORIGIN
        )
    press_send(browser)
    browser.wait(lambda: badge_text(browser) == SENT_SIGNED_ENCRYPTED, "alice's send", timeout=60)
    assert wait_until_answered(alice, "compose.send", offset) == 1
    assert host_ops(alice, "message.open", offset) == ([], [])
    assert observed(browser) == [], observed(browser)
    assert_bob_got_only_alices_text(firefox_people, mail_stack, subject)


def test_a_bcc_the_page_slips_in_at_send_stops_the_send_in_firefox(
    firefox_people: dict[str, Any], alice_firefox: Firefox, gmail: Any, mail_stack: Any, eve: str
) -> None:
    """Attack 3 in Firefox: the page's capture listener (registered before the extension's)
    adds a hidden Bcc chip for eve the instant alice presses Send. Nothing is sent, and the
    secure editor names eve under Bcc; once the page takes the chip away, one Send delivers to
    bob only."""
    subject = "Hidden recipient in Firefox (e2e)"
    alice, browser = firefox_people["alice"], alice_firefox
    compose_encrypted(browser, gmail, subject)
    offset = host_log_offset(alice)
    browser.evaluate("(address) => { window.__bccOnSend = address; }", eve)
    press_send(browser)
    browser.wait(lambda: "recipients changed" in controls_status(browser), "the stopped send")
    browser.wait(
        lambda: in_editor(
            browser,
            f"return !!document.querySelector('#recipients [data-kind=bcc] "
            f'li[data-address="{eve}"]\')'
            " && document.getElementById('status').textContent.includes('recipients changed')",
        ),
        "eve named under Bcc in the secure editor",
    )
    assert wait_until_answered(alice, "compose.send", offset) == 0

    browser.evaluate("() => document.querySelector('.page-bcc').remove()")
    browser.wait(
        lambda: in_editor(browser, "return !document.querySelector('#recipients [data-kind=bcc]')"),
        "the editor's list without eve",
    )
    recipients_seen(browser)
    press_send(browser)
    browser.wait(lambda: badge_text(browser) == SENT_SIGNED_ENCRYPTED, "the send", timeout=60)
    assert wait_until_answered(alice, "compose.send", offset) == 1
    wait_for_inbox(mail_stack, "bob@example.test", subject)
    assert with_subject(mailbox_bytes(mail_stack, eve)["INBOX"], subject) == []


def test_reloading_the_editor_as_sign_sends_nothing_in_firefox(
    firefox_people: dict[str, Any], alice_firefox: Firefox, gmail: Any, mail_stack: Any
) -> None:
    """Attack 4 in Firefox: the page's script clicks our Sign and Encrypt (untrusted: nothing
    happens), and after alice chose Encrypt and typed, reloads the secure editor with mode=sign.
    Send sends nothing and the controls say the editor was interfered with; reopening it brings
    alice's text back, still encrypted, and her Send delivers it encrypted, once."""
    subject = "Downgrade in Firefox (e2e)"
    alice, browser = firefox_people["alice"], alice_firefox
    browser.client.navigate(gmail.url("/mail/u/0/#inbox?compose=new&to=bob@example.test"))
    browser.wait(lambda: control(browser, "button[data-toggle=sign]"), "our controls")
    clicked = browser.evaluate(
        """() => {
            const shadow = document.querySelector('autosmime-compose-controls').shadowRoot;
            const button = (name) => shadow.querySelector(`[data-toggle=${name}]`);
            button('sign').click();
            button('encrypt').click();
            return [button('sign').getAttribute('aria-pressed'),
                    button('encrypt').getAttribute('aria-pressed'),
                    document.querySelectorAll('autosmime-secure-editor').length];
        }"""
    )
    assert clicked == ["false", "false", 0], clicked
    compose_encrypted(browser, gmail, subject)
    offset = host_log_offset(alice)
    browser.evaluate(RELOAD_EDITOR_AS_SIGN)
    browser.wait(
        lambda: (
            in_editor(browser, "return document.getElementById('status').dataset.state")
            not in (None, "pending")
        ),
        "the reloaded editor settled",
    )
    press_send(browser)
    browser.wait(
        lambda: "Not sent: the secure editor was interfered with" in controls_status(browser),
        "the interference said in the controls",
    )
    assert wait_until_answered(alice, "compose.send", offset) == 0, "it was sent"
    assert in_editor(browser, "return document.getElementById('body').contentEditable") == "false"
    assert control(browser, "button[data-toggle=encrypt]").get_attribute("aria-pressed") == "true"

    control(browser, "button[data-action=reopen]").click()
    browser.wait(
        lambda: in_editor(
            browser,
            "return document.querySelector('#mode')?.dataset.mode === 'encrypt' && "
            f"document.getElementById('body').innerText.includes({SECRET!r})",
        ),
        "the reopened editor with alice's text, encrypted",
    )
    recipients_seen(browser)
    press_send(browser)
    browser.wait(lambda: badge_text(browser) == SENT_SIGNED_ENCRYPTED, "the send", timeout=60)
    assert wait_until_answered(alice, "compose.send", offset) == 1
    assert_bob_got_only_alices_text(firefox_people, mail_stack, subject)
