"""RFC 3161 time-stamping without I/O: requests, responses, tokens, and the signature timestamps
of S/MIME (RFC 3161 appendix A, RFC 5816 for ESSCertIDv2). Bytes in, bytes or typed results out;
the HTTP endpoint lives elsewhere and calls `make_response` for every request body it receives.

TSA side: `make_response` answers any bytes with a TimeStampResp, granted with a token or
rejected with the RFC's failInfo; it raises only for the caller's own mistakes (see there).
Client side: `make_request`, `parse_response`, `verify_token`.
S/MIME: `timestamp_imprint` (what to send for one signer), `attach_token`,
`signature_timestamps` and `trusted_times` (what to give `verify(..., trusted_time=...)`).

Digests come from the `shared_pki.cms.digests` registry by OID, so SM3 works once registered.
Tokens are verified through `shared_pki.cms.verify` (signature, messageDigest, contentType,
ESSCertID(v2)) with the chain judged at genTime; the email-specific extendedKeyUsage check of
that path is replaced by the TSA's: a critical extendedKeyUsage whose only purpose is
id-kp-timeStamping (RFC 3161 section 2.3).

Problem codes of a TokenVerification: those of verify.py (bad_signature,
message_digest_mismatch, content_type_mismatch, missing_attribute, signing_certificate_mismatch,
unsupported_algorithm, signer_certificate_missing, untrusted, expired, not_yet_valid, key_usage)
plus extended_key_usage (not a TSA certificate), imprint_mismatch, imprint_algorithm_mismatch,
nonce_mismatch, tsa_name_mismatch, and malformed_token (only from signature_timestamps, for a
token attribute that does not parse).
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from asn1crypto import algos, cms, core, tsp
from asn1crypto import x509 as asn1_x509

from shared_pki import der as _der
from shared_pki import oids as _oids  # noqa: F401  registrations asn1crypto lacks
from shared_pki.cms import digests, signed
from shared_pki.cms.signed import _PARSE_ERRORS, _der_length
from shared_pki.cms.verify import SignerResult, verify
from shared_pki.errors import MalformedInput, PkiError, SigningError, UnsupportedAlgorithm
from shared_pki.keys import Certificate, Credential
from shared_pki.x509.names import same_name
from shared_pki.x509.validate import PathResult, Problem

__all__ = [
    "OID_SIGNATURE_TIME_STAMP_TOKEN",
    "OID_TIME_STAMPING",
    "OID_TST_INFO",
    "Imprint",
    "Problem",
    "RequestRejected",
    "TimestampRejected",
    "TimestampRequest",
    "TimestampToken",
    "TokenVerification",
    "attach_token",
    "fail_info_of",
    "make_request",
    "make_response",
    "parse_request",
    "parse_response",
    "parse_token",
    "rejection",
    "signature_timestamps",
    "timestamp_imprint",
    "trusted_times",
    "verify_token",
]

OID_TST_INFO = "1.2.840.113549.1.9.16.1.4"
OID_SIGNATURE_TIME_STAMP_TOKEN = "1.2.840.113549.1.9.16.2.14"
OID_TIME_STAMPING = "1.3.6.1.5.5.7.3.8"
_OID_SIGNING_CERTIFICATE = "1.2.840.113549.1.9.16.2.12"
_OID_SIGNING_CERTIFICATE_V2 = "1.2.840.113549.1.9.16.2.47"

# RFC 3161 spellings of PKIFailureInfo, mapped to asn1crypto's names (both are accepted).
_FAIL_INFO_NAMES = {
    "badAlg": "bad_alg",
    "badRequest": "bad_request",
    "badDataFormat": "bad_data_format",
    "timeNotAvailable": "time_not_available",
    "unacceptedPolicy": "unaccepted_policy",
    "unacceptedExtension": "unaccepted_extensions",
    "unaccepted_extension": "unaccepted_extensions",
    "addInfoNotAvailable": "add_info_not_available",
    "systemFailure": "system_failure",
}
_GRANTED = ("granted", "granted_with_mods")


class _AlgorithmIdentifier(core.Sequence):
    """Any AlgorithmIdentifier: asn1crypto's DigestAlgorithm refuses non-NULL parameters for
    the SHA-2 family at parse time, which must be answered as badAlg, not as badDataFormat."""

    _fields = [
        ("algorithm", core.ObjectIdentifier),
        ("parameters", core.Any, {"optional": True}),
    ]


class _MessageImprint(core.Sequence):
    _fields = [("hash_algorithm", _AlgorithmIdentifier), ("hashed_message", core.OctetString)]


class _TimeStampReq(core.Sequence):
    """RFC 3161 TimeStampReq with a lenient imprint algorithm (see _AlgorithmIdentifier)."""

    _fields = [
        ("version", tsp.Version),
        ("message_imprint", _MessageImprint),
        ("req_policy", core.ObjectIdentifier, {"optional": True}),
        ("nonce", core.Integer, {"optional": True}),
        ("cert_req", core.Boolean, {"default": False}),
        ("extensions", tsp.Extensions, {"implicit": 0, "optional": True}),
    ]


class _TimeStampResp(core.Sequence):
    """RFC 3161 TimeStampResp: asn1crypto's makes the token mandatory, which a rejection lacks."""

    _fields = [
        ("status", tsp.PKIStatusInfo),
        ("time_stamp_token", cms.ContentInfo, {"optional": True}),
    ]


