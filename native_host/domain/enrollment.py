"""Automatic enrollment: RFC 8555 + RFC 8823 against any RFC 8823 CA (ours or another),
resumable.

One cohesive thing, long on purpose: the resumable state machine, its journal and its steps
share the journal's invariants (written before every effect), which one file keeps in view.

`enroll(address, ...)` takes an address from nothing to current, backed-up keys (an RSA-3072
international key by default, DEFAULT_INTL_KEY; renewal keeps the key type a person has):

    step            stage shown to the person
    keys            Creating your keys
    account         Asking the certificate authority
    orders          Asking the certificate authority
    challenge_mail  Waiting for the confirmation email
    reply           Replying to confirm your address
    respond         Replying to confirm your address
    certificates    Receiving your certificates
    backup          Backing up your keys in your mailbox
    (finished)      Done

`progress(done, total, stage)` is called before each step with the number of steps done out of
the total (the fraction is done/total, never going back) and once more with (total, total,
"Done").

Orders are made one suite at a time, each confirmed before the next is ordered: a CA may give
every order its own authorization and challenge mail (RFC 8823 allows it; ours reuses a valid
one), and token-part1 travels only by mail, so two challenges open at once could not be told
apart. Such a CA sends the run round challenge_mail, reply and respond once per order. SM2 is
ordered only from a CA whose ACME directory says it issues it (meta.smimeSuites) and with an
SM2 root configured; otherwise the result says why it was left out. The account is registered
with `mailto:` the address as contact unless the PKI settings say not to.

Resumable: a JSON journal in the profile (`enrollment/<hash of address>.json`, 0600, written
atomically after every step and inside steps wherever a crash could otherwise repeat an effect)
says which step is next and what earlier steps produced. A crash or kill at any point, then
`enroll` again (any process), continues from there:

- keys are generated and stored in the keystore as `pending` before anything is ordered, and
  their ids journaled at once; a key sealed just before a crash (in the keystore, not yet in the
  journal) is adopted rather than a second one made;
- the Message-IDs of challenge-like mails already in INBOX are journaled before each newOrder,
  so the challenge mail of this order is told from older ones (RFC 8823 gives the client no
  other way: token-part1 travels only by mail);
- the challenge is POSTed once (journaled), and read (POST-as-GET) only after the reply went
  out: some servers start validating on any POST to a challenge;
- the reply is built once and journaled before it is submitted, and submitted through an
  outbox (infrastructure.mailbox.Outbox) that records what the server accepted, so a restart
  never sends a second reply (the one window SMTP leaves: a crash between the server's 250 and
  the outbox's fsync'd record);
- new keys become current only after a backup holding them was appended to the mailbox and
  read back and proven (native_host.domain.backups); until then they stay pending and unused.

The challenge mail is accepted only when: From is the challenge's `from`, To the address,
Subject `ACME: <token-part1>`, `Auto-Submitted: auto-generated; type=acme`, a Message-ID, and it
is authenticated as RFC 8823 allows: a valid S/MIME signature chaining to the configured PKI
roots whose certificate names that From address, or a valid DKIM signature of the From domain
(dkimpy; `dkim_dns` answers the TXT lookups in tests). An organisation can list its own CA's
address (PkiSettings.unauthenticated_from) to accept its mail without the authentication, the
Auto-Submitted and the Message-ID. A mail to the address with Subject `ACME: ...` that fails a
check is never answered, and the run stops at once with ChallengeMailRefused naming the check
(its Message-ID is journaled: running enrollment again waits for another mail).

The recovery code: given by the caller, else kept in the keyring, else (first enrollment: no
backup of the address in the mailbox yet) generated, and returned once in the result. During a
run it is held in the keyring so a resumed run can finish the backup; afterwards it is removed
again unless the person allowed keeping it (`keep_recovery_code`). A mailbox that already holds
a backup and no code at hand is RecoveryCodeNeeded, before any key is made: a new code would
split the person's keys over two codes.

`renew_if_due(address, window_days=30)` runs the same flow for new key pairs when a current
certificate ends within the window; the old keys stay (superseded, still decrypting).
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import email.policy
import hashlib
import json
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import format_datetime, getaddresses, make_msgid
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from native_host.domain import backups
from native_host.domain.keystore import Keystore, UnknownKey, normalize_address
from native_host.errors import HostError
from native_host.infrastructure.acme_client import (
    AccountKeyStore,
    AcmeClient,
    AcmeError,
    AcmeServerError,
    PkiSettings,
)
from native_host.infrastructure.mailbox import Mailbox, MailError, classify
from native_host.infrastructure.profile import Profile, private_folder, write_private
from shared_pki import backup, sm2, smime
from shared_pki.acme import email_reply
from shared_pki.acme.objects import EMAIL_REPLY_00, Challenge
from shared_pki.acme.problems import AcmeProblem
from shared_pki.cms import suite as _suite
from shared_pki.errors import PkiError
from shared_pki.keys import Certificate, parse_certificate
from shared_pki.x509 import sm2_certs
from shared_pki.x509.validate import validate

DnsFunc = Callable[..., bytes | None]

JOURNAL_FORMAT = 1
JOURNAL_FOLDER = "enrollment"
SUITES = ("intl", "sm")
INTL_KEYS = ("ecdsa-p256", "rsa-3072")
#: RSA by default: every mainstream client reads RSA key transport, while Thunderbird 115 and
#: other NSS before 3.100 reject a whole message that carries one ECDH RecipientInfo (the
#: sender's own copy under an ECDSA/ECDH certificate was one). See docs/DESIGN.md, Decisions.
DEFAULT_INTL_KEY = "rsa-3072"
STEPS: tuple[tuple[str, str], ...] = (
    ("keys", "Creating your keys"),
    ("account", "Asking the certificate authority"),
    ("orders", "Asking the certificate authority"),
    ("challenge_mail", "Waiting for the confirmation email"),
    ("reply", "Replying to confirm your address"),
    ("respond", "Replying to confirm your address"),
    ("certificates", "Receiving your certificates"),
    ("backup", "Backing up your keys in your mailbox"),
)
DONE = "Done"
STAGES = (*dict.fromkeys(stage for _step, stage in STEPS), DONE)
#: What publishing a certificate from elsewhere runs: the confirmation of the address only.
PUBLISH_STEPS = ("account", "orders", "challenge_mail", "reply", "respond")
STEP_NAMES = tuple(name for name, _stage in STEPS)
TOTAL = len(STEPS)
MAIL_TIMEOUT = 600.0
VALIDATION_TIMEOUT = 300.0
ORDER_TIMEOUT = 120.0
#: The challenge mail is awaited in IDLE slices of this length, doubling up to the maximum.
FIRST_IDLE_SLICE = 1.0
MAX_IDLE_SLICE = 30.0

Progress = Callable[[int, int, str], None]


# ---------------------------------------------------------------------------------------------
# Errors and results


class EnrollmentError(HostError):
    """Enrollment stopped. `code` is stable; str() says what happened and what to do;
    `transient`: running enroll again later may finish it (the journal keeps the progress)."""

    code = "enrollment_error"

    def __init__(self, message: str, *, transient: bool = True) -> None:
        super().__init__(message)
        self.message = message
        self.transient = transient


class RecoveryCodeNeeded(EnrollmentError):
    code = "recovery_code_needed"
    protocol_code = "recovery_code"


class ChallengeMailMissing(EnrollmentError):
    code = "challenge_mail_missing"


class ChallengeMailRefused(EnrollmentError):
    """A mail that looks like the challenge arrived but failed a check (named in the
    message): not answered. Running enrollment again waits for another one."""

    code = "challenge_mail_refused"


class EnrollmentRefused(EnrollmentError):
    """The certificate authority refused or failed the validation; `problem` is its document."""

    code = "enrollment_refused"

    def __init__(self, message: str, *, problem: AcmeProblem | None, transient: bool) -> None:
        super().__init__(message, transient=transient)
        self.problem = problem


class BackupFailed(EnrollmentError):
    code = "backup_failed"


class NotEnrolled(EnrollmentError):
    code = "not_enrolled"


@dataclass(frozen=True)
class EnrollmentResult:
    address: str
    kind: str  # "enroll" or "renew"
    key_ids: dict[str, str]  # suite -> key id (now current)
    certificates: dict[str, bytes]  # suite -> leaf DER
    chains: dict[str, tuple[bytes, ...]]  # suite -> issuing chain DER (leaf excluded)
    backup_message_id: str
    recovery_code: str | None  # only when this enrollment made the code: show it once
    resumed: bool
    seconds: float  # wall time of this call
    challenge_message_id: str | None = None
    reply_message_id: str | None = None
    superseded: tuple[str, ...] = field(default_factory=tuple)
    #: Every confirmation answered, (challenge mail, reply) Message-IDs: one per order when
    #: the CA wants one per order.
    confirmations: tuple[tuple[str, str | None], ...] = field(default_factory=tuple)
    #: Suites not requested, and why (e.g. the CA does not issue SM2), in words.
    unavailable: dict[str, str] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# The journal


def journal_path(profile: Profile, address: str, kind: str = "enroll") -> Path:
    """The journal of an enrollment (or renewal) of address; kind "publish": of publishing a
    certificate from elsewhere, which has its own."""
    name = hashlib.sha256(normalize_address(address).encode()).hexdigest()[:16]
    suffix = "" if kind == "enroll" else f"-{kind}"
    return profile.root / JOURNAL_FOLDER / f"{name}{suffix}.json"


class Journal:
    """The JSON state of one enrollment, written atomically (write_private) on every save."""

    def __init__(self, path: Path, data: dict[str, Any]) -> None:
        self.path = path
        self.data = data

    @classmethod
    def load(cls, path: Path) -> Journal | None:
        try:
            data = json.loads(path.read_text("utf-8"))
        except FileNotFoundError:
            return None
        except ValueError as error:
            raise EnrollmentError(
                f"The enrollment journal {path} is damaged ({error}).", transient=False
            ) from None
        if data.get("format") != JOURNAL_FORMAT:
            raise EnrollmentError(
                f"The enrollment journal {path} has format {data.get('format')!r}.",
                transient=False,
            )
        return cls(path, data)

    def save(self) -> None:
        private_folder(self.path.parent)
        write_private(self.path, json.dumps(self.data, indent=1).encode() + b"\n")

    def __getitem__(self, name: str) -> Any:
        return self.data[name]

    def get(self, name: str, default: Any = None) -> Any:
        return self.data.get(name, default)

    def set(self, **values: Any) -> None:
        """Update and save at once."""
        self.data.update(values)
        self.save()

    def archive(self) -> None:
        """Move a finished journal to `done/` (kept for diagnosis; holds no secret)."""
        folder = private_folder(self.path.parent / "done")
        stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%S")
        self.path.replace(folder / f"{self.path.stem}-{stamp}-{self['run']}.json")


def _now_iso() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text)


# ---------------------------------------------------------------------------------------------
# Keys and CSRs


def new_key(suite: str, intl_key: str) -> Any:
    if suite == "sm":
        return sm2.generate_private_key()
    if intl_key == "rsa-3072":
        return rsa.generate_private_key(65537, 3072)
    if intl_key == "ecdsa-p256":
        return ec.generate_private_key(ec.SECP256R1())
    raise ValueError(f"intl_key must be one of {', '.join(INTL_KEYS)}, not {intl_key!r}")


def build_csr(address: str, key: Any) -> bytes:
    """A DER CSR with subjectAltName rfc822Name = address (and nothing the CA would refuse)."""
    if isinstance(key, sm2.SM2PrivateKey):
        return sm2_certs.build_csr(key, emails=[address])
    return (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .add_extension(x509.SubjectAlternativeName([x509.RFC822Name(address)]), critical=False)
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.DER)
    )


def _intl_key_of(key_type: str) -> str:
    return "rsa-3072" if key_type.startswith("rsa") else "ecdsa-p256"


def _not_after(cert: Certificate) -> datetime.datetime:
    return cert["tbs_certificate"]["validity"]["not_after"].native


# ---------------------------------------------------------------------------------------------
# The reply


def build_reply(
    mail: email_reply.ChallengeMail, *, address: str, account_thumbprint: str, token_part2: str
) -> bytes:
    """The RFC 8823 reply (CRLF): headers from email_reply.build_reply_headers, a fresh
    Message-ID and Date, the response block as the text/plain body. No Auto-Submitted: the
    CA ignores automatic replies (RFC 3834)."""
    digest = email_reply.response_digest(mail.token_part1, token_part2, account_thumbprint)
    message = EmailMessage(policy=email.policy.SMTP)
    for name, value in email_reply.build_reply_headers(mail, address=address).items():
        message[name] = value
    message["Date"] = format_datetime(datetime.datetime.now(datetime.UTC))
    message["Message-ID"] = make_msgid("acme-reply", domain=address.rpartition("@")[2])
    message.set_content(email_reply.build_response_body(digest).replace("\r\n", "\n"), cte="7bit")
    return message.as_bytes()


# ---------------------------------------------------------------------------------------------
# The state machine


class Enrollment:
    """Enrollment and renewal for one profile, mailbox and PKI service."""

    def __init__(
        self,
        *,
        profile: Profile,
        mailbox: Mailbox,
        pki: PkiSettings,
        keystore: Keystore | None = None,
        keyring: Any = None,
        mail_timeout: float = MAIL_TIMEOUT,
        validation_timeout: float = VALIDATION_TIMEOUT,
        backup_folder: str = backups.FOLDER,
        acme_options: dict[str, Any] | None = None,
        dkim_dns: DnsFunc | None = None,
    ) -> None:
        self.profile = profile
        self.mailbox = mailbox
        self.pki = pki
        self.keystore = keystore if keystore is not None else Keystore.for_profile(profile)
        self.keyring = keyring if keyring is not None else profile.keyring()
        self.mail_timeout = mail_timeout
        self.validation_timeout = validation_timeout
        self.backup_folder = backup_folder
        self.acme_options = dict(acme_options or {})
        #: TXT lookups for DKIM checks of challenge mail (None: the system's resolvers).
        self.dkim_dns = dkim_dns
        self._roots = pki.roots()
        self._acme: AcmeClient | None = None

    # ---- entry points -------------------------------------------------------------------------

    def enroll(
        self,
        address: str,
        *,
        suites: Sequence[str] = SUITES,
        intl_key: str = DEFAULT_INTL_KEY,
        progress: Progress | None = None,
        recovery_code: str | None = None,
        keep_recovery_code: bool = False,
    ) -> EnrollmentResult:
        """Enroll address (see the module docstring); resumes an unfinished enrollment or
        renewal of the address, whose journal then decides suites and key types."""
        address = normalize_address(address)
        suites = tuple(dict.fromkeys(suites))
        if not suites or any(s not in SUITES for s in suites):
            raise ValueError(f"suites must be among {SUITES}, not {suites!r}")
        if intl_key not in INTL_KEYS:
            raise ValueError(f"intl_key must be one of {INTL_KEYS}, not {intl_key!r}")
        return self._run(
            address,
            kind="enroll",
            suites=suites,
            intl_key=intl_key,
            progress=progress,
            recovery_code=recovery_code,
            keep=keep_recovery_code,
        )

    def renew_if_due(
        self,
        address: str,
        *,
        window_days: float = 30,
        progress: Progress | None = None,
        recovery_code: str | None = None,
        keep_recovery_code: bool | None = None,
    ) -> EnrollmentResult | None:
        """New key pairs for the suites whose current certificate ends within window_days
        (None when nothing is due). An unfinished enrollment or renewal is resumed first.
        Needs the recovery code (given, or kept in the keyring) for the new backup; the old
        keys stay, superseded, and keep decrypting."""
        address = normalize_address(address)
        with self.profile.lock(f"enroll-{journal_path(self.profile, address).stem}"):
            unfinished = Journal.load(journal_path(self.profile, address)) is not None
        if unfinished:
            return self._run(
                address,
                kind="renew",
                suites=SUITES,
                intl_key=DEFAULT_INTL_KEY,
                progress=progress,
                recovery_code=recovery_code,
                keep=bool(keep_recovery_code),
            )
        now = datetime.datetime.now(datetime.UTC)
        due, intl_key, enrolled = [], DEFAULT_INTL_KEY, False
        for suite in SUITES:
            held = self.keystore.current(address, suite)
            if held is None or held.certificate is None:
                continue
            enrolled = True
            if suite == "intl":
                intl_key = _intl_key_of(held.record.key_type)
            if _not_after(held.certificate) - now <= datetime.timedelta(days=window_days):
                due.append(suite)
        if not enrolled:
            raise NotEnrolled(f"{address} has no current keys to renew: enroll it first.")
        if not due:
            return None
        keep = keep_recovery_code
        if keep is None:  # keep doing what the person chose before
            keep = (
                backups.stored_recovery_code(self.profile, address, backend=self.keyring)
                is not None
            )
        return self._run(
            address,
            kind="renew",
            suites=tuple(due),
            intl_key=intl_key,
            progress=progress,
            recovery_code=recovery_code,
            keep=keep,
        )

    def publish(
        self, address: str, certificate_der: bytes, *, progress: Progress | None = None
    ) -> tuple[tuple[str, str | None], ...]:
        """Publish a certificate from elsewhere (an imported identity's) in the CA's directory.
        The CA wants proof that the person controls the address: a valid authorization, got
        as enrollment gets it (an order's email challenge answered; no certificate is asked
        for, the order is left to expire). Resumable through its own journal. Returns the
        confirmations answered (none when a valid authorization was at hand)."""
        address = normalize_address(address)
        path = journal_path(self.profile, address, "publish")
        with self.profile.lock(f"enroll-{path.stem}"):
            journal = Journal.load(path)
            if journal is None:
                journal = Journal(
                    path,
                    {
                        "format": JOURNAL_FORMAT,
                        "run": secrets.token_hex(4),
                        "address": address,
                        "kind": "publish",
                        "suites": ["intl"],
                        "directory": self.pki.directory_url,
                        "started": _now_iso(),
                        "step": "account",
                        "keys": {},
                        "orders": {},
                        "certificates": {},
                    },
                )
                journal.save()
            try:
                while journal["step"] != "certificates":
                    step = journal["step"]
                    if progress is not None:
                        progress(PUBLISH_STEPS.index(step), len(PUBLISH_STEPS), dict(STEPS)[step])
                    getattr(self, f"_step_{step}")(journal, None)
                with _acme_errors():
                    self._client(journal).publish(certificate_der)
            finally:
                if self._acme is not None:
                    self._acme.close()
                    self._acme = None
            confirmations = tuple(
                (item["challenge_mail"], item.get("reply")) for item in journal.get("confirmed", [])
            )
            journal.archive()
        if progress is not None:
            progress(len(PUBLISH_STEPS), len(PUBLISH_STEPS), DONE)
        return confirmations

    # ---- the run ------------------------------------------------------------------------------

    def _run(
        self,
        address: str,
        *,
        kind: str,
        suites: tuple[str, ...],
        intl_key: str,
        progress: Progress | None,
        recovery_code: str | None,
        keep: bool,
    ) -> EnrollmentResult:
        started = time.monotonic()
        path = journal_path(self.profile, address)
        with self.profile.lock(f"enroll-{path.stem}"):
            journal = Journal.load(path)
            resumed = journal is not None
            if journal is None:
                # The code first: refusing it (needed, wrong) must leave nothing behind.
                source, code = self._choose_code(address, recovery_code)
                kept_before = (
                    backups.stored_recovery_code(self.profile, address, backend=self.keyring)
                    is not None
                )
                journal = Journal(
                    path,
                    {
                        "format": JOURNAL_FORMAT,
                        "run": secrets.token_hex(4),
                        "address": address,
                        "kind": kind,
                        "suites": list(suites),
                        "intl_key": intl_key,
                        "directory": self.pki.directory_url,
                        "started": _now_iso(),
                        "step": "keys",
                        "keep_code": keep,
                        "code_source": source,
                        "code_kept_before": kept_before,
                        "keys": {},
                        "orders": {},
                        "certificates": {},
                    },
                )
                journal.save()
                if source != "keyring":  # held in the keyring for the run (see _ensure_code)
                    backups.store_recovery_code(self.profile, address, code, backend=self.keyring)
            elif journal["step"] == "keys" and not journal["keys"]:
                # An earlier call stopped before making anything: this call's choices count.
                journal.set(kind=kind, suites=list(suites), intl_key=intl_key, keep_code=keep)
            try:
                done = 0
                while journal["step"] != "done":
                    step = journal["step"]
                    # A CA that wants one confirmation per order sends the run round the
                    # challenge steps again: the fraction shown never goes back.
                    done = max(done, STEP_NAMES.index(step))
                    if progress is not None:
                        progress(done, TOTAL, dict(STEPS)[step])
                    getattr(self, f"_step_{step}")(journal, recovery_code)
                result = self._finish(journal, resumed, time.monotonic() - started)
            finally:
                if self._acme is not None:
                    self._acme.close()
                    self._acme = None
        if progress is not None:
            progress(TOTAL, TOTAL, DONE)
        return result

    # ---- steps --------------------------------------------------------------------------------

    def _step_keys(self, journal: Journal, recovery_code: str | None) -> None:
        address = journal["address"]
        self._ensure_code(journal, recovery_code)
        if not journal["keys"]:
            self._choose_offered_suites(journal)
        keys = dict(journal["keys"])
        for suite in journal["suites"]:
            key_id = keys.get(suite)
            if key_id is not None:
                try:
                    self.keystore.record(key_id)
                    continue
                except UnknownKey:
                    pass  # cannot happen unless the keystore was replaced: make a new one
            key_id = self._adopt_orphan(journal, suite)
            if key_id is None:
                key_id = self.keystore.add_key(address, suite, new_key(suite, journal["intl_key"]))
            keys[suite] = key_id
            journal.set(keys=keys)  # journaled at once: a crash never makes a second pair
        journal.set(step="account")

    def _choose_offered_suites(self, journal: Journal) -> None:
        """Keep only the suites the CA issues and the configured roots can check: SM2 is
        requested only from a CA whose ACME directory says it issues it (meta.smimeSuites)
        and when an SM2 root is configured; why a suite was left out is journaled and said in
        the result."""
        if "sm" not in journal["suites"]:
            return
        with _acme_errors():
            meta = self._client(journal).directory().meta
        offered = meta.smime_suites if meta is not None else None
        why = None
        if offered is None:
            why = (
                "The certificate authority does not say that it issues SM2 certificates, so "
                "only the international certificate was requested."
            )
        elif "sm" not in offered:
            why = (
                "The certificate authority does not issue SM2 certificates, so only the "
                "international certificate was requested."
            )
        elif not any(_suite.is_sm2_certificate(root) for root in self._roots):
            why = (
                "No SM2 root is configured for your organisation's PKI, so no SM2 certificate "
                "was requested (it could not be checked)."
            )
        if why is None:
            return
        suites = [s for s in journal["suites"] if s != "sm"]
        if not suites:
            raise EnrollmentRefused(why.split(", so")[0] + ".", problem=None, transient=False)
        journal.set(suites=suites, unavailable={**journal.get("unavailable", {}), "sm": why})

    def _adopt_orphan(self, journal: Journal, suite: str) -> str | None:
        """A pending key without certificate made since this run began (sealed just before a
        crash, before its id reached the journal)."""
        taken = set(journal["keys"].values())
        for record in self.keystore.records(journal["address"], suite):
            if (
                record.status == "pending"
                and not record.certificates
                and record.created >= journal["started"]
                and record.key_id not in taken
            ):
                return record.key_id
        return None

    def _choose_code(self, address: str, given: str | None) -> tuple[str, str]:
        if given is not None:
            code = backup.parse_recovery_code(given)
            existing = backups.list_backups(self.mailbox, address, folder=self.backup_folder)
            if existing:
                _readable_backup(existing, code, strict=True)
            return "given", code
        kept = backups.stored_recovery_code(self.profile, address, backend=self.keyring)
        if kept:
            return "keyring", kept
        if backups.list_backups(self.mailbox, address, folder=self.backup_folder):
            raise RecoveryCodeNeeded(
                f"Your mailbox already holds a backup of keys for {address}. Restore it with "
                "your recovery code, or give the code, so that all your keys stay under one "
                "code.",
                transient=False,
            )
        return "generated", backup.new_recovery_code()

    def _ensure_code(self, journal: Journal, given: str | None) -> None:
        """The run's code is in the keyring (a crash between the journal's first write and
        the keyring's may have lost it: a generated code that no backup used yet is made
        again; a given one must be given again)."""
        address = journal["address"]
        if backups.stored_recovery_code(self.profile, address, backend=self.keyring):
            return
        if journal["code_source"] == "generated" and not journal.get("backup"):
            code = backup.new_recovery_code()
        elif given is not None:
            code = backup.parse_recovery_code(given)
        else:
            raise RecoveryCodeNeeded(
                "The recovery code for this enrollment is not in the keyring; give it again.",
                transient=False,
            )
        backups.store_recovery_code(self.profile, address, code, backend=self.keyring)

    def _code(self, journal: Journal) -> str:
        code = backups.stored_recovery_code(self.profile, journal["address"], backend=self.keyring)
        if not code:
            raise RecoveryCodeNeeded(
                "The recovery code of this enrollment is no longer in the keyring; give it to "
                "finish the backup.",
                transient=False,
            )
        return code

    def _client(self, journal: Journal) -> AcmeClient:
        if self._acme is None:
            key, url = AccountKeyStore(self.profile).load_or_create(self.pki.directory_url)
            self._acme = AcmeClient.for_settings(
                self.pki, key, account_url=journal.get("account_url") or url, **self.acme_options
            )
        return self._acme

    def _step_account(self, journal: Journal, _code: str | None) -> None:
        client = self._client(journal)
        # Some RFC 8823 CAs refuse an account without a way to reach its holder.
        contact = [f"mailto:{journal['address']}"] if self.pki.contact else []
        with _acme_errors():
            url, _account = client.register(contact)
        AccountKeyStore(self.profile).remember_url(self.pki.directory_url, url)
        journal.set(account_url=url, step="orders")

    def _step_orders(self, journal: Journal, _code: str | None) -> None:
        journal.set(step=self._next_confirmation(journal))

    def _next_confirmation(self, journal: Journal) -> str:
        """Order what is not ordered yet, one suite at a time, and find the first
        authorization still to confirm: its email-reply-00 challenge is journaled and the next
        step is "challenge_mail"; with every authorization valid, "certificates".

        One order at a time, because a CA may give every order its own authorization and
        challenge mail (RFC 8823 allows it): token-part1 travels only by mail, so with two
        challenges open at once nothing would tell which mail belongs to which challenge.
        The Message-IDs of challenge-like mail already in INBOX are journaled before each
        newOrder, so the new order's mail is told from older ones."""
        client = self._client(journal)
        address = journal["address"]
        orders = dict(journal["orders"])
        with _acme_errors():
            for suite in journal["suites"]:
                url = orders.get(suite)
                if url is None:
                    journal.set(seen_mail_ids=sorted(self._challenge_like_mail_ids()))
                    url, _order = client.new_order(address)
                    orders[suite] = url
                    journal.set(orders=orders)
                order, _retry = client.order(url)
                if order.status.value == "invalid":
                    journal.set(orders={})
                    raise EnrollmentRefused(
                        "The certificate authority gave up an earlier order; run enrollment "
                        "again to start a new one.",
                        problem=None,
                        transient=True,
                    )
                for authz_url in order.authorizations:
                    authz = client.authorization(authz_url)
                    if authz.status.value == "valid":
                        continue  # confirmed (for an earlier order, or still fresh)
                    if authz.status.value != "pending":
                        journal.set(orders={})
                        raise EnrollmentRefused(
                            f"The certificate authority's confirmation of {address} is "
                            f"{authz.status.value}; run enrollment again to start anew.",
                            problem=None,
                            transient=True,
                        )
                    challenge = _email_challenge(authz.challenges)
                    journal.set(
                        authorization=authz_url,
                        challenge={
                            "url": challenge.url,
                            "token": challenge.token,
                            "from": challenge.from_address,
                        },
                    )
                    return "challenge_mail"
        return "certificates"

    def _challenge_like_mail_ids(self) -> set[str]:
        """The keys (_mail_keys) of mails in INBOX whose Subject holds 'ACME:' (before we
        order)."""
        client = self.mailbox.imap_connect()
        try:
            client.select_folder("INBOX", readonly=True)
            uids = client.search(["HEADER", "Subject", "ACME:"])
            if not uids:
                return set()
            item = "BODY.PEEK[HEADER.FIELDS (MESSAGE-ID SUBJECT)]"
            fetched = client.fetch(uids, [item])
            found: set[str] = set()
            for data in fetched.values():
                raw = data.get(item.replace(".PEEK", "").encode()) or b""
                found |= _mail_keys(email.message_from_bytes(raw, policy=email.policy.default))
            return found
        except MailError:
            raise
        except Exception as exc:
            raise classify(exc, self.mailbox.settings.imap, ca_file=self.mailbox.ca_file) from exc
        finally:
            with contextlib.suppress(Exception):
                client.logout()

    def _step_challenge_mail(self, journal: Journal, _code: str | None) -> None:
        """Wait for the challenge mail and judge it. The challenge itself is not read here:
        some servers start validating on any POST to it, so it is touched only after the
        reply went out; its authorization tells whether it was decided meanwhile."""
        address = journal["address"]
        challenge = journal["challenge"]
        client = self._client(journal)
        with _acme_errors():
            authz = client.authorization(journal["authorization"])
        if authz.status.value == "valid":
            self._round_done(journal)
            return
        if authz.status.value != "pending":
            failed = next((c for c in authz.challenges if c.url == challenge["url"]), None)
            self._restart_orders(journal, failed)
        allowed = sorted(self.pki.unauthenticated_from)
        if journal.get("rejected_under", allowed) != allowed:
            # The organisation changed what it accepts: the mails refused before are judged
            # again (the same settings never judge one twice).
            journal.set(rejected_mail_ids=[], rejected_under=allowed)
        skip = set(journal["seen_mail_ids"]) | set(journal.get("rejected_mail_ids", []))
        deadline = time.monotonic() + self.mail_timeout

        def wanted(headers: EmailMessage) -> bool:
            if _mail_keys(headers) & skip:
                return False
            return email_reply.looks_like_challenge_mail(_header_map(headers), address=address)

        slice_seconds = FIRST_IDLE_SLICE
        remaining = deadline - time.monotonic()
        raw = None
        while raw is None and remaining > 0:
            # IDLE in growing slices, each starting with a SEARCH: Dovecot may not announce a
            # delivery that races with the start of IDLE (seen: 30 s of silence), so no single
            # IDLE is trusted for long while the mail is most likely to land.
            raw = self.mailbox.wait_for(wanted, min(remaining, slice_seconds), "INBOX")
            slice_seconds = min(slice_seconds * 2, MAX_IDLE_SLICE)
            remaining = deadline - time.monotonic()
        if raw is None:
            raise ChallengeMailMissing(
                f"The confirmation email from {challenge['from']} did not arrive within "
                f"{self.mail_timeout:g} seconds. Check the spam folder and that mail from "
                "that address is accepted; run enrollment again to keep waiting."
            )
        headers = email.message_from_bytes(raw, policy=email.policy.default)
        mail, why = self._judge_challenge_mail(raw, headers, challenge["from"], address)
        if mail is None:
            # Named at once, never waited out: the person (or the administrator) can act.
            rejected = set(journal.get("rejected_mail_ids", [])) | _mail_keys(headers)
            journal.set(rejected_mail_ids=sorted(rejected), rejected_under=allowed)
            raise ChallengeMailRefused(
                self._refusal_sentence(headers, challenge["from"], why or "")
            )
        journal.set(
            challenge_mail={
                "message_id": mail.message_id,
                "token_part1": mail.token_part1,
                "subject": mail.subject,
                "reply_address": mail.reply_address,
            },
            step="reply",
        )

    def _judge_challenge_mail(
        self, raw: bytes, headers: EmailMessage, sender: str, address: str
    ) -> tuple[email_reply.ChallengeMail | None, str | None]:
        """(the accepted mail, None) or (None, which check it failed, in words). RFC 8823's
        headers (email_reply.check_challenge_mail), then its authentication: a valid S/MIME
        signature chaining to the configured roots by a certificate for the sender, or a
        valid DKIM signature of the sender's domain. Mail from an address the organisation
        listed (unauthenticated_from) needs neither the authentication nor Auto-Submitted
        and Message-ID."""
        relaxed = sender.strip().lower() in self.pki.unauthenticated_from
        try:
            mail = email_reply.check_challenge_mail(
                _header_map(headers), challenge_from=sender, address=address, relaxed=relaxed
            )
        except AcmeProblem as problem:
            return None, problem.detail
        if relaxed:
            return mail, None
        why = self._authentication_problem(raw, sender)
        return (None, why) if why else (mail, None)

    def _authentication_problem(self, raw: bytes, sender: str) -> str | None:
        """None when the mail is S/MIME-signed for `sender` under the PKI roots or DKIM-signed
        by `sender`'s domain; else why neither holds."""
        smime_problem = self._signature_problem(raw, sender)
        if smime_problem is None:
            return None
        from shared_pki.net.dkim import verify_dkim  # dkimpy: only when a mail is judged

        domain = sender.rpartition("@")[2]
        dkim = verify_dkim(raw, from_domain=domain, dnsfunc=self.dkim_dns)
        if dkim.valid:
            return None
        return (
            f"it is not authenticated: no valid S/MIME signature ({smime_problem}) and no valid "
            f"DKIM signature of {domain} ({dkim.detail})"
        )

    def _signature_problem(self, raw: bytes, sender: str) -> str | None:
        """None when the mail carries a valid S/MIME signature chaining to the PKI roots by a
        certificate for `sender`; else why not."""
        try:
            opened = smime.open_message(raw, trust_anchors=self._roots)
        except PkiError as error:
            return f"the S/MIME layer does not open: {error.message}"
        if not opened.signatures:
            return "it is not S/MIME-signed"
        for result in opened.signatures:
            if not result.valid:
                return result.summary
            for signer in result.signers:
                if signer.address_ok is not True:
                    return f"the signer's certificate is not for {sender}"
        return None

    def _refusal_sentence(self, headers: EmailMessage, expected: str, why: str) -> str:
        sender = str(headers.get("From", "")).strip() or "an unknown sender"
        text = (
            f"A confirmation email for your certificate arrived from {sender}, but it was not "
            f"answered: {why}."
        )
        listed = expected.strip().lower() in self.pki.unauthenticated_from
        if not listed and _same_sender(sender, expected):
            text += (
                " If it really comes from your organisation's certificate authority, your "
                "administrator can allow its mail (the setting unauthenticatedChallengeFrom: "
                f"{expected})."
            )
        else:
            text += " It may be forged."
        return text + " Run enrollment again to keep waiting for a proper confirmation email."

    def _step_reply(self, journal: Journal, _code: str | None) -> None:
        reply = journal.get("reply")
        if reply is None:
            mail = email_reply.ChallengeMail(**journal["challenge_mail"])
            message = build_reply(
                mail,
                address=journal["address"],
                account_thumbprint=self._client(journal).thumbprint,
                token_part2=journal["challenge"]["token"],
            )
            headers = email.message_from_bytes(message, policy=email.policy.default)
            reply = {
                "message_id": str(headers["Message-ID"]).strip(),
                "to": mail.reply_address,
                "message": _b64(message),
                "sent": False,
            }
            journal.set(reply=reply)  # before submitting: a restart resubmits this same message
        if not reply["sent"]:
            outbox = self.profile.root / JOURNAL_FOLDER / "outbox"
            sender = Mailbox(
                self.mailbox.settings,
                self.mailbox.credentials,
                ca_file=self.mailbox.ca_file,
                timeout=self.mailbox.timeout,
                outbox=outbox,
            )
            try:
                sender.submit(_unb64(reply["message"]), journal["address"], [reply["to"]])
            except MailError as error:
                raise EnrollmentError(
                    f"The reply to the confirmation email could not be sent: {error}"
                ) from None
            finally:
                sender.close()
            journal.set(reply={**reply, "sent": True})
        journal.set(step="respond")

    def _step_respond(self, journal: Journal, _code: str | None) -> None:
        """Tell the CA the reply went out (POST {} once: journaled), then read the challenge
        until it is decided. Valid: on to the next confirmation, if any, or the certificates."""
        client = self._client(journal)
        challenge = journal["challenge"]
        url = challenge["url"]
        with _acme_errors():
            if not challenge.get("responded"):
                current = client.respond(url)
                journal.set(challenge={**challenge, "responded": True})
            else:
                current, _retry = client.challenge(url)
            if current.status.value not in ("valid", "invalid"):
                try:
                    current = client.poll_challenge(url, timeout=self.validation_timeout)
                except AcmeServerError:
                    current, _retry = client.challenge(url)
        if current.status.value == "invalid":
            self._restart_orders(journal, current)
        self._round_done(journal)

    def _round_done(self, journal: Journal) -> None:
        """One confirmation is done: keep what it was (for the result), then go on to the
        next order's confirmation or to the certificates."""
        round_ = {
            "challenge_mail": (journal.get("challenge_mail") or {}).get("message_id"),
            "reply": (journal.get("reply") or {}).get("message_id"),
        }
        confirmed = [*journal.get("confirmed", [])]
        if "challenge_mail" in journal.data and round_ not in confirmed:
            confirmed.append(round_)
        for name in ("challenge", "challenge_mail", "reply", "authorization"):
            journal.data.pop(name, None)
        journal.set(confirmed=confirmed)
        journal.set(step=self._next_confirmation(journal))

    def _restart_orders(self, journal: Journal, challenge: Challenge | None) -> None:
        """The validation failed: forget orders and challenge (keys and account stay) so the
        next run orders again, and say why."""
        problem = None
        if challenge is not None and challenge.error:
            problem = AcmeProblem.from_json(challenge.error)
        for name in ("challenge", "challenge_mail", "reply", "authorization", "seen_mail_ids"):
            journal.data.pop(name, None)
        journal.set(orders={}, step="orders")
        detail = f" It said: {problem.detail}" if problem is not None and problem.detail else ""
        raise EnrollmentRefused(
            "The certificate authority did not accept the confirmation of your address."
            + detail
            + " Run enrollment again to try with a new confirmation email.",
            problem=problem,
            transient=True,
        )

    def _step_certificates(self, journal: Journal, _code: str | None) -> None:
        client = self._client(journal)
        address = journal["address"]
        certificates = dict(journal["certificates"])
        for suite in journal["suites"]:
            if suite in certificates:
                continue
            key_id = journal["keys"][suite]
            url = journal["orders"][suite]
            with _acme_errors():
                order = client.poll_order(url, {"ready", "valid"}, timeout=ORDER_TIMEOUT)
                if order.status.value == "ready":
                    csr = build_csr(address, self.keystore.private_key(key_id))
                    try:
                        order = client.finalize(order, csr)
                    except AcmeServerError as error:
                        # A finalize that reached the server before a crash: the order moved on.
                        order, _retry = client.order(url)
                        if order.status.value in ("ready", "pending", "invalid"):
                            raise error from None
                if order.status.value != "valid":
                    order = client.poll_order(url, {"valid"}, timeout=ORDER_TIMEOUT)
                if not order.certificate:
                    raise EnrollmentRefused(
                        "The certificate authority marked the order valid without a certificate.",
                        problem=None,
                        transient=False,
                    )
                chain = client.certificate_chain(order.certificate)
            self._check_chain(address, suite, chain)
            self.keystore.attach_certificate(key_id, chain[0], chain[1:])
            certificates[suite] = [_b64(der) for der in chain]
            journal.set(certificates=certificates)
        journal.set(step="backup")

    def _check_chain(self, address: str, suite: str, chain: list[bytes]) -> None:
        try:
            leaf = parse_certificate(chain[0])
            rest = [parse_certificate(der) for der in chain[1:]]
        except PkiError as error:
            raise EnrollmentRefused(
                f"The certificate authority sent a broken certificate: {error.message}",
                problem=None,
                transient=False,
            ) from None
        # SM2 links: CA certificates are signed under the empty ID, end entities under the
        # standard one (shared_pki.ca.common.sm2_signer_id): try both.
        result = validate(
            leaf,
            trust_anchors=self._roots,
            intermediates=rest,
            address=address,
            sm2_ids=(sm2.DEFAULT_ID, b""),
        )
        if not result.valid:
            raise EnrollmentRefused(
                f"The {suite} certificate the authority sent does not check out against the "
                f"configured PKI roots: {result.reason}",
                problem=None,
                transient=False,
            )

    def _step_backup(self, journal: Journal, _code: str | None) -> None:
        address = journal["address"]
        code = self._code(journal)
        new_ids = [journal["keys"][suite] for suite in journal["suites"]]
        state = journal.get("backup") or {}
        try:
            stored = None
            if state.get("message_id"):  # a run that crashed while writing or checking
                stored = backups.find_backup(
                    self.mailbox, state["message_id"], folder=self.backup_folder
                )
            existing = backups.list_backups(self.mailbox, address, folder=self.backup_folder)
            older = [b for b in existing if stored is None or b.message_id != stored.message_id]
            carried = _readable_backup(older, code, strict=False) if older else []
            keys = backups.projected_keys(
                self.keystore, address, becoming_current=new_ids, carried=carried
            )
            expected = {k.key_id: k.status for k in keys}
            if stored is None:
                stored = backups.write_backup(
                    self.mailbox, address, keys, code, folder=self.backup_folder
                )
                journal.set(backup={"message_id": stored.message_id, "uid": stored.uid})
            backups.check_backup(
                self.mailbox, stored.message_id, code, expected, folder=self.backup_folder
            )
        except MailError as error:
            raise BackupFailed(
                f"Your keys could not be backed up in your mailbox ({error}). They stay unused "
                "until a backup is stored; run enrollment again when the mailbox is reachable."
            ) from None
        except backups.BackupError as error:
            journal.set(backup={})  # write a fresh one next time
            raise BackupFailed(
                f"The backup in your mailbox could not be proven: {error}. The new keys stay "
                "unused; run enrollment again."
            ) from None
        superseded = []
        for key_id in new_ids:
            record = self.keystore.record(key_id)
            old = self.keystore.current(address, record.suite)
            if old is not None and old.key_id != key_id:
                superseded.append(old.key_id)
            self.keystore.mark(key_id, "current")
        with contextlib.suppress(MailError):  # flagging is a courtesy; the backups stay anyway
            backups.flag_older(self.mailbox, older)
        journal.set(
            backup={**journal.get("backup", {}), "message_id": stored.message_id, "proven": True},
            superseded=sorted(set(journal.get("superseded", [])) | set(superseded)),
            step="done",
        )

    def _finish(self, journal: Journal, resumed: bool, seconds: float) -> EnrollmentResult:
        address = journal["address"]
        code = backups.stored_recovery_code(self.profile, address, backend=self.keyring)
        shown = code if journal.get("code_source") == "generated" else None
        if not journal.get("keep_code") and not journal.get("code_kept_before"):
            backups.forget_recovery_code(self.profile, address, backend=self.keyring)
        certificates, chains = {}, {}
        for suite, ders in journal["certificates"].items():
            certificates[suite] = _unb64(ders[0])
            chains[suite] = tuple(_unb64(der) for der in ders[1:])
        confirmations = tuple(
            (item["challenge_mail"], item.get("reply")) for item in journal.get("confirmed", [])
        )
        first = confirmations[0] if confirmations else (None, None)
        result = EnrollmentResult(
            address=address,
            kind=journal["kind"],
            key_ids=dict(journal["keys"]),
            certificates=certificates,
            chains=chains,
            backup_message_id=journal["backup"]["message_id"],
            recovery_code=shown,
            resumed=resumed,
            seconds=seconds,
            challenge_message_id=first[0] or None,
            reply_message_id=first[1],
            superseded=tuple(journal.get("superseded", [])),
            confirmations=confirmations,
            unavailable=dict(journal.get("unavailable", {})),
        )
        journal.archive()
        return result


