"""The service's configuration: one TOML file in the data folder, every knob documented here
and in the file written on first start. Command-line options override the file."""

from __future__ import annotations

import dataclasses
import textwrap
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CONFIG_NAME = "pki.toml"
CHALLENGE_SIGNING = ("smime", "dkim", "none")
CHALLENGE_HEADERS = ("rfc8823", "bare")


def _knob(default: Any, doc: str) -> Any:
    return field(default=default, metadata={"doc": doc})


@dataclass
class ServiceConfig:
    """Every knob of `autosmime pki serve`, with its default and what it does."""

    data_dir: Path
    listen_host: str = _knob("127.0.0.1", "Address to listen on; loopback by default.")
    listen_port: int = _knob(8555, "TCP port to listen on.")
    public_url: str = _knob(
        "",
        "URL clients reach the service at: the base of ACME URLs and of the CRL and AIA URLs "
        "in issued certificates. Empty: http://LISTEN_HOST:LISTEN_PORT.",
    )
    db_url: str = _knob(
        "",
        "sqlite:///PATH or postgresql://USER:PASSWORD@HOST:PORT/DB. Empty: pki.sqlite3 in the "
        "data folder.",
    )
    workers: int = _knob(
        1, "Server processes; nonces, orders and serials are shared through the database."
    )
    ca_name: str = _knob("autosmime CA", "Name in the subject of every CA certificate.")
    intl_key_type: str = _knob(
        "ecdsa-p256", "Key type of the international hierarchy: ecdsa-p256 or rsa-3072."
    )
    certificate_days: int = _knob(
        365, "Validity of issued certificates in days (the S/MIME BR allow at most 825)."
    )
    mail_from: str = _knob("", "The CA's From address for RFC 8823 challenge mail.")
    smtp_url: str = _knob(
        "",
        "smtp://USER:PASSWORD@HOST:PORT or smtps://... to send challenges (TLS required except "
        "on loopback).",
    )
    imap_url: str = _knob(
        "", "imap://USER:PASSWORD@HOST:PORT or imaps://... of the CA mailbox to read replies."
    )
    mail_ca_file: str = _knob("", "PEM file of CAs to trust for the mail servers' TLS.")
    dkim_required: str = _knob(
        "auto",
        "DKIM on challenge replies: auto (required when the service has DNS: a nameserver is "
        "configured, or a zone is given to it), on, or off. Off means a reply is accepted on "
        "its RFC 8823 response alone: that proves whoever answered could read the challenge "
        "mail sent to the address, not that the reply came from the address's own mail domain, "
        "so anyone who sees the challenge on its way (a relay, a forwarding or archiving "
        "service) could answer it. Turn it off only where the mail domain signs nothing.",
    )
    imap_poll_seconds: float = _knob(5.0, "Poll interval when the IMAP server has no IDLE.")
    challenge_hours: float = _knob(
        24.0, "Lifetime of a challenge in hours (RFC 8823 and the S/MIME BR: at most 24)."
    )
    directory_rate_per_minute: int = _knob(
        600,
        "Certificate directory lookups allowed per client address per minute, counted in each "
        "server process (a cap on load: counting in the database would cost a write per lookup).",
    )
    # Abuse limits (RFC 8555 section 6.6: rateLimited, 429, Retry-After). Each is counted in the
    # database, so every server process sharing it enforces the same count; 0 turns one off.
    new_accounts_per_ip_per_hour: int = _knob(
        20, "New ACME accounts one client address may create per hour (0: no limit)."
    )
    new_orders_per_account_per_hour: int = _knob(
        100, "New orders one ACME account may place per hour (0: no limit)."
    )
    pending_authorizations_per_account: int = _knob(
        20,
        "Authorizations one ACME account may have pending at once; each pending one has had a "
        "challenge mail sent (0: no limit).",
    )
    challenge_mails_per_address_per_hour: int = _knob(
        3,
        "Challenge mails the CA sends to one address per hour, whichever accounts ask: without "
        "it, anyone could make the CA mail-bomb any address (0: no limit).",
    )
    challenge_mails_per_address_per_day: int = _knob(
        10, "Challenge mails the CA sends to one address per day (0: no limit)."
    )
    directory_misses_per_client_per_hour: int = _knob(
        100,
        "Directory lookups that find nothing, per client address per hour: past it, every "
        "lookup of that client is refused until the hour has passed, so that nobody can probe "
        "which addresses exist (0: no limit).",
    )
    max_request_bytes: int = _knob(
        65536,
        "Largest request body taken, on every path (ACME, TSA, ...): counted as it arrives, "
        "chunked bodies included, and refused with 413 before the rest is read.",
    )
    directory_max_age_seconds: int = _knob(
        60,
        "How long a directory answer may be used before it is revalidated (Cache-Control "
        "max-age; never beyond the newest certificate's expiry). Revalidation with the answer's "
        "ETag costs a 304 without a body, so a renewed or revoked certificate reaches "
        "correspondents within this many seconds.",
    )
    tsa_policy_oid: str = _knob("1.3.6.1.4.1.99999.3161.1", "Policy OID of time-stamp tokens.")
    tsa_accuracy_ms: int = _knob(500, "Accuracy stated in time-stamp tokens, in milliseconds.")
    crl_hours: float = _knob(24.0, "CRLs are reissued this often, and on every revocation.")
    reject_nonce_share: float = _knob(
        0.0, "Pebble-style check for client developers: reject this share of valid nonces."
    )
    validation_delay_seconds: float = _knob(
        0.0, "Pebble-style check: wait this long before validating a challenge."
    )
    reuse_valid_authorizations: bool = _knob(
        True, "Serve new orders from valid authorizations of the same account and address."
    )
    # -- Behaving like another RFC 8823 CA: clients (and our host) are tested against these. --
    acme_path: str = _knob(
        "/acme", "Path of the ACME server under public_url; its directory is PATH/directory."
    )
    certs_path: str = _knob(
        "/certs", "Path of the certificate directory under public_url (PATH/ADDRESS)."
    )
    tsa_path: str = _knob("/tsa", "Path of the RFC 3161 time-stamp authority under public_url.")
    require_contact: bool = _knob(
        False,
        "Refuse newAccount without a mailto: contact ('Contact information is missing'), as "
        "some RFC 8823 CAs do.",
    )
    authorization_per_order: bool = _knob(
        False,
        "Give every order its own authorization and challenge mail, even for an address the "
        "account is validating or has validated (as some RFC 8823 CAs do); no authorization is "
        "reused then, whatever reuse_valid_authorizations says.",
    )
    order_processing_seconds: float = _knob(
        0.0,
        "After finalize the order stays 'processing' this long before its certificate is "
        "issued, as CAs that issue in the background do; clients must poll.",
    )
    offer_sm2: bool = _knob(
        True,
        "Issue SM2 certificates and say so in the ACME directory (meta.smimeSuites). Off: "
        "the directory offers only the international suite and SM2 CSRs are refused (badCSR).",
    )
    challenge_signing: str = _knob(
        "smime",
        "How challenge mail is authenticated: smime (signed by the CA's mail identity), dkim "
        "(a DKIM signature for mail_from's domain with dkim_key_file), or none.",
    )
    dkim_selector: str = _knob("acme", "DKIM selector of challenge mail (challenge_signing=dkim).")
    dkim_key_file: str = _knob(
        "",
        "PEM RSA key for DKIM-signing challenge mail. Empty: DIR/dkim/SELECTOR.key, made on "
        "first start, with the TXT record to publish at SELECTOR._domainkey.DOMAIN beside it "
        "(SELECTOR.txt).",
    )
    challenge_reply_to: str = _knob(
        "",
        "Reply-To of challenge mail: where replies go when mail_from is not the CA mailbox "
        "(empty: replies go to mail_from).",
    )
    challenge_headers: str = _knob(
        "rfc8823",
        "rfc8823: challenge mail carries Auto-Submitted, Message-ID and Date. bare: none of "
        "them, as a minimal implementation sends (replies are then matched without "
        "In-Reply-To).",
    )
    challenge_post_validates_at_once: bool = _knob(
        False,
        "Like some RFC 8823 servers: any POST to a pending challenge, a POST-as-GET too, "
        "starts its validation, which fails at once unless the reply is already in the CA "
        "mailbox.",
    )

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir)
        if not self.public_url:
            self.public_url = f"http://{self.listen_host}:{self.listen_port}"
        self.public_url = self.public_url.rstrip("/")
        if not self.db_url:
            self.db_url = f"sqlite:///{self.data_dir / 'pki.sqlite3'}"
        if not 1 <= self.certificate_days <= 825:
            raise ValueError("certificate_days must be between 1 and 825.")
        if not 0 < self.challenge_hours <= 24:
            raise ValueError("challenge_hours must be more than 0 and at most 24.")
        if not 0 <= self.directory_max_age_seconds <= 86400:
            raise ValueError("directory_max_age_seconds must be from 0 to 86400.")
        if not 0 <= self.reject_nonce_share < 1:
            raise ValueError("reject_nonce_share must be from 0 up to (not including) 1.")
        self.dkim_required = dkim_mode(self.dkim_required)
        if self.max_request_bytes < 1024:
            raise ValueError("max_request_bytes must be at least 1024.")
        for name in LIMITS:
            if int(getattr(self, name)) < 0:
                raise ValueError(f"{name} must be 0 (no limit) or more.")
        for name in ("acme_path", "certs_path", "tsa_path"):
            value = str(getattr(self, name)).rstrip("/")
            if not value.startswith("/") or any(c in value for c in "{}?#% "):
                raise ValueError(f"{name} must be a path such as /acme, not {value!r}.")
            setattr(self, name, value)
        if len({self.acme_path, self.certs_path, self.tsa_path}) != 3:
            raise ValueError("acme_path, certs_path and tsa_path must differ.")
        if self.challenge_signing not in CHALLENGE_SIGNING:
            raise ValueError(f"challenge_signing must be one of {', '.join(CHALLENGE_SIGNING)}.")
        if self.challenge_headers not in CHALLENGE_HEADERS:
            raise ValueError(f"challenge_headers must be one of {', '.join(CHALLENGE_HEADERS)}.")
        if self.order_processing_seconds < 0:
            raise ValueError("order_processing_seconds must not be negative.")


