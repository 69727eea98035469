"""How the ACME server hands a challenge to whatever validates it.

The ACME server never validates anything itself. When a client POSTs `{}` to a pending
`email-reply-00` challenge, the server moves it to `processing` and calls
`state.extras["validator"].start(state, challenge_id)`; the validator records the outcome later
(or at once) with `acme_state.challenge_result`, which also moves the authorization and its
orders on. Several server processes may share one database, so a validator must not assume the
process that called `start` is the one that finishes the challenge.

- The production validator is the RFC 8823 mail validator of `challenge_mail` (it sends the
  challenge mail, watches the CA mailbox and checks replies); it registers itself as
  `state.extras["validator"]` when the mail settings are configured.
- `ShortCircuitValidator` marks a challenge valid without any mail: for the benchmark and for
  tests that are not about mail. It is never installed by default: a test or the benchmark must
  pass it to `create_app(config, extras={"validator": ShortCircuitValidator()})`.
- With no validator, a challenge POST is refused with a problem saying that mail validation is
  not configured (nothing is ever validated by accident).

Optional hook: a validator may also define `challenge_created(state, challenge_id)`, which the
server calls after committing a new challenge (RFC 8823 has the CA send the challenge mail
before the client replies and then POSTs to the challenge URL, so the mail validator sends it
from there). A validator without the hook must find new challenges by other means (rows of the
`challenges` table whose `sent` is NULL).

The Pebble-style `validation_delay_seconds` is honoured on the validator path: the short
circuit waits that long (on a timer thread, so the POST still answers at once) before it
records the result.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from shared_pki.service.acme import transitions as acme_state

if TYPE_CHECKING:
    from shared_pki.service.app import ServiceState


@runtime_checkable
class Validator(Protocol):
    """Starts the validation of a challenge the client has just answered (now `processing`)."""

    def start(self, state: ServiceState, challenge_id: str) -> None: ...


class ShortCircuitValidator:
    """Marks every answered challenge valid (after the configured delay). Tests and benchmark
    only: it proves nothing about the mailbox."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self._timers: list[threading.Timer] = []

    def start(self, state: ServiceState, challenge_id: str) -> None:
        self.started.append(challenge_id)
        delay = state.config.validation_delay_seconds
        if delay > 0:
            timer = threading.Timer(delay, self._finish, (state, challenge_id))
            timer.daemon = True
            self._timers = [t for t in self._timers if t.is_alive()] + [timer]
            timer.start()
        else:
            self._finish(state, challenge_id)

    @staticmethod
    def _finish(state: ServiceState, challenge_id: str) -> None:
        acme_state.challenge_result(state.store, challenge_id, valid=True, now=time.time())
