"""The host's state for one process, built lazily from the profile, and typed errors turned
into protocol errors a person can act on.

Which profile: `--profile DIR` (the command line sets AUTOSMIME_PROFILE for its process), else
AUTOSMIME_PROFILE (a host the browser starts passes no arguments of ours), else the default
data folder; see native_host.infrastructure.profile.

What the state holds, each made on first use:
- the profile (folder, keyring service);
- the keystore (Keystore.for_profile: the master secret from the keyring);
- the accounts (`accounts.json` in the profile, secrets in the keyring);
- per account, the PKI it enrolls with and trusts (account_pki.AccountPki in
  `pki-accounts.json`, 0600): the service
  URL and the roots PEM, copied into the profile at `account add --pki URL --pki-roots FILE`
  (never fetched and trusted on first use). From the URL: the certificate directory
  {pki}/certs, the TSA {pki}/tsa, the ACME directory {pki}/acme/directory; each can be set
  on its own instead (another RFC 8823 CA, directory or RFC 3161 TSA), with the TSA's own
  roots;
- certificate books (CertificateBook over the profile's cache folder, anchored on the roots).

Mailboxes are made per call (an IMAP connection belongs to one thread), each with its own
outbox folder in the profile.

Errors: `protocol_error(exc)` maps the building blocks' typed errors onto protocol.json's
error codes with their sentences (and the next step where one helps); `operation` wraps a
handler with it. Messages never carry secrets: the building blocks' sentences name servers,
addresses and reasons only.
"""

from __future__ import annotations

import functools
import hashlib
import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from native_host.errors import BadParams, NotConfigured, OpFailed, as_host_error
from native_host.infrastructure.profile import Profile, open_profile, write_private
from native_host.ops.account_pki import AccountPki

if TYPE_CHECKING:  # the heavy modules load only with the ops that need them
    from native_host.domain.accounts import Account, Accounts
    from native_host.domain.certs import CertificateBook
    from native_host.domain.keystore import Keystore
    from native_host.infrastructure.mailbox import Mailbox
    from shared_pki.keys import Certificate

ACCOUNTS_FILE = "accounts.json"
PKI_FILE = "pki-accounts.json"
PKI_FORMAT = 1
BACKUPS_FILE = "backups.json"

NO_ACCOUNT = (
    "No account is set up yet: run `autosmime account add ADDRESS` or open the extension's setup."
)


def _address_key(address: str) -> str:
    from native_host.infrastructure.mail_settings import normalize_address

    return normalize_address(address)


# ---- the state --------------------------------------------------------------------------------


