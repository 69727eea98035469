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

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness.browser import service_worker
from harness.extension_ui import configure_extension, extension_browser, page_url, screenshot
from harness.mail import MailStack
from harness.oauth import INTROSPECTION_CLIENT, OAuthServer
from harness.pki_service import PkiServe, forget_backups, mail_urls
from playwright.sync_api import expect

from native_host.transport import browser_ids

pytestmark = [pytest.mark.mail, pytest.mark.oauth]

ALICE = "alice@example.test"
CHROMIUM_REDIRECT = f"https://{browser_ids.chromium_id()}.chromiumapp.org/"
ENROLL_TIMEOUT_MS = 120_000


@pytest.fixture(scope="module")
def oauth() -> Iterator[OAuthServer]:
    with OAuthServer([CHROMIUM_REDIRECT], access_token_ttl=3600) as server:
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


def host_profile(context: Any) -> Path:
    """The host's profile folder of this browser profile (the default one under its HOME)."""
    return Path(context.autosmime_profile.env["XDG_DATA_HOME"]) / "autosmime"


def set_up_sign_in(context: Any, oauth: OAuthServer) -> None:
    """What an organisation does: its OAuth client in the host's sign-in settings."""
    done = context.autosmime_profile.autosmime("signin-client", *oauth.provider().cli_arguments())
    assert done.returncode == 0, done.stdout + done.stderr


def grant_of(context: Any) -> dict[str, Any]:
    """What the host keeps for alice's sign-in, read from the keyring file (the test's keyring)."""
    from keyrings.alt.file import PlaintextKeyring

    backend = PlaintextKeyring()
    backend.file_path = str(
        Path(context.autosmime_profile.env["XDG_DATA_HOME"]) / "python_keyring" / "keyring_pass.cfg"
    )
    profile = json.loads((host_profile(context) / "profile.json").read_text())
    secret = backend.get_password(f"autosmime:{profile['id']}", f"oauth2:{ALICE}")
    assert secret, "no sign-in in the keyring"
    return json.loads(secret)


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
    tmp_path: Path,
) -> None:
    forget_backups(oauth_mail, ALICE)
    with extension_browser(playwright, tmp_path / "device", extension_dir) as context:
        set_up_sign_in(context, oauth)
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
        grant = grant_of(context)
        assert grant["refreshToken"] and grant["accessToken"]
        assert grant["client"]["tokenEndpoint"] == oauth.token_endpoint
        accounts = (host_profile(context) / "accounts.json").read_text()
        assert '"credential": "oauth2"' in accounts
        assert grant["refreshToken"] not in accounts and grant["accessToken"] not in accounts
        assert oauth.introspect(grant["accessToken"])["sub"] == ALICE
        # Enrollment read the CA's mail and replied over XOAUTH2 (no password was ever given).
        log = oauth_mail.dovecot_log_path.read_text()
        assert f"user=<{ALICE}>, method=XOAUTH2" in log

        # The provider revokes the grant (a password change, an administrator, a security
        # check): the next use of the mailbox says so in words, with the way back.
        oauth.revoke(grant["refreshToken"])
        assert oauth.introspect(grant["accessToken"]) == {"active": False}
        popup = context.new_page()
        popup.goto(page_url("ui/popup.html"))
        # Opening a message from the mailbox by its Message-ID: an IMAP login first.
        failure = popup.evaluate(
            """() => new Promise((done) => {
                const port = chrome.runtime.connect({ name: 'autosmime.long-request' });
                port.onMessage.addListener((m) => { if (!m.event) done(m); });
                port.postMessage({ type: 'autosmime.request', op: 'message.open',
                                   params: { messageId: '<any@example.test>' } });
            })"""
        )
        assert failure["ok"] is False and failure["error"]["code"] == "sign_in_required", failure
        assert "Sign in with Example Mail" in failure["error"]["message"]
        assert "expired or was revoked" in failure["error"]["message"]

        page.goto(f"{url}?signin={ALICE}&provider=example")
        expect(page.locator("#sign-in-again")).to_be_visible()
        screenshot(page, "sign-in-2-again")
        sign_in_at_provider(context, page, button, log_in=False)
        expect(page.get_by_role("heading", name="Secure mail is on")).to_be_visible(
            timeout=ENROLL_TIMEOUT_MS
        )
        expect(page.locator("#done-text")).to_contain_text("signed in again")
        renewed = grant_of(context)
        assert renewed["refreshToken"] != grant["refreshToken"]
        assert oauth.introspect(renewed["accessToken"])["active"] is True