# ---- errors ------------------------------------------------------------------------------


class RequestRejected(MalformedInput):
    """A request that parses but that the TSA must refuse; `fail_info` is the PKIFailureInfo
    bit (asn1crypto name) to answer with."""

    code = "timestamp_request_rejected"

    def __init__(self, message: str, fail_info: str) -> None:
        super().__init__(message)
        self.fail_info = fail_info


class TimestampRejected(PkiError):
    """The TSA answered without a token: its status, failInfo bits and text."""

    code = "timestamp_rejected"

    def __init__(self, status: str, fail_info: tuple[str, ...], text: str | None) -> None:
        detail = f" ({', '.join(fail_info)})" if fail_info else ""
        said = f": {text}" if text else ""
        super().__init__(f"The time-stamp authority answered {status}{detail}{said}.")
        self.status = status
        self.fail_info = fail_info
        self.text = text


def fail_info_of(error: PkiError) -> str:
    """The PKIFailureInfo bit that answers a request refused with `error`."""
    if isinstance(error, RequestRejected):
        return error.fail_info
    if isinstance(error, UnsupportedAlgorithm):
        return "bad_alg"
    return "bad_data_format"


# ---- imprints ------------------------------------------------------------------------------


class Imprint(bytes):
    """A message imprint already computed: the hash octets, tagged with their digest's name.

    Functions taking `data_or_imprint` hash plain bytes themselves; an Imprint is used as is.
    """

    digest: str

    def __new__(cls, value: bytes, digest: str = "sha256") -> Imprint:
        algorithm = digests.by_name(digest)
        value = bytes(value)
        if len(value) != algorithm.size:
            raise MalformedInput(
                f"A {algorithm.name} imprint has {algorithm.size} octets, not {len(value)}."
            )
        self = super().__new__(cls, value)
        self.digest = algorithm.name
        return self

    def __repr__(self) -> str:
        return f"Imprint({bytes(self).hex()}, {self.digest!r})"


def _imprint(data_or_imprint: bytes, digest: str | None) -> tuple[digests.DigestAlgorithm, bytes]:
    if isinstance(data_or_imprint, Imprint):
        algorithm = digests.by_name(data_or_imprint.digest)
        if digest is not None and digests.by_name(digest).oid != algorithm.oid:
            raise UnsupportedAlgorithm(
                f"The imprint is {algorithm.name}, but {digest} was asked for."
            )
        return algorithm, bytes(data_or_imprint)
    if not isinstance(data_or_imprint, bytes | bytearray | memoryview):
        raise TypeError("Data to timestamp must be bytes (or an Imprint).")
    algorithm = digests.by_name(digest or "sha256")
    return algorithm, algorithm.compute(bytes(data_or_imprint))


def _message_imprint(algorithm: digests.DigestAlgorithm, hashed: bytes) -> tsp.MessageImprint:
    return tsp.MessageImprint(
        {"hash_algorithm": {"algorithm": algorithm.oid}, "hashed_message": hashed}
    )


# ---- requests ------------------------------------------------------------------------------


