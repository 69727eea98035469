"""Accounts: servers from URLs / the provider table / autoconfig, proven by real logins against
the mail stack, settings in a 0600 file, secrets only in a keyring confined to the test folder."""

from __future__ import annotations

import dataclasses
import http.server
import json
import ssl
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import keyring
import keyring.backend
import pytest
from harness.mail import MailStack, free_port
from harness.tls import self_signed
from keyring.errors import PasswordDeleteError

from native_host.domain.accounts import (
    PASSWORD,
    XOAUTH2,
    Account,
    AccountError,
    Accounts,
    KeyringCredentialStore,
)
from native_host.infrastructure.mail_settings import (
    Security,
    Server,
    SettingsError,
    autoconfig,
    https_fetcher,
    lookup_provider,
    parse_autoconfig,
    parse_xml_safely,
    provider_for_mx,
    resolve,
)
from native_host.infrastructure.mailbox import Credentials, MailError, MailErrorCode

ALICE, BOB = "alice@example.test", "bob@example.test"
SERVICE = "autosmime-test"


class FolderKeyring(keyring.backend.KeyringBackend):
    """A keyring backend that keeps its secrets in one JSON file in the test's folder."""

    priority = 1  # type: ignore[assignment]

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path

    def _load(self) -> dict[str, str]:
        return json.loads(self.path.read_text()) if self.path.exists() else {}

    def get_password(self, service: str, username: str) -> str | None:
        return self._load().get(f"{service}\0{username}")

    def set_password(self, service: str, username: str, password: str) -> None:
        data = self._load()
        data[f"{service}\0{username}"] = password
        self.path.write_text(json.dumps(data))

    def delete_password(self, service: str, username: str) -> None:
        data = self._load()
        if data.pop(f"{service}\0{username}", None) is None:
            raise PasswordDeleteError(username)
        self.path.write_text(json.dumps(data))


@pytest.fixture
def ring(tmp_path: Path) -> Iterator[FolderKeyring]:
    previous = keyring.get_keyring()
    backend = FolderKeyring(tmp_path / "keyring" / "secrets.json")
    backend.path.parent.mkdir()
    keyring.set_keyring(backend)
    try:
        yield backend
    finally:
        keyring.set_keyring(previous)


@pytest.fixture
def profile(tmp_path: Path) -> Path:
    folder = tmp_path / "profile"
    folder.mkdir(mode=0o700)
    return folder


def no_autoconfig(url: str, timeout: float) -> bytes | None:
    raise AssertionError(f"no autoconfig lookup expected here, asked for {url}")


@pytest.fixture
def accounts(profile: Path, ring: FolderKeyring) -> Accounts:
    # No backend argument: KeyringCredentialStore must go through keyring's configured backend.
    return Accounts(profile / "accounts.json", KeyringCredentialStore(SERVICE), fetch=no_autoconfig)


def urls(stack: MailStack, user: str) -> dict[str, str]:
    login = user.replace("@", "%40")
    return {
        "imap_url": f"imaps://{login}@127.0.0.1:{stack.imaps_port}",
        "smtp_url": f"smtp://{login}@127.0.0.1:{stack.smtp_port}",
    }


def files_below(folder: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}


# ---- configure against the real stack ------------------------------------------------------------


