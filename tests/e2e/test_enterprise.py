"""Onboarding where an organisation already has its PKI, with everything real: Chromium with the
built extension, the real native host, the real PKI service (`autosmime pki serve`) validating
by RFC 8823 mail on the real mail stack. The person types only an address and a password:

- an administrator's policy, written where Debian's Chromium reads it
  (/etc/chromium/policies/managed/, harness.policy), gives the PKI (managed storage, declared
  by the manifest's managed_schema);
- without a policy, the well-known document of the mail domain
  (https://example.test/.well-known/autosmime.json over real HTTPS, harness.well_known) gives it;
- with neither, the page says plainly what to ask the administrator for, and nothing is set up.

Each test's extension has an id of its own (harness.policy), so no policy reaches another
build that runs meanwhile.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness.extension_ui import screenshot
from harness.mail import MailStack
from harness.pki_service import PkiServe, forget_backups
from harness.policy import browser_for, chromium_policy, extension_with_own_id, page_url
from harness.well_known import WellKnownSite
from playwright.sync_api import expect

from shared_pki.keys import load_certificates

pytestmark = pytest.mark.mail

ALICE = "alice@example.test"
ENROLL_TIMEOUT_MS = 120_000


@pytest.fixture(scope="module")
def pki(mail_stack: MailStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PkiServe]:
    with PkiServe(mail_stack, tmp_path_factory.mktemp("pki")) as service:
        yield service


@pytest.fixture
def own_build(extension_dir: Path, tmp_path: Path) -> tuple[Path, str]:
    return extension_with_own_id(extension_dir, tmp_path / "extension")


def onboarding(context: Any, extension_id: str) -> Any:
    page = context.new_page()
    page.goto(page_url(extension_id, "ui/onboarding.html"))
    expect(page.locator("#address")).to_be_visible()
    return page


def set_up(page: Any, mail_stack: MailStack) -> None:
    """Only the address and the password, then the recovery code confirmed."""
    page.get_by_label("Email address").fill(ALICE)
    page.get_by_label("Mail password or app password").fill(mail_stack.users[ALICE])
    page.get_by_role("button", name="Set up secure mail").click()
    code_box = page.locator("#recovery-code-shown")
    expect(code_box).to_be_visible(timeout=ENROLL_TIMEOUT_MS)
    page.get_by_label("I have written it down").check()
    page.get_by_role("button", name="Confirm").click()
    expect(page.get_by_role("heading", name="Secure mail is on")).to_be_visible()


def account_pki(page: Any) -> dict[str, Any]:
    (account,) = page.evaluate(
        "async () => (await globalThis.autosmimeAsk.ask('account.list')).accounts"
    )
    return account["pki"]


def test_an_administrators_policy_gives_the_pki(
    playwright: Any,
    mail_stack: MailStack,
    pki: PkiServe,
    own_build: tuple[Path, str],
    tmp_path: Path,
) -> None:
    forget_backups(mail_stack, ALICE)
    folder, extension_id = own_build
    policy = {
        "pkiUrl": pki.url,
        "pkiRoots": pki.roots_pem.decode("ascii"),
        "imapUrl": f"imaps://alice%40example.test@127.0.0.1:{mail_stack.imaps_port}",
        "smtpUrl": f"smtp://alice%40example.test@127.0.0.1:{mail_stack.smtp_port}",
        "caFile": str(mail_stack.ca_cert_path),
        "acmeContact": True,
        "encryptByDefault": True,
    }
    with (
        chromium_policy(extension_id, policy),
        browser_for(playwright, tmp_path / "browser", folder, extension_id) as context,
    ):
        page = onboarding(context, extension_id)
        managed = page.evaluate("() => chrome.storage.managed.get(null)")
        assert managed["pkiUrl"] == pki.url and managed["encryptByDefault"] is True
        expect(page.locator("#pki-url")).to_have_value(pki.url)
        expect(page.locator("#pki-url")).to_have_js_property("readOnly", True)
        expect(page.locator("#managed-hint")).to_have_js_property("hidden", False)
        screenshot(page, "enterprise-1-policy")
        set_up(page, mail_stack)
        settings = account_pki(page)
        assert settings["url"] == pki.url
        assert settings["acmeDirectory"] == f"{pki.url}/acme/directory"


def test_the_mail_domains_well_known_document_gives_the_pki(
    playwright: Any,
    mail_stack: MailStack,
    pki: PkiServe,
    own_build: tuple[Path, str],
    tmp_path: Path,
) -> None:
    forget_backups(mail_stack, ALICE)
    folder, extension_id = own_build
    roots = load_certificates(pki.roots_pem)
    with WellKnownSite(tmp_path / "site") as site:
        site.document = {
            "version": 1,
            "pki": pki.url,
            "roots": {"sha256": [hashlib.sha256(c.dump()).hexdigest() for c in roots]},
        }
        mail = {  # the mail servers of the test stack (no provider table knows them)
            "imapUrl": f"imaps://alice%40example.test@127.0.0.1:{mail_stack.imaps_port}",
            "smtpUrl": f"smtp://alice%40example.test@127.0.0.1:{mail_stack.smtp_port}",
            "caFile": str(mail_stack.ca_cert_path),
        }
        with (
            chromium_policy(extension_id, mail),
            browser_for(
                playwright, tmp_path / "browser", folder, extension_id, env=site.env()
            ) as context,
        ):
            page = onboarding(context, extension_id)
            expect(page.locator("#pki-url")).to_have_value("")
            set_up(page, mail_stack)
            assert site.requests == ["/.well-known/autosmime.json"]
            expect(page.locator("#pki-source")).to_have_text(
                "Found your organisation's certificate service, published by example.test."
            )
            settings = account_pki(page)
            assert settings["url"] == pki.url and len(settings["roots"]) == 2


def test_with_no_pki_found_the_person_is_told_what_to_ask_for(
    playwright: Any, mail_stack: MailStack, own_build: tuple[Path, str], tmp_path: Path
) -> None:
    folder, extension_id = own_build
    with WellKnownSite(tmp_path / "site") as site:
        site.document = None
        with browser_for(
            playwright, tmp_path / "browser", folder, extension_id, env=site.env()
        ) as context:
            page = onboarding(context, extension_id)
            page.get_by_label("Email address").fill(ALICE)
            page.get_by_label("Mail password or app password").fill(mail_stack.users[ALICE])
            page.get_by_role("button", name="Set up secure mail").click()
            advice = page.locator("#pki-advice")
            expect(advice).to_be_visible(timeout=ENROLL_TIMEOUT_MS)
            expect(advice).to_contain_text("certificate service was not found")
            expect(advice).to_contain_text("Ask your administrator for")
            expect(advice).to_contain_text("root certificates")
            expect(page.locator("#advanced")).to_have_attribute("open", "")
            screenshot(page, "enterprise-2-not-found")
            accounts = page.evaluate(
                "async () => (await globalThis.autosmimeAsk.ask('account.list')).accounts"
            )
            assert accounts == []  # nothing was set up


def test_a_policy_can_start_every_new_message_encrypted(
    playwright: Any,
    mail_stack: MailStack,
    pki_world: Any,
    gmail: Any,
    own_build: tuple[Path, str],
    tmp_path: Path,
) -> None:
    from harness.browser import ExtensionProfile, launch_options
    from harness.gmail_story import open_compose
    from harness.people import KEYRING, BrowserPerson, account_params

    folder, extension_id = own_build
    person = BrowserPerson(ALICE, ExtensionProfile(tmp_path / "alice", folder))
    person.host_profile.mkdir(parents=True)
    person.browser.env.update(
        {"AUTOSMIME_PROFILE": str(person.host_profile), "PYTHON_KEYRING_BACKEND": KEYRING}
    )
    installed = person.browser.autosmime(
        "install", "--browser", "chromium", "--user-data-dir",
        str(person.browser.user_data_dir), "--extension-id", extension_id,
    )  # fmt: skip
    assert installed.returncode == 0, installed.stderr
    pki_world.add(person.keystore(), pki_world.issue(ALICE))
    person.call("account.configure", account_params(mail_stack, pki_world, ALICE))
    args = [f"--host-resolver-rules={gmail.resolver_rule}", "--ignore-certificate-errors"]
    with chromium_policy(extension_id, {"encryptByDefault": True}):
        context = playwright.chromium.launch_persistent_context(
            **launch_options(person.browser, args)
        )
        try:
            page = context.new_page()
            controls, editor = open_compose(page, gmail, "bob@example.test")
            # Encrypt is on before anyone pressed anything, and the body is in the secure editor.
            encrypt = controls.locator("button[data-toggle=encrypt]")
            expect(encrypt).to_have_attribute("aria-pressed", "true", timeout=20_000)
            expect(editor.locator("#body")).to_be_visible()
            # The page cannot see the policy: managed storage is the extension's.
            seen = page.evaluate("() => typeof chrome === 'undefined' || !chrome.storage")
            assert seen is True
        finally:
            context.close()