@dataclass(frozen=True)
class TimestampRequest:
    """A parsed TimeStampReq. `digest` is the registry name of the imprint's algorithm."""

    digest: str
    imprint: bytes
    policy: str | None
    nonce: int | None
    cert_req: bool
    extensions: tuple[str, ...]
    der: bytes

    @property
    def message_imprint(self) -> Imprint:
        return Imprint(self.imprint, self.digest)


def make_request(
    imprint_data_or_digest: bytes,
    *,
    digest: str | None = None,
    nonce: bool | int | None = True,
    cert_req: bool = True,
    policy: str | None = None,
) -> tuple[bytes, int | None]:
    """DER TimeStampReq for data (hashed here with `digest`, SHA-256 by default) or for an
    `Imprint`. nonce=True draws a random 64-bit nonce, an int is used as given, False/None
    sends none. Returns the request and the nonce to check the answer against."""
    algorithm, hashed = _imprint(imprint_data_or_digest, digest)
    if nonce is True:
        value: int | None = secrets.randbelow(2**64 - 1) + 1
    elif nonce is False or nonce is None:
        value = None
    elif isinstance(nonce, int) and nonce >= 0:
        value = nonce
    else:
        raise ValueError("nonce must be True, False, None or a non-negative integer.")
    fields: dict = {"version": "v1", "message_imprint": _message_imprint(algorithm, hashed)}
    if policy is not None:
        fields["req_policy"] = policy
    if value is not None:
        fields["nonce"] = value
    fields["cert_req"] = bool(cert_req)
    return tsp.TimeStampReq(fields).dump(), value


def parse_request(der: bytes) -> TimestampRequest:
    """A TimeStampReq, checked as a TSA must: MalformedInput for bytes that do not parse or an
    imprint of the wrong length, UnsupportedAlgorithm for a digest not in the registry (or with
    parameters other than NULL), RequestRejected(bad_request) for a version other than 1."""
    if not isinstance(der, bytes | bytearray | memoryview):
        raise MalformedInput("A time-stamp request must be bytes.")
    try:
        request = _TimeStampReq.load(bytes(der), strict=True)
        request.native  # noqa: B018  parse everything now
        version = request["version"].native
        hash_algorithm = request["message_imprint"]["hash_algorithm"]
        oid = hash_algorithm["algorithm"].dotted
        parameters = hash_algorithm["parameters"]
        null_parameters = isinstance(parameters, core.Void) or parameters.dump() == b"\x05\x00"
        hashed = request["message_imprint"]["hashed_message"].native
        policy = request["req_policy"].dotted if request["req_policy"].native else None
        nonce = request["nonce"].native
        cert_req = bool(request["cert_req"].native)
        extensions = tuple(ext["extn_id"].dotted for ext in request["extensions"] or ())
    except _PARSE_ERRORS as error:
        raise MalformedInput(f"The time-stamp request does not parse: {error}") from None
    if version != "v1":
        raise RequestRejected(f"Time-stamp request version {version} is not 1.", "bad_request")
    algorithm = digests.by_oid(oid)
    if not null_parameters:
        raise UnsupportedAlgorithm(f"Digest {algorithm.name} with parameters is not supported.")
    if len(hashed) != algorithm.size:
        raise MalformedInput(
            f"The {algorithm.name} imprint has {len(hashed)} octets instead of {algorithm.size}."
        )
    return TimestampRequest(algorithm.name, hashed, policy, nonce, cert_req, extensions, bytes(der))


# ---- responses (TSA side) ---------------------------------------------------------------------


def rejection(
    status: str = "rejection",
    fail_info: str | Iterable[str] | None = None,
    text: str | None = None,
) -> bytes:
    """DER TimeStampResp without a token. status and fail_info take asn1crypto names
    ('rejection', 'bad_alg') or the RFC's ('badAlg'); a granted status needs a token and is
    refused here."""
    if status in _GRANTED or status not in tsp.PKIStatus._map.values():
        raise ValueError(f"{status!r} is not a status for an answer without a token.")
    info: dict = {"status": status}
    if text:
        info["status_string"] = [text]
    if fail_info:
        names = [fail_info] if isinstance(fail_info, str) else list(fail_info)
        bits = {_FAIL_INFO_NAMES.get(name, name) for name in names}
        unknown = bits - set(tsp.PKIFailureInfo._map.values())
        if unknown:
            raise ValueError(f"Unknown PKIFailureInfo {', '.join(sorted(unknown))}.")
        info["fail_info"] = bits
    return _TimeStampResp({"status": info}).dump()


