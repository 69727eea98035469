"""The host's RFC 8555 client for the project's ACME CA (RFC 8823 `email` identifiers).
One cohesive thing: transport, nonces, account key and flows of one protocol client (why it is
ours and not certbot's `acme` package: docs/DESIGN.md, Decisions).

Transport: the standard library's http.client, one kept-alive connection per origin (a stale
kept-alive connection is reopened once). HTTPS is verified, against `tls_ca_file` when the
service runs TLS under a private CA, else the system store; plain http is for loopback and
tests. Every request is a JWS (shared_pki.acme.jws) signed with the account key, ECDSA P-256.

Nonces: the newest `Replay-Nonce` of any answer is used for the next request, else one from
newNonce. A `badNonce` refusal is retried with the nonce that came with it (RFC 8555 6.5), up to
`bad_nonce_retries` times (servers may reject a share of valid nonces, as Pebble does).
`Retry-After` (seconds or an HTTP date) is respected: on 429/503 answers the request is tried
again once it has passed (when it is at most `max_retry_after` away), and polling waits at
least that long between reads of a resource that said it.

Errors are typed and say what happened in words a person can follow:
    AcmeError                 the base; str() is the sentence
      AcmeConnectionError     the service cannot be reached (DNS, refused, timeout)
      AcmeTlsError            the service's HTTPS certificate is not trusted
      AcmeServerError         the service answered with a problem document (`problem`:
                              shared_pki.acme.problems.AcmeProblem, `status`, `retry_after`)
      AcmeTimeout             a poll deadline passed (`status`: what it still was)
      AcmeBadResponse         the answer is not what RFC 8555 says it must be

The account: `AccountKeyStore` keeps one account key per profile and CA (directory URL), sealed
under the profile's master secret in `acme/` (0600), with the account URL once registered.

PKI service trust (`PkiSettings`): the directory URL, the service's roots PEM (configured when
the account is set up, never fetched and trusted on first use) and the TLS CA file; what the
organisation decided about registration (send a `mailto:` contact, the default) and about
challenge mail (addresses of its own CA whose challenge mail is accepted without DKIM or S/MIME
and without RFC 8823's Auto-Submitted and Message-ID); saved in the profile as `pki.json`.
"""

from __future__ import annotations

import base64
import contextlib
import email.utils
import hashlib
import http.client
import json
import socket
import ssl
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.asymmetric import ec

from native_host.errors import HostError
from native_host.infrastructure.profile import Profile, master_secret, private_folder, write_private
from shared_pki.acme import jws
from shared_pki.acme.objects import (
    Account,
    Authorization,
    Challenge,
    Directory,
    Order,
)
from shared_pki.acme.problems import AcmeProblem, ProblemType
from shared_pki.ca.keystore import MIN_LOG2_N, open_key, seal_key
from shared_pki.errors import KeyLoadError
from shared_pki.keys import Certificate, load_certificates

JOSE = "application/jose+json"
PROBLEM = "application/problem+json"
PEM_CHAIN = "application/pem-certificate-chain"
USER_AGENT = "autosmime-native-host/0.1 (RFC 8555; RFC 8823)"
DEFAULT_TIMEOUT = 30.0
BAD_NONCE_RETRIES = 20
#: A Retry-After further away than this is not waited for: the error is raised with it.
MAX_RETRY_AFTER = 60.0
RETRIES_AFTER_BUSY = 3
#: Polling without a Retry-After: start here, double, never above POLL_MAX.
POLL_START = 0.05
POLL_MAX = 1.0
MAX_RESPONSE_BYTES = 1024 * 1024
PKI_SETTINGS_FILE = "pki.json"
ACCOUNT_FOLDER = "acme"


# ---------------------------------------------------------------------------------------------
# Errors

_WORDS: dict[ProblemType, str] = {
    ProblemType.BAD_NONCE: "The certificate authority refused a replayed request number.",
    ProblemType.RATE_LIMITED: "The certificate authority asks to wait before trying again.",
    ProblemType.REJECTED_IDENTIFIER: "The certificate authority will not certify this address.",
    ProblemType.UNSUPPORTED_IDENTIFIER: "The certificate authority does not certify mail "
    "addresses of this kind.",
    ProblemType.INCORRECT_RESPONSE: "The certificate authority did not accept the reply to "
    "its confirmation email.",
    ProblemType.UNAUTHORIZED: "The certificate authority refused: this account may not do that.",
    ProblemType.BAD_CSR: "The certificate authority refused the certificate request.",
    ProblemType.ORDER_NOT_READY: "The certificate order is not ready yet.",
    ProblemType.ACCOUNT_DOES_NOT_EXIST: "The certificate authority does not know this account.",
    ProblemType.SERVER_INTERNAL: "The certificate authority had an internal failure.",
    ProblemType.CONNECTION: "The certificate authority could not deliver its confirmation email.",
    ProblemType.MALFORMED: "The certificate authority did not understand a request.",
}