@pytest.mark.mail
def test_configure_with_explicit_urls_stores_settings_but_no_password(
    mail_stack: MailStack, accounts: Accounts, profile: Path, ring: FolderKeyring
) -> None:
    password = mail_stack.users[ALICE]
    account = accounts.configure(
        ALICE, password=password, ca_file=mail_stack.ca_cert_path, **urls(mail_stack, ALICE)
    )
    assert account.settings.imap == Server(
        "imap", "127.0.0.1", mail_stack.imaps_port, Security.SSL, ALICE
    )
    assert account.settings.smtp.security is Security.STARTTLS
    assert account.settings.source == "explicit"
    assert [a.address for a in accounts.list_accounts()] == [ALICE]

    stored = files_below(profile)
    assert [path for path in stored if path.suffix != ".lock"] == [profile / "accounts.json"]
    assert all(not data for path, data in stored.items() if path.suffix == ".lock")
    assert stat.S_IMODE((profile / "accounts.json").stat().st_mode) == 0o600
    assert not any(password.encode() in body for body in stored.values())
    assert json.loads(stored[profile / "accounts.json"])["accounts"][0]["address"] == ALICE
    assert ring.get_password(SERVICE, f"{PASSWORD}:{ALICE}") == password

    # The stored account opens a working mailbox.
    with accounts.mailbox(ALICE) as box:
        box.login()


@pytest.mark.mail
def test_several_accounts_and_remove(mail_stack: MailStack, accounts: Accounts) -> None:
    for user in (ALICE, BOB):
        accounts.configure(
            user,
            password=mail_stack.users[user],
            ca_file=mail_stack.ca_cert_path,
            **urls(mail_stack, user),
        )
    assert [a.address for a in accounts.list_accounts()] == [ALICE, BOB]
    assert accounts.credentials_for(BOB).password == mail_stack.users[BOB]
    assert accounts.remove(ALICE) is True
    assert accounts.remove(ALICE) is False
    assert [a.address for a in accounts.list_accounts()] == [BOB]
    assert accounts.credentials.get(ALICE, PASSWORD) is None
    with pytest.raises(AccountError, match="no account"):
        accounts.get(ALICE)
    # Reconfiguring without a password uses the one in the keyring, and keeps how it sends.
    assert accounts.get(BOB).hide_subject is True
    assert accounts.set_hide_subject(BOB, False).hide_subject is False
    accounts.configure(BOB, ca_file=mail_stack.ca_cert_path, **urls(mail_stack, BOB))
    assert accounts.get(BOB).hide_subject is False
    with pytest.raises(AccountError, match="no account"):
        accounts.set_hide_subject(ALICE, True)


@pytest.mark.mail
def test_unreachable_smtp_port_falls_back_to_the_providers_other_port(
    mail_stack: MailStack, accounts: Accounts
) -> None:
    closed = Server("smtp", "127.0.0.1", free_port(), Security.SSL, ALICE)
    working = Server("smtp", "127.0.0.1", mail_stack.smtp_port, Security.STARTTLS, ALICE)
    settings = dataclasses.replace(
        resolve(ALICE, **urls(mail_stack, ALICE)), smtp=closed, smtp_alternatives=(working,)
    )
    proven = accounts._prove(
        settings, Credentials(password=mail_stack.users[ALICE]), str(mail_stack.ca_cert_path)
    )
    assert proven.smtp == working


def assert_nothing_stored(accounts: Accounts, ring: FolderKeyring) -> None:
    assert accounts.list_accounts() == []
    assert not accounts.path.exists()
    assert ring._load() == {}


@pytest.mark.mail
def test_wrong_password_is_an_auth_error_and_stores_nothing(
    mail_stack: MailStack, accounts: Accounts, ring: FolderKeyring
) -> None:
    with pytest.raises(MailError) as failure:
        accounts.configure(
            ALICE, password="wrong", ca_file=mail_stack.ca_cert_path, **urls(mail_stack, ALICE)
        )
    assert failure.value.code is MailErrorCode.AUTH
    assert f"refused the login for {ALICE}" in str(failure.value)
    assert_nothing_stored(accounts, ring)


