"""compose.send: a webmail compose to signed, timestamped, encrypted mail (domain.sending
does the work; this op finds the sender's account, keys, certificate book and TSA)."""

from __future__ import annotations

import contextlib
from typing import Any

from native_host.errors import BadParams
from native_host.ops import state
from native_host.ops.state import operation, progress_of

STEPS = 4


@operation
def send(params: dict[str, Any], ctx: Any) -> dict[str, Any]:
    """Send one message (the ComposeRequest JSON; attachments' data in base64). Recipients
    without a certificate fail the call before anything is sent; a server that cannot take the
    message now leaves it in the outbox (status "queued"), sent before the next message."""
    from native_host.domain.sending import ComposeRequest, compose_send

    progress = progress_of(ctx)
    if not isinstance(params.get("from"), str) or not params["from"]:
        raise BadParams("from is needed (the sender's address).")
    host = state.current()
    account = host.account(params["from"])
    if "hideSubject" not in params:  # the account's setting, unless the caller says
        params = {**params, "hideSubject": account.hide_subject}
    request = ComposeRequest.from_json(params)
    book = None
    options: dict[str, Any] = {"tsa_url": None}
    if request.sign or request.encrypt:
        _address, pki = host.pki(account.address)
        book = host.book(account.address)
        options = {"tsa_url": pki.tsa_url, "tsa_anchors": pki.tsa_anchors(), "fetch": pki.fetch()}
    progress(0, STEPS, "Looking up the recipients' certificates")
    if book is not None and request.encrypt:
        # Warms the book's cache; compose_send's own lookup is then served from it.
        book.lookup([*request.to, *request.cc, *request.bcc])
    progress(1, STEPS, "Signing and encrypting")
    with contextlib.closing(host.mailbox(account.address)) as mailbox:
        assert mailbox.outbox is not None
        if mailbox.outbox.entries() or mailbox.outbox.to_file():
            progress(1, STEPS, "Sending what waited in the outbox")
            with contextlib.suppress(Exception):  # its own submit says what is wrong
                mailbox.flush_outbox()
        submit = mailbox.submit

        def submit_with_progress(*args: Any, **options: Any) -> Any:
            progress(2, STEPS, "Sending")
            return submit(*args, **options)

        # The one step inside compose_send a person waits for: say when it starts.
        mailbox.submit = submit_with_progress  # type: ignore[method-assign]
        outcome = compose_send(
            request,
            keystore=host.keystore,
            book=book,
            mailbox=mailbox,
            **options,
        )
    progress(STEPS, STEPS, "Done" if outcome.status == "sent" else "Kept in the outbox")
    return outcome.to_json()