def make_response(
    request_der: bytes,
    *,
    tsa: Credential,
    policy_oid: str,
    serial_number: int,
    gen_time: datetime.datetime,
    accuracy_ms: int | None = 1000,
    include_chain: bool = True,
    accepted_policies: Iterable[str] = (),
    tsa_name: bool = False,
    signing_digest: str = "sha256",
) -> bytes:
    """The TSA's answer to any request bytes: a granted TimeStampResp with a token, or a
    rejection (badDataFormat, badAlg, badRequest, unacceptedPolicy, unacceptedExtension).

    The token is SignedData over a TSTInfo (eContent attached, content type id-ct-TSTInfo)
    signed by `tsa` with `signing_digest`, carrying contentType, signingTime, messageDigest and
    ESS signingCertificateV2. The TSTInfo echoes the imprint and nonce, names the requested
    policy if it is `policy_oid` or one of `accepted_policies` (else `policy_oid`), the
    accuracy (None: none stated), ordering false, and the TSA's subject as `tsa` if tsa_name.
    Certificates: the TSA's (and its chain if include_chain) when the request asks certReq,
    none otherwise (RFC 3161 section 2.4.1).

    Raises SigningError or ValueError only for the caller's mistakes, checked before the
    request is looked at: a naive gen_time, a serial number that is not positive, negative
    accuracy, a TSA certificate without the critical sole id-kp-timeStamping EKU, a key that
    does not match it. An endpoint may answer those with rejection('rejection',
    'system_failure').
    """
    _check_tsa_setup(tsa, serial_number, gen_time, accuracy_ms)
    try:
        request = parse_request(request_der)
    except PkiError as error:
        return rejection("rejection", fail_info_of(error), error.message)
    if request.extensions:
        return rejection(
            "rejection",
            "unaccepted_extensions",
            f"Request extensions are not supported: {', '.join(request.extensions)}.",
        )
    policy = policy_oid
    if request.policy is not None:
        if request.policy not in {policy_oid, *accepted_policies}:
            return rejection(
                "rejection", "unaccepted_policy", f"Policy {request.policy} is not offered."
            )
        policy = request.policy
    algorithm = digests.by_name(request.digest)
    when = gen_time.astimezone(datetime.UTC)
    tst_der = _tst_info(
        policy,
        algorithm,
        request.imprint,
        serial_number,
        when,
        accuracy_ms,
        request.nonce,
        tsa.certificate if tsa_name else None,
    )
    token = _sign_tst_info(tst_der, tsa, signing_digest, when, include_chain, request.cert_req)
    status = tsp.PKIStatusInfo({"status": "granted"}).dump()
    body = status + token
    return b"\x30" + _der_length(len(body)) + body


def _tst_info(
    policy: str,
    algorithm: digests.DigestAlgorithm,
    imprint: bytes,
    serial_number: int,
    when: datetime.datetime,
    accuracy_ms: int | None,
    nonce: int | None,
    named: Certificate | None,
) -> bytes:
    """The DER of a TSTInfo (version 1, ordering false), written field by field around
    asn1crypto's DER of each value: building the asn1crypto tree cost a sixth of a token."""
    fields = [
        _VERSION_1,
        core.ObjectIdentifier(policy).dump(),
        b"".join(
            _der.constructed(
                0x30, [_digest_algorithm_der(algorithm.oid), core.OctetString(imprint).dump()]
            )
        ),
        core.Integer(serial_number).dump(),
        core.GeneralizedTime(when).dump(),
    ]
    if accuracy_ms is not None:
        fields.append(_accuracy_der(accuracy_ms))
    if nonce is not None:
        fields.append(core.Integer(nonce).dump())
    if named is not None:  # tsa [0] EXPLICIT GeneralName
        name = asn1_x509.GeneralName({"directory_name": named.subject}).dump()
        fields += _der.constructed(0xA0, [name])
    return b"".join(_der.constructed(0x30, fields))


_VERSION_1 = core.Integer(1).dump()


@functools.lru_cache(maxsize=8)
def _digest_algorithm_der(oid: str) -> bytes:
    return algos.DigestAlgorithm({"algorithm": oid}).dump()


