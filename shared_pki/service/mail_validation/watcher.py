"""The CA mailbox watcher: RFC 8823 replies in, challenge results out.

`ReplyWatcher` runs one background thread per service process. It logs into config.imap_url,
waits for new mail with IMAP IDLE when the server has it and looks again every
imap_poll_seconds anyway (the only way without IDLE; with IDLE, a safety net for deliveries
that race with the start of IDLE), and judges every message it has not judged before
(`judge_reply`):

- not an ACME reply (no `ACME: <token>` Subject, an automatic reply, too large), or no open
  challenge with that token-part1 (unknown, already decided, mail never sent): left in the
  mailbox, flagged \\Flagged for a person to look at, and not read again;
- a reply to an open challenge: subject, In-Reply-To, From, To and the response digest
  (email_reply.check_reply), then DKIM when config.dkim_required enforces it (dkim.enforced);
  the result is recorded once with acme_state.challenge_result (a second reply, or a second
  process judging the same reply, changes nothing) and the reply is flagged \\Seen and moved
  to `acme-processed`, never deleted;
- a good reply to a challenge the client has not POSTed yet (still `pending`: RFC 8555 moves a
  challenge to `valid` only from `processing`) waits, unflagged, until the POST; the validator's
  start() wakes the watcher of its own process, other processes notice within recheck_seconds.

config.validation_delay_seconds (Pebble) holds every decision back that long after the reply
was first seen. Open challenges past their expiry are failed by a periodic sweep and when a
late reply arrives. Messages judged are marked with the IMAP keyword `$AcmeChecked` so that a
restart does not judge them again (and in memory, for servers without keywords).
"""

from __future__ import annotations

import collections
import contextlib
import datetime
import email
import email.policy
import enum
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.header import decode_header, make_header
from email.message import Message
from typing import Any

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError

from shared_pki.acme import email_reply
from shared_pki.acme.objects import ChallengeStatus, normalize_email
from shared_pki.acme.problems import AcmeProblem, ProblemType
from shared_pki.net.dkim import verify_dkim
from shared_pki.net.mail import MailConnectionError, open_imap
from shared_pki.service.acme import transitions as acme_state
from shared_pki.service.mail_validation.challenges import (
    OPEN_STATUSES,
    PROCESSED_FOLDER,
    MailSettings,
    expired_open_challenges,
    load_challenge,
)
from shared_pki.service.mail_validation.dkim import enforced as dkim_enforced
from shared_pki.service.state import ServiceState

log = logging.getLogger(__name__)

KEYWORD = "$AcmeChecked"
#: Larger messages are not ACME replies (a reply is a few kB; a signed one some more).
MAX_REPLY_BYTES = 1024 * 1024
#: IDLE is renewed this often (RFC 2177: servers may drop it after 30 minutes).
IDLE_RENEW_SECONDS = 600.0
#: How often a thread in IDLE looks at its stop and wake flags.
IDLE_TICK_SECONDS = 0.25
FETCH_BATCH = 25
MAX_BACKOFF_SECONDS = 60.0


# ---------------------------------------------------------------------------------------------
# Judging one message


class Verdict(enum.StrEnum):
    IGNORE = "ignore"  # not a reply to an open challenge: leave it, flagged
    WAIT = "wait"  # a good reply to a challenge not yet POSTed: judge again later
    DECIDE = "decide"  # record `problem` (None: valid) for the challenge


@dataclass(frozen=True)
class Judgement:
    verdict: Verdict
    reason: str
    challenge_id: str | None = None
    problem: AcmeProblem | None = None
    reply_id: str | None = None


def parse_message(raw: bytes) -> Message:
    """Headers kept raw (folded, RFC 2047 encoded) for check_reply to unfold and decode."""
    return email.message_from_bytes(raw, policy=email.policy.compat32)


def reply_text(message: Message) -> str:
    """The text/plain part holding the ACME response (the first text/plain part without one,
    or "" when there is no readable text/plain part)."""
    texts: list[str] = []
    for part in message.walk():
        if part.get_content_type() != "text/plain" or part.get_filename():
            continue
        if (part.get("Content-Disposition") or "").strip().lower().startswith("attachment"):
            continue
        payload = part.get_payload(decode=True)
        if not isinstance(payload, bytes):
            continue
        charset = part.get_content_charset() or "utf-8"
        try:
            texts.append(payload.decode(charset, "replace"))
        except LookupError:
            texts.append(payload.decode("utf-8", "replace"))
    for text in texts:
        if email_reply.BEGIN in text:
            return text
    return texts[0] if texts else ""


