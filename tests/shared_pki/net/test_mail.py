"""Mail URLs of the CA mailbox: parsing, the TLS policy, errors that never show the password."""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness.mail import MailStack

from shared_pki.net.mail import (
    MailConnectionError,
    MailUrlError,
    StartTlsMissing,
    connect_imap,
    connect_smtp,
    is_loopback,
    open_imap,
    open_smtp,
    parse_mail_url,
)

SECRET = "s3cr:et@/pass%"
QUOTED = "s3cr%3Aet%40%2Fpass%25"


@pytest.mark.parametrize(
    ("url", "protocol", "expected"),
    [
        ("smtp://u:p@mail.example.org", "smtp", ("smtp", "mail.example.org", 587, False)),
        ("smtps://u:p@mail.example.org", "smtp", ("smtps", "mail.example.org", 465, True)),
        ("SMTP://u:p@Mail.Example.org:2525", "smtp", ("smtp", "mail.example.org", 2525, False)),
        ("imap://u:p@mail.example.org", "imap", ("imap", "mail.example.org", 143, False)),
        ("imaps://u:p@mail.example.org", "imap", ("imaps", "mail.example.org", 993, True)),
        ("imaps://u:p@[::1]:1993", "imap", ("imaps", "::1", 1993, True)),
    ],
)
def test_schemes_hosts_and_default_ports(
    url: str, protocol: str, expected: tuple[str, str, int, bool]
) -> None:
    parsed = parse_mail_url(url, protocol=protocol)
    assert (parsed.scheme, parsed.host, parsed.port, parsed.implicit_tls) == expected
    assert parsed.protocol == protocol


def test_user_and_password_are_percent_decoded_and_hidden() -> None:
    url = parse_mail_url(
        f"imaps://ca%40example.org:{QUOTED}@imap.example.org/Replies", protocol="imap"
    )
    assert url.user == "ca@example.org"
    assert url.password == SECRET
    assert url.mailbox == "Replies"
    assert url.redacted == "imaps://ca@example.org@imap.example.org:993/Replies"
    for shown in (str(url), repr(url), url.redacted):
        assert SECRET not in shown and QUOTED not in shown


def test_default_mailbox_is_inbox() -> None:
    assert parse_mail_url("imap://u:p@localhost", protocol="imap").mailbox == "INBOX"


@pytest.mark.parametrize(
    ("url", "protocol", "message"),
    [
        ("", "smtp", "no SMTP URL"),
        ("http://u:p@host", "smtp", "must start with smtp:// or smtps://"),
        ("imap://u:p@host", "smtp", "must start with smtp:// or smtps://"),
        ("smtp://u:p@host", "imap", "must start with imap:// or imaps://"),
        ("smtp://host:25", "smtp", "names no user"),
        ("smtp://user@host", "smtp", "names no password"),
        ("smtp://user:@host", "smtp", "names no password"),
        ("smtp://u:p@:25", "smtp", "names no host"),
        (f"smtp://u:{QUOTED}@host:99999", "smtp", "invalid port"),
        (f"smtp://u:{QUOTED}@host:abc", "smtp", "invalid port"),
        (f"smtp://u:{QUOTED}@host/path", "smtp", "may not have a path"),
        (f"imap://u:{QUOTED}@host/INBOX?x=1", "imap", "query or fragment"),
    ],
)
def test_refusals_say_why_without_the_password(url: str, protocol: str, message: str) -> None:
    with pytest.raises(MailUrlError, match=message) as caught:
        parse_mail_url(url, protocol=protocol)
    assert SECRET not in str(caught.value) and QUOTED not in str(caught.value)


def test_missing_ca_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(MailUrlError, match="does not exist"):
        parse_mail_url("imaps://u:p@host", protocol="imap", ca_file=tmp_path / "none.pem")


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("localhost", True),
        ("LOCALHOST.", True),
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("192.0.2.2", False),
        ("localhost.example.org", False),
        ("mail.example.org", False),
    ],
)
def test_loopback_detection_never_resolves(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


# ---------------------------------------------------------------------------------------------
# Against servers


def _non_loopback_address() -> str | None:
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("10.255.255.255", 9))  # UDP connect sends no packet
            address = probe.getsockname()[0]
    except OSError:
        return None
    return None if is_loopback(address) else address


