"""Sign in with a mail provider, every part real: a real OAuth 2.0 authorization server on
loopback (npm oidc-provider: authorization code with PKCE, rotating refresh tokens, revocation,
introspection), Dovecot whose oauth2 passdb validates every XOAUTH2 login there (IMAP, and SMTP
through Dovecot's auth service), the real PKI service enrolling by RFC 8823 mail, Chromium with
the built extension and the real native host.

alice's mail accepts no password from autosmime here: she chooses "Sign in with Example Mail" on
the setup page, the browser shows the provider's sign-in (identity.launchWebAuthFlow), and the
host finishes it, keeps only the grant in the keyring and enrolls over XOAUTH2. When her access
token runs out the host renews it by itself. When the provider revokes the grant, the setup page
says so in words and signing in again from it brings her back."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness.browser import ExtensionProfile, service_worker
from harness.extension_ui import configure_extension, extension_browser, page_url, screenshot
from harness.gmail_story import mailbox_bytes, recipients_seen, wait_for_inbox, with_subject
from harness.mail import MailStack
from harness.oauth import INTROSPECTION_CLIENT, OAuthServer
from harness.pki_service import PkiServe, forget_backups, mail_urls
from playwright.sync_api import expect

from native_host.transport import browser_ids

pytestmark = [pytest.mark.mail, pytest.mark.oauth]

ALICE = "alice@example.test"
CHROMIUM_REDIRECT = f"https://{browser_ids.chromium_id()}.chromiumapp.org/"
#: Firefox's identity.getRedirectURL(): the SHA-1 of the add-on's id, under allizom.org.
FIREFOX_REDIRECT = (
    f"https://{hashlib.sha1(browser_ids.GECKO_ID.encode()).hexdigest()}.extensions.allizom.org/"
)
ENROLL_TIMEOUT_MS = 120_000
SUBJECT = "Signed after signing in again (e2e)"
TEXT = "Signed-4c1d: sent once, after alice signed in again"


@pytest.fixture(scope="module")
def oauth() -> Iterator[OAuthServer]:
    with OAuthServer([CHROMIUM_REDIRECT, FIREFOX_REDIRECT]) as server:
        yield server


@pytest.fixture(scope="module")
def oauth_mail(oauth: OAuthServer) -> Iterator[MailStack]:
    """A mail stack whose IMAP and SMTP accept alice's XOAUTH2 only with a token the provider
    says is active and hers."""
    user, secret = INTROSPECTION_CLIENT
    url = oauth.introspection_endpoint.replace("http://", f"http://{user}:{secret}@")
    with MailStack(oauth_introspection_url=url) as stack:
        yield stack


@pytest.fixture(scope="module")
def pki(oauth_mail: MailStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PkiServe]:
    with PkiServe(oauth_mail, tmp_path_factory.mktemp("pki")) as service:
        yield service


def host_profile(person: ExtensionProfile) -> Path:
    """The host's profile folder of this browser profile (the default one under its HOME)."""
    return Path(person.env["XDG_DATA_HOME"]) / "autosmime"


def set_up_sign_in(person: ExtensionProfile, oauth: OAuthServer) -> None:
    """What an organisation does: its OAuth client in the host's sign-in settings."""
    done = person.autosmime("signin-client", *oauth.provider().cli_arguments())
    assert done.returncode == 0, done.stdout + done.stderr


def grant_of(person: ExtensionProfile) -> dict[str, Any]:
    """What the host keeps for alice's sign-in, read from the keyring file (the test's keyring)."""
    from keyrings.alt.file import PlaintextKeyring

    backend = PlaintextKeyring()
    backend.file_path = str(
        Path(person.env["XDG_DATA_HOME"]) / "python_keyring" / "keyring_pass.cfg"
    )
    profile = json.loads((host_profile(person) / "profile.json").read_text())
    secret = backend.get_password(f"autosmime:{profile['id']}", f"oauth2:{ALICE}")
    assert secret, "no sign-in in the keyring"
    return json.loads(secret)


def outbox_files(person: ExtensionProfile) -> list[Path]:
    """Messages waiting in the host's outbox folders (to be sent later, unasked)."""
    return list((host_profile(person) / "outbox").rglob("*.msg"))