@pytest.mark.mail
def test_failures_say_which_part_failed(
    mail_stack: MailStack, accounts: Accounts, ring: FolderKeyring
) -> None:
    good = urls(mail_stack, ALICE)
    cases = [
        (
            {**good, "imap_url": "imaps://alice%40example.test@nonexistent.invalid:993"},
            mail_stack.ca_cert_path,
            MailErrorCode.DNS,
            "does not resolve",
        ),
        (
            {**good, "smtp_url": f"smtp://alice%40example.test@127.0.0.1:{free_port()}"},
            mail_stack.ca_cert_path,
            MailErrorCode.CONNECT,
            "refused the connection",
        ),
        (good, None, MailErrorCode.TLS, "not trusted"),  # self-signed, no CA file given
    ]
    for given, ca_file, code, words in cases:
        with pytest.raises(MailError) as failure:
            accounts.configure(ALICE, password=mail_stack.users[ALICE], ca_file=ca_file, **given)
        assert failure.value.code is code, given
        assert words in str(failure.value)
    assert_nothing_stored(accounts, ring)


def test_password_in_url_and_missing_secret_are_refused(accounts: Accounts) -> None:
    with pytest.raises(SettingsError, match="holds a password"):
        accounts.configure(
            ALICE,
            password="x",
            imap_url="imaps://alice:secret@127.0.0.1:993",
            smtp_url="smtps://127.0.0.1:465",
        )
    with pytest.raises(AccountError, match="no password"):
        accounts.configure(ALICE, imap_url="imaps://127.0.0.1", smtp_url="smtps://127.0.0.1")
    with pytest.raises(AccountError, match="not several"):
        accounts.configure(ALICE, password="x", xoauth2_token="y")


def test_keyring_store_names_entries_by_kind(ring: FolderKeyring) -> None:
    store = KeyringCredentialStore(SERVICE, backend=ring)
    store.set("alice@Example.TEST", XOAUTH2, "token")  # domains are case-blind
    assert store.get(ALICE, XOAUTH2) == "token"
    assert store.get(ALICE, PASSWORD) is None
    store.delete(ALICE, XOAUTH2)
    store.delete(ALICE, XOAUTH2)  # deleting what is gone is fine
    assert ring._load() == {}
    with pytest.raises(ValueError):
        store.set(ALICE, "pin", "1234")


def test_account_json_round_trip() -> None:
    settings = lookup_provider("someone@gmail.com")
    assert settings is not None
    account = Account(settings=settings, credential=XOAUTH2, ca_file=None)
    assert Account.from_json(json.loads(json.dumps(account.to_json()))) == account


# ---- the provider table --------------------------------------------------------------------


def test_provider_table() -> None:
    gmail = lookup_provider("someone@GMail.com")
    assert gmail is not None
    assert (gmail.imap.host, gmail.imap.port, gmail.imap.security) == (
        "imap.gmail.com",
        993,
        Security.SSL,
    )
    assert (gmail.smtp.host, gmail.smtp.port, gmail.smtp.security) == (
        "smtp.gmail.com",
        465,
        Security.SSL,
    )
    assert [(s.port, s.security) for s in gmail.smtp_alternatives] == [(587, Security.STARTTLS)]
    assert gmail.sent_by_server and "xoauth2" in gmail.auth
    assert gmail.imap.username == "someone@gmail.com"
    assert lookup_provider("x@googlemail.com").provider == "gmail"  # type: ignore[union-attr]

    outlook = lookup_provider("someone@hotmail.com")
    assert outlook is not None and outlook.provider == "outlook"
    assert (outlook.imap.host, outlook.imap.port) == ("outlook.office365.com", 993)
    assert (outlook.smtp.host, outlook.smtp.port, outlook.smtp.security) == (
        "smtp-mail.outlook.com",
        587,
        Security.STARTTLS,
    )
    assert outlook.auth == ("xoauth2",)

    qq = lookup_provider("12345@qq.com")
    assert qq is not None
    assert (qq.imap.host, qq.imap.port, qq.smtp.host, qq.smtp.port) == (
        "imap.qq.com",
        993,
        "smtp.qq.com",
        465,
    )
    assert not qq.sent_by_server

    netease = lookup_provider("someone@163.com")
    assert netease is not None
    assert (netease.imap.host, netease.smtp.host, netease.smtp.port) == (
        "imap.163.com",
        "smtp.163.com",
        465,
    )
    assert netease.imap_id  # 163 refuses SELECT without an IMAP ID

    icloud = lookup_provider("jane@icloud.com")
    assert icloud is not None
    assert (icloud.imap.username, icloud.smtp.username) == ("jane", "jane@icloud.com")

    proton = lookup_provider("jane@proton.me")
    assert proton is not None and (proton.imap.port, proton.smtp.port) == (1143, 1025)
    assert proton.imap.loopback

    assert lookup_provider("someone@example.test") is None
    assert provider_for_mx(["ASPMX.L.GOOGLE.COM."]).id == "gmail"  # type: ignore[union-attr]