class _PlainServer:
    """A line server that greets, answers known commands and never offers STARTTLS; it keeps
    every line it received, to prove that no login was attempted."""

    def __init__(self, address: str, greeting: bytes, answers: dict[bytes, bytes]) -> None:
        self.sock = socket.create_server((address, 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.greeting = greeting
        self.answers = answers
        self.lines: list[bytes] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            with conn, conn.makefile("rwb") as stream:
                stream.write(self.greeting)
                stream.flush()
                for line in stream:
                    self.lines.append(line)
                    words = line.upper().split()
                    reply = next((r for k, r in self.answers.items() if k in words), None)
                    if reply is None:
                        break
                    stream.write(reply.replace(b"TAG", line.split()[0]))
                    stream.flush()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.sock.close()


@pytest.fixture
def plaintext_servers() -> Iterator[tuple[str, _PlainServer, _PlainServer]]:
    """SMTP and IMAP servers without STARTTLS on this machine's non-loopback address."""
    address = _non_loopback_address()
    if address is None:
        pytest.skip("no non-loopback IPv4 address on this machine")
    smtp = _PlainServer(
        address, b"220 plain ESMTP\r\n", {b"EHLO": b"250-plain\r\n250 AUTH PLAIN\r\n"}
    )
    imap = _PlainServer(
        address,
        b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] plain\r\n",
        {b"CAPABILITY": b"* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\nTAG OK done\r\n"},
    )
    yield address, smtp, imap
    smtp.close()
    imap.close()


def test_no_starttls_on_a_remote_server_is_refused(
    plaintext_servers: tuple[str, _PlainServer, _PlainServer],
) -> None:
    address, smtp_server, imap_server = plaintext_servers
    smtp = parse_mail_url(f"smtp://u:{QUOTED}@{address}:{smtp_server.port}", protocol="smtp")
    with pytest.raises(MailConnectionError, match="does not offer STARTTLS") as caught:
        open_smtp(smtp, timeout=5)
    assert SECRET not in str(caught.value)
    imap = parse_mail_url(f"imap://u:{QUOTED}@{address}:{imap_server.port}", protocol="imap")
    with pytest.raises(MailConnectionError, match="does not offer STARTTLS") as caught:
        open_imap(imap, timeout=5)
    assert SECRET not in str(caught.value)
    received = b"".join(smtp_server.lines + imap_server.lines).upper()
    assert smtp_server.lines, "the SMTP client never talked to the server"
    assert b"AUTH" not in received and b"LOGIN" not in received, received


@pytest.mark.mail
def test_starttls_and_implicit_tls_against_the_mail_stack(mail_stack: MailStack) -> None:
    user = "carol@example.test"
    password = mail_stack.users[user].replace("%", "%25")
    ca = str(mail_stack.ca_cert_path)
    host, smtp_port = mail_stack.host, mail_stack.smtp_port
    smtp = open_smtp(
        parse_mail_url(
            f"smtp://carol%40example.test:{password}@{host}:{smtp_port}",
            protocol="smtp",
            ca_file=ca,
        )
    )
    try:
        assert smtp.sock is not None and smtp.sock.version() is not None  # STARTTLS happened
    finally:
        smtp.quit()
    for scheme, port in (("imap", mail_stack.imap_port), ("imaps", mail_stack.imaps_port)):
        url = parse_mail_url(
            f"{scheme}://{user}:{password}@{host}:{port}", protocol="imap", ca_file=ca
        )
        client = open_imap(url)
        try:
            assert client.folder_exists("INBOX")
            assert client._imap.sock.version() is not None  # TLS, verified against ca
        finally:
            client.logout()


@pytest.mark.mail
def test_untrusted_certificate_and_wrong_password_are_refused(
    mail_stack: MailStack, tmp_path: Path
) -> None:
    host = mail_stack.host
    wrong = f"imaps://carol%40example.test:{QUOTED}@{host}:{mail_stack.imaps_port}"
    with pytest.raises(MailConnectionError, match="login refused") as caught:
        open_imap(parse_mail_url(wrong, protocol="imap", ca_file=mail_stack.ca_cert_path))
    assert SECRET not in str(caught.value) and QUOTED not in str(caught.value)
    wrong_smtp = f"smtp://carol%40example.test:{QUOTED}@{host}:{mail_stack.smtp_port}"
    with pytest.raises(MailConnectionError, match="login refused") as caught:
        open_smtp(parse_mail_url(wrong_smtp, protocol="smtp", ca_file=mail_stack.ca_cert_path))
    assert SECRET not in str(caught.value) and QUOTED not in str(caught.value)
    # Without the stack's CA the self-signed certificate must not be accepted.
    other_ca = tmp_path / "other.pem"
    from harness.tls import self_signed

    self_signed(tmp_path, ["localhost"])
    (tmp_path / "cert.pem").rename(other_ca)
    right = mail_stack.users["carol@example.test"]
    url = f"imaps://carol%40example.test:{right}@{host}:{mail_stack.imaps_port}"
    with pytest.raises(MailConnectionError, match=r"CERTIFICATE_VERIFY_FAILED|certificate"):
        open_imap(parse_mail_url(url, protocol="imap", ca_file=other_ca))


def test_no_tls_at_all_is_refused_off_loopback_before_connecting() -> None:
    context = ssl.create_default_context()
    for connect in (connect_smtp, connect_imap):
        with pytest.raises(StartTlsMissing):
            connect("192.0.2.1", 25, tls="none", context=context, timeout=1)  # TEST-NET-1