# ---------------------------------------------------------------------------------------------
# Helpers


def _header_map(headers: EmailMessage) -> dict[str, str]:
    return {name: str(value) for name, value in headers.items()}


def _mail_keys(headers: EmailMessage) -> set[str]:
    """What tells one challenge-like mail from another: its Message-ID, and `token:` its
    token-part1 (a minimal CA's mail may carry no Message-ID; token-part1 is never reused)."""
    keys = set()
    message_id = str(headers.get("Message-ID", "") or "").strip()
    if message_id:
        keys.add(message_id)
    with contextlib.suppress(AcmeProblem):
        subject = " ".join(str(headers.get("Subject", "") or "").split())
        keys.add("token:" + email_reply.token_part1_from_subject(subject))
    return keys


def _same_sender(from_value: str, address: str) -> bool:
    found = [a for _name, a in getaddresses([from_value]) if a]
    return len(found) == 1 and found[0].strip().lower() == address.strip().lower()


def _email_challenge(challenges: Sequence[Challenge]) -> Challenge:
    for challenge in challenges:
        if challenge.type == EMAIL_REPLY_00:
            return challenge
    raise EnrollmentRefused(
        "The certificate authority offered no email-reply-00 challenge (RFC 8823).",
        problem=None,
        transient=False,
    )


