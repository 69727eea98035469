"""Signed-in accounts (OAuth 2.0) against a real authorization server (npm oidc-provider on
loopback) and Dovecot validating every XOAUTH2 login there with its oauth2 passdb (IMAP, and SMTP
through Dovecot's auth service): the code flow with PKCE, the grant kept in the keyring only,
access tokens renewed by the host when they run out or are refused early (once, under a lock,
however many operations need one at the same moment), and a revoked grant said in words with the
way to sign in again. The provider presets and the settings are checked without a server."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness.mail import MailStack
from harness.oauth import CLIENT_ID, INTROSPECTION_CLIENT, SHORT_CLIENT_ID, SHORT_TTL, OAuthServer

from native_host.domain.accounts import OAUTH2, Accounts, KeyringCredentialStore
from native_host.errors import BadParams, NotConfigured, as_host_error
from native_host.infrastructure import oauth
from native_host.infrastructure.oauth import SignInClient, SignInRequired

ALICE = "alice@example.test"
REDIRECT = "https://sign-in.test.invalid/"
SERVICE = "autosmime-sign-in-test"

pytestmark = [pytest.mark.mail, pytest.mark.oauth]


@pytest.fixture(scope="module")
def server() -> Iterator[OAuthServer]:
    with OAuthServer([REDIRECT]) as running:
        yield running


@pytest.fixture(scope="module")
def stack(server: OAuthServer) -> Iterator[MailStack]:
    user, secret = INTROSPECTION_CLIENT
    url = server.introspection_endpoint.replace("http://", f"http://{user}:{secret}@")
    with MailStack(oauth_introspection_url=url) as running:
        yield running


class MemoryKeyring:
    """A keyring backend in memory (the real keyring is not what these tests are about)."""

    def __init__(self) -> None:
        self.secrets: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, name: str) -> str | None:
        return self.secrets.get((service, name))

    def set_password(self, service: str, name: str, secret: str) -> None:
        self.secrets[(service, name)] = secret

    def delete_password(self, service: str, name: str) -> None:
        from keyring.errors import PasswordDeleteError

        if self.secrets.pop((service, name), None) is None:
            raise PasswordDeleteError(name)


class Clock:
    def __init__(self) -> None:
        import time

        self.offset = 0.0
        self._time = time.time

    def __call__(self) -> float:
        return self._time() + self.offset


class CountingPost:
    """oauth.post_form, counted per grant type."""

    def __init__(self) -> None:
        self.grants: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, url: str, fields: Any, timeout: float) -> tuple[int, dict[str, Any]]:
        with self._lock:
            self.grants.append(fields["grant_type"])
        return oauth.post_form(url, fields, timeout)


def signed_in(server: OAuthServer, client_id: str = CLIENT_ID) -> tuple[SignInClient, oauth.Tokens]:
    """alice's sign-in, as the browser completes it: authorization URL with state and PKCE,
    the provider's pages, the code from the URL it comes back to, exchanged with the verifier."""
    client = SignInClient.from_settings("example", server.provider(client_id=client_id).settings())
    verifier, challenge = oauth.new_pkce()
    state = oauth.new_state()
    url = oauth.authorization_url(client, REDIRECT, state, challenge, ALICE)
    back = server.authorize(url, ALICE)
    code = oauth.code_from_redirect(back, REDIRECT, state)
    return client, oauth.exchange_code(client, code, verifier, REDIRECT)


@pytest.fixture
def alice(tmp_path: Path, server: OAuthServer, stack: MailStack) -> dict[str, Any]:
    return signed_in_alice(tmp_path, server, stack)


