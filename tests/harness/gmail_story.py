"""Steps shared by the Gmail browser tests (not a test module)."""

from __future__ import annotations

import email
import hashlib
import time
from collections.abc import Callable
from email import policy
from typing import Any

from playwright.sync_api import expect

from harness.browser import launch_options
from native_host.errors import HostError
from shared_pki import mime, smime
from shared_pki.errors import PkiError

THREAD_ID = "msg-f:1665118316230599953"
#: The secure frames as the tests find them in a webmail page.
SECURE_EDITOR = "autosmime-secure-editor iframe.autosmime-editor"
SECURE_VIEWER = "autosmime-secure-viewer iframe.autosmime-viewer"


#: How the test people read the subject of header-protected mail (outer Subject "[...]", RFC
#: 9788), as their own clients would: people.make_person adds a reader with each one's keystore;
#: a story whose devices keep their profile elsewhere adds its own (raw -> subject or None).
SUBJECT_READERS: list[Callable[[bytes], str | None]] = []
_SUBJECTS: dict[bytes, str] = {}


def keystore_reader(keystore: Callable[[], Any]) -> Callable[[bytes], str | None]:
    """A subject reader decrypting with a keystore's keys (read at each use: renewed keys count)."""

    def read(raw: bytes) -> str | None:
        try:
            pairs = keystore().decryption_pairs()
            return smime.open_message(raw, keys=pairs).headers().get("Subject")
        except (PkiError, HostError, OSError):
            return None

    return read


def subject_of(raw: bytes) -> str:
    """The subject a reader sees: the outer one, or for "[...]" the protected one inside (""
    when no test person's reader opens it)."""
    outer = email.message_from_bytes(mime.split_headers(raw)[0] + b"\r\n", policy=policy.default)
    subject = str(outer["subject"] or "")
    if subject != "[...]":
        return subject
    key = hashlib.sha256(raw).digest()
    if key not in _SUBJECTS:
        _SUBJECTS[key] = ""
        for reader in SUBJECT_READERS:
            try:
                found = reader(raw)
            except (AssertionError, PkiError, HostError, OSError):  # not this reader's mail
                continue
            if found and found != "[...]":
                _SUBJECTS[key] = found
                break
    return _SUBJECTS[key]


def wait_for_inbox(stack: Any, user: str, subject: str, timeout: float = 30) -> bytes:
    """The raw bytes of the message with this subject once it is in user's INBOX (real IMAP);
    a header-protected one is found by the subject inside."""
    deadline = time.monotonic() + timeout
    while True:
        client = stack.imap_client(user)
        try:
            client.select_folder("INBOX", readonly=True)
            uids = client.search(["SUBJECT", subject])
            if uids:
                data = client.fetch(uids[-1:], ["BODY.PEEK[]"])
                return next(iter(data.values()))[b"BODY[]"]
            hidden = client.search(["SUBJECT", "[...]"])
            data = client.fetch(hidden, ["BODY.PEEK[]"]) if hidden else {}
            found = [data[u][b"BODY[]"] for u in sorted(data)]
            found = [raw for raw in found if subject_of(raw) == subject]
            if found:
                return found[-1]
        finally:
            client.logout()
        assert time.monotonic() < deadline, f"{subject!r} never reached {user}'s INBOX"
        time.sleep(0.3)


def inbox_uid(stack: Any, user: str, raw: bytes) -> int:
    """The IMAP UID of this message (found by its Message-ID) in user's INBOX."""
    outer = email.message_from_bytes(mime.split_headers(raw)[0] + b"\r\n", policy=policy.default)
    client = stack.imap_client(user)
    try:
        client.select_folder("INBOX", readonly=True)
        [uid] = client.search(["HEADER", "Message-ID", str(outer["message-id"]).strip()])
        return int(uid)
    finally:
        client.logout()


def mailbox_bytes(stack: Any, user: str) -> dict[str, list[bytes]]:
    """Every message of every folder of user's mailbox (real IMAP), by folder."""
    client = stack.imap_client(user)
    try:
        found: dict[str, list[bytes]] = {}
        for _flags, _delimiter, name in client.list_folders():
            client.select_folder(name, readonly=True)
            uids = client.search(["ALL"])
            data = client.fetch(uids, ["BODY.PEEK[]"]) if uids else {}
            found[name] = [item[b"BODY[]"] for item in data.values()]
        return found
    finally:
        client.logout()


