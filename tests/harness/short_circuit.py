"""A validator that passes every answered ACME challenge without any mail: for tests and the
benchmark that are not about mail validation. It proves nothing about the mailbox, so it lives
here and never in the service; a test passes it as `create_app(config, validator=...)`.

The Pebble-style `validation_delay_seconds` is honoured: the result is recorded that long after
the POST (on a timer thread, so the POST still answers at once)."""

from __future__ import annotations

import threading
import time

from shared_pki.service.acme import transitions
from shared_pki.service.state import ServiceState


class ShortCircuitValidator:
    """Marks every answered challenge valid (after the configured delay)."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self._timers: list[threading.Timer] = []

    def challenge_created(self, state: ServiceState, challenge_id: str) -> None:
        """No challenge mail: the short circuit waits for the client's POST."""

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
        transitions.challenge_result(state.store, challenge_id, valid=True, now=time.time())