def sign_in_at_provider(context: Any, page: Any, button: str, *, log_in: bool = True) -> None:
    """Presses the sign-in button and completes the provider's pages in the window the browser
    opens for them: alice's login (the provider's own form; not again while the provider's
    session lasts), then consent."""
    with context.expect_page() as opened:
        page.get_by_role("button", name=button).click()
    popup = opened.value
    popup.wait_for_load_state()
    if log_in:
        expect(popup.locator("input[name=login]")).to_have_value(ALICE)  # the login hint
        popup.fill("input[name=password]", "alice's password at the provider")
        popup.locator("button[type=submit]").click()
    expect(popup.locator("input[name=prompt][value=consent]")).to_be_attached()
    popup.locator("button[type=submit]").click()


def test_sign_in_enroll_renew_and_sign_in_again(
    playwright: Any,
    oauth: OAuthServer,
    oauth_mail: MailStack,
    pki: PkiServe,
    extension_dir: Path,
    gmail: Any,
    tmp_path: Path,
) -> None:
    forget_backups(oauth_mail, ALICE)
    args = [f"--host-resolver-rules={gmail.resolver_rule}", "--ignore-certificate-errors"]
    with extension_browser(playwright, tmp_path / "device", extension_dir, args) as context:
        set_up_sign_in(context.autosmime_profile, oauth)
        url = page_url("ui/onboarding.html")
        opened = [p for p in context.pages if p.url == url]
        page = opened[0] if opened else context.wait_for_event("page", lambda p: p.url == url)
        configure_extension(
            context,
            {"pkiUrl": pki.url, "pkiRoots": pki.roots_pem.decode(), **mail_urls(oauth_mail, ALICE)},
        )
        service_worker(context).evaluate(
            "(address) => chrome.storage.session.set({ accountHint: { address } })", ALICE
        )
        page.reload()
        expect(page.locator("#address")).to_have_value(ALICE)
        button = "Sign in with Example Mail"
        expect(page.get_by_role("button", name=button)).to_be_visible()
        screenshot(page, "sign-in-1-choose")

        sign_in_at_provider(context, page, button)
        code_box = page.locator("#recovery-code-shown")
        expect(code_box).to_be_visible(timeout=ENROLL_TIMEOUT_MS)
        page.get_by_label("I have written it down").check()
        page.get_by_role("button", name="Confirm").click()
        expect(page.get_by_role("heading", name="Secure mail is on")).to_be_visible()

        # Only the grant is kept, in the keyring: the settings file holds no token.
        grant = grant_of(context.autosmime_profile)
        assert grant["refreshToken"] and grant["accessToken"]
        assert grant["client"]["tokenEndpoint"] == oauth.token_endpoint
        accounts = (host_profile(context.autosmime_profile) / "accounts.json").read_text()
        assert '"credential": "oauth2"' in accounts
        assert grant["refreshToken"] not in accounts and grant["accessToken"] not in accounts
        assert oauth.introspect(grant["accessToken"])["sub"] == ALICE
        # Enrollment read the CA's mail and replied over XOAUTH2 (no password was ever given).
        log = oauth_mail.dovecot_log_path.read_text()
        assert f"user=<{ALICE}>, method=XOAUTH2" in log

        # The provider revokes the grant (a password change, an administrator, a security
        # check). alice signs a message in Gmail: Send says so in words, sends nothing, and
        # offers the way back.
        oauth.revoke(grant["refreshToken"])
        assert oauth.introspect(grant["accessToken"]) == {"active": False}
        gmail_page = context.new_page()
        gmail_page.goto(gmail.url("/mail/u/0/#inbox?compose=new&to=bob@example.test"))
        controls = gmail_page.locator("autosmime-compose-controls")
        gmail_page.fill("input[name=subjectbox]", SUBJECT)
        controls.locator("button[data-toggle=sign]").click()
        editor = gmail_page.frame_locator("autosmime-secure-editor iframe.autosmime-editor")
        expect(editor.locator('#recipients li[data-address="bob@example.test"]')).to_be_visible()
        editor.locator("#body").click()
        editor.locator("#body").press_sequentially(TEXT)
        recipients_seen(editor)  # as a person's Send comes (the hidden-recipient defense)
        gmail_page.locator(".T-I.aoO[role=button]").click()
        status = controls.locator(".status")
        expect(status).to_contain_text("expired or was revoked", timeout=60_000)
        expect(status).to_contain_text("Sign in with Example Mail")
        expect(status).to_have_attribute("data-state", "error")
        screenshot(gmail_page, "sign-in-2-expired")
        left = outbox_files(context.autosmime_profile)
        assert not left, "the message was left to be sent behind alice's back"

        with context.expect_page() as opened:
            controls.locator("button[data-action=sign-in]").click()
        again = opened.value
        expect(again.locator("#sign-in-again")).to_be_visible()
        expect(again.locator("#address")).to_have_value(ALICE)
        sign_in_at_provider(context, again, button, log_in=False)
        expect(again.get_by_role("heading", name="Secure mail is on")).to_be_visible(
            timeout=ENROLL_TIMEOUT_MS
        )
        expect(again.locator("#done-text")).to_contain_text("signed in again")
        renewed = grant_of(context.autosmime_profile)
        assert renewed["refreshToken"] != grant["refreshToken"]
        assert oauth.introspect(renewed["accessToken"])["active"] is True

        # Back in the compose window, alice's text still in the secure editor: Send sends it.
        gmail_page.bring_to_front()
        gmail_page.locator(".T-I.aoO[role=button]").click()
        sent = gmail_page.locator("autosmime-status span[data-notice=sent]")
        expect(sent).to_have_text("autosmime: Message sent, signed.", timeout=60_000)
    delivered = wait_for_inbox(oauth_mail, "bob@example.test", SUBJECT)
    assert TEXT.encode() in delivered and b"multipart/signed" in delivered
    assert len(with_subject(mailbox_bytes(oauth_mail, "bob@example.test")["INBOX"], SUBJECT)) == 1