def with_subject(messages: list[bytes], subject: str) -> list[bytes]:
    """The messages whose subject is this one, in the clear or protected inside."""
    return [m for m in messages if f"Subject: {subject}".encode() in m or subject_of(m) == subject]


def page_text_everywhere(page: Any) -> str:
    """The page's DOM as the page's own scripts can see it, light DOM and open shadow roots."""
    return page.evaluate(
        """() => {
            const parts = [document.documentElement.outerHTML, document.body.innerText];
            const walk = (root) => {
                for (const el of root.querySelectorAll('*')) {
                    if (el.shadowRoot) { parts.push(el.shadowRoot.innerHTML); walk(el.shadowRoot); }
                    if (el.value) parts.push(String(el.value));
                }
            };
            walk(document);
            try { parts.push(localStorage.getItem('draft') ?? ''); } catch (e) {}
            return parts.join('\\n');
        }"""
    )


def fixture_records(page: Any) -> dict[str, Any]:
    return page.evaluate("() => window.__fixture")


def open_in_viewer(page: Any, gmail: Any, raw: bytes) -> Any:
    """Serves raw as the message behind THREAD_ID, opens the thread, returns the viewer frame."""
    gmail.put_raw(THREAD_ID, raw)
    page.goto(gmail.url(f"/mail/u/0/#inbox/{THREAD_ID}"))
    viewer = page.frame_locator(SECURE_VIEWER)
    expect(viewer.locator("#status")).to_have_attribute("data-state", "valid", timeout=30_000)
    return viewer


def open_inbox(page: Any, gmail: Any) -> None:
    """The inbox, once the content script has heard from the host (it loads its spare viewer
    then)."""
    page.goto(gmail.url("/mail/u/0/#inbox"))
    expect(page.locator("autosmime-status span[data-state=ok]")).to_have_count(1)


def placed_viewer(page: Any) -> Any:
    """The Playwright Frame of the secure viewer the content script placed in the message (a
    spare viewer loaded ahead for the next message is in the page too)."""
    return page.locator(SECURE_VIEWER).element_handle().content_frame()


def spare_viewer(page: Any, timeout: float = 30.0) -> Any:
    """The viewer the content script loads ahead, out of sight and unregistered, once its
    script has run (it starts its sandboxed frame then)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for frame in page.frames:
            if not frame.url.endswith("/ui/viewer.html") or frame.is_detached():
                continue
            if frame.frame_element().is_visible():
                continue  # a viewer in a message
            if frame.evaluate("() => document.getElementById('content').srcdoc !== ''"):
                return frame
        page.wait_for_timeout(20)
    raise AssertionError("no spare viewer was loaded")


def open_browser(playwright: Any, person: Any, gmail: Any) -> Any:
    """A Chromium persistent context for one person, mail.google.com mapped to the fixture."""
    args = [f"--host-resolver-rules={gmail.resolver_rule}", "--ignore-certificate-errors"]
    return playwright.chromium.launch_persistent_context(**launch_options(person.browser, args))


def recipients_seen(editor: Any) -> None:
    """Waits until the secure editor's recipient list has been on screen long enough to count as
    seen (extension/background/secure_frames.js, RECIPIENTS_SETTLE_MS), as a person's Send comes:
    a Send a moment after the list changed stops once to show it (the hidden-recipient defense)."""
    expect(editor.locator("#recipients")).to_have_attribute("data-settled", "true", timeout=30_000)


def open_compose(page: Any, gmail: Any, to: str) -> tuple[Any, Any]:
    """A new Gmail compose window to `to`: our controls in it and the secure editor's frame
    (which exists once Sign or Encrypt is pressed)."""
    page.goto(gmail.url(f"/mail/u/0/#inbox?compose=new&to={to}"))
    return page.locator("autosmime-compose-controls"), page.frame_locator(SECURE_EDITOR)