@functools.lru_cache(maxsize=8)
def _accuracy_der(accuracy_ms: int) -> bytes:
    seconds, millis = divmod(accuracy_ms, 1000)
    return tsp.Accuracy(
        {**({"seconds": seconds} if seconds else {}), **({"millis": millis} if millis else {})}
    ).dump()


def _check_tsa_setup(
    tsa: Credential, serial_number: int, gen_time: datetime.datetime, accuracy_ms: int | None
) -> None:
    if not isinstance(gen_time, datetime.datetime) or gen_time.tzinfo is None:
        raise ValueError("gen_time must be a timezone-aware datetime.")
    if not isinstance(serial_number, int) or serial_number <= 0 or serial_number >= 2**160:
        raise ValueError("serial_number must be a positive integer of at most 160 bits.")
    if accuracy_ms is not None and (not isinstance(accuracy_ms, int) or accuracy_ms <= 0):
        raise ValueError("accuracy_ms must be a positive integer, or None.")
    problem = _eku_problem(tsa.certificate)
    if problem is not None:
        raise SigningError(f"Not a TSA certificate: {problem.message}")


def _sign_tst_info(
    tst_der: bytes,
    tsa: Credential,
    digest: str,
    when: datetime.datetime,
    include_chain: bool,
    cert_req: bool,
) -> bytes:
    """ContentInfo(SignedData) with the TSTInfo as attached eContent."""
    signer = Credential(tsa.key, tsa.certificate, tsa.chain if include_chain else ())
    return signed.sign(
        tst_der,
        signer,
        digest=digest,
        detached=False,
        signing_time=when,
        capabilities=(),
        content_type=OID_TST_INFO,
        include_certificates=cert_req,
    )


# ---- tokens (client side) ---------------------------------------------------------------------


@dataclass(frozen=True)
class TimestampToken:
    """A parsed token (not yet verified). `digest` is the imprint algorithm's registry name, or
    its dotted OID when the registry does not know it; `accuracy` None when not stated."""

    der: bytes
    tst_info: bytes
    gen_time: datetime.datetime
    serial_number: int
    policy: str
    digest: str
    digest_oid: str
    imprint: bytes
    nonce: int | None
    accuracy: datetime.timedelta | None
    ordering: bool
    tsa_name: asn1_x509.GeneralName | None
    status: str = "granted"
    status_text: str | None = None


def parse_response(der: bytes) -> TimestampToken:
    """The token of a granted TimeStampResp. TimestampRejected for any other status (with the
    TSA's failInfo and text), MalformedInput for bytes that do not parse or a granted answer
    without a valid token."""
    if not isinstance(der, bytes | bytearray | memoryview):
        raise MalformedInput("A time-stamp response must be bytes.")
    try:
        response = _TimeStampResp.load(bytes(der), strict=True)
        status_info = response["status"]
        status = status_info["status"].native
        texts = status_info["status_string"].native or []
        fail_bits = status_info["fail_info"].native
        token = response["time_stamp_token"]
        has_token = not isinstance(token, core.Void)
        token_der = token.dump() if has_token else b""
    except _PARSE_ERRORS as error:
        raise MalformedInput(f"The time-stamp response does not parse: {error}") from None
    if not isinstance(status, str):
        raise MalformedInput(f"Unknown PKIStatus {status}.")
    text = " ".join(texts) or None
    if status not in _GRANTED:
        raise TimestampRejected(status, tuple(sorted(fail_bits or ())), text)
    if not has_token:
        raise MalformedInput("A granted time-stamp response carries no token.")
    parsed = parse_token(token_der)
    return dataclasses.replace(parsed, status=status, status_text=text)


