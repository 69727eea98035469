"""certbot's `acme` package against `autosmime pki serve` with REAL RFC 8823 validation: the
CA mails the challenge through the real SMTP server, the test plays the user's mail client
(reads the mail over IMAP, replies over SMTP with the response digest computed from the
package's own account key), the CA's watcher sees the reply over IMAP, and the package
finalizes. Nothing is short-circuited."""

from __future__ import annotations

import datetime
import email
import email.policy
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from email.message import EmailMessage

import josepy as jose
import pytest
from acme import client, messages
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from harness.acme_client import csr_for, free_port, new_key
from harness.certbot_email import IDENTIFIER_EMAIL, EmailReply00, EmailReply00Response
from harness.mail import MailStack

from shared_pki.acme import email_reply
from shared_pki.acme.jws import b64url_encode

CA, USER = "carol@example.test", "alice@example.test"


def quoted(text: str) -> str:
    return text.replace("%", "%25").replace("@", "%40").replace(":", "%3A").replace("/", "%2F")


@pytest.fixture(scope="module")
def server(mail_stack: MailStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    login = f"{quoted(CA)}:{quoted(mail_stack.users[CA])}@{mail_stack.host}"
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "native_host.cli", "pki", "serve",
         "--data", str(tmp_path_factory.mktemp("pki")), "--listen", f"127.0.0.1:{port}",
         "--mail-from", CA, "--smtp", f"smtp://{login}:{mail_stack.smtp_port}",
         "--imap", f"imaps://{login}:{mail_stack.imaps_port}",
         "--mail-ca-file", str(mail_stack.ca_cert_path),
         "--dkim", "off"],  # the loopback mail stack signs nothing with DKIM
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, process.communicate()[1]
            try:
                import httpx

                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the PKI service did not come up"
                time.sleep(0.05)  # not listening yet
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        _out, err = process.communicate(timeout=30)
        assert "Traceback" not in err, err


def inbox_uids(stack: MailStack) -> set[int]:
    with stack.imap_client(USER) as imap:
        imap.select_folder("INBOX", readonly=True)
        return set(imap.search(["ALL"]))


def wait_for_challenge_mail(stack: MailStack, known: set[int], deadline: float = 30) -> bytes:
    """The first new mail from the CA in alice's INBOX, waited for with IMAP IDLE."""
    end = time.monotonic() + deadline
    with stack.imap_client(USER) as imap:
        imap.select_folder("INBOX")
        while True:
            fresh = [uid for uid in imap.search(["FROM", CA]) if uid not in known]
            if fresh:
                return imap.fetch(fresh[:1], ["RFC822"])[fresh[0]][b"RFC822"]
            assert time.monotonic() < end, "no challenge mail arrived"
            imap.idle()
            imap.idle_check(timeout=max(0.1, min(5, end - time.monotonic())))
            imap.idle_done()


def test_certbot_package_enrolls_with_real_mail_validation(
    server: str, mail_stack: MailStack
) -> None:
    account_key = jose.JWKEC(key=ec.generate_private_key(ec.SECP256R1()))
    net = client.ClientNetwork(account_key, alg=jose.ES256, user_agent="autosmime-tests")
    acme = client.ClientV2(client.ClientV2.get_directory(f"{server}/acme/directory", net), net)
    acme.net.account = acme.new_account(
        messages.NewRegistration.from_data(email=USER, terms_of_service_agreed=True)
    )
    identifiers = [messages.Identifier(typ=IDENTIFIER_EMAIL, value=USER)]
    known = inbox_uids(mail_stack)
    response = acme.net.post(
        acme.directory["newOrder"], messages.NewOrder(identifiers=identifiers),
        new_nonce_url=acme.directory["newNonce"],
    )  # fmt: skip
    order = messages.Order.from_json(response.json())
    (authz_url,) = order.authorizations
    authzr = acme._authzr_from_response(acme._post_as_get(authz_url), uri=authz_url)
    (challb,) = authzr.body.challenges
    assert isinstance(challb.chall, EmailReply00) and challb.chall.sender == CA

    raw = wait_for_challenge_mail(mail_stack, known)
    mail = email.message_from_bytes(raw, policy=email.policy.default)
    headers = {name: str(value) for name, value in mail.items()}
    assert headers["Auto-Submitted"].startswith("auto-generated")
    accepted = email_reply.check_challenge_mail(headers, challenge_from=CA, address=USER)
    thumbprint = b64url_encode(account_key.thumbprint())
    digest = email_reply.response_digest(accepted.token_part1, challb.chall.token, thumbprint)
    reply = EmailMessage()
    for name, value in email_reply.build_reply_headers(accepted, address=USER).items():
        reply[name] = value
    reply.set_content(email_reply.build_response_body(digest))
    with mail_stack.smtp_client(USER) as smtp:
        smtp.send_message(reply)

    acme.answer_challenge(challb, EmailReply00Response())
    key = new_key("p256")
    csr_pem = x509.load_der_x509_csr(csr_for(USER, key)).public_bytes(serialization.Encoding.PEM)
    orderr = messages.OrderResource(
        body=order, uri=response.headers["Location"], authorizations=[authzr], csr_pem=csr_pem
    )
    finalized = acme.poll_and_finalize(
        orderr, datetime.datetime.now() + datetime.timedelta(seconds=60)
    )
    assert finalized.body.status == messages.STATUS_VALID
    leaf = x509.load_pem_x509_certificates(finalized.fullchain_pem.encode())[0]
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.RFC822Name) == [USER]
    assert json.loads(acme._post_as_get(authz_url).text)["status"] == "valid"