class HostState:
    """Everything the ops of one profile share; safe to use from the host's pool threads."""

    def __init__(self, profile: Profile) -> None:
        self.profile = profile
        self._lock = threading.RLock()
        self._keystore: Keystore | None = None
        self._accounts: Accounts | None = None

    # ---- parts ----------------------------------------------------------------------------

    @property
    def accounts(self) -> Accounts:
        with self._lock:
            if self._accounts is None:
                from native_host.domain.accounts import Accounts, KeyringCredentialStore

                store = KeyringCredentialStore(self.profile.keyring_service, self.profile.keyring())
                self._accounts = Accounts(self.profile.root / ACCOUNTS_FILE, store)
            return self._accounts

    @property
    def keystore(self) -> Keystore:
        with self._lock:
            if self._keystore is None:
                from native_host.domain.keystore import Keystore

                self._keystore = Keystore.for_profile(self.profile)
            return self._keystore

    # ---- accounts -------------------------------------------------------------------------

    def account(self, address: str | None = None) -> Account:
        """The account of address; without one, the only account (several: say which)."""
        listed = self.accounts.list_accounts()
        if not listed:
            raise NotConfigured(NO_ACCOUNT)
        if address is None or address == "":
            if len(listed) == 1:
                return listed[0]
            names = ", ".join(a.address for a in listed)
            raise BadParams(f"Several accounts are set up ({names}); say which one.")
        wanted = _address_key(address)
        for account in listed:
            if account.address == wanted:
                return account
        raise NotConfigured(
            f"No account {wanted} is set up: run `autosmime account add {wanted}` or open the "
            "extension's setup."
        )

    def outbox_folder(self, address: str) -> Path:
        name = hashlib.sha256(_address_key(address).encode()).hexdigest()[:16]
        return self.profile.outbox_dir / name

    def mailbox(self, address: str | None = None) -> Mailbox:
        """A fresh Mailbox of the account (close it after use), with its outbox."""
        account = self.account(address)
        return self.accounts.mailbox(account.address, outbox=self.outbox_folder(account.address))

    # ---- PKI ------------------------------------------------------------------------------

    def _pki_document(self) -> dict[str, Any]:
        path = self.profile.root / PKI_FILE
        try:
            document = json.loads(path.read_text("utf-8"))
        except FileNotFoundError:
            return {}
        except ValueError as error:
            raise OpFailed(f"{path} is damaged ({error}).") from None
        if document.get("format") != PKI_FORMAT:
            raise OpFailed(f"{path} has format {document.get('format')!r}.")
        return dict(document.get("accounts") or {})

    def set_pki(self, address: str, pki: AccountPki) -> None:
        with self.profile.lock("pki-accounts"):
            accounts = self._pki_document()
            accounts[_address_key(address)] = pki.to_json()
            document = {"format": PKI_FORMAT, "accounts": accounts}
            write_private(
                self.profile.root / PKI_FILE, json.dumps(document, indent=2).encode() + b"\n"
            )
        # The ACME client's own profile-wide settings follow the latest account set up.
        pki.settings().save(self.profile)

    def pki_of(self, address: str) -> AccountPki | None:
        data = self._pki_document().get(_address_key(address))
        return AccountPki.from_json(data) if data else None

    def pki(self, address: str | None = None) -> tuple[str, AccountPki]:
        """(address, PKI settings) of the account; not_configured when it has none."""
        account = self.account(address)
        found = self.pki_of(account.address)
        if found is None:
            raise NotConfigured(
                f"No PKI service is set up for {account.address}: run `autosmime account add "
                f"{account.address} --pki URL --pki-roots FILE` or open the extension's setup."
            )
        return account.address, found

    def trust_anchors(self) -> list[Certificate]:
        """The roots of every account's PKI service (reading trusts them all)."""
        return self._anchors(AccountPki.roots)

    def tsa_anchors(self) -> list[Certificate]:
        """The roots every account's time-stamp authority chains to (timestamps only)."""
        return self._anchors(AccountPki.tsa_anchors)

    def _anchors(self, of: Callable[[AccountPki], list[Certificate]]) -> list[Certificate]:
        seen: dict[bytes, Certificate] = {}
        for data in self._pki_document().values():
            for cert in of(AccountPki.from_json(data)):
                seen.setdefault(cert.dump(), cert)
        return list(seen.values())

    def book(self, address: str | None = None) -> CertificateBook:
        """The certificate book of the account's PKI service."""
        from native_host.domain.certs import CertificateBook
        from native_host.domain.crls import CrlStore

        _address, pki = self.pki(address)
        return CertificateBook(
            self.profile.cache_dir,
            pki.roots(),
            None,
            certs_url=pki.certs_url,
            intermediates_url=pki.intermediates_url,
            fetch=pki.fetch(),
            crl_store=CrlStore(self.profile.cache_dir, pki.fetch()),  # revocation, same TLS
        )

    # ---- what the host knows about backups ---------------------------------------------------

    def record_backup(self, address: str, message_id: str, key_ids: list[str]) -> None:
        """Remember a backup proven by this host (certs.list shows it)."""
        path = self.profile.root / BACKUPS_FILE
        with self.profile.lock("backups-record"):
            try:
                document = json.loads(path.read_text("utf-8"))
            except (FileNotFoundError, ValueError):
                document = {}
            document[_address_key(address)] = {"messageId": message_id, "keyIds": key_ids}
            write_private(path, json.dumps(document, indent=2).encode() + b"\n")

    def backed_up_keys(self) -> dict[str, str]:
        """key id -> Message-ID of a proven backup holding it, from this host's records and
        the finished enrollments' journals."""
        found: dict[str, str] = {}
        done = self.profile.root / "enrollment" / "done"
        for path in sorted(done.glob("*.json")) if done.is_dir() else ():
            try:
                journal = json.loads(path.read_text("utf-8"))
            except (OSError, ValueError):
                continue
            backup = journal.get("backup") or {}
            if backup.get("proven") and backup.get("message_id"):
                for key_id in (journal.get("keys") or {}).values():
                    found[key_id] = backup["message_id"]
        try:
            document = json.loads((self.profile.root / BACKUPS_FILE).read_text("utf-8"))
        except (FileNotFoundError, ValueError):
            document = {}
        for entry in document.values():
            for key_id in entry.get("keyIds", []):
                found[key_id] = entry["messageId"]
        return found


