"""RFC 9788 header protection for message.open (shared_pki.header_protection does the reading):
which header block the signer must match, and what a viewer is told about the headers shown.
Kept apart from reading.py, which peels the layers, so each stays one job."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from shared_pki import header_protection, mime, smime
from shared_pki.cms.verify import VerificationResult
from shared_pki.errors import PkiError

__all__ = ["HeaderProtectionView", "read_payload", "sender_block", "view_of"]


@dataclass(frozen=True)
class HeaderProtectionView:
    """What a viewer shows of RFC 9788: whether the headers came from inside the signature or
    encryption, how each reached us (ReadHeaders.protection_of: "signed and encrypted",
    "encrypted", "signed", "unprotected"), and what differs from the outside, in words."""

    protected: bool = False
    hp: str | None = None
    fields: dict[str, str] = field(default_factory=dict)
    warnings: tuple[header_protection.Discrepancy, ...] = ()
    legacy_display_hidden: int = 0


def sender_block(outer: bytes, content: bytes | None) -> bytes:
    """The header block whose From the signer must match: the signed content's own fields when
    it is an RFC 9788 payload (hp="clear" or "cipher") that names a From, since the signature
    covers those; else the message's outer ones."""
    if content is None:
        return outer
    try:
        inner = mime.outer_headers(content)
        if not inner or smime.from_address(inner) is None:
            return outer
        return inner if header_protection.hp_of(content) is not None else outer
    except PkiError:
        return outer


def read_payload(
    outer: bytes,
    payload: bytes | None,
    *,
    encrypted: bool,
    signatures: Sequence[VerificationResult],
) -> header_protection.ReadHeaders | None:
    """header_protection.read of the opened payload; None when nothing was opened (not
    decrypted) or it cannot be read as MIME (the outer fields are then shown, as ever)."""
    if payload is None:
        return None
    try:
        return header_protection.read(
            outer,
            payload,
            encrypted=encrypted,
            signature_valid=bool(signatures) and all(r.valid for r in signatures),
        )
    except PkiError:
        return None


def view_of(read: header_protection.ReadHeaders | None) -> HeaderProtectionView:
    if read is None:
        return HeaderProtectionView()
    if not read.protected:
        return HeaderProtectionView(warnings=read.discrepancies)
    return HeaderProtectionView(
        True,
        read.hp,
        {name: read.protection_of(name) for name in read.shown()},
        read.discrepancies,
        read.legacy_display_hidden,
    )