def signed_in_alice(
    tmp_path: Path, server: OAuthServer, stack: MailStack, client_id: str = CLIENT_ID
) -> dict[str, Any]:
    """alice's account on the OAuth mail stack, set up with a sign-in (keyring in memory)."""
    ring = MemoryKeyring()
    clock = Clock()
    post = CountingPost()
    accounts = Accounts(
        tmp_path / "accounts.json",
        KeyringCredentialStore(SERVICE, ring),
        oauth_post=post,
        now=clock,
    )
    login = ALICE.replace("@", "%40")
    accounts.configure(
        ALICE,
        signed_in=signed_in(server, client_id),
        imap_url=f"imaps://{login}@127.0.0.1:{stack.imaps_port}",
        smtp_url=f"smtp://{login}@127.0.0.1:{stack.smtp_port}",
        ca_file=stack.ca_cert_path,
    )
    return {"accounts": accounts, "ring": ring, "clock": clock, "post": post, "path": tmp_path}


def grant(ring: MemoryKeyring) -> dict[str, Any]:
    return json.loads(ring.secrets[(SERVICE, f"{OAUTH2}:{ALICE}")])


def test_a_sign_in_keeps_only_the_grant_in_the_keyring_and_logs_in_with_xoauth2(
    alice: dict[str, Any], server: OAuthServer, stack: MailStack
) -> None:
    account = alice["accounts"].get(ALICE)
    assert account.credential == OAUTH2
    kept = grant(alice["ring"])
    assert kept["refreshToken"] and kept["client"]["clientId"] == "autosmime-test"
    stored = (alice["path"] / "accounts.json").read_text()
    assert kept["accessToken"] not in stored and kept["refreshToken"] not in stored
    assert server.introspect(kept["accessToken"])["sub"] == ALICE
    log = stack.dovecot_log_path.read_text()
    assert f"user=<{ALICE}>, method=XOAUTH2" in log
    # Dovecot asked the provider: a made-up token is refused, at IMAP and at SMTP.
    with pytest.raises(Exception, match=r"(?i)auth"):
        from imapclient import IMAPClient

        IMAPClient("127.0.0.1", port=stack.imap_port, ssl=False).oauth2_login(ALICE, "made-up")


def test_an_access_token_that_ran_out_is_renewed_by_the_host(alice: dict[str, Any], server) -> None:
    before = grant(alice["ring"])
    alice["clock"].offset = before["expiresAt"] - alice["clock"]()  # the token's last second
    alice["accounts"].mailbox(ALICE).login()  # IMAP and SMTP, both judged by Dovecot
    after = grant(alice["ring"])
    assert alice["post"].grants == ["refresh_token"]
    assert after["accessToken"] != before["accessToken"]
    assert after["refreshToken"] != before["refreshToken"]  # the provider rotates it: kept
    assert server.introspect(after["accessToken"])["active"] is True


def test_an_access_token_refused_early_is_renewed(
    tmp_path: Path, server: OAuthServer, stack: MailStack
) -> None:
    """This computer's clock is behind: the host believes its access token has time left, the
    provider has already let it go. Dovecot refuses it; the host renews it and logs in."""
    alice = signed_in_alice(tmp_path, server, stack, client_id=SHORT_CLIENT_ID)
    before = grant(alice["ring"])
    alice["clock"].offset = -600.0
    deadline = time.monotonic() + 10 * SHORT_TTL
    while server.introspect(before["accessToken"]) != {"active": False}:
        assert time.monotonic() < deadline, "the provider never let the token go"
        time.sleep(0.2)
    alice["accounts"].mailbox(ALICE).login()
    after = grant(alice["ring"])
    # Renewed when IMAP refused the token (SMTP, moments later, may need another: 2 s tokens).
    assert alice["post"].grants[0] == "refresh_token"
    assert after["accessToken"] != before["accessToken"]


