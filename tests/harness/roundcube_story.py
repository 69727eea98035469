"""Steps shared by the Roundcube browser tests (not a test module): the person's Chromium with the
extension built for Roundcube, logging in, opening a message, and reading everything the page
holds. The `roundcube` and `roundcube_extension` fixtures are in tests/e2e/conftest.py."""

from __future__ import annotations

import copy
import re
import time
from pathlib import Path
from typing import Any

from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import expect

from harness.browser import launch_options
from harness.mail import MailStack


def open_browser(playwright: Any, person: Any, roundcube: Any, extension: Path) -> Any:
    """The person's Chromium profile with the Roundcube build, webmail.example.test mapped."""
    profile = copy.copy(person.browser)
    profile.extension_dir = extension
    args = [f"--host-resolver-rules={roundcube.resolver_rule}", "--ignore-certificate-errors"]
    return playwright.chromium.launch_persistent_context(**launch_options(profile, args))


def log_in(page: Any, roundcube: Any, stack: MailStack, address: str) -> None:
    page.goto(roundcube.url())
    page.fill("#rcmloginuser", address)
    page.fill("#rcmloginpwd", stack.users[address])
    page.click("#rcmloginsubmit")
    page.wait_for_selector("#mailboxlist", state="attached", timeout=30_000)


#: What Roundcube 1.6 shows for a compose whose session it cannot find.
COMPOSE_SESSION_LOST = "Requested compose session not found"


def open_compose(page: Any, roundcube: Any, query: str, attempts: int = 3) -> None:
    """Roundcube's compose page (`query` after ?_task=mail&_action=compose). Roundcube sends the
    first request on to ?_id=<compose id> and keeps that compose in the PHP session; once in a
    full suite under load the page it sent us on to said "COMPOSE SESSION ERROR: Requested
    compose session not found". That page, recognised by its words, is opened again; any other
    failure fails as before."""
    for _ in range(attempts):
        page.goto(roundcube.url(f"?_task=mail&_action=compose{query}"))
        form = page.locator("#compose-subject")
        form.or_(page.get_by_text(COMPOSE_SESSION_LOST)).first.wait_for(
            state="attached", timeout=30_000
        )
        if form.count():
            return
    raise AssertionError(f"Roundcube lost the compose session {attempts} times in a row")


def everything_the_page_holds(page: Any) -> str:
    """Every frame's DOM as its own scripts see it (light DOM, open shadow roots, form values)
    and the origin's localStorage, where Roundcube keeps its local copy of a compose form."""
    script = """() => {
        const parts = [document.documentElement.outerHTML, document.body?.innerText ?? ''];
        const walk = (root) => {
            for (const el of root.querySelectorAll('*')) {
                if (el.shadowRoot) { parts.push(el.shadowRoot.innerHTML); walk(el.shadowRoot); }
                if (typeof el.value === 'string' && el.value) parts.push(el.value);
            }
        };
        walk(document);
        try {
            for (let i = 0; i < localStorage.length; i++) {
                parts.push(localStorage.key(i), localStorage.getItem(localStorage.key(i)));
            }
        } catch (e) {}
        return parts.join('\\n');
    }"""
    deadline = time.monotonic() + 15
    while True:
        try:
            texts = [
                frame.evaluate(script)
                for frame in page.frames
                if frame.url.startswith(page.url.split("/?")[0])
            ]
            break
        except PlaywrightError as error:
            # A frame that navigates meanwhile (the preview frame loading its page) is read again.
            if time.monotonic() > deadline or not re.search(
                "context was destroyed|detached|navigat", str(error)
            ):
                raise
            time.sleep(0.1)
    assert texts, "no Roundcube frame to look at"
    return "\n".join(texts)


def open_message(page: Any, subject: str, uid: int | None = None) -> None:
    """Opens the message with this subject in Roundcube's preview frame; a header-protected one
    is listed as "[...]", so it is found by its IMAP UID instead (harness.gmail_story.inbox_uid)."""
    if uid is None:
        page.locator(f'table#messagelist tr.message:has-text("{subject}")').click()
        return
    page.wait_for_function("(uid) => Boolean(rcmail.message_list?.rows?.[uid])", arg=str(uid))
    row_id = page.evaluate("(uid) => rcmail.message_list.rows[uid].obj.id", str(uid))
    row = page.locator(f"table#messagelist tr#{row_id}")
    expect(row).to_contain_text("[...]")
    row.click()


def wait_for(check: Any, what: str, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, what
        time.sleep(0.3)