def parse_token(token_der: bytes) -> TimestampToken:
    """A TimeStampToken (ContentInfo(SignedData) over a TSTInfo), parsed, not verified."""
    signed_data = signed.load_signed_data(token_der)
    encap = signed_data["encap_content_info"]
    if encap["content_type"].dotted != OID_TST_INFO:
        raise MalformedInput(
            f"Not a time-stamp token: content type {encap['content_type'].dotted}."
        )
    if isinstance(encap["content"], core.Void):
        raise MalformedInput("The time-stamp token carries no TSTInfo.")
    if len(signed_data["signer_infos"]) != 1:
        raise MalformedInput("A time-stamp token must have exactly one signer.")
    try:
        tst_der = bytes(encap["content"])
        tst = tsp.TSTInfo.load(tst_der, strict=True)
        tst.native  # noqa: B018
        version = tst["version"].native
        imprint = tst["message_imprint"]
        oid = imprint["hash_algorithm"]["algorithm"].dotted
        gen_time = tst["gen_time"].native
        accuracy = _accuracy(tst["accuracy"])
        tsa_name = None if isinstance(tst["tsa"], core.Void) else tst["tsa"]
        fields = {
            "serial_number": tst["serial_number"].native,
            "policy": tst["policy"].dotted,
            "imprint": imprint["hashed_message"].native,
            "nonce": tst["nonce"].native,
            "ordering": bool(tst["ordering"].native),
        }
    except _PARSE_ERRORS as error:
        raise MalformedInput(f"The TSTInfo does not parse: {error}") from None
    if version != "v1":
        raise MalformedInput(f"TSTInfo version {version} is not 1.")
    if gen_time.tzinfo is None:
        gen_time = gen_time.replace(tzinfo=datetime.UTC)
    try:
        name = digests.by_oid(oid).name
    except UnsupportedAlgorithm:
        name = oid
    return TimestampToken(
        der=bytes(token_der),
        tst_info=tst_der,
        gen_time=gen_time,
        digest=name,
        digest_oid=oid,
        accuracy=accuracy,
        tsa_name=tsa_name,
        **fields,
    )


def _accuracy(value: core.Asn1Value) -> datetime.timedelta | None:
    if isinstance(value, core.Void):
        return None
    parts = value.native
    return datetime.timedelta(
        seconds=parts["seconds"] or 0,
        milliseconds=parts["millis"] or 0,
        microseconds=parts["micros"] or 0,
    )


@dataclass(frozen=True)
class TokenVerification:
    """What holds for one token. Checks that could not be made are None; `valid` means no
    problem at all, and only then is `trusted_time` (genTime) set."""

    token: TimestampToken | None
    certificate: Certificate | None
    signature_ok: bool
    message_digest_ok: bool | None
    signing_certificate_ok: bool | None
    eku_ok: bool | None
    imprint_ok: bool | None
    nonce_ok: bool | None
    chain: PathResult | None
    problems: tuple[Problem, ...]
    signer: SignerResult | None = None
    signer_index: int | None = None

    @property
    def valid(self) -> bool:
        return not self.problems

    @property
    def codes(self) -> tuple[str, ...]:
        return tuple(problem.code for problem in self.problems)

    @property
    def gen_time(self) -> datetime.datetime | None:
        return self.token.gen_time if self.token else None

    @property
    def trusted_time(self) -> datetime.datetime | None:
        return self.gen_time if self.valid else None

    @property
    def serial_number(self) -> int | None:
        return self.token.serial_number if self.token else None

    @property
    def policy(self) -> str | None:
        return self.token.policy if self.token else None

    @property
    def accuracy(self) -> datetime.timedelta | None:
        return self.token.accuracy if self.token else None

    @property
    def nonce(self) -> int | None:
        return self.token.nonce if self.token else None

    @property
    def summary(self) -> str:
        if self.valid and self.gen_time is not None:
            return f"Valid timestamp: {self.gen_time:%Y-%m-%d %H:%M:%S} UTC."
        reasons = "; ".join(problem.message.rstrip(".") for problem in self.problems)
        return f"Timestamp not valid: {reasons}."


