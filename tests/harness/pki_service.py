"""The PKI service as an operator runs it (`autosmime pki serve`), validating addresses by real
RFC 8823 mail through the CA's mailbox (carol) on the test mail stack; and the settings an
extension or a host profile needs to use it (URL, configured roots, mail server URLs).

    with PkiServe(mail_stack, tmp_path) as pki:
        pki.url, pki.roots_pem, pki.roots_file
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from harness.mail import MailStack, free_port

ROOT = Path(__file__).resolve().parents[2]
CA = "carol@example.test"  # the CA's mailbox on the stack
START_DEADLINE = 30.0
KEYRING = "keyrings.alt.file.PlaintextKeyring"


#: The loopback test stack enrolls the same few addresses from one client address dozens of
#: times an hour, from fresh accounts: the abuse limits that count per mail address and per
#: client address are lifted for it (tests/shared_pki/service/test_abuse_limits.py is where
#: they are tested), and it signs nothing with DKIM.
TEST_STACK_KNOBS: dict[str, Any] = {
    "challenge_mails_per_address_per_hour": 0,
    "challenge_mails_per_address_per_day": 0,
    "new_accounts_per_ip_per_hour": 0,
    "dkim_required": "off",
}


def write_test_stack_config(data: Path) -> None:
    """pki.toml in data with TEST_STACK_KNOBS (for `autosmime pki serve --data data`)."""
    data.mkdir(parents=True, exist_ok=True)
    lines = [f"{k} = {json.dumps(v)}" for k, v in TEST_STACK_KNOBS.items()]
    (data / "pki.toml").write_text("\n".join(lines) + "\n")


def quoted(text: str) -> str:
    """A user name or password as it goes into an imaps:// or smtp:// URL."""
    return text.replace("%", "%25").replace("@", "%40").replace(":", "%3A").replace("/", "%2F")


def http_get(url: str) -> tuple[int, bytes]:
    """(status, body) of a GET, an HTTP error status included."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def mail_urls(stack: MailStack, address: str) -> dict[str, str]:
    """The IMAP and SMTP URLs of address's account on the test stack (no password in them)."""
    user = quoted(address)
    return {
        "imapUrl": f"imaps://{user}@127.0.0.1:{stack.imaps_port}",
        "smtpUrl": f"smtp://{user}@127.0.0.1:{stack.smtp_port}",
        "caFile": str(stack.ca_cert_path),
    }


def forget_backups(stack: MailStack, address: str) -> None:
    """Delete address's backup folder, so that its next enrollment is a first one."""
    from native_host.domain.backups import FOLDER

    client = stack.imap_client(address)
    try:
        if client.folder_exists(FOLDER):
            client.delete_folder(FOLDER)
    finally:
        client.logout()


def challenge_replies(stack: MailStack, challenge_message_id: str) -> int:
    """Replies to one challenge mail in the CA's mailbox (INBOX and where its watcher files)."""
    client = stack.imap_client(CA)
    try:
        total = 0
        for folder in ("INBOX", "acme-processed"):
            if client.folder_exists(folder):
                client.select_folder(folder, readonly=True)
                total += len(client.search(["HEADER", "In-Reply-To", challenge_message_id]))
        return total
    finally:
        client.logout()


class _ServiceProcess:
    """A PKI service in a subprocess on a free loopback port: started until it serves its roots,
    stopped on exit, and a traceback on its stderr fails the test that used it."""

    name = "the PKI service"

    def __init__(self, stack: MailStack, data: Path) -> None:
        self.stack = stack
        self.data = data
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.roots_pem = b""
        self.process: subprocess.Popen[str] | None = None

    def get(self, path: str) -> tuple[int, bytes]:
        return http_get(f"{self.url}{path}")

    def _start(self, command: list[str], env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
        )  # fmt: skip
        deadline = time.monotonic() + START_DEADLINE
        try:
            while not self.roots_pem:
                if self.process.poll() is not None:
                    raise RuntimeError(f"{self.name} exited: {self.process.communicate()[1]}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{self.name} did not answer")
                try:
                    status, body = self.get("/ca/roots.pem")
                except OSError:
                    status, body = 0, b""
                if status == 200:
                    self.roots_pem = body
                else:
                    time.sleep(0.05)  # waiting for start-up, bounded by the deadline
        except BaseException:
            self.stop()
            raise

    def stop(self) -> str:
        if self.process is None:
            return ""
        self.process.terminate()
        try:
            _out, err = self.process.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            _out, err = self.process.communicate()
        self.process = None
        return err

    def __exit__(self, kind: type[BaseException] | None, *_rest: object) -> None:
        err = self.stop()
        if kind is None and "Traceback" in err:
            raise AssertionError(f"{self.name} failed:\n{err}")