def _decoded(value: Any) -> str:
    """A header value unfolded and RFC 2047-decoded (as received when it cannot be)."""
    text = " ".join(str(value).split())
    if "=?" in text:
        with contextlib.suppress(ValueError, LookupError, UnicodeError):
            text = str(make_header(decode_header(text)))
    return text


def _is_automatic(message: Message) -> bool:
    """RFC 3834 automatic responses (vacation notices...) never prove anything."""
    value = (message.get("Auto-Submitted") or "no").split(";")[0].strip().lower()
    return value != "no"


def judge_reply(state: ServiceState, raw: bytes, *, now: float) -> Judgement:
    """What one message in the CA mailbox means for the challenges in the store."""
    message = parse_message(raw)
    reply_id = _decoded(message.get("Message-ID") or "")[:256] or None

    def ignore(reason: str, challenge_id: str | None = None) -> Judgement:
        return Judgement(Verdict.IGNORE, reason, challenge_id, reply_id=reply_id)

    if _is_automatic(message):
        return ignore("an automatic message (Auto-Submitted)")
    subject = message.get("Subject")
    if subject is None:
        return ignore("no Subject")
    try:
        token = email_reply.token_part1_from_subject(_decoded(subject), allow_reply_prefix=True)
    except AcmeProblem:
        return ignore("not an ACME reply")
    with state.store.transaction() as db:
        info = load_challenge(db, token_part1=token)
    if info is None:
        return ignore("no challenge has this token")
    if info.status not in OPEN_STATUSES:
        return ignore(f"the challenge is already {info.status}", info.id)
    if not info.message_id:
        return ignore("the challenge mail was never sent", info.id)
    config = state.config
    challenge = info.email_challenge(
        config.challenge_hours,
        reply_to=normalize_email(config.challenge_reply_to) if config.challenge_reply_to else None,
        threaded=config.challenge_headers != "bare",
    )
    when = datetime.datetime.fromtimestamp(now, datetime.UTC)
    problem = email_reply.check_reply(message, reply_text(message), challenge=challenge, now=when)
    if problem is None and dkim_enforced(state.config.dkim_required, state.dkim_dns):
        result = verify_dkim(
            raw,
            from_domain=info.address.rpartition("@")[2],
            dnsfunc=state.dkim_dns,
        )
        if not result.valid:
            problem = AcmeProblem(ProblemType.INCORRECT_RESPONSE, result.detail)
    if problem is not None:
        problem.identifier = {"type": "email", "value": info.address}
        return Judgement(Verdict.DECIDE, problem.detail, info.id, problem, reply_id)
    if info.status == ChallengeStatus.PENDING:
        return Judgement(
            Verdict.WAIT, "a good reply; the client has not POSTed yet", info.id, None, reply_id
        )
    return Judgement(Verdict.DECIDE, "a good reply", info.id, None, reply_id)


def sweep_expired(state: ServiceState, *, now: float) -> list[str]:
    """Fail every open email-reply-00 challenge past its expiry; the ids this call failed."""
    with state.store.transaction() as db:
        expired = expired_open_challenges(db, now=now)
    failed = []
    for challenge_id in expired:
        problem = AcmeProblem(
            ProblemType.UNAUTHORIZED, "the challenge expired before a valid reply arrived"
        )
        if acme_state.challenge_result(
            state.store, challenge_id, valid=False, problem=problem, now=now
        ):
            failed.append(challenge_id)
    return failed


# ---------------------------------------------------------------------------------------------
# The watcher thread

_active: dict[tuple[str, str], ReplyWatcher] = {}
_active_lock = threading.Lock()


