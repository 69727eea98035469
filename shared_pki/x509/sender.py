"""Whether a signature is from the message's sender: the message's From against the signer's
certificate, decided once, in words.

The rule: the signature matches the sender only when the From field (there must be exactly one)
names exactly one mailbox, and that address, as a reader sees it, is an address of the signer's
certificate (shared_pki.x509.validate.certificate_addresses: the subjectAltName rfc822Names,
else the subject's emailAddress). Anything else is a mismatch with its reason, never "unknown":
- the message names no sender (`undisclosed-recipients:;`, an empty or unreadable From);
- the message names more than one sender (`mallory@example.test, alice@example.test`, or two
  From fields): a signature vouches for one;
- the address differs (`signed by X, but the message says it is from Y`). "As a reader sees
  it" means RFC 2047 encoded words decoded: `=?utf-8?q?alice=40example.test?=` is no addr-spec,
  but mail programs show it as alice@example.test, so that is what the message claims;
- the sender's display name holds another address than the mailbox (`"alice@example.test"
  <mallory@example.test>`), since many readers show only the name.

Comparison, as shared_pki.x509.validate has it for certificate paths: the domain without
regard to case and as IDNA A-labels (IDNA 2008 with UTS 46 mapping, like the CA's identifiers);
the local part exactly, because RFC 5321 section 2.4 leaves its case to the receiving domain
alone. A difference in letter case only gets its own code (`case_mismatch`) so that a viewer
can say so, and is still not a match.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from email.headerregistry import Address, HeaderRegistry

from shared_pki.keys import Certificate
from shared_pki.x509.validate import certificate_addresses

MATCH = "match"
MISMATCH = "mismatch"
CASE_MISMATCH = "case_mismatch"
NAME_MISMATCH = "display_name_mismatch"
NO_SENDER = "no_sender"
SEVERAL_SENDERS = "several_senders"
SIGNER_HAS_NO_ADDRESS = "signer_has_no_address"

_REGISTRY = HeaderRegistry()
_ADDRESS_IN_TEXT = re.compile(r"[^\s<>()\[\],;:\"@]+@[^\s<>()\[\],;:\"@]+\.[^\s<>()\[\],;:\"@.]+")


@dataclass(frozen=True)
class SenderCheck:
    """The decision: `matches`, a stable `code`, the `reason` in words, the one address the
    message names (None when it names none or several) and the certificate's addresses."""

    matches: bool
    code: str
    reason: str
    sender: str | None
    signer_addresses: tuple[str, ...]


def from_field_values(header_block: bytes | str) -> tuple[str, ...]:
    """The value of every From field in a header block, unfolded, as raw text (RFC 2047 words
    still encoded; bytes are read as UTF-8, RFC 6532)."""
    text = (
        header_block.decode("utf-8", "replace") if isinstance(header_block, bytes) else header_block
    )
    lines = text.replace("\r\n", "\n").split("\n")
    values = []
    for index, line in enumerate(lines):
        if not line:
            break  # the end of the header block
        if line[:5].lower() == "from:":
            value = line[5:]
            for continuation in lines[index + 1 :]:
                if continuation[:1] not in (" ", "\t"):
                    break
                value += continuation
            values.append(value.strip())
    return tuple(values)


def check_sender(
    from_values: str | bytes | Iterable[str | bytes], certificate: Certificate
) -> SenderCheck:
    """Whether the signer's certificate is the message's sender. `from_values`: the raw value of
    the From field, or of every From field the message has (see from_field_values)."""
    values = [from_values] if isinstance(from_values, str | bytes) else list(from_values)
    texts = [v.decode("utf-8", "replace") if isinstance(v, bytes) else v for v in values]
    signer = certificate_addresses(certificate)
    if not signer:
        return SenderCheck(
            False,
            SIGNER_HAS_NO_ADDRESS,
            f"Signed by {_subject(certificate)}, whose certificate names no mail address, so it "
            "cannot vouch for any sender.",
            None,
            signer,
        )
    who = " or ".join(signer)
    mailboxes = [mailbox for text in texts for mailbox in _mailboxes(text)]
    if len(texts) > 1 or len(mailboxes) > 1:
        named = ", ".join(_shown(m) for m in mailboxes) or "nobody"
        fields = f" in {len(texts)} From fields" if len(texts) > 1 else ""
        return SenderCheck(
            False,
            SEVERAL_SENDERS,
            f"Signed by {who}, but the message names more than one sender{fields} ({named}); "
            "a signature vouches for one.",
            None,
            signer,
        )
    if not mailboxes:
        return SenderCheck(
            False, NO_SENDER, f"Signed by {who}, but the message names no sender.", None, signer
        )
    mailbox = mailboxes[0]
    sender = _shown(mailbox)
    keys = {_key(address): address for address in signer}
    sender_key = _key(sender)
    if sender_key not in keys:
        folded = {(local.lower(), domain) for local, domain in keys}
        if (sender_key[0].lower(), sender_key[1]) in folded:
            return SenderCheck(
                False,
                CASE_MISMATCH,
                f"Signed by {who}, but the message says it is from {sender}: the two differ in "
                "letter case, which only the receiving domain may call the same mailbox.",
                sender,
                signer,
            )
        return SenderCheck(
            False,
            MISMATCH,
            f"Signed by {who}, but the message says it is from {sender}.",
            sender,
            signer,
        )
    for claimed in _ADDRESS_IN_TEXT.findall(mailbox.display_name or ""):
        claimed_key = _key(claimed)
        if (claimed_key[0].lower(), claimed_key[1]) != (sender_key[0].lower(), sender_key[1]):
            return SenderCheck(
                False,
                NAME_MISMATCH,
                f"Signed by {who}, but the message's sender name says {claimed} (its address "
                f"is {sender}).",
                sender,
                signer,
            )
    named = keys[sender_key]
    return SenderCheck(True, MATCH, f"Signed by {named}, the message's sender.", sender, signer)


def _mailboxes(text: str) -> list[Address]:
    """The mailboxes a From value names, encoded words decoded, groups flattened; entries with
    neither a local part nor a domain (`<>`, unparseable text) name nobody."""
    try:
        header = _REGISTRY("from", " ".join(text.split()))
        addresses = list(header.addresses)
    except (ValueError, TypeError, IndexError, AttributeError):
        return []
    return [a for a in addresses if a.username or a.domain]


def _shown(mailbox: Address) -> str:
    """The address as a reader sees it: an encoded word in place of an address decodes into
    the local part with no domain, and is shown as its text."""
    if mailbox.domain:
        return f"{mailbox.username}@{mailbox.domain}"
    return mailbox.username


def _key(address: str) -> tuple[str, str]:
    """(local part exactly, domain as lowercase A-labels)."""
    local, _, domain = address.strip().rpartition("@")
    return local, _ascii_domain(domain.rstrip("."))


def _ascii_domain(domain: str) -> str:
    if domain.isascii():
        return domain.lower()
    import idna  # IDNA 2008 with UTS 46 mapping, as the CA normalises identifiers

    try:
        return idna.encode(domain, uts46=True, transitional=False).decode("ascii")
    except idna.IDNAError:
        return domain.casefold()  # matches no certificate's (ASCII) domain


def _subject(certificate: Certificate) -> str:
    try:
        return f"'{certificate.subject.human_friendly}'"
    except (ValueError, KeyError, TypeError):
        return "a certificate"