_STATE: HostState | None = None
_STATE_LOCK = threading.Lock()


def current() -> HostState:
    """The state of this process's profile (AUTOSMIME_PROFILE, else the default), made once;
    a changed AUTOSMIME_PROFILE makes a new one."""
    global _STATE
    from native_host.infrastructure.profile import profile_root

    with _STATE_LOCK:
        if _STATE is None or _STATE.profile.root != profile_root(None):
            _STATE = HostState(open_profile(None))
        return _STATE


def reset() -> None:
    """Forget the state (tests, or a process that switches profiles)."""
    global _STATE
    with _STATE_LOCK:
        _STATE = None


# ---- errors -----------------------------------------------------------------------------------


def operation(
    handler: Callable[[dict[str, Any], Any], Any],
) -> Callable[[dict[str, Any], Any], Any]:
    """Wrap an op handler: the libraries' typed failures leave it as HostErrors (see
    native_host.errors.as_host_error); bugs stay bugs."""

    @functools.wraps(handler)
    def wrapped(params: dict[str, Any], ctx: Any) -> Any:
        try:
            return handler(params, ctx)
        except Exception as exc:
            error = as_host_error(exc)
            if error is None or error is exc:
                raise
            raise error from None

    return wrapped


# ---- parameters -------------------------------------------------------------------------------


def text_param(params: dict[str, Any], name: str, *, required: bool = False) -> str | None:
    value = params.get(name)
    if value is None or value == "":
        if required:
            raise BadParams(f"{name} is needed.")
        return None
    if not isinstance(value, str):
        raise BadParams(f"{name} must be text.")
    return value


def bool_param(params: dict[str, Any], name: str, default: bool = False) -> bool:
    value = params.get(name, default)
    if not isinstance(value, bool):
        raise BadParams(f"{name} must be true or false.")
    return value


def base64_param(params: dict[str, Any], name: str) -> bytes:
    import pybase64  # SIMD: a 10 MB message's raw param in 1 ms, where base64 took 55

    value = params.get(name)
    if not isinstance(value, str):
        raise BadParams(f"{name} must be base64 text.")
    try:
        return pybase64.b64decode(value, validate=True)
    except ValueError:  # binascii.Error, and non-ASCII text
        raise BadParams(f"{name} is not base64.") from None


def progress_of(ctx: Any) -> Callable[[int, int, str], None]:
    """ctx.progress, or nothing when the caller has no progress channel."""
    report = getattr(ctx, "progress", None)
    return report if callable(report) else (lambda done, total, stage: None)


__all__ = [
    "NO_ACCOUNT",
    "AccountPki",
    "HostState",
    "current",
    "operation",
    "reset",
]
