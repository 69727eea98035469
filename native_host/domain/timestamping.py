"""RFC 3161 timestamps on our signatures (issue 6, point 6): ask the TSA for a token over a
SignerInfo's signature value and attach it as the id-aa-signatureTimeStampToken unsigned
attribute (RFC 3161 appendix A). Nothing signed changes, so the signature stays valid.

Sending must never fail for want of a timestamp: a TSA that is down, slow, refuses, or answers
with a token that does not fit (other imprint, other nonce, untrusted TSA when anchors are
given) leaves the signature as it was, with a sentence saying why the timestamp is missing.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from native_host.domain.certs import CertsError, Fetch, http_fetch
from native_host.errors import HostError
from shared_pki import mime, tsp
from shared_pki.errors import PkiError
from shared_pki.keys import Certificate

QUERY = "application/timestamp-query"
REPLY = "application/timestamp-reply"
DEFAULT_TIMEOUT = 10.0

__all__ = [
    "TimestampInfo",
    "TimestampMissing",
    "TimestampOutcome",
    "request_token",
    "timestamp_signature",
]


@dataclass(frozen=True)
class TimestampInfo:
    """The token attached: when (genTime), by whom, its serial and policy."""

    gen_time: datetime.datetime
    tsa: str | None
    serial_number: int
    policy: str
    accuracy: datetime.timedelta | None
    token: bytes

    def to_json(self) -> dict[str, object]:
        return {
            "genTime": self.gen_time.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "tsa": self.tsa,
            "serialNumber": str(self.serial_number),
            "policy": self.policy,
        }


def _general_name_text(name: object) -> str | None:
    """A TSTInfo's tsa GeneralName for people: a directory name as "Common Name: ...", any
    other kind as its value (an OpenSSL TSA with tsa_name = yes sends its subject)."""
    try:
        chosen = getattr(name, "chosen", None)
        human = getattr(chosen, "human_friendly", None)
        return str(human) if human else str(getattr(name, "native", name))
    except (ValueError, TypeError):
        return None


class TimestampOutcome(NamedTuple):
    """(data, token, problem): the signed bytes (with the token, or unchanged), what was
    attached (None if nothing), and why not (None on success)."""

    data: bytes
    token: TimestampInfo | None
    problem: str | None


class TimestampMissing(HostError):
    """No usable token could be had; the message is a sentence for people."""

    code = "timestamp_missing"


def request_token(
    signed_data_der: bytes,
    tsa_url: str,
    *,
    fetch: Fetch = http_fetch,
    signer_index: int = 0,
    trust_anchors: Sequence[Certificate] = (),
    timeout: float = DEFAULT_TIMEOUT,
) -> tuple[bytes, TimestampInfo]:
    """Ask the TSA for a token over one signer's signature value; the token (DER) and what it
    says. Raises TimestampMissing (a sentence for people) on any trouble."""
    imprint = tsp.timestamp_imprint(signed_data_der, signer_index)
    query, nonce = tsp.make_request(imprint, nonce=True, cert_req=True)
    try:
        answer = fetch(
            tsa_url,
            method="POST",
            body=query,
            headers={"Content-Type": QUERY, "Accept": REPLY},
            timeout=timeout,
        )
    except CertsError as error:
        raise TimestampMissing(
            f"the time-stamp authority could not be reached: {error.message}"
        ) from None
    if answer.status != 200:
        raise TimestampMissing(f"the time-stamp authority answered HTTP {answer.status}")
    try:
        token = tsp.parse_response(answer.body)
    except PkiError as error:
        raise TimestampMissing(
            f"the time-stamp authority's answer is not usable: {error.message}"
        ) from None
    if token.nonce != nonce:
        raise TimestampMissing("the time-stamp authority's answer is for another request (nonce)")
    tsa = None
    if trust_anchors:
        checked = tsp.verify_token(
            token.der, data_or_imprint=imprint, trust_anchors=trust_anchors, nonce=nonce
        )
        if not checked.valid:
            raise TimestampMissing(checked.summary)
        if checked.certificate is not None:  # named as the reader names it
            tsa = checked.certificate.subject.human_friendly
    if tsa is None and token.tsa_name is not None:
        tsa = _general_name_text(token.tsa_name)
    info = TimestampInfo(
        gen_time=token.gen_time,
        tsa=tsa,
        serial_number=token.serial_number,
        policy=token.policy,
        accuracy=token.accuracy,
        token=token.der,
    )
    return token.der, info


def timestamp_signature(
    signed: bytes,
    tsa_url: str | None,
    fetch: Fetch = http_fetch,
    *,
    signer_index: int = 0,
    trust_anchors: Sequence[Certificate] = (),
    timeout: float = DEFAULT_TIMEOUT,
) -> TimestampOutcome:
    """Attach a TSA token to one signer of `signed`: DER SignedData (detached or not), or a
    whole signed message (multipart/signed or opaque signed-data, outer headers kept). The
    outcome's data is the input unchanged when the timestamp is missing, and `problem` says why.
    trust_anchors, when given, must vouch for the TSA or its token is not attached."""
    missing = "Timestamp missing: {}."
    if not tsa_url:
        return TimestampOutcome(signed, None, missing.format("no time-stamp authority is set"))
    try:
        if signed[:1] == b"\x30":
            der = signed
            rewrap = None
        else:
            layer = mime.unwrap(signed)
            if layer.kind == "multipart_signed":
                assert layer.signature is not None and layer.content is not None
                der, content = layer.signature, layer.content
                micalg = layer.micalg or "sha-256"

                def rewrap(new: bytes) -> bytes:
                    body = mime.wrap_multipart_signed(content, new, micalg)
                    return mime.with_outer_headers(body, layer.outer_headers)

            elif layer.kind == "signed_opaque":
                assert layer.der is not None
                der = layer.der

                def rewrap(new: bytes) -> bytes:
                    body = mime.wrap_pkcs7_mime(new, "signed-data")
                    return mime.with_outer_headers(body, layer.outer_headers)

            else:
                return TimestampOutcome(signed, None, missing.format("the message is not signed"))
        token_der, info = request_token(
            der,
            tsa_url,
            fetch=fetch,
            signer_index=signer_index,
            trust_anchors=trust_anchors,
            timeout=timeout,
        )
        stamped = tsp.attach_token(der, signer_index, token_der)
    except TimestampMissing as why:
        return TimestampOutcome(signed, None, missing.format(str(why).rstrip(".")))
    except (PkiError, IndexError) as error:
        reason = error.message if isinstance(error, PkiError) else str(error)
        return TimestampOutcome(signed, None, missing.format(reason.rstrip(".")))
    return TimestampOutcome(stamped if rewrap is None else rewrap(stamped), info, None)
