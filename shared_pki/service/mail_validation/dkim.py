"""The CA's DKIM signature on challenge mail (config challenge_signing = "dkim"), with dkimpy.
Verifying DKIM (replies here, challenge mail on the host) is shared_pki.net.dkim, re-exported."""

from __future__ import annotations

import base64
import functools
import os
from dataclasses import dataclass
from pathlib import Path

import dkim
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from shared_pki.net.dkim import (
    MIN_KEY_BITS,
    DkimResult,
    DnsFunc,
    aligned,
    verify_dkim,
    zone_resolver,
)

#: Headers the CA's signature covers (those RFC 8823 and a reader look at).
SIGNED_HEADERS = (b"from", b"to", b"subject", b"date", b"message-id", b"auto-submitted",
                  b"reply-to", b"mime-version", b"content-type")  # fmt: skip
SIGNING_KEY_BITS = 2048


@dataclass(frozen=True)
class SigningKey:
    """A DKIM signing identity: d= domain, s= selector, the RSA key (PKCS#1 PEM, as dkimpy
    takes it) and the TXT record to publish at SELECTOR._domainkey.DOMAIN."""

    domain: str
    selector: str
    key_pem: bytes

    @property
    def txt_name(self) -> str:
        return f"{self.selector}._domainkey.{self.domain}"

    @property
    def txt_record(self) -> str:
        key = serialization.load_pem_private_key(self.key_pem, None)
        spki = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return f"v=DKIM1; k=rsa; p={base64.b64encode(spki).decode('ascii')}"


def load_or_create_signing_key(path: Path, *, domain: str, selector: str) -> SigningKey:
    """The DKIM key in `path` (PEM), made (0600) with its TXT record beside it
    (`<stem>.txt`: "NAME TXT-value") on first use, so that an operator can publish it."""
    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), None)
        if not isinstance(key, rsa.RSAPrivateKey) or key.key_size < MIN_KEY_BITS:
            raise ValueError(f"{path} is not an RSA key of at least {MIN_KEY_BITS} bits")
    else:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = rsa.generate_private_key(65537, SIGNING_KEY_BITS)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(_pkcs1(key))
    found = SigningKey(domain.lower(), selector, _pkcs1(key))
    path.with_suffix(".txt").write_text(f"{found.txt_name} {found.txt_record}\n", "utf-8")
    return found


def _pkcs1(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


@functools.cache
def system_has_dns() -> bool:
    """Whether this machine has a resolver to ask (a nameserver in its configuration): what
    dkimpy's own lookups use. Read once per process."""
    try:
        import dns.resolver

        return bool(dns.resolver.Resolver().nameservers)
    except Exception:  # NoResolverConfiguration, an unreadable resolv.conf: no DNS here
        return False


def enforced(mode: str, dnsfunc: DnsFunc | None) -> bool:
    """Whether replies must carry an aligned DKIM signature, for the dkim_required setting:
    on, off, or auto (on when the service has DNS: a zone it was given, or the system's)."""
    if mode == "on":
        return True
    if mode == "off":
        return False
    return dnsfunc is not None or system_has_dns()


def sign_message(message: bytes, key: SigningKey) -> bytes:
    """message (CRLF) with a DKIM-Signature (rsa-sha256, relaxed/relaxed, whole body) first."""
    present = {
        line.split(b":", 1)[0].strip().lower()
        for line in message.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
        if b":" in line and not line[:1].isspace()
    }
    signature = dkim.sign(
        message,
        key.selector.encode("ascii"),
        key.domain.encode("ascii"),
        key.key_pem,
        canonicalize=(b"relaxed", b"relaxed"),
        include_headers=[h for h in SIGNED_HEADERS if h in present],
    )
    return signature + message


__all__ = [
    "DkimResult",
    "DnsFunc",
    "SigningKey",
    "aligned",
    "enforced",
    "load_or_create_signing_key",
    "sign_message",
    "system_has_dns",
    "verify_dkim",
    "zone_resolver",
]
