"""The dual-algorithm policy: a message is either all-international or all-SM, never a mixture.

Two suites: "intl" (RSA/ECDSA/ECDH, SHA-2, AES) and "sm" (SM2 signatures and key transport,
SM3, SM4-CBC). SM is chosen when the sender prefers it and the sender and every recipient have
a usable SM2 certificate; otherwise international. The same names ("intl", "sm") are used by
the cipher and key-transport registries (their `suite` field), choice.py, smime.py and the
command line (`--suite`).

Pure: certificates in, a Suite out. "Usable" here means what the certificate says about itself
(an SM2 key, inside its validity, a keyUsage that allows what the message needs); whether it
chains to a trusted root is the caller's business (pass `usable=` to add that check).
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from shared_pki import sm_oids
from shared_pki.cms import capabilities
from shared_pki.cms.capabilities import Capability
from shared_pki.errors import EncryptionError, PkiError
from shared_pki.keys import Certificate

INTL = "intl"
SM = "sm"


@dataclass(frozen=True)
class Suite:
    """One family of algorithms: its digest, the content cipher used when a recipient
    advertises nothing, and the SMIMECapabilities a signer of this suite advertises."""

    name: str
    digest: str
    fallback_cipher: str
    advertised: tuple[Capability, ...]

    @property
    def is_sm(self) -> bool:
        return self.name == SM

    def __str__(self) -> str:
        return self.name


INTERNATIONAL_SUITE = Suite(INTL, "sha256", "aes256_cbc", capabilities.ADVERTISED)
SM_SUITE = Suite(
    SM, "sm3", "sm4_cbc", (Capability(sm_oids.SM4_CBC), Capability(sm_oids.SM2_ENCRYPT))
)
SUITES = {INTL: INTERNATIONAL_SUITE, SM: SM_SUITE}


def by_name(name: str | Suite) -> Suite:
    """The suite named "intl" or "sm" (a Suite passes through)."""
    if isinstance(name, Suite):
        return name
    try:
        return SUITES[name]
    except KeyError:
        raise ValueError(f"Unknown suite {name!r} (known: intl, sm).") from None


@dataclass(frozen=True)
class Party:
    """One correspondent (or the sender): their international and SM2 certificates, either
    of which may be missing."""

    intl: Certificate | None = None
    sm: Certificate | None = None

    def certificate(self, suite: Suite | str) -> Certificate | None:
        return self.sm if by_name(suite).is_sm else self.intl


def is_sm2_certificate(certificate: Certificate) -> bool:
    """The certificate holds an SM2 key (id-ecPublicKey on sm2p256v1)."""
    try:
        info = certificate.public_key
        if info["algorithm"]["algorithm"].dotted != "1.2.840.10045.2.1":
            return False
        parameters = info["algorithm"]["parameters"]
        return parameters.name == "named" and parameters.chosen.dotted == sm_oids.SM2_CURVE
    except (ValueError, TypeError, KeyError, AttributeError):
        return False


def suite_of(certificate: Certificate) -> Suite:
    """The suite a certificate's key belongs to."""
    return SM_SUITE if is_sm2_certificate(certificate) else INTERNATIONAL_SUITE


def usable_sm2(
    certificate: Certificate | None,
    *,
    at: datetime.datetime | None = None,
    usages: Sequence[str] = ("key_encipherment",),
) -> bool:
    """An SM2 certificate inside its validity at `at` (default now) whose keyUsage, if
    present, allows every one of `usages`."""
    if certificate is None or not is_sm2_certificate(certificate):
        return False
    when = at or datetime.datetime.now(datetime.UTC)
    try:
        if not certificate.not_valid_before <= when <= certificate.not_valid_after:
            return False
        key_usage = certificate.key_usage_value
    except (ValueError, TypeError, KeyError):
        return False
    return key_usage is None or set(usages) <= set(key_usage.native)


def choose_suite(
    prefer_sm: bool,
    sender: Party,
    recipients: Sequence[Party],
    *,
    signing: bool = False,
    at: datetime.datetime | None = None,
    usable: Callable[[Certificate], bool] | None = None,
) -> Suite:
    """SM when the sender prefers it and the sender and every recipient have a usable SM2
    certificate (for a signed message the sender's must also allow signing); otherwise
    international. `usable` adds the caller's own check (a trusted chain, not revoked)."""
    if not prefer_sm:
        return INTERNATIONAL_SUITE

    def ok(certificate: Certificate | None, usages: Sequence[str]) -> bool:
        return usable_sm2(certificate, at=at, usages=usages) and (
            usable is None or usable(certificate)  # type: ignore[arg-type]
        )

    sender_usages = ("key_encipherment", "digital_signature") if signing else ("key_encipherment",)
    if ok(sender.sm, sender_usages) and all(ok(r.sm, ("key_encipherment",)) for r in recipients):
        return SM_SUITE
    return INTERNATIONAL_SUITE


def certificates_for(suite: Suite | str, parties: Sequence[Party]) -> list[Certificate]:
    """Each party's certificate of the suite, in order; EncryptionError naming the first
    party that has none (a message is never split across suites)."""
    chosen = by_name(suite)
    result = []
    for index, party in enumerate(parties):
        certificate = party.certificate(chosen)
        if certificate is None:
            other = party.intl or party.sm
            who = _describe(other) if other is not None else f"party {index + 1}"
            kind = "SM2" if chosen.is_sm else "international"
            raise EncryptionError(f"{who} has no {kind} certificate for a {chosen} message.")
        result.append(certificate)
    return result


def check_certificates(suite: Suite | str, certificates: Sequence[Certificate]) -> Suite:
    """The suite, after checking that every certificate belongs to it (EncryptionError)."""
    chosen = by_name(suite)
    for certificate in certificates:
        if suite_of(certificate) != chosen:
            raise EncryptionError(
                f"The certificate of {_describe(certificate)} is not for a {chosen} message "
                "(a message is either all-international or all-SM)."
            )
    return chosen


def infer(certificates: Sequence[Certificate]) -> Suite:
    """The one suite all these certificates belong to; EncryptionError if they mix."""
    found = {suite_of(certificate).name for certificate in certificates}
    if len(found) > 1:
        raise EncryptionError(
            "The certificates mix SM2 and international keys: a message is either "
            "all-international or all-SM (choose with suite=, or --suite)."
        )
    return SUITES[found.pop()] if found else INTERNATIONAL_SUITE


def _describe(certificate: Certificate) -> str:
    try:
        return f"'{certificate.subject.human_friendly}'"
    except (ValueError, KeyError, TypeError, PkiError):
        return "a recipient"


def suite_of_key(key: object) -> Suite:
    """The suite a private key signs and decrypts in."""
    from shared_pki.sm2 import SM2PrivateKey

    return SM_SUITE if isinstance(key, SM2PrivateKey) else INTERNATIONAL_SUITE