def test_explicit_urls_override_the_table_per_server() -> None:
    settings = resolve(
        "someone@gmail.com", imap_url="imap://me@127.0.0.1:1143", fetch=no_autoconfig
    )
    assert settings.imap == Server("imap", "127.0.0.1", 1143, Security.STARTTLS, "me")
    assert settings.smtp.host == "smtp.gmail.com"
    assert settings.sent_by_server
    assert settings.source == "imap:explicit,smtp:provider:gmail"
    by_hand = resolve(
        "someone@gmail.com",
        imap_url="imaps://imap.gmail.com",
        smtp_url="smtp://smtp.gmail.com",
        fetch=no_autoconfig,
    )
    assert by_hand.source == "explicit" and by_hand.smtp.port == 587
    assert by_hand.sent_by_server  # still Gmail's servers: no second Sent copy
    assert not resolve(ALICE, imap_url="imaps://h", smtp_url="smtp://h").sent_by_server
    with pytest.raises(SettingsError, match="must start with smtp://"):
        resolve("someone@gmail.com", smtp_url="imaps://x@host")


def test_plain_text_only_to_loopback() -> None:
    assert Server("imap", "::1", 143, Security.PLAIN, "x").loopback
    with pytest.raises(SettingsError, match="without TLS"):
        Server("imap", "mail.example.org", 143, Security.PLAIN, "x")


# ---- autoconfig ----------------------------------------------------------------------------


def config_xml(domain: str, imap: tuple[str, int, str], smtp: tuple[str, int, str]) -> bytes:
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<clientConfig version="1.1">
  <emailProvider id="{domain}">
    <domain>{domain}</domain>
    <displayName>Test Mail</displayName>
    <incomingServer type="pop3">
      <hostname>pop.{domain}</hostname><port>995</port><socketType>SSL</socketType>
    </incomingServer>
    <incomingServer type="imap">
      <hostname>imap-plain.{domain}</hostname><port>143</port><socketType>plain</socketType>
      <username>%EMAILADDRESS%</username><authentication>password-cleartext</authentication>
    </incomingServer>
    <incomingServer type="imap">
      <hostname>{imap[0]}</hostname><port>{imap[1]}</port><socketType>{imap[2]}</socketType>
      <username>%EMAILADDRESS%</username><authentication>password-cleartext</authentication>
    </incomingServer>
    <outgoingServer type="smtp">
      <hostname>{smtp[0]}</hostname><port>{smtp[1]}</port><socketType>{smtp[2]}</socketType>
      <username>%EMAILLOCALPART%@%EMAILDOMAIN%</username>
      <authentication>password-cleartext</authentication>
    </outgoingServer>
  </emailProvider>
