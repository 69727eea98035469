"""Onboarding with everything real: Chromium with the built extension, the real native host, the
real PKI service (`autosmime pki serve`) validating the address by RFC 8823 mail on the real
mail stack. A first device sets up and confirms its recovery code; a second, fresh device
restores the keys from the mailbox with that code (a wrong one first)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness.browser import service_worker
from harness.extension_ui import configure_extension, extension_browser, page_url, screenshot
from harness.mail import MailStack
from harness.pki_service import PkiServe, forget_backups
from playwright.sync_api import expect

pytestmark = pytest.mark.mail

ALICE = "alice@example.test"
ENROLL_TIMEOUT_MS = 120_000
STAGES = [
    "Creating your keys",
    "Asking the certificate authority",
    "Waiting for the confirmation email",
    "Replying to confirm your address",
    "Receiving your certificates",
    "Backing up your keys in your mailbox",
    "Done",
]
RECORD_STAGES = """() => {
    window.stagesSeen = [];
    new MutationObserver(() => {
        const text = document.querySelector('#stage').textContent;
        if (text && window.stagesSeen.at(-1) !== text) window.stagesSeen.push(text);
    }).observe(document.querySelector('#stage'),
        { childList: true, characterData: true, subtree: true });
}"""


@pytest.fixture(scope="module")
def pki(mail_stack: MailStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PkiServe]:
    with PkiServe(mail_stack, tmp_path_factory.mktemp("pki")) as service:
        yield service


def setup_page(context: Any, pki: PkiServe) -> Any:
    """The setup tab the extension opened on install, reloaded after the administrator's
    configuration was deployed."""
    url = page_url("ui/onboarding.html")
    opened = [p for p in context.pages if p.url == url]
    page = opened[0] if opened else context.wait_for_event("page", lambda p: p.url == url)
    configure_extension(context, pki.extension_config(ALICE))
    # What the Gmail content script reports: the signed-in address, nothing else.
    service_worker(context).evaluate(
        "(address) => chrome.storage.session.set({ accountHint: { address } })", ALICE
    )
    page.reload()
    expect(page.locator("#address")).to_have_value(ALICE)
    expect(page.locator("#address-hint")).to_contain_text("Found in your webmail")
    return page


def listed_keys(context: Any) -> dict[str, str]:
    options = context.new_page()
    options.goto(page_url("ui/options.html"))
    expect(options.locator("body")).to_have_attribute("data-loaded", "true")
    rows = options.locator("#certs tbody tr")
    found = {
        row.get_attribute("data-key-id"): row.get_attribute("data-suite") for row in rows.all()
    }
    options.close()
    return found


def test_onboard_confirm_code_then_restore_on_a_new_device(
    playwright: Any, mail_stack: MailStack, pki: PkiServe, extension_dir: Path, tmp_path: Path
) -> None:
    forget_backups(mail_stack, ALICE)  # alice's first enrollment
    with extension_browser(playwright, tmp_path / "first", extension_dir) as context:
        page = setup_page(context, pki)
        screenshot(page, "onboarding-1-account")
        page.get_by_label("Mail password or app password").fill(mail_stack.users[ALICE])
        page.evaluate(RECORD_STAGES)
        page.get_by_role("button", name="Set up secure mail").click()
        expect(page.locator("#step-progress")).to_be_visible()
        expect(page.locator("#progress")).to_be_visible()
        code_box = page.locator("#recovery-code-shown")
        expect(code_box).to_be_visible(timeout=ENROLL_TIMEOUT_MS)
        seen = page.evaluate("window.stagesSeen")
        enroll_stages = seen[seen.index("Creating your keys") :]
        assert enroll_stages == STAGES, seen
        assert seen[0] == "Checking your mailbox"  # account.configure's login proof came first
        code = code_box.inner_text().strip()
        assert len(code.split("-")) == 9, code
        screenshot(page, "onboarding-2-recovery-code")

        # The confirmation step: a wrong last group is refused in words, the right one passes.
        page.get_by_label("To confirm, type the last group of the code").fill("0000")
        page.get_by_role("button", name="Confirm").click()
        expect(page.locator("#code-problem")).to_contain_text("not the last group")
        page.get_by_label("To confirm, type the last group of the code").fill(code.split("-")[-1])
        page.get_by_role("button", name="Confirm").click()
        expect(page.get_by_role("heading", name="Secure mail is on")).to_be_visible()
        assert code not in page.content()  # shown once, then gone from the page
        screenshot(page, "onboarding-3-done")
        keys = listed_keys(context)
        assert sorted(keys.values()) == ["intl", "sm"]

    with extension_browser(playwright, tmp_path / "second", extension_dir) as context:
        page = setup_page(context, pki)
        page.get_by_label("Mail password or app password").fill(mail_stack.users[ALICE])
        page.get_by_label("No, restore my keys from my mailbox").check()
        code_field = page.get_by_role("textbox", name="Recovery code")
        code_field.fill("1111-2222-3333-4444-5555-6666-7777-8888-9999")
        page.get_by_role("button", name="Restore from my mailbox").click()
        error = page.get_by_role("alert").filter(has_text="recovery code")
        expect(error).to_contain_text(
            "That recovery code does not open your backup.", timeout=ENROLL_TIMEOUT_MS
        )
        expect(error).to_contain_text("nothing was changed")
        screenshot(page, "onboarding-4-wrong-code")
        assert listed_keys(context) == {}

        page.get_by_label("Mail password or app password").fill(mail_stack.users[ALICE])
        code_field.fill(code)
        page.get_by_role("button", name="Restore from my mailbox").click()
        expect(page.get_by_role("heading", name="Secure mail is on")).to_be_visible(
            timeout=ENROLL_TIMEOUT_MS
        )
        expect(page.locator("#done-text")).to_contain_text("Your 2 keys are back")
        screenshot(page, "onboarding-5-restored")
        assert listed_keys(context) == keys