class AcmeError(HostError):
    """Something went wrong talking to the certificate authority; str() says what."""

    code = "acme_error"


class AcmeConnectionError(AcmeError):
    code = "acme_connection"


class AcmeTlsError(AcmeError):
    code = "acme_tls"


class AcmeBadResponse(AcmeError):
    code = "acme_bad_response"


class AcmeTimeout(AcmeError):
    code = "acme_timeout"

    def __init__(self, message: str, *, status: str | None = None) -> None:
        super().__init__(message)
        self.status = status


class AcmeServerError(AcmeError):
    """The server's problem document, kept whole in `problem` (type, detail, subproblems)."""

    code = "acme_refused"

    def __init__(
        self, problem: AcmeProblem, *, url: str = "", retry_after: float | None = None
    ) -> None:
        self.problem = problem
        self.type = problem.type
        self.status = problem.status
        self.url = url
        self.retry_after = retry_after
        super().__init__(describe_problem(problem))


def describe_problem(problem: AcmeProblem) -> str:
    """A problem document in plain words: what it means, then what the server said."""
    lead = _WORDS.get(problem.type, "The certificate authority refused the request.")
    detail = problem.detail.strip()
    text = f"{lead} It said: {detail}" if detail else lead
    if problem.subproblems:
        text += " (" + "; ".join(sub.detail for sub in problem.subproblems if sub.detail) + ")"
    if not text.endswith((".", ")")):
        text += "."
    return text


def problem_from(document: Mapping[str, Any] | None) -> AcmeProblem | None:
    """An order's or challenge's `error` member as an AcmeProblem (None when absent)."""
    return AcmeProblem.from_json(document) if document else None


# ---------------------------------------------------------------------------------------------
# PKI service settings and the account key