@pytest.mark.firefox
def test_sign_in_in_firefox(
    oauth: OAuthServer, oauth_mail: MailStack, extension_dir: Path, tmp_path: Path
) -> None:
    """The same sign-in in Debian's Firefox ESR (browser.identity.launchWebAuthFlow, its own
    redirect URL): the provider's window, its login and consent, and the host keeps the grant;
    IMAP and SMTP were proven with the token, validated by Dovecot."""
    from harness.firefox import Firefox
    from harness.pki_service import KEYRING
    from marionette_driver.by import By

    person = ExtensionProfile(tmp_path / "firefox-device", extension_dir.parent / "firefox")
    person.env["PYTHON_KEYRING_BACKEND"] = KEYRING
    person.env.pop("AUTOSMIME_PROFILE", None)
    done = person.autosmime("install", "--browser", "firefox")
    assert done.returncode == 0, done.stdout + done.stderr
    set_up_sign_in(person, oauth)
    xpi = extension_dir.parent / "firefox.xpi"
    with Firefox(person.root / "firefox", person.env, xpi, {}) as browser:
        client = browser.client

        def setup_tab() -> str | None:
            for handle in client.window_handles:
                client.switch_to_window(handle)
                if client.get_url().endswith("/ui/onboarding.html"):
                    return handle
            return None

        setup = browser.wait(setup_tab, "the setup page the add-on opens on install")
        config = mail_urls(oauth_mail, ALICE)
        browser.page(
            "return browser.storage.local.set({ config: arguments[0] })"
            ".then(() => { location.search = '?signin=' + encodeURIComponent(arguments[1]); })",
            config,
            ALICE,
        )
        button = browser.wait(
            lambda: client.find_element(
                By.CSS_SELECTOR, "#sign-in-buttons button[data-provider=example]"
            ),
            "the Sign in with Example Mail button",
        )
        assert button.text == "Sign in with Example Mail"
        before = set(client.window_handles)
        button.click()
        (window,) = browser.wait(
            lambda: set(client.window_handles) - before, "the provider's sign-in window"
        )
        client.switch_to_window(window)
        login = browser.wait(
            lambda: client.find_element(By.CSS_SELECTOR, "input[name=login]"), "the login form"
        )
        assert login.get_property("value") == ALICE  # the login hint
        client.find_element(By.CSS_SELECTOR, "input[name=password]").send_keys("at the provider")
        client.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        browser.wait(
            lambda: client.find_element(By.CSS_SELECTOR, "input[name=prompt][value=consent]"),
            "the consent page",
        )
        client.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        browser.wait(lambda: window not in client.window_handles, "the sign-in window closed")
        client.switch_to_window(setup)
        done_text = browser.wait(
            lambda: client.find_element(By.CSS_SELECTOR, "#step-done:not([hidden]) #done-text"),
            "the setup finished",
            timeout=60,
        )
        assert "signed in again" in done_text.text
    grant = grant_of(person)
    assert oauth.introspect(grant["accessToken"])["sub"] == ALICE
    accounts = json.loads((host_profile(person) / "accounts.json").read_text())
    assert [a["credential"] for a in accounts["accounts"]] == ["oauth2"]