def verify_token(
    token_der: bytes,
    *,
    data_or_imprint: bytes,
    trust_anchors: Sequence[Certificate],
    intermediates: Iterable[Certificate] = (),
    nonce: int | None = None,
    digest: str | None = None,
) -> TokenVerification:
    """Verify a TimeStampToken for data (hashed with the token's algorithm) or an `Imprint`.

    nonce: the one sent, which the token must echo. digest: the imprint algorithm the caller
    requires. intermediates: certificates to find the TSA's with (its own if the token was
    requested without certReq). MalformedInput if the bytes are not a token.
    """
    token = parse_token(token_der)
    result = verify(
        _detached(token_der),
        content=token.tst_info,
        trust_anchors=trust_anchors,
        intermediates=list(intermediates),
        at=token.gen_time,
    )
    signer = result.signers[0]
    cert = signer.certificate
    # verify.py judges the end entity as an S/MIME signer; a TSA has its own EKU rule.
    problems = [p for p in signer.problems if p.code != "extended_key_usage"]

    if not _has_signing_certificate(token_der):
        problems.append(
            Problem(
                "missing_attribute",
                "The token has no ESS signingCertificate(V2) attribute (RFC 3161, RFC 5816).",
            )
        )
    eku_ok = None
    if cert is not None:
        eku_problem = _eku_problem(cert)
        eku_ok = eku_problem is None
        if eku_problem is not None:
            problems.append(eku_problem)
        name_problem = _tsa_name_problem(token.tsa_name, cert)
        if name_problem is not None:
            problems.append(name_problem)

    imprint_ok = _check_imprint(token, data_or_imprint, digest, problems)
    nonce_ok = None
    if nonce is not None:
        nonce_ok = token.nonce == nonce
        if not nonce_ok:
            got = "none" if token.nonce is None else "another"
            problems.append(Problem("nonce_mismatch", f"The token carries {got} nonce."))

    return TokenVerification(
        token=token,
        certificate=cert,
        signature_ok=signer.signature_ok,
        message_digest_ok=signer.message_digest_ok,
        signing_certificate_ok=signer.signing_certificate_ok,
        eku_ok=eku_ok,
        imprint_ok=imprint_ok,
        nonce_ok=nonce_ok,
        chain=signer.chain,
        problems=tuple(problems),
        signer=signer,
    )


def _detached(token_der: bytes) -> bytes:
    """The token without its eContent (verify.py reads only OCTET STRING content as bytes;
    the TSTInfo octets are passed beside it, and the signature does not cover eContent)."""
    info = cms.ContentInfo.load(token_der)
    signed_data = info["content"]
    signed_data["encap_content_info"] = {"content_type": OID_TST_INFO}
    return cms.ContentInfo({"content_type": "signed_data", "content": signed_data}).dump()


def _has_signing_certificate(token_der: bytes) -> bool:
    info = signed.signer_info(token_der, 0)
    attrs = info["signed_attrs"]
    if isinstance(attrs, core.Void):
        return False
    wanted = {_OID_SIGNING_CERTIFICATE, _OID_SIGNING_CERTIFICATE_V2}
    return any(attr["type"].dotted in wanted for attr in attrs)


def _eku_problem(cert: Certificate) -> Problem | None:
    """RFC 3161 section 2.3: extendedKeyUsage present, critical, id-kp-timeStamping only."""
    try:
        ekus = cert.extended_key_usage_value
        critical = "extended_key_usage" in cert.critical_extensions
        purposes = [] if ekus is None else [purpose.dotted for purpose in ekus]
    except _PARSE_ERRORS:
        return Problem("extended_key_usage", "The TSA certificate's extendedKeyUsage is broken.")
    if ekus is None:
        return Problem("extended_key_usage", "The TSA certificate has no extendedKeyUsage.")
    if purposes != [OID_TIME_STAMPING]:
        return Problem(
            "extended_key_usage",
            "The TSA certificate's extendedKeyUsage is not id-kp-timeStamping alone.",
        )
    if not critical:
        return Problem(
            "extended_key_usage", "The TSA certificate's extendedKeyUsage is not critical."
        )
    return None


def _tsa_name_problem(name: asn1_x509.GeneralName | None, cert: Certificate) -> Problem | None:
    """RFC 3161: a tsa field names the TSA certificate's subject (or one of its altNames)."""
    if name is None:
        return None
    if name.name == "directory_name" and same_name(name.chosen, cert.subject):
        return None
    alt_names = cert.subject_alt_name_value
    if alt_names is not None and any(alt.dump() == name.dump() for alt in alt_names):
        return None
    return Problem("tsa_name_mismatch", "The token's TSA name is not its certificate's.")


