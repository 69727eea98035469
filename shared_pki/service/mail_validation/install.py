"""RFC 8823 mail validation wired into a service state: the sender as the ACME server's
validator, the reply watcher started and stopped with the application."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from shared_pki.service.mail_validation.challenges import MailSettings, configured
from shared_pki.service.mail_validation.sender import MailValidator
from shared_pki.service.mail_validation.watcher import ReplyWatcher
from shared_pki.service.state import ServiceState

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MailValidation:
    """The two halves of mail validation in one process."""

    validator: MailValidator
    watcher: ReplyWatcher


def install(state: ServiceState) -> MailValidation | None:
    """When the CA mailbox is configured and no other validator was given: the validator as
    state.validator, the watcher's start and stop in state.on_startup / on_shutdown. A mail
    URL that cannot be used fails here, at start-up, with a message naming what is wrong."""
    if not configured(state.config) or state.validator is not None:
        return None
    settings = MailSettings.from_config(state.config)
    validator = MailValidator(settings)
    watcher = ReplyWatcher(state, settings)
    validator.listeners.append(watcher.wake)
    state.validator = validator
    state.on_startup.append(watcher.start)
    state.on_shutdown.extend([watcher.stop, validator.close])
    log.info("RFC 8823 mail validation: sending by %s, watching %s", settings.smtp, settings.imap)
    return MailValidation(validator, watcher)