def _readable_backup(
    stored: Sequence[backups.StoredBackup], code: str, *, strict: bool
) -> list[backup.BackupKey]:
    """The keys of the newest backup that opens with code (backups.open_newest: a planted or
    damaged message that only looks newer is skipped). strict: one must open (a given code is
    checked against the backups there); else none is fine."""
    try:
        return backups.open_newest(stored, code).keys
    except (PkiError, backups.BackupError):
        if strict:
            raise
    return []


@contextlib.contextmanager
def _acme_errors() -> Any:
    """ACME client errors as EnrollmentErrors in the same words."""
    try:
        yield
    except AcmeServerError as error:
        transient = error.status >= 500 or error.status == 429
        raise EnrollmentRefused(str(error), problem=error.problem, transient=transient) from None
    except AcmeError as error:
        raise EnrollmentError(str(error)) from None


def enroll(
    address: str,
    *,
    profile: Profile,
    mailbox: Mailbox,
    pki: PkiSettings,
    keystore: Keystore | None = None,
    suites: Sequence[str] = SUITES,
    intl_key: str = DEFAULT_INTL_KEY,
    progress: Progress | None = None,
    recovery_code: str | None = None,
    keep_recovery_code: bool = False,
    **options: Any,
) -> EnrollmentResult:
    """Enroll address (see the module docstring). options: keyring, mail_timeout,
    validation_timeout, backup_folder, acme_options."""
    return Enrollment(
        profile=profile, mailbox=mailbox, pki=pki, keystore=keystore, **options
    ).enroll(
        address,
        suites=suites,
        intl_key=intl_key,
        progress=progress,
        recovery_code=recovery_code,
        keep_recovery_code=keep_recovery_code,
    )