def _check_imprint(
    token: TimestampToken, data_or_imprint: bytes, digest: str | None, problems: list[Problem]
) -> bool | None:
    try:
        algorithm = digests.by_oid(token.digest_oid)
    except UnsupportedAlgorithm as error:
        problems.append(Problem("unsupported_algorithm", error.message))
        return None
    if digest is not None and digests.by_name(digest).oid != algorithm.oid:
        problems.append(
            Problem(
                "imprint_algorithm_mismatch",
                f"The token's imprint is {algorithm.name}, not the required {digest}.",
            )
        )
    if isinstance(data_or_imprint, Imprint):
        if digests.by_name(data_or_imprint.digest).oid != algorithm.oid:
            problems.append(
                Problem(
                    "imprint_mismatch",
                    f"The token's imprint is {algorithm.name}, the expected one "
                    f"{data_or_imprint.digest}.",
                )
            )
            return False
        expected = bytes(data_or_imprint)
    else:
        expected = algorithm.compute(bytes(data_or_imprint))
    if expected != token.imprint:
        problems.append(Problem("imprint_mismatch", "The token timestamps other data than this."))
        return False
    return True


# ---- signature timestamps (RFC 3161 appendix A) ---------------------------------------------


def timestamp_imprint(
    signed_data_der: bytes, signer_index: int = 0, digest: str = "sha256"
) -> Imprint:
    """The imprint to timestamp one signer with: the hash of its signature value."""
    algorithm = digests.by_name(digest)
    return Imprint(
        algorithm.compute(signed.signature_value(signed_data_der, signer_index)), algorithm.name
    )


def attach_token(signed_data_der: bytes, signer_index: int, token_der: bytes) -> bytes:
    """The SignedData with the token as that signer's id-aa-signatureTimeStampToken; the
    signature stays valid. MalformedInput if the token is not one, or timestamps anything
    but this signer's signature value."""
    token = parse_token(token_der)
    algorithm = digests.by_oid(token.digest_oid)
    value = signed.signature_value(signed_data_der, signer_index)
    if algorithm.compute(value) != token.imprint:
        raise MalformedInput(f"The token does not timestamp signer {signer_index}'s signature.")
    return signed.add_unsigned_attribute(
        signed_data_der, signer_index, OID_SIGNATURE_TIME_STAMP_TOKEN, token_der
    )


def signature_timestamps(
    signed_data_der: bytes,
    trust_anchors: Sequence[Certificate],
    *,
    intermediates: Iterable[Certificate] = (),
    digest: str | None = None,
) -> list[tuple[TokenVerification, ...]]:
    """Per signer (by index), every signatureTimeStampToken verified against THAT signer's
    signature value, so a token moved from another signature fails with imprint_mismatch.
    A token that does not parse is reported as malformed_token rather than raised."""
    signed_data = signed.load_signed_data(signed_data_der)
    message_certs = [
        choice.chosen
        for choice in (signed_data["certificates"] or ())
        if choice.name == "certificate"
    ]
    pool = [*intermediates, *message_certs]
    results: list[tuple[TokenVerification, ...]] = []
    for index, info in enumerate(signed_data["signer_infos"]):
        value = info["signature"].native
        found = []
        for attribute in info["unsigned_attrs"] or ():
            if attribute["type"].dotted != OID_SIGNATURE_TIME_STAMP_TOKEN:
                continue
            for token in attribute["values"]:
                found.append(
                    _signature_token(index, token.dump(), value, trust_anchors, pool, digest)
                )
        results.append(tuple(found))
    return results


def _signature_token(
    index: int,
    token_der: bytes,
    signature: bytes,
    anchors: Sequence[Certificate],
    pool: list[Certificate],
    digest: str | None,
) -> TokenVerification:
    try:
        checked = verify_token(
            token_der,
            data_or_imprint=signature,
            trust_anchors=anchors,
            intermediates=pool,
            digest=digest,
        )
    except MalformedInput as error:
        return TokenVerification(
            token=None,
            certificate=None,
            signature_ok=False,
            message_digest_ok=None,
            signing_certificate_ok=None,
            eku_ok=None,
            imprint_ok=None,
            nonce_ok=None,
            chain=None,
            problems=(Problem("malformed_token", error.message),),
            signer_index=index,
        )
    return dataclasses.replace(checked, signer_index=index)


def trusted_times(
    timestamps: Sequence[Sequence[TokenVerification]],
) -> dict[int, datetime.datetime]:
    """Signer index -> earliest genTime of its valid tokens: `verify(trusted_time=...)`."""
    times: dict[int, datetime.datetime] = {}
    for index, tokens in enumerate(timestamps):
        good = [token.gen_time for token in tokens if token.valid and token.gen_time]
        if good:
            times[index] = min(good)
    return times