def test_operations_needing_a_token_at_once_renew_it_once(alice: dict[str, Any], server) -> None:
    """Providers rotate refresh tokens and take the whole grant back when a rotated one is
    used again: eight operations that find the token run out share one renewal."""
    alice["clock"].offset = grant(alice["ring"])["expiresAt"] + 1 - alice["clock"]()
    tokens: list[str] = []
    threads = [
        threading.Thread(
            target=lambda: tokens.append(alice["accounts"].credentials_for(ALICE).xoauth2_token)
        )
        for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert alice["post"].grants == ["refresh_token"]
    assert len(set(tokens)) == 1 and server.introspect(tokens[0])["active"] is True
    alice["accounts"].mailbox(ALICE).login()


def test_a_revoked_grant_is_said_in_words_with_the_way_to_sign_in_again(
    alice: dict[str, Any], server: OAuthServer
) -> None:
    before = grant(alice["ring"])
    server.revoke(before["refreshToken"])  # the whole grant: a password change, an admin
    with pytest.raises(SignInRequired) as refused:
        alice["accounts"].mailbox(ALICE).login()
    error = as_host_error(refused.value)
    assert error is not None and error.protocol_code == "sign_in_required"
    words = error.protocol_message()
    assert f"Your sign-in with Example Mail for {ALICE} has expired or was revoked" in words
    assert "Sign in again" in words and "Sign in with Example Mail" in words
    assert grant(alice["ring"]) == before  # nothing thrown away: a new sign-in replaces it


# ---- without a server -------------------------------------------------------------------------


def test_google_and_microsoft_presets_ask_for_mail_and_offline_access() -> None:
    google = SignInClient.from_settings("google", {"clientId": "123.apps.googleusercontent.com"})
    url = oauth.authorization_url(google, "https://id.chromiumapp.org/", "s", "c", ALICE)
    assert url.startswith("https://accounts.google.com/o/oauth2/v2/auth?")
    wanted = ["scope=https%3A%2F%2Fmail.google.com%2F", "access_type=offline", "prompt=consent"]
    for part in [*wanted, "code_challenge_method=S256", "login_hint=alice%40"]:
        assert part in url, part
    microsoft = SignInClient.from_settings("microsoft", {"clientId": "b1", "tenant": "contoso.com"})
    assert microsoft.token_endpoint == (
        "https://login.microsoftonline.com/contoso.com/oauth2/v2.0/token"
    )
    assert "offline_access" in microsoft.scopes
    assert "https://outlook.office.com/SMTP.Send" in microsoft.scopes
    with pytest.raises(BadParams, match="client's id"):
        SignInClient.from_settings("google", {})
    with pytest.raises(BadParams, match="https"):
        SignInClient.from_settings(
            "x",
            {
                "clientId": "a",
                "authorizationEndpoint": "http://evil.test/a",
                "tokenEndpoint": "https://t",
            },
        )


def test_the_answer_must_belong_to_this_sign_in() -> None:
    back = f"{REDIRECT}?code=abc&state=s1"
    assert oauth.code_from_redirect(back, REDIRECT, "s1") == "abc"
    with pytest.raises(oauth.OAuthError, match="does not belong"):
        oauth.code_from_redirect(back, REDIRECT, "s2")
    with pytest.raises(oauth.OAuthError, match="unexpected address"):
        oauth.code_from_redirect("https://elsewhere.test/?code=abc&state=s1", REDIRECT, "s1")
    with pytest.raises(oauth.OAuthError, match="not completed: access_denied"):
        oauth.code_from_redirect(f"{REDIRECT}?error=access_denied&state=s1", REDIRECT, "s1")


def test_client_ids_are_settings_of_the_profile_or_the_machine(tmp_path: Path) -> None:
    with pytest.raises(NotConfigured, match="Sign in with Google is not set up"):
        oauth.sign_in_client(tmp_path, "google")
    oauth.save_client_settings(tmp_path, "google", {"clientId": "org-client"})
    assert oauth.sign_in_client(tmp_path, "google").client_id == "org-client"
    assert list(oauth.sign_in_clients(tmp_path)) == ["google"]
    oauth.save_client_settings(tmp_path, "google", None)
    assert oauth.sign_in_clients(tmp_path) == {}