def renew_if_due(
    address: str,
    *,
    profile: Profile,
    mailbox: Mailbox,
    pki: PkiSettings,
    window_days: float = 30,
    keystore: Keystore | None = None,
    progress: Progress | None = None,
    recovery_code: str | None = None,
    keep_recovery_code: bool | None = None,
    **options: Any,
) -> EnrollmentResult | None:
    """Renew address's keys when a current certificate ends within window_days."""
    return Enrollment(
        profile=profile, mailbox=mailbox, pki=pki, keystore=keystore, **options
    ).renew_if_due(
        address,
        window_days=window_days,
        progress=progress,
        recovery_code=recovery_code,
        keep_recovery_code=keep_recovery_code,
    )


def unfinished(profile: Profile, address: str) -> dict[str, Any] | None:
    """The journal of an unfinished enrollment of address (for status displays), or None."""
    journal = Journal.load(journal_path(profile, address))
    return None if journal is None else dict(journal.data)


__all__ = [
    "DONE",
    "STAGES",
    "STEPS",
    "BackupFailed",
    "ChallengeMailMissing",
    "ChallengeMailRefused",
    "Enrollment",
    "EnrollmentError",
    "EnrollmentRefused",
    "EnrollmentResult",
    "NotEnrolled",
    "RecoveryCodeNeeded",
    "build_csr",
    "build_reply",
    "enroll",
    "journal_path",
    "renew_if_due",
    "unfinished",
]