class ReplyWatcher:
    """Watches the CA mailbox of `state` (see the module docstring). start() and stop() are
    idempotent; only one watcher per mailbox and database runs in a process (another one's
    start() does nothing and its wake() reaches the running one)."""

    def __init__(
        self,
        state: ServiceState,
        settings: MailSettings,
        *,
        force_poll: bool = False,
        sweep_seconds: float = 60.0,
        recheck_seconds: float = 1.0,
        clock: Callable[[], float] = time.time,
        processed_folder: str = PROCESSED_FOLDER,
    ) -> None:
        self.state = state
        self.settings = settings
        self.force_poll = force_poll
        self.sweep_seconds = sweep_seconds
        self.recheck_seconds = recheck_seconds
        self.clock = clock
        self.processed_folder = processed_folder
        #: "idle" or "poll" once connected; tests and operators can read it.
        self.mode = ""
        self.connected = threading.Event()
        self.last_error = ""
        #: The latest judgements, newest last (for tests and for looking into a running server).
        self.history: collections.deque[Judgement] = collections.deque(maxlen=256)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._key = (self.settings.imap.redacted, str(state.config.db_url))
        # Per IMAP session: UIDs judged, UIDs waiting (uid -> monotonic due time), first seen.
        self._done: set[int] = set()
        self._waiting: dict[int, float] = {}
        self._first_seen: dict[int, float] = {}
        self._keywords = True
        self._next_sweep = 0.0

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> bool:
        """Start the thread; False when it (or another watcher of this mailbox) already runs."""
        with _active_lock:
            running = _active.get(self._key)
            if running is not None and running.alive:
                return False
            self._stop.clear()
            self._thread = threading.Thread(
                target=self._run, name="acme-reply-watcher", daemon=True
            )
            _active[self._key] = self
            self._thread.start()
        log.info("watching %s for RFC 8823 replies", self.settings.imap)
        return True

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the thread and close the IMAP session; returns when it is gone (or timeout)."""
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            if thread.is_alive():
                log.warning("the reply watcher did not stop within %.1f s", timeout)
        with _active_lock:
            if _active.get(self._key) is self:
                del _active[self._key]

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def wake(self, _challenge_id: str | None = None) -> None:
        """A challenge was POSTed: re-judge waiting replies now instead of at the next check."""
        with _active_lock:
            running = _active.get(self._key)
        target = running if running is not None else self
        target._wake.set()

    # -- the loop ------------------------------------------------------------------------------

    def _run(self) -> None:
        backoff = 1.0
        while not self._stop.is_set():
            self._sweep_if_due()
            try:
                client = open_imap(self.settings.imap)
            except (MailConnectionError, ValueError) as exc:
                self.last_error = str(exc)
                log.warning("reply watcher: %s; retrying in %.0f s", exc, backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
                continue
            try:
                self._session(client)
                backoff = 1.0
            except Exception as exc:  # keep watching whatever one session did
                self.last_error = f"{type(exc).__name__}: {exc}"
                if not self._stop.is_set():
                    log.warning("reply watcher session ended: %s", self.last_error)
                    self._stop.wait(backoff)
                    backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
            finally:
                self.connected.clear()
                self.mode = ""
                _logout(client)

    def _session(self, client: IMAPClient) -> None:
        self._ensure_folder(client)
        selected = client.select_folder(self.settings.imap.mailbox)
        permanent = selected.get(b"PERMANENTFLAGS", ())
        self._keywords = b"\\*" in permanent
        self._done.clear()
        self._waiting.clear()
        self._first_seen.clear()
        idle = client.has_capability("IDLE") and not self.force_poll
        self.mode = "idle" if idle else "poll"
        self.connected.set()
        while not self._stop.is_set():
            self.scan(client)
            if _announced_new_mail(client):
                continue  # delivered while SEARCH ran: IDLE would not announce it again
            self._sweep_if_due()
            self._wait(client, idle)

    def _ensure_folder(self, client: IMAPClient) -> None:
        if not client.folder_exists(self.processed_folder):
            try:
                client.create_folder(self.processed_folder)
            except IMAPClientError:
                if not client.folder_exists(self.processed_folder):  # not a creation race
                    raise

    def _wait(self, client: IMAPClient, idle: bool) -> None:
        """Until new mail (IDLE) or the poll interval, a wake(), a due recheck, the sweep or
        stop(), whichever comes first."""
        now = time.monotonic()
        # Even in IDLE, look again every poll interval: a delivery that races with the start
        # of IDLE can go unannounced (Dovecot then tells only after mailbox_idle_check_interval,
        # 30 s by default).
        limits = [self._next_sweep, now + min(self.settings.poll_seconds, IDLE_RENEW_SECONDS)]
        if self._waiting:
            limits.append(min(self._waiting.values()))
        deadline = max(min(limits), now)
        if idle:
            client.idle()
            try:
                while not self._stop.is_set() and not self._wake.is_set():
                    if time.monotonic() >= deadline:
                        break
                    if client.idle_check(timeout=IDLE_TICK_SECONDS):
                        break
            finally:
                client.idle_done()
        else:
            self._wake.wait(max(0.0, deadline - now))
            if not self._stop.is_set():
                client.noop()
        if self._wake.is_set() and not self._stop.is_set():
            self._wake.clear()
            delay = self.state.config.validation_delay_seconds
            for uid in self._waiting:
                self._waiting[uid] = self._first_seen.get(uid, 0.0) + delay

    def _sweep_if_due(self) -> None:
        if time.monotonic() < self._next_sweep:
            return
        self._next_sweep = time.monotonic() + self.sweep_seconds
        try:
            for challenge_id in sweep_expired(self.state, now=self.clock()):
                log.info("challenge %s expired without a valid reply", challenge_id)
        except Exception:  # the database may be briefly unavailable
            log.exception("sweeping expired challenges failed")

    # -- one pass over the mailbox -------------------------------------------------------------

    def scan(self, client: IMAPClient) -> list[Judgement]:
        """Judge every message not judged yet whose time has come; the judgements made."""
        criteria: list[Any] = ["UNDELETED"]
        if self._keywords:
            criteria += ["UNKEYWORD", KEYWORD]
        found = [uid for uid in client.search(criteria) if uid not in self._done]
        now = time.monotonic()
        due = [uid for uid in sorted(found) if self._waiting.get(uid, 0.0) <= now]
        judgements = []
        for start in range(0, len(due), FETCH_BATCH):
            batch = due[start : start + FETCH_BATCH]
            sizes = client.fetch(batch, ["RFC822.SIZE"])
            small = []
            for uid in batch:
                size = sizes.get(uid, {}).get(b"RFC822.SIZE", 0)
                if size > MAX_REPLY_BYTES:
                    self._leave(client, uid, Judgement(Verdict.IGNORE, f"{size} bytes: too large"))
                else:
                    small.append(uid)
            bodies = client.fetch(small, ["BODY.PEEK[]"]) if small else {}
            for uid in small:
                raw = bodies.get(uid, {}).get(b"BODY[]")
                if raw is None:
                    continue  # expunged meanwhile (another process moved it)
                judgements.append(self._handle(client, uid, raw))
        return judgements

    def _handle(self, client: IMAPClient, uid: int, raw: bytes) -> Judgement:
        first_seen = self._first_seen.setdefault(uid, time.monotonic())
        try:
            judgement = judge_reply(self.state, raw, now=self.clock())
        except Exception as exc:  # one odd message must not stop the watcher
            log.exception("judging message %d failed", uid)
            judgement = Judgement(Verdict.IGNORE, f"could not be judged: {exc}")
        self.history.append(judgement)
        if judgement.verdict is Verdict.IGNORE:
            self._leave(client, uid, judgement)
            return judgement
        ready = first_seen + self.state.config.validation_delay_seconds
        if judgement.verdict is Verdict.WAIT or time.monotonic() < ready:
            self._waiting[uid] = max(ready, time.monotonic() + self.recheck_seconds)
            return judgement
        assert judgement.challenge_id is not None
        decided = acme_state.challenge_result(
            self.state.store,
            judgement.challenge_id,
            valid=judgement.problem is None,
            problem=judgement.problem,
            reply_id=judgement.reply_id,
            now=self.clock(),
        )
        log.info(
            "challenge %s: %s (%s)",
            judgement.challenge_id,
            ("valid" if judgement.problem is None else "invalid") if decided else "already decided",
            judgement.reason,
        )
        self._file(client, uid)
        return judgement

    def _leave(self, client: IMAPClient, uid: int, judgement: Judgement) -> None:
        log.info("message %d left in the mailbox: %s", uid, judgement.reason)
        self._done.add(uid)
        self._waiting.pop(uid, None)
        flags: list[Any] = [b"\\Flagged"] + ([KEYWORD] if self._keywords else [])
        _quietly(client.add_flags, [uid], flags, silent=True)

    def _file(self, client: IMAPClient, uid: int) -> None:
        self._done.add(uid)
        self._waiting.pop(uid, None)
        flags: list[Any] = [b"\\Seen"] + ([KEYWORD] if self._keywords else [])
        _quietly(client.add_flags, [uid], flags, silent=True)
        if client.has_capability("MOVE"):
            _quietly(client.move, [uid], self.processed_folder)
        else:
            _quietly(client.copy, [uid], self.processed_folder)


def _announced_new_mail(client: IMAPClient) -> bool:
    """Whether a command's untagged responses announced new mail (EXISTS) since we last asked.
    A message delivered while a SEARCH runs is announced after the search results, and IDLE
    does not announce it again; imapclient keeps such responses in imaplib's
    untagged_responses (not public API: without it, the sweep's wake-up bounds the delay)."""
    responses = getattr(getattr(client, "_imap", None), "untagged_responses", None)
    return isinstance(responses, dict) and responses.pop("EXISTS", None) is not None


def _quietly(action: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
    """Mailbox bookkeeping that may fail when another process moved the message first."""
    try:
        action(*args, **kwargs)
    except IMAPClientError as exc:
        log.info("IMAP %s failed: %s", getattr(action, "__name__", "command"), exc)


def _logout(client: IMAPClient) -> None:
    try:
        client.logout()
    except Exception:  # the session may already be broken
        with contextlib.suppress(Exception):
            client.shutdown()


__all__ = [
    "KEYWORD",
    "PROCESSED_FOLDER",
    "Judgement",
    "ReplyWatcher",
    "Verdict",
    "judge_reply",
    "parse_message",
    "reply_text",
    "sweep_expired",
]
