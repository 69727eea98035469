"""Mail accounts of one profile: settings in a JSON file (no secrets, 0600), credentials in the
keyring through a `CredentialStore`.

`Accounts.configure()` fills the servers in (explicit URLs, then the provider table, then
autoconfig), proves them with a real IMAP and SMTP login, and only then stores anything.

A signed-in account (OAuth 2.0: Google, Microsoft) keeps its grant in the keyring: the sign-in
client, the refresh token and the current access token. `credentials_for` hands out the access
token, renewing it first when it has run out, and gives the mailbox a way to renew it when a
server refuses it early; renewals are serialized under a lock (providers rotate refresh tokens,
and a rotated one used twice can cost the whole grant). A grant the provider no longer honours
is `SignInRequired`: sign in again.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from native_host.errors import HostError
from native_host.infrastructure.mail_settings import (
    AUTOCONFIG_TIMEOUT,
    AUTOCONFIG_URLS,
    Fetcher,
    MailSettings,
    normalize_address,
    resolve,
)
from native_host.infrastructure.mailbox import (
    DEFAULT_TIMEOUT,
    Credentials,
    Mailbox,
    MailError,
    MailErrorCode,
)
from native_host.infrastructure.oauth import SignInClient, Tokens
from native_host.infrastructure.profile import file_lock, write_private

ACCOUNTS_VERSION = 1
#: Kinds of secret kept per address.
PASSWORD = "password"  # password, app password or authorization code
XOAUTH2 = "xoauth2"  # an OAuth2 access token given as is (it is not renewed)
OAUTH2 = "oauth2"  # a sign-in: the client, refresh and access tokens (JSON), renewed here
KINDS = (PASSWORD, XOAUTH2, OAUTH2)
#: An access token this close to its end is renewed before use.
RENEW_EARLY = 60.0


class AccountError(HostError, ValueError):
    """An account operation that cannot be done; the message says why."""


class CredentialStore(Protocol):
    """Secrets per (address, kind). Implementations: KeyringCredentialStore, or a test double."""

    def get(self, address: str, kind: str) -> str | None: ...

    def set(self, address: str, kind: str, secret: str) -> None: ...

    def delete(self, address: str, kind: str) -> None: ...


class KeyringCredentialStore:
    """CredentialStore over `keyring`, under one service name (the profile decides it).

    Entries are named `<kind>:<address>`. `backend` defaults to keyring's configured one, which
    the standard keyring environment variables (PYTHON_KEYRING_BACKEND) can force.
    """

    def __init__(self, service: str, backend: Any = None) -> None:
        self.service = service
        self._backend = backend

    def _keyring(self) -> Any:
        if self._backend is not None:
            return self._backend
        import keyring

        return keyring.get_keyring()

    @staticmethod
    def _name(address: str, kind: str) -> str:
        if kind not in KINDS:
            raise ValueError(f"unknown credential kind {kind!r}")
        return f"{kind}:{normalize_address(address)}"

    def get(self, address: str, kind: str) -> str | None:
        return self._keyring().get_password(self.service, self._name(address, kind))

    def set(self, address: str, kind: str, secret: str) -> None:
        self._keyring().set_password(self.service, self._name(address, kind), secret)

    def delete(self, address: str, kind: str) -> None:
        from keyring.errors import PasswordDeleteError

        with contextlib.suppress(PasswordDeleteError):
            self._keyring().delete_password(self.service, self._name(address, kind))


@dataclass(frozen=True)
class Account:
    """One configured address: its servers, how to trust them, which secret it uses, and how it
    sends. hide_subject: encrypted mail goes out with the Subject "[...]" outside and the real
    one only inside the encryption (RFC 9788); on unless the person turned it off."""

    settings: MailSettings
    credential: str = PASSWORD  # which kind of secret the CredentialStore holds
    ca_file: str | None = None
    hide_subject: bool = True

    @property
    def address(self) -> str:
        return self.settings.address

    def to_json(self) -> dict[str, Any]:
        return {
            **self.settings.to_json(),
            "credential": self.credential,
            "ca_file": self.ca_file,
            "hide_subject": self.hide_subject,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Account:
        return cls(
            settings=MailSettings.from_json(data),
            credential=str(data.get("credential", PASSWORD)),
            ca_file=data.get("ca_file"),
            hide_subject=data.get("hide_subject", True) is not False,
        )


class Accounts:
    """The accounts of one profile. `path` is the accounts JSON file (the caller decides where,
    usually in the profile folder); `credentials` keeps the secrets."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        credentials: CredentialStore,
        *,
        autoconfig_urls: Sequence[str] = AUTOCONFIG_URLS,
        fetch: Fetcher | None = None,
        autoconfig_timeout: float = AUTOCONFIG_TIMEOUT,
        timeout: float = DEFAULT_TIMEOUT,
        oauth_post: Any = None,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.path = Path(path)
        self.credentials = credentials
        self.oauth_post = oauth_post  # the token endpoint's HTTP (oauth.post_form by default)
        self.now = now
        self.autoconfig_urls = tuple(autoconfig_urls)
        self.fetch = fetch
        self.autoconfig_timeout = autoconfig_timeout
        self.timeout = timeout

    # ---- file -----------------------------------------------------------------------------

    def _load(self) -> dict[str, Account]:
        try:
            data = json.loads(self.path.read_text("utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise AccountError(f"cannot read the accounts file {self.path}: {exc}") from None
        if data.get("version") != ACCOUNTS_VERSION:
            raise AccountError(
                f"the accounts file {self.path} has version {data.get('version')!r}; "
                f"this autosmime reads version {ACCOUNTS_VERSION}"
            )
        accounts = (Account.from_json(a) for a in data.get("accounts", []))
        return {a.address: a for a in accounts}

    @property
    def _lock_path(self) -> Path:
        return self.path.with_name(f".{self.path.name}.lock")

    def _save(self, accounts: dict[str, Account]) -> None:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        body = json.dumps(
            {
                "version": ACCOUNTS_VERSION,
                "accounts": [accounts[a].to_json() for a in sorted(accounts)],
            },
            indent=2,
            ensure_ascii=False,
        )
        write_private(self.path, (body + "\n").encode("utf-8"))

    # ---- operations -----------------------------------------------------------------------

    def configure(
        self,
        address: str,
        *,
        password: str | None = None,
        xoauth2_token: str | None = None,
        signed_in: tuple[SignInClient, Tokens] | None = None,
        imap_url: str | None = None,
        smtp_url: str | None = None,
        ca_file: str | os.PathLike[str] | None = None,
    ) -> Account:
        """Find the servers, prove them by a real IMAP and SMTP login, then store the settings
        (file) and the secret (CredentialStore). Adding an existing address replaces it.
        `signed_in`: the sign-in client and the tokens a sign-in got (the refresh token is kept).

        Raises SettingsError (nothing known, bad URL), MailError (login failed: `code` says
        which part) or AccountError; nothing is stored then.
        """
        address = normalize_address(address)
        if sum(bool(x) for x in (password, xoauth2_token, signed_in)) > 1:
            raise AccountError("give a password, an XOAUTH2 token or a sign-in, not several")
        if signed_in is not None:
            kind = OAUTH2
            client, tokens = signed_in
            secret = json.dumps({"client": client.to_json(), **tokens.to_json()})
        else:
            kind = XOAUTH2 if xoauth2_token else PASSWORD
            secret = xoauth2_token or password or self.credentials.get(address, kind)
        if not secret:
            raise AccountError(f"no password given for {address}")
        settings = resolve(
            address,
            imap_url=imap_url,
            smtp_url=smtp_url,
            autoconfig_urls=self.autoconfig_urls,
            fetch=self.fetch,
            timeout=self.autoconfig_timeout,
        )
        if signed_in is not None:
            credentials = Credentials(xoauth2_token=signed_in[1].access_token)
        elif kind == XOAUTH2:
            credentials = Credentials(xoauth2_token=secret)
        else:
            credentials = Credentials(password=secret)
        ca = str(Path(ca_file).resolve()) if ca_file else None
        settings = self._prove(settings, credentials, ca)

        with file_lock(self._lock_path):  # ops run in parallel: one read-modify-write at a time
            accounts = self._load()
            previous = self.credentials.get(address, kind)
            self.credentials.set(address, kind, secret)
            kept = accounts.get(address)  # configuring again keeps how the account sends
            account = Account(
                settings=settings,
                credential=kind,
                ca_file=ca,
                hide_subject=kept.hide_subject if kept is not None else True,
            )
            try:
                self._save({**accounts, address: account})
            except BaseException:
                if previous is None:
                    self.credentials.delete(address, kind)
                else:
                    self.credentials.set(address, kind, previous)
                raise
        for other in KINDS:
            if other != kind:
                self.credentials.delete(address, other)
        return account

    def _prove(
        self, settings: MailSettings, credentials: Credentials, ca_file: str | None
    ) -> MailSettings:
        """Real logins; when SMTP cannot be reached, the provider's other SMTP ports are tried
        (465 blocked on a network, 587 open). Returns the settings that worked."""
        mailbox = Mailbox(settings, credentials, ca_file=ca_file, timeout=self.timeout)
        mailbox.imap_connect().logout()
        try:
            mailbox.smtp_connect().quit()
            return settings
        except MailError as first:
            if first.code not in (MailErrorCode.CONNECT, MailErrorCode.TLS):
                raise
            for alternative in settings.smtp_alternatives:
                trial = replace(settings, smtp=alternative)
                trial_box = Mailbox(trial, credentials, ca_file=ca_file, timeout=self.timeout)
                try:
                    trial_box.smtp_connect().quit()
                except MailError:
                    continue
                return trial
            raise

    def list_accounts(self) -> list[Account]:
        accounts = self._load()
        return [accounts[a] for a in sorted(accounts)]

    def get(self, address: str) -> Account:
        address = normalize_address(address)
        account = self._load().get(address)
        if account is None:
            raise AccountError(f"no account {address}; add it with `autosmime account add`")
        return account

    def set_hide_subject(self, address: str, hide: bool) -> Account:
        """Whether encrypted mail from this account hides its Subject outside; stored with
        the account. AccountError for an address that is not configured."""
        address = normalize_address(address)
        with file_lock(self._lock_path):
            accounts = self._load()
            account = accounts.get(address)
            if account is None:
                raise AccountError(f"no account {address}; add it with `autosmime account add`")
            account = replace(account, hide_subject=bool(hide))
            self._save({**accounts, address: account})
        return account

    def remove(self, address: str) -> bool:
        """Forget the account and its secrets; False if there was none."""
        address = normalize_address(address)
        with file_lock(self._lock_path):
            accounts = self._load()
            found = accounts.pop(address, None)
            if found is not None:
                self._save(accounts)
        for kind in KINDS:
            self.credentials.delete(address, kind)
        return found is not None

    def credentials_for(self, address: str) -> Credentials:
        account = self.get(address)
        secret = self.credentials.get(account.address, account.credential)
        if not secret:
            raise AccountError(
                f"the keyring holds no {account.credential} for {account.address}; "
                "add the account again"
            )
        if account.credential == OAUTH2:
            grant = _grant(secret, account.address)
            token = grant[1].access_token
            if grant[1].expires_at - RENEW_EARLY <= self.now():
                token = self.renew_access(account.address, token)
            return Credentials(
                xoauth2_token=token,
                renew=lambda refused: self.renew_access(account.address, refused),
            )
        if account.credential == XOAUTH2:
            return Credentials(xoauth2_token=secret)
        return Credentials(password=secret)

    def renew_access(self, address: str, stale: str) -> str:
        """A fresh access token for a signed-in account, `stale` being the one that ran out or
        was refused: renewed at the provider with the refresh token, unless another operation
        already did (then its token). SignInRequired when the provider no longer honours the
        grant."""
        from native_host.infrastructure import oauth

        address = normalize_address(address)
        with file_lock(self.path.with_name(f".{self.path.name}.signin.lock")):
            secret = self.credentials.get(address, OAUTH2)
            if not secret:
                raise AccountError(f"{address} is not signed in; sign in again in the setup")
            client, tokens = _grant(secret, address)
            fresh = tokens.expires_at - RENEW_EARLY > self.now()
            if tokens.access_token != stale and fresh:
                return tokens.access_token
            if not tokens.refresh_token:
                raise oauth.SignInRequired(client.name, address)
            options = {"post": self.oauth_post} if self.oauth_post is not None else {}
            renewed = oauth.refresh(client, tokens.refresh_token, address, now=self.now, **options)
            document = {"client": client.to_json(), **renewed.to_json()}
            self.credentials.set(address, OAUTH2, json.dumps(document))
            return renewed.access_token

    def mailbox(self, address: str, *, outbox: str | os.PathLike[str] | None = None) -> Mailbox:
        """A Mailbox for a configured account (`outbox`: its outbox folder, if it sends)."""
        account = self.get(address)
        return Mailbox(
            account.settings,
            self.credentials_for(address),
            ca_file=account.ca_file,
            timeout=self.timeout,
            outbox=outbox,
        )


def _grant(secret: str, address: str) -> tuple[SignInClient, Tokens]:
    """The sign-in kept in the keyring for address."""
    try:
        document = json.loads(secret)
        return SignInClient.from_json(document["client"]), Tokens.from_json(document)
    except (ValueError, KeyError, TypeError, HostError):
        raise AccountError(
            f"the sign-in kept for {address} cannot be read; sign in again in the setup"
        ) from None


__all__ = [
    "KINDS",
    "OAUTH2",
    "PASSWORD",
    "XOAUTH2",
    "Account",
    "AccountError",
    "Accounts",
    "CredentialStore",
    "KeyringCredentialStore",
]
