"""message.open: a raw message (base64) or an IMAP locator (folder + Message-ID) opened with
every key this profile ever held: headers, text, sanitized HTML, attachments (base64; the
host's chunking carries big results), and the security summary."""

from __future__ import annotations

import contextlib
import datetime
from typing import Any

import pybase64

from native_host.errors import BadParams, HostError
from native_host.ops import state
from native_host.ops.state import (
    base64_param,
    bool_param,
    operation,
    progress_of,
    text_param,
)


def _time(moment: datetime.datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _timestamp(stamp: Any) -> dict[str, Any] | None:
    if stamp is None:
        return None
    return {
        "count": stamp.count,
        "valid": stamp.valid,
        "trustedTime": _time(stamp.trusted_time),
        "tsa": stamp.tsa,
        "problems": list(stamp.problems),
        "summary": stamp.summary,
    }


def _signature(signature: Any) -> dict[str, Any]:
    return {
        "valid": signature.valid,
        "signer": signature.signer,
        "signerSubject": signature.signer_subject,
        "fromMatches": signature.from_matches,
        "fromCode": signature.from_code,
        "fromReason": signature.from_reason,
        "chainValid": signature.chain_valid,
        "trusted": signature.trusted,
        "expired": signature.expired,
        "reasons": list(signature.reasons),
        "codes": list(signature.codes),
        "signingTime": _time(signature.signing_time),
        "timestamp": _timestamp(signature.timestamp),
        "harvested": signature.harvested,
        "summary": signature.summary,
        "revocation": {
            "status": signature.revocation.status,
            "summary": signature.revocation.summary,
            "revokedAt": _time(signature.revocation.revoked_at),
            "validAsOf": _time(signature.revocation.valid_as_of),
        },
    }


def view_to_json(view: Any) -> dict[str, Any]:
    security = view.security
    protection = view.header_protection
    return {
        "headers": view.headers,
        "headerProtection": {
            "protected": protection.protected,
            "hp": protection.hp,
            "fields": dict(protection.fields),
            "warnings": [
                {"field": w.field, "severity": w.severity, "message": w.message}
                for w in protection.warnings
            ],
            "legacyDisplayHidden": protection.legacy_display_hidden,
        },
        "text": view.text,
        "html": view.html,
        "remoteImagesBlocked": view.remote_images_blocked,
        "attachments": [
            {
                "name": item.name,
                "contentType": item.content_type,
                "size": item.size,
                "contentId": item.content_id,
                "inline": item.inline,
                "data": pybase64.b64encode(item.data).decode("ascii"),
            }
            for item in view.attachments
        ],
        "security": {
            "encrypted": security.encrypted,
            "decrypted": security.decrypted,
            "cipher": security.cipher,
            "authenticatedCipher": security.authenticated_cipher,
            "suite": security.suite,
            "signed": security.signed,
            "verified": security.verified,
            "signatures": [_signature(s) for s in security.signatures],
            "problem": security.problem,
            "summary": security.summary,
        },
        "problems": list(view.problems),
    }


@operation
def open_message(params: dict[str, Any], ctx: Any) -> dict[str, Any]:
    """Open params.raw (base64 of the message) or the message params.messageId in
    params.folder (default: INBOX, Sent, All Mail) of params.account (default: the only one).
    params.allowRemote loads remote images (https only)."""
    from native_host.domain import reading

    progress = progress_of(ctx)
    host = state.current()
    message_id = text_param(params, "messageId")
    if ("raw" in params) == bool(message_id):
        raise BadParams("Give raw (the message in base64) or messageId, not both.")
    account = text_param(params, "account")
    anchors = host.trust_anchors()
    tsa_anchors = host.tsa_anchors()
    book = None
    with contextlib.suppress(HostError):  # no account or PKI: nothing to harvest into
        book = host.book(account)
    options = {
        "keystore": host.keystore,
        "trust_anchors": anchors,
        "tsa_anchors": tsa_anchors,
        "book": book,
        "allow_remote": bool_param(params, "allowRemote"),
        # the account's CRL cache (revocation not checked, and said so, without an account)
        "crl_store": book.crl_store if book is not None else None,
    }
    if message_id:
        progress(0, 2, "Fetching the message")
        with contextlib.closing(host.mailbox(account)) as mailbox:
            view = reading.open_by_message_id(
                mailbox, message_id, text_param(params, "folder"), **options
            )
    else:
        raw = base64_param(params, "raw")
        progress(1, 2, "Opening")
        view = reading.open_message(raw, **options)  # type: ignore[arg-type]
    progress(2, 2, "Done")
    return view_to_json(view)
