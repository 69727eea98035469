"""The extension's identities, defined once: build.py stamps them into the manifests, the
installer registers them, and the host allows them.

The Chromium id follows from the public key in the manifest's "key" field (the first 32 hex
digits of SHA-256 of the DER SubjectPublicKeyInfo, 0-f mapped to a-p), so every developer and
test profile gets the same id. Only the public half exists; store builds get the store's id,
which `autosmime install --extension-id` adds.
"""

from __future__ import annotations

import base64
import hashlib

HOST_NAME = "org.autosmime.native"
HOST_DESCRIPTION = "autosmime native messaging host (S/MIME for webmail)"

DEV_PUBLIC_KEY_B64 = (
    "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAzSOgvFETn8NIu47SZ9lSTbsDtHk4tVH6"
    "2LyKAJRNYV0MUSh5a2lMXUUS/iNr3hj7jRC4wlEfSVIne3vs2VJQx2z47AUvMk1J0nDzjCW5nRp8"
    "wqbOrX4TEPm1UAf5HsOhQvlHQbc2oTavdXDJ84L6s6R1nP04psLwBETmXJu7nbMQfE9EfPYnXeVR"
    "IM/CPUJvgPIIriprA+w7nQ2vmpr1ZdggxSDfQT7wHyng6WOS3wNj/QDiYOmE8ceYrVj9aW9WLt1W"
    "ZTbGZIJHqd0KFTUrPp5rMGig7BQt3kapLVsd/iUJLUP4NF258D/mopIRAzN29MqIvv3t3S0uiC7H"
    "bSuKXwIDAQAB"
)
GECKO_ID = "autosmime@autosmime.invalid"


def chromium_id(public_key_b64: str = DEV_PUBLIC_KEY_B64) -> str:
    """The Chromium extension id that a manifest "key" yields."""
    digest = hashlib.sha256(base64.b64decode(public_key_b64)).hexdigest()[:32]
    return "".join(chr(ord("a") + int(digit, 16)) for digit in digest)


def chromium_origin(extension_id: str) -> str:
    return f"chrome-extension://{extension_id}/"


def default_allowed() -> dict[str, list[str]]:
    """Callers allowed when no installer-written configuration names others."""
    return {
        "allowed_origins": [chromium_origin(chromium_id())],
        "allowed_extensions": [GECKO_ID],
    }