@dataclass(frozen=True)
class PkiSettings:
    """Where the ACME CA is and how it is trusted. `roots_pem`: the service's root CA
    certificates (both families), configured, not fetched; `tls_ca_file`: a PEM file to verify
    the service's HTTPS with (None: the system store; unused for http://). `contact`: register
    with `mailto:` the address (some CAs refuse an account without); `unauthenticated_from`:
    the organisation's own CA addresses whose challenge mail is taken without authentication
    (lowercase)."""

    directory_url: str
    roots_pem: bytes
    tls_ca_file: str | None = None
    contact: bool = True
    unauthenticated_from: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        scheme = urlsplit(self.directory_url).scheme
        if scheme not in ("http", "https"):
            raise ValueError(f"the ACME directory URL must be http(s), not {self.directory_url!r}")
        if not self.roots():
            raise ValueError("the PKI service's roots PEM holds no certificate")
        lowered = tuple(a.strip().lower() for a in self.unauthenticated_from)
        object.__setattr__(self, "unauthenticated_from", lowered)

    def roots(self) -> list[Certificate]:
        try:
            return load_certificates(bytes(self.roots_pem))
        except KeyLoadError as error:
            raise ValueError(f"the PKI roots are not certificates: {error.message}") from None

    @classmethod
    def from_files(
        cls, directory_url: str, roots_file: str | Path, tls_ca_file: str | Path | None = None
    ) -> PkiSettings:
        return cls(
            directory_url,
            Path(roots_file).read_bytes(),
            str(Path(tls_ca_file).resolve()) if tls_ca_file else None,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "directory_url": self.directory_url,
            "roots_pem": self.roots_pem.decode("ascii"),
            "tls_ca_file": self.tls_ca_file,
            "contact": self.contact,
            "unauthenticated_from": list(self.unauthenticated_from),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PkiSettings:
        return cls(
            str(data["directory_url"]),
            str(data["roots_pem"]).encode("ascii"),
            data.get("tls_ca_file") or None,
            bool(data.get("contact", True)),
            tuple(str(a) for a in data.get("unauthenticated_from") or ()),
        )

    def save(self, profile: Profile) -> Path:
        path = profile.root / PKI_SETTINGS_FILE
        write_private(path, json.dumps(self.to_json(), indent=2).encode() + b"\n")
        return path

    @classmethod
    def load(cls, profile: Profile) -> PkiSettings:
        path = profile.root / PKI_SETTINGS_FILE
        try:
            return cls.from_json(json.loads(path.read_text("utf-8")))
        except FileNotFoundError:
            raise AcmeError(
                "No PKI service is configured for this profile (autosmime account add --pki URL "
                "--pki-roots FILE)."
            ) from None
        except (ValueError, KeyError, TypeError) as error:
            raise AcmeError(f"{path} is not a PKI settings file we read: {error}") from None


class AccountKeyStore:
    """One ACME account key per profile and CA, sealed under the master secret:
    `acme/<sha256(directory URL)[:16]>.json` = {"directory", "key" (sealed, base64),
    "account_url" (after registration)}."""

    def __init__(self, profile: Profile, *, secret: bytes | None = None) -> None:
        self.profile = profile
        self.folder = profile.root / ACCOUNT_FOLDER
        self._secret = secret

    def _path(self, directory_url: str) -> Path:
        name = hashlib.sha256(directory_url.encode()).hexdigest()[:16]
        return self.folder / f"{name}.json"

    def _master(self) -> bytes:
        if self._secret is None:
            self._secret = master_secret(self.profile)
        return self._secret

    def load_or_create(self, directory_url: str) -> tuple[ec.EllipticCurvePrivateKey, str | None]:
        """(account key, account URL or None); a new key is sealed and written first."""
        private_folder(self.folder)
        path = self._path(directory_url)
        with self.profile.lock("acme-account"):
            if path.exists():
                data = json.loads(path.read_text("utf-8"))
                key = open_key(base64.b64decode(data["key"]), self._master())
                if not isinstance(key, ec.EllipticCurvePrivateKey):
                    raise AcmeError(f"{path} does not hold an ECDSA account key.")
                return key, data.get("account_url")
            key = ec.generate_private_key(ec.SECP256R1())
            sealed = seal_key(key, self._master(), log2_n=MIN_LOG2_N)
            data = {"directory": directory_url, "key": base64.b64encode(sealed).decode()}
            write_private(path, json.dumps(data, indent=1).encode() + b"\n")
            return key, None

    def remember_url(self, directory_url: str, account_url: str) -> None:
        path = self._path(directory_url)
        with self.profile.lock("acme-account"):
            data = json.loads(path.read_text("utf-8"))
            if data.get("account_url") != account_url:
                data["account_url"] = account_url
                write_private(path, json.dumps(data, indent=1).encode() + b"\n")


# ---------------------------------------------------------------------------------------------
# HTTP


@dataclass(frozen=True)
class Response:
    status: int
    headers: http.client.HTTPMessage
    body: bytes
    url: str

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    @property
    def content_type(self) -> str:
        return (self.header("Content-Type") or "").split(";")[0].strip().lower()

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            raise AcmeBadResponse(f"{self.url} did not answer JSON.") from None


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After value (delta-seconds or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class _Http:
    """Kept-alive connections per origin; errors turned into AcmeConnectionError/AcmeTlsError."""

    def __init__(self, *, timeout: float, tls_ca_file: str | None) -> None:
        self.timeout = timeout
        self.tls_ca_file = tls_ca_file
        self._connections: dict[tuple[str, str, int], http.client.HTTPConnection] = {}
        self._context: ssl.SSLContext | None = None

    def _ssl(self) -> ssl.SSLContext:
        if self._context is None:
            try:
                self._context = ssl.create_default_context(cafile=self.tls_ca_file)
            except (OSError, ssl.SSLError) as error:
                raise AcmeTlsError(
                    f"The CA file {self.tls_ca_file} for the PKI service cannot be loaded "
                    f"({error})."
                ) from None
        return self._context

    def _connection(self, scheme: str, host: str, port: int) -> http.client.HTTPConnection:
        key = (scheme, host, port)
        found = self._connections.get(key)
        if found is None:
            if scheme == "https":
                found = http.client.HTTPSConnection(
                    host, port, timeout=self.timeout, context=self._ssl()
                )
            else:
                found = http.client.HTTPConnection(host, port, timeout=self.timeout)
            self._connections[key] = found
        return found

    def close(self) -> None:
        for connection in self._connections.values():
            with contextlib.suppress(Exception):
                connection.close()
        self._connections.clear()

    def request(
        self,
        method: str,
        url: str,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise AcmeBadResponse(f"{url!r} is not an http(s) URL.")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        target = parts.path or "/"
        if parts.query:
            target += f"?{parts.query}"
        sent_headers = {"User-Agent": USER_AGENT, "Accept-Language": "en", **(headers or {})}
        for attempt in range(2):
            connection = self._connection(parts.scheme, parts.hostname, port)
            reused = connection.sock is not None
            try:
                connection.request(method, target, body=body, headers=sent_headers)
                answer = connection.getresponse()
                data = answer.read(MAX_RESPONSE_BYTES + 1)
            except ssl.SSLCertVerificationError as error:
                self._drop(parts.scheme, parts.hostname, port)
                raise AcmeTlsError(
                    f"The PKI service at {parts.hostname} presented an HTTPS certificate that "
                    f"is not trusted ({error.verify_message}). Configure its CA file."
                ) from None
            except ssl.SSLError as error:
                self._drop(parts.scheme, parts.hostname, port)
                raise AcmeTlsError(
                    f"The TLS connection to the PKI service at {parts.hostname} failed ({error})."
                ) from None
            except (
                http.client.RemoteDisconnected,
                BrokenPipeError,
                ConnectionResetError,
            ) as error:
                self._drop(parts.scheme, parts.hostname, port)
                if reused and attempt == 0:
                    continue  # a kept-alive connection the server had closed: open a new one
                raise AcmeConnectionError(
                    f"The PKI service at {parts.hostname}:{port} dropped the connection "
                    f"({error.__class__.__name__})."
                ) from None
            except socket.gaierror:
                self._drop(parts.scheme, parts.hostname, port)
                raise AcmeConnectionError(
                    f"The PKI service's name {parts.hostname} does not resolve. Check the "
                    "network and the service URL."
                ) from None
            except TimeoutError:
                self._drop(parts.scheme, parts.hostname, port)
                raise AcmeConnectionError(
                    f"The PKI service at {parts.hostname}:{port} did not answer within "
                    f"{self.timeout:g} seconds."
                ) from None
            except (OSError, http.client.HTTPException) as error:
                self._drop(parts.scheme, parts.hostname, port)
                raise AcmeConnectionError(
                    f"The PKI service at {parts.hostname}:{port} cannot be reached ({error})."
                ) from None
            if len(data) > MAX_RESPONSE_BYTES:
                self._drop(parts.scheme, parts.hostname, port)
                raise AcmeBadResponse(f"{url} answered more than {MAX_RESPONSE_BYTES} bytes.")
            if answer.will_close:
                self._drop(parts.scheme, parts.hostname, port)
            return Response(answer.status, answer.headers, data, url)
        raise AssertionError("unreachable")

    def _drop(self, scheme: str, host: str, port: int) -> None:
        connection = self._connections.pop((scheme, host, port), None)
        if connection is not None:
            with contextlib.suppress(Exception):
                connection.close()


# ---------------------------------------------------------------------------------------------
# The client


@dataclass
class AcmeClient:
    """An RFC 8555 client for one directory and one account key. Not thread-safe."""

    directory_url: str
    account_key: Any
    account_url: str | None = None
    tls_ca_file: str | None = None
    timeout: float = DEFAULT_TIMEOUT
    bad_nonce_retries: int = BAD_NONCE_RETRIES
    max_retry_after: float = MAX_RETRY_AFTER
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    _directory: Directory | None = field(default=None, repr=False)
    _nonce: str | None = field(default=None, repr=False)
    _http: _Http | None = field(default=None, repr=False)

    @classmethod
    def for_settings(cls, pki: PkiSettings, account_key: Any, **options: Any) -> AcmeClient:
        return cls(pki.directory_url, account_key, tls_ca_file=pki.tls_ca_file, **options)

    def __enter__(self) -> AcmeClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._http is not None:
            self._http.close()

    @property
    def http(self) -> _Http:
        if self._http is None:
            self._http = _Http(timeout=self.timeout, tls_ca_file=self.tls_ca_file)
        return self._http

    @property
    def thumbprint(self) -> str:
        return jws.thumbprint(self.account_key)

    # ---- plumbing -----------------------------------------------------------------------------

    def directory(self) -> Directory:
        if self._directory is None:
            response = self.http.request("GET", self.directory_url)
            self._take_nonce(response)
            if response.status != 200:
                raise self._error(response)
            try:
                self._directory = Directory.from_json(response.json())
            except AcmeProblem as problem:
                raise AcmeBadResponse(
                    f"{self.directory_url} is not an ACME directory ({problem.detail})."
                ) from None
        return self._directory

    def _take_nonce(self, response: Response) -> None:
        nonce = response.header("Replay-Nonce")
        if nonce:
            self._nonce = nonce.strip()

    def _fresh_nonce(self) -> str:
        if self._nonce:
            nonce, self._nonce = self._nonce, None
            return nonce
        url = self.directory().new_nonce
        response = self.http.request("HEAD", url)
        self._take_nonce(response)
        if response.status not in (200, 204) or not self._nonce:
            raise AcmeBadResponse(f"{url} gave no Replay-Nonce (HTTP {response.status}).")
        nonce, self._nonce = self._nonce, None
        return nonce

    def _error(self, response: Response) -> AcmeError:
        retry_after = parse_retry_after(response.header("Retry-After"))
        if response.content_type == PROBLEM:
            try:
                document = json.loads(response.body)
            except ValueError:
                document = None
            problem = AcmeProblem.from_json(document, status=response.status)
            return AcmeServerError(problem, url=response.url, retry_after=retry_after)
        text = response.body[:200].decode("utf-8", "replace").strip()
        problem = AcmeProblem(
            ProblemType.SERVER_INTERNAL,
            f"HTTP {response.status} from {response.url}" + (f": {text}" if text else ""),
            status=response.status,
        )
        return AcmeServerError(problem, url=response.url, retry_after=retry_after)

    def post(
        self,
        url: str,
        payload: Mapping[str, Any] | None,
        *,
        use_jwk: bool = False,
        accept: str | None = None,
    ) -> Response:
        """A signed POST (payload None: POST-as-GET); retries badNonce and short Retry-Afters.
        Raises AcmeServerError for any answer of 400 or more."""
        if not use_jwk and not self.account_url:
            raise AcmeError("No ACME account yet: register first.")
        bad_nonces = busy = 0
        while True:
            body = jws.serialize(
                jws.sign(
                    payload,
                    key=self.account_key,
                    url=url,
                    nonce=self._fresh_nonce(),
                    kid=None if use_jwk else self.account_url,
                )
            )
            headers = {"Content-Type": JOSE}
            if accept:
                headers["Accept"] = accept
            response = self.http.request("POST", url, body, headers)
            self._take_nonce(response)
            if response.status < 400:
                return response
            error = self._error(response)
            if isinstance(error, AcmeServerError):
                if error.type is ProblemType.BAD_NONCE and bad_nonces < self.bad_nonce_retries:
                    bad_nonces += 1
                    continue  # RFC 8555 6.5: retry with the nonce that came with the refusal
                wait = error.retry_after
                if (
                    response.status in (429, 503)
                    and wait is not None
                    and wait <= self.max_retry_after
                    and busy < RETRIES_AFTER_BUSY
                ):
                    busy += 1
                    self.sleep(wait)
                    continue
            raise error

    def _get_json(self, url: str) -> tuple[Any, Response]:
        response = self.post(url, None)
        return response.json(), response

    # ---- account ------------------------------------------------------------------------------

    def register(
        self, contact: Iterable[str] = (), *, only_existing: bool = False
    ) -> tuple[str, Account]:
        """newAccount (agreeing to the terms): the account for this key, made if needed
        (`only_existing` to find it only). Sets account_url."""
        payload: dict[str, Any] = {"termsOfServiceAgreed": True}
        contacts = list(contact)
        if contacts:
            payload["contact"] = contacts
        if only_existing:
            payload = {"onlyReturnExisting": True}
        response = self.post(self.directory().new_account, payload, use_jwk=True)
        location = response.header("Location")
        if not location:
            raise AcmeBadResponse("newAccount answered without the account's Location.")
        self.account_url = location
        return location, self._parse(Account, response.json(), "account")

    # ---- orders -------------------------------------------------------------------------------

    def new_order(self, address: str) -> tuple[str, Order]:
        """newOrder for one email identifier: (order URL, order)."""
        response = self.post(
            self.directory().new_order, {"identifiers": [{"type": "email", "value": address}]}
        )
        location = response.header("Location")
        if response.status != 201 or not location:
            raise AcmeBadResponse("newOrder did not answer 201 Created with a Location.")
        return location, self._parse(Order, response.json(), "order")

    def order(self, url: str) -> tuple[Order, float | None]:
        """The order now, and the Retry-After the server gave with it (if any)."""
        data, response = self._get_json(url)
        return self._parse(Order, data, "order"), parse_retry_after(response.header("Retry-After"))

    def authorization(self, url: str) -> Authorization:
        data, _ = self._get_json(url)
        return self._parse(Authorization, data, "authorization")

    def challenge(self, url: str) -> tuple[Challenge, float | None]:
        data, response = self._get_json(url)
        return (
            self._parse(Challenge, data, "challenge"),
            parse_retry_after(response.header("Retry-After")),
        )

    def respond(self, challenge_url: str) -> Challenge:
        """Tell the server the challenge can be checked now (POST `{}`)."""
        response = self.post(challenge_url, {})
        return self._parse(Challenge, response.json(), "challenge")

    def poll_challenge(self, url: str, *, timeout: float) -> Challenge:
        """Read the challenge until it is valid or invalid (AcmeServerError with its error for
        invalid); AcmeTimeout after `timeout` seconds."""

        def read() -> tuple[str, Challenge, float | None]:
            challenge, retry_after = self.challenge(url)
            return challenge.status.value, challenge, retry_after

        challenge = self._poll(read, {"valid", "invalid"}, timeout, f"the challenge {url}")
        if challenge.status.value == "invalid":
            raise AcmeServerError(
                problem_from(challenge.error)
                or AcmeProblem(ProblemType.UNAUTHORIZED, "the challenge failed"),
                url=url,
            )
        return challenge

    def poll_order(self, url: str, wanted: Iterable[str], *, timeout: float) -> Order:
        """Read the order until its status is one of `wanted`; an invalid order raises
        AcmeServerError with the order's error; AcmeTimeout after `timeout` seconds."""
        wanted_set = set(wanted)

        def read() -> tuple[str, Order, float | None]:
            order, retry_after = self.order(url)
            return order.status.value, order, retry_after

        order = self._poll(read, wanted_set | {"invalid"}, timeout, f"the order {url}")
        if order.status.value == "invalid" and "invalid" not in wanted_set:
            raise AcmeServerError(
                problem_from(order.error)
                or AcmeProblem(ProblemType.UNAUTHORIZED, "the order became invalid"),
                url=url,
            )
        return order

    def _poll(
        self,
        read: Callable[[], tuple[str, Any, float | None]],
        done: set[str],
        timeout: float,
        what: str,
    ) -> Any:
        deadline = self.clock() + timeout
        pause = POLL_START
        while True:
            status, thing, retry_after = read()
            if status in done:
                return thing
            remaining = deadline - self.clock()
            if remaining <= 0:
                raise AcmeTimeout(
                    f"{what} is still {status} after {timeout:g} seconds.", status=status
                )
            wait = max(pause, retry_after or 0.0)
            self.sleep(min(wait, remaining))
            pause = min(pause * 2, POLL_MAX)

    def finalize(self, order: Order, csr_der: bytes) -> Order:
        response = self.post(order.finalize, {"csr": jws.b64url_encode(csr_der)})
        return self._parse(Order, response.json(), "order")

    def publish(self, certificate_der: bytes) -> None:
        """Publish a certificate from another CA in this CA's certificate directory (its
        `publishCert` extension resource); the account needs a valid authorization for the
        certificate's address."""
        url = self.directory().publish_cert
        if not url:
            raise AcmeError(
                "This certificate authority's directory cannot publish certificates from "
                "elsewhere (its ACME directory has no publishCert)."
            )
        self.post(url, {"certificate": jws.b64url_encode(certificate_der)})

    def certificate_chain(self, url: str) -> list[bytes]:
        """The PEM chain at url as DER certificates, leaf first."""
        response = self.post(url, None, accept=PEM_CHAIN)
        if response.content_type != PEM_CHAIN:
            raise AcmeBadResponse(f"{url} answered {response.content_type!r}, not {PEM_CHAIN}.")
        try:
            chain = load_certificates(response.body)
        except KeyLoadError as error:
            raise AcmeBadResponse(f"{url} holds no usable certificate: {error.message}") from None
        if not chain:
            raise AcmeBadResponse(f"{url} holds no certificate.")
        return [cert.dump() for cert in chain]

    @staticmethod
    def _parse(cls: Any, data: Any, what: str) -> Any:
        try:
            return cls.from_json(data)
        except AcmeProblem as problem:
            raise AcmeBadResponse(f"The server's {what} is malformed: {problem.detail}") from None


__all__ = [
    "AccountKeyStore",
    "AcmeBadResponse",
    "AcmeClient",
    "AcmeConnectionError",
    "AcmeError",
    "AcmeServerError",
    "AcmeTimeout",
    "AcmeTlsError",
    "PkiSettings",
    "describe_problem",
    "parse_retry_after",
    "problem_from",
]