class PkiServe(_ServiceProcess):
    """`autosmime pki serve` in a subprocess on a free loopback port, stopped on exit."""

    name = "pki serve"

    @property
    def roots_file(self) -> Path:
        return self.data / "configured-roots.pem"

    def extension_config(self, address: str) -> dict[str, Any]:
        """What an administrator would configure for the extension's setup page."""
        return {
            "pkiUrl": self.url,
            "pkiRoots": self.roots_pem.decode("ascii"),
            **mail_urls(self.stack, address),
        }

    def __enter__(self) -> PkiServe:
        write_test_stack_config(self.data)
        login = f"{quoted(CA)}:{quoted(self.stack.users[CA])}@{self.stack.host}"
        self._start(
            [sys.executable, "-m", "native_host.cli", "pki", "serve", "--data", str(self.data),
             "--listen", f"127.0.0.1:{self.port}", "--mail-from", CA,
             "--smtp", f"smtp://{login}:{self.stack.smtp_port}",
             "--imap", f"imaps://{login}:{self.stack.imaps_port}",
             "--mail-ca-file", str(self.stack.ca_cert_path)],
            {},
        )  # fmt: skip
        self.roots_file.write_bytes(self.roots_pem)
        return self


class ConfiguredPki(_ServiceProcess):
    """`autosmime pki serve`'s application (uvicorn with the service's factory, as `serve`
    runs each worker) in a subprocess with any knobs of shared_pki/service/config.py, validating
    by real RFC 8823 mail through carol's mailbox unless the knobs say otherwise: what a test
    needs to make the service behave like another CA.

        with ConfiguredPki(stack, tmp_path, acme_path="/v2", offer_sm2=False) as pki:
            pki.url, pki.roots_pem, pki.acme_directory_url, pki.config
    """

    def __init__(self, stack: MailStack, data: Path, **knobs: Any) -> None:
        super().__init__(stack, data)
        login = f"{quoted(CA)}:{quoted(stack.users[CA])}@{stack.host}"
        self.knobs: dict[str, Any] = {
            "listen_port": self.port,
            "mail_from": CA,
            "smtp_url": f"smtp://{login}:{stack.smtp_port}",
            "imap_url": f"imaps://{login}:{stack.imaps_port}",
            "mail_ca_file": str(stack.ca_cert_path),
            **TEST_STACK_KNOBS,
            **knobs,
        }

    @property
    def acme_directory_url(self) -> str:
        return f"{self.url}{self.knobs.get('acme_path', '/acme')}/directory"

    @property
    def certs_url(self) -> str:
        return f"{self.url}{self.knobs.get('certs_path', '/certs')}"

    @property
    def tsa_url(self) -> str:
        return f"{self.url}{self.knobs.get('tsa_path', '/tsa')}"

    def dkim_record(self) -> tuple[str, str]:
        """(TXT name, TXT value) the service wrote for its DKIM key (challenge_signing=dkim)."""
        selector = self.knobs.get("dkim_selector", "acme")
        name, value = (self.data / "dkim" / f"{selector}.txt").read_text().strip().split(" ", 1)
        return name, value

    def database(self) -> Path:
        return self.data / "pki.sqlite3"

    def __enter__(self) -> ConfiguredPki:
        self.data.mkdir(parents=True, exist_ok=True)
        self._start(
            [sys.executable, "-m", "uvicorn", "--factory",
             "shared_pki.service.app:app_from_environment", "--host", "127.0.0.1",
             "--port", str(self.port), "--log-level", "warning"],
            {"AUTOSMIME_PKI_DATA": str(self.data),
             "AUTOSMIME_PKI_OVERRIDES": json.dumps(self.knobs)},
        )  # fmt: skip
        return self