</clientConfig>
""".encode()


class ConfigServer:
    """HTTPS on loopback serving autoconfig files by path; records what was asked."""

    def __init__(self, folder: Path, files: dict[str, bytes]) -> None:
        cert, key = self_signed(folder, ["127.0.0.1"])
        self.requests: list[str] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.requests.append(self.path)
                body = files.get(self.path.split("?")[0])
                self.send_response(200 if body else 404)
                self.end_headers()
                self.wfile.write(body or b"not here")

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.base = f"https://127.0.0.1:{self.httpd.server_address[1]}"
        self.client_context = ssl.create_default_context(cafile=str(cert))
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def config_server(tmp_path: Path, mail_stack: MailStack) -> Iterator[ConfigServer]:
    files = {
        "/.well-known/autoconfig/mail/config-v1.1.xml": config_xml(
            "example.test",
            ("127.0.0.1", mail_stack.imaps_port, "SSL"),
            ("127.0.0.1", mail_stack.smtp_port, "STARTTLS"),
        ),
        "/other/config-v1.1.xml": config_xml(
            "other.test", ("imap.other.test", 993, "SSL"), ("smtp.other.test", 465, "SSL")
        ),
    }
    server = ConfigServer(tmp_path / "https", files)
    yield server
    server.close()


def loopback_templates(server: ConfigServer) -> list[str]:
    # Thunderbird's two conventions, with the domain's hosts replaced by the loopback server.
    return [
        server.base + "/mail/config-v1.1.xml?emailaddress={address}",  # autoconfig.<domain>
        server.base + "/.well-known/autoconfig/mail/config-v1.1.xml",  # <domain>/.well-known
    ]


@pytest.mark.mail
def test_autoconfig_from_a_loopback_server(config_server: ConfigServer) -> None:
    settings = autoconfig(
        ALICE,
        urls=loopback_templates(config_server),
        fetch=https_fetcher(config_server.client_context),
        timeout=5,
    )
    assert settings is not None
    # The first URL answered 404; the second was used; plain IMAP was skipped for TLS.
    assert config_server.requests == [
        "/mail/config-v1.1.xml?emailaddress=alice@example.test",
        "/.well-known/autoconfig/mail/config-v1.1.xml",
    ]
    assert settings.imap.security is Security.SSL and settings.imap.host == "127.0.0.1"
    assert settings.smtp.security is Security.STARTTLS and settings.smtp.username == ALICE
    assert settings.source.startswith("autoconfig:https://127.0.0.1:")
    # The server's certificate is verified: without trusting it, nothing is found.
    assert autoconfig(ALICE, urls=loopback_templates(config_server), timeout=5) is None


@pytest.mark.mail
def test_configure_through_autoconfig(
    mail_stack: MailStack, config_server: ConfigServer, profile: Path, ring: FolderKeyring
) -> None:
    accounts = Accounts(
        profile / "accounts.json",
        KeyringCredentialStore(SERVICE),
        autoconfig_urls=loopback_templates(config_server),
        fetch=https_fetcher(config_server.client_context),
    )
    account = accounts.configure(
        ALICE, password=mail_stack.users[ALICE], ca_file=mail_stack.ca_cert_path
    )
    assert account.settings.source.startswith("autoconfig:")
    assert account.settings.imap.port == mail_stack.imaps_port


def test_autoconfig_file_for_another_domain_is_ignored() -> None:
    body = config_xml("other.test", ("imap.other.test", 993, "SSL"), ("smtp.o.test", 465, "SSL"))
    with pytest.raises(SettingsError, match=r"not example\.test"):
        parse_autoconfig(body, ALICE)
    assert autoconfig(ALICE, urls=["https://x/{domain}"], fetch=lambda u, t: body) is None


def test_nothing_found_says_what_to_give(accounts: Accounts) -> None:
    with pytest.raises(SettingsError, match="--imap imaps://"):
        resolve(ALICE, fetch=lambda url, timeout: None)


def test_xml_with_a_dtd_is_refused() -> None:
    bomb = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;">]>
<clientConfig>&lol2;</clientConfig>"""
    with pytest.raises(SettingsError, match="DTD"):
        parse_xml_safely(bomb)
    external = b'<!DOCTYPE x SYSTEM "file:///etc/passwd"><clientConfig/>'
    with pytest.raises(SettingsError, match="DTD"):
        parse_xml_safely(external)
    with pytest.raises(SettingsError, match="well-formed"):
        parse_xml_safely(b"<clientConfig>")