_KNOBS = {f.name: f for f in dataclasses.fields(ServiceConfig)}
#: The abuse limits (0: off).
LIMITS = (
    "new_accounts_per_ip_per_hour",
    "new_orders_per_account_per_hour",
    "pending_authorizations_per_account",
    "challenge_mails_per_address_per_hour",
    "challenge_mails_per_address_per_day",
    "directory_misses_per_client_per_hour",
)
DKIM_MODES = ("auto", "on", "off")


def dkim_mode(value: Any) -> str:
    """auto, on or off (true and false, as older files wrote it, are on and off)."""
    if isinstance(value, bool):
        return "on" if value else "off"
    text = str(value).strip().lower()
    text = {"true": "on", "false": "off", "yes": "on", "no": "off"}.get(text, text)
    if text not in DKIM_MODES:
        raise ValueError(f"dkim_required must be auto, on or off, not {value!r}.")
    return text


def load(data_dir: Path, overrides: dict[str, Any] | None = None) -> ServiceConfig:
    """The configuration file of data_dir (if any), then non-empty overrides."""
    values: dict[str, Any] = {}
    path = Path(data_dir) / CONFIG_NAME
    if path.exists():
        with open(path, "rb") as handle:
            values = tomllib.load(handle)
        unknown = set(values) - set(_KNOBS)
        if unknown:
            raise ValueError(f"{path}: unknown settings {', '.join(sorted(unknown))}.")
    for key, value in (overrides or {}).items():
        if value not in (None, ""):
            values[key] = value
    values["data_dir"] = Path(data_dir)
    return ServiceConfig(**values)


def write_default(config: ServiceConfig) -> Path:
    """Write the configuration file, every knob with its comment and default, unless one exists.
    Knobs derived at start (public_url, db_url) stay empty so that they follow the others."""
    path = config.data_dir / CONFIG_NAME
    if path.exists():
        return path
    lines = ["# autosmime PKI service configuration: every setting, its meaning and default.", ""]
    for name, knob in _KNOBS.items():
        if name == "data_dir":
            continue
        lines += [f"# {line}" for line in textwrap.wrap(knob.metadata["doc"], 96)]
        lines += [f"{name} = {_toml(knob.default)}", ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines), "utf-8")
    return path


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'
