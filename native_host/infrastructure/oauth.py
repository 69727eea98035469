"""OAuth 2.0 sign-in to mail providers that refuse passwords (Google, Microsoft): the
authorization code flow with PKCE (RFC 6749, RFC 7636) for a public client, and refresh tokens.

The browser shows the provider's sign-in (`identity.launchWebAuthFlow`); this module builds the
authorization URL, exchanges the code the browser brings back and renews access tokens. It knows
nothing of accounts: `domain.accounts` keeps the refresh token in the keyring and calls `refresh`
when the access token runs out or the mail server refuses it.

Client ids are settings, never built in: an organisation registers its own OAuth client with
Google or Microsoft and gives its id (`autosmime signin-client set`, or a machine-wide
sign-in.json it deploys; see SETTINGS_PATHS). PRESETS hold what every client of a provider shares
(endpoints, scopes, the parameters that make the provider hand out a refresh token).
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import os
import secrets
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from native_host.errors import BadParams, HostError, NotConfigured

DEFAULT_TIMEOUT = 20.0
MAX_ANSWER = 256 * 1024
SETTINGS_FILE = "sign-in.json"
SETTINGS_FORMAT = 1
LOOPBACK = {"127.0.0.1", "::1", "localhost"}

#: The machine-wide settings an organisation deploys with the host (read after the profile's own).
SETTINGS_PATHS = {
    "linux": Path("/etc/autosmime") / SETTINGS_FILE,
    "darwin": Path("/Library/Application Support/autosmime") / SETTINGS_FILE,
    "win32": Path(os.environ.get("PROGRAMDATA", "C:/ProgramData")) / "autosmime" / SETTINGS_FILE,
}

#: What every client of a provider shares. Google hands out a refresh token only with
#: access_type=offline (and again on each consent with prompt=consent); Microsoft with the
#: offline_access scope. `{tenant}`: Microsoft's directory (common: any work, school or
#: personal account).
PRESETS: dict[str, dict[str, Any]] = {
    "google": {
        "name": "Google",
        "authorizationEndpoint": "https://accounts.google.com/o/oauth2/v2/auth",
        "tokenEndpoint": "https://oauth2.googleapis.com/token",
        "scopes": ["https://mail.google.com/"],
        "params": {"access_type": "offline", "prompt": "consent"},
    },
    "microsoft": {
        "name": "Microsoft",
        "authorizationEndpoint": "https://login.microsoftonline.com/{tenant}/oauth2/v2.0/authorize",
        "tokenEndpoint": "https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token",
        "scopes": [
            "https://outlook.office.com/IMAP.AccessAsUser.All",
            "https://outlook.office.com/SMTP.Send",
            "offline_access",
        ],
        "params": {"prompt": "select_account"},
        "tenant": "common",
    },
}


class OAuthError(HostError):
    """A sign-in that could not be done; the message says why."""


class SignInRequired(OAuthError):
    """The provider no longer honours the grant (expired, revoked, password changed): only a
    new sign-in in the browser helps, and the message says so."""

    protocol_code = "sign_in_required"

    def __init__(self, provider_name: str, address: str) -> None:
        super().__init__(
            f"Your sign-in with {provider_name} for {address} has expired or was revoked, so "
            "autosmime cannot reach your mailbox."
        )
        self.provider_name = provider_name
        self.address = address
        self.advice = (
            " Sign in again: open autosmime's setup page (Set up secure mail) and choose "
            f"Sign in with {provider_name}."
        )


@dataclass(frozen=True)
class SignInClient:
    """One provider's endpoints with the organisation's OAuth client."""

    provider: str
    name: str
    authorization_endpoint: str
    token_endpoint: str
    client_id: str
    scopes: tuple[str, ...]
    params: Mapping[str, str] = field(default_factory=dict)
    client_secret: str | None = field(default=None, repr=False)

    @classmethod
    def from_settings(cls, provider: str, entry: Mapping[str, Any]) -> SignInClient:
        """A settings entry, completed from PRESETS for google and microsoft; BadParams when a
        part is missing or an endpoint is not https (http on loopback only)."""
        if not isinstance(entry, Mapping):
            raise BadParams(f"The sign-in settings of {provider} are not an object.")
        merged: dict[str, Any] = {**PRESETS.get(provider, {}), **entry}
        tenant = str(merged.get("tenant") or "common")
        client_id = merged.get("clientId")
        if not isinstance(client_id, str) or not client_id.strip():
            raise BadParams(f"The sign-in settings of {provider} need the OAuth client's id.")
        endpoints = []
        for key in ("authorizationEndpoint", "tokenEndpoint"):
            value = merged.get(key)
            if not isinstance(value, str) or not value:
                raise BadParams(f"The sign-in settings of {provider} need {key}.")
            endpoints.append(check_endpoint(value.replace("{tenant}", tenant)))
        scopes = merged.get("scopes") or []
        params = merged.get("params") or {}
        if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
            raise BadParams(f"The sign-in settings of {provider}: scopes must be a list of text.")
        if not isinstance(params, Mapping):
            raise BadParams(f"The sign-in settings of {provider}: params must be an object.")
        secret = merged.get("clientSecret")
        return cls(
            provider=provider,
            name=str(merged.get("name") or provider),
            authorization_endpoint=endpoints[0],
            token_endpoint=endpoints[1],
            client_id=client_id.strip(),
            scopes=tuple(scopes),
            params={str(k): str(v) for k, v in params.items()},
            client_secret=secret if isinstance(secret, str) and secret else None,
        )

    def to_json(self) -> dict[str, Any]:
        """Everything needed to renew tokens later (the secret too: it is kept in the keyring
        with the refresh token)."""
        document: dict[str, Any] = {
            "provider": self.provider,
            "name": self.name,
            "authorizationEndpoint": self.authorization_endpoint,
            "tokenEndpoint": self.token_endpoint,
            "clientId": self.client_id,
            "scopes": list(self.scopes),
            "params": dict(self.params),
        }
        if self.client_secret:
            document["clientSecret"] = self.client_secret
        return document

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> SignInClient:
        return cls.from_settings(str(document.get("provider") or "provider"), dict(document))


def check_endpoint(url: str) -> str:
    """url if it is https, or http to this computer; else BadParams."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return url
    if parts.scheme == "http" and parts.hostname in LOOPBACK:
        return url
    raise BadParams(f"{url} is not an https address: sign-in endpoints must use https.")


# ---- settings ---------------------------------------------------------------------------------


def settings_paths(profile_root: Path) -> list[Path]:
    """Where sign-in clients are read from, the first that names a provider winning: the
    profile's own file, then the machine-wide one an organisation deploys."""
    machine = SETTINGS_PATHS.get(sys.platform, SETTINGS_PATHS["linux"])
    return [profile_root / SETTINGS_FILE, machine]


def _read_settings(path: Path) -> dict[str, Any]:
    try:
        document = json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as error:
        raise NotConfigured(f"The sign-in settings {path} cannot be read: {error}.") from None
    providers = document.get("providers") if isinstance(document, dict) else None
    if not isinstance(providers, dict):
        raise NotConfigured(f"The sign-in settings {path} have no providers object.")
    return providers


def sign_in_clients(profile_root: Path) -> dict[str, SignInClient]:
    """Every configured sign-in client by provider id."""
    found: dict[str, SignInClient] = {}
    for path in settings_paths(profile_root):
        for provider, entry in _read_settings(path).items():
            if provider not in found:
                found[provider] = SignInClient.from_settings(provider, entry)
    return found


def sign_in_client(profile_root: Path, provider: str) -> SignInClient:
    client = sign_in_clients(profile_root).get(provider)
    if client is None:
        name = PRESETS.get(provider, {}).get("name", provider)
        raise NotConfigured(
            f"Sign in with {name} is not set up on this computer: your organisation registers "
            f"an OAuth client with {name} and gives its id (`autosmime signin-client set "
            f"{provider} --client-id ID`). Until then, use an app password."
        )
    return client


def client_secret_name(provider: str) -> str:
    """The keyring entry of a provider's client secret (`signin-client set --client-secret-stdin`
    keeps it there, never in the settings file)."""
    return f"signin-client-secret:{provider}"


def with_secret(client: SignInClient, keyring: Any, service: str) -> SignInClient:
    """client with its secret from the keyring when the settings gave none."""
    if client.client_secret or keyring is None:
        return client
    secret = keyring.get_password(service, client_secret_name(client.provider))
    return dataclasses.replace(client, client_secret=secret) if secret else client


def save_client_settings(
    profile_root: Path, provider: str, entry: Mapping[str, Any] | None
) -> Path:
    """Sets (or, with None, removes) one provider's entry in the profile's settings file,
    after checking it."""
    from native_host.infrastructure.profile import file_lock, write_private

    if entry is not None:
        SignInClient.from_settings(provider, entry)
    path = profile_root / SETTINGS_FILE
    with file_lock(profile_root / f".{SETTINGS_FILE}.lock"):
        providers = dict(_read_settings(path))
        if entry is None:
            providers.pop(provider, None)
        else:
            providers[provider] = dict(entry)
        body = json.dumps({"format": SETTINGS_FORMAT, "providers": providers}, indent=2)
        write_private(path, (body + "\n").encode("utf-8"))
    return path


# ---- the flow ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tokens:
    access_token: str = field(repr=False)
    refresh_token: str | None = field(repr=False)
    expires_at: float  # epoch seconds

    def to_json(self) -> dict[str, Any]:
        return {
            "accessToken": self.access_token,
            "refreshToken": self.refresh_token,
            "expiresAt": self.expires_at,
        }

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> Tokens:
        return cls(
            str(document.get("accessToken") or ""),
            document.get("refreshToken"),
            float(document.get("expiresAt") or 0),
        )


def new_pkce() -> tuple[str, str]:
    """(code_verifier, S256 code_challenge) per RFC 7636."""
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def new_state() -> str:
    return secrets.token_urlsafe(24)


def authorization_url(
    client: SignInClient,
    redirect_uri: str,
    state: str,
    code_challenge: str,
    login_hint: str | None = None,
) -> str:
    query = {
        "client_id": client.client_id,
        "response_type": "code",
        "redirect_uri": redirect_uri,
        "scope": " ".join(client.scopes),
        "state": state,
        "code_challenge": code_challenge,
        "code_challenge_method": "S256",
        **client.params,
    }
    if login_hint:
        query["login_hint"] = login_hint
    separator = "&" if urllib.parse.urlsplit(client.authorization_endpoint).query else "?"
    return client.authorization_endpoint + separator + urllib.parse.urlencode(query)


def code_from_redirect(redirect_url: str, redirect_uri: str, state: str) -> str:
    """The authorization code in the URL the provider sent the browser back to; OAuthError when
    the person declined, the provider refused, or the answer is not this sign-in's."""
    if not redirect_url.startswith(redirect_uri):
        raise OAuthError("The sign-in came back to an unexpected address; try again.")
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(redirect_url).query))
    if query.get("state") != state:
        raise OAuthError("The sign-in answer does not belong to this sign-in; try again.")
    if "error" in query:
        said = query.get("error_description") or query["error"]
        raise OAuthError(f"The sign-in was not completed: {said}.")
    code = query.get("code")
    if not code:
        raise OAuthError("The sign-in answer has no authorization code; try again.")
    return code


Post = Callable[[str, Mapping[str, str], float], tuple[int, dict[str, Any]]]


def post_form(url: str, fields: Mapping[str, str], timeout: float) -> tuple[int, dict[str, Any]]:
    """POST application/x-www-form-urlencoded; (status, JSON answer). TLS verified."""
    check_endpoint(url)
    body = urllib.parse.urlencode(fields).encode("ascii")
    request = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            status, data = answer.status, answer.read(MAX_ANSWER)
    except urllib.error.HTTPError as error:
        status, data = error.code, error.read(MAX_ANSWER) if error.fp else b""
    except (urllib.error.URLError, OSError) as error:
        where = urllib.parse.urlsplit(url).netloc
        reason = getattr(error, "reason", error)
        raise OAuthError(f"The sign-in server {where} could not be reached: {reason}.") from None
    try:
        document = json.loads(data or b"{}")
    except ValueError:
        document = {}
    return status, document if isinstance(document, dict) else {}


def _token_request(
    client: SignInClient, fields: dict[str, str], post: Post, now: Callable[[], float]
) -> tuple[int, dict[str, Any], float]:
    fields = {**fields, "client_id": client.client_id}
    if client.client_secret:
        fields["client_secret"] = client.client_secret
    asked = now()
    status, document = post(client.token_endpoint, fields, DEFAULT_TIMEOUT)
    return status, document, asked


def _tokens(document: dict[str, Any], asked: float, refresh_token: str | None) -> Tokens:
    access = document.get("access_token")
    if not isinstance(access, str) or not access:
        raise OAuthError("The sign-in server answered without an access token.")
    try:
        lifetime = float(document.get("expires_in", 3600))
    except (TypeError, ValueError):
        lifetime = 3600.0
    renewed = document.get("refresh_token")
    return Tokens(access, renewed if isinstance(renewed, str) else refresh_token, asked + lifetime)


def exchange_code(
    client: SignInClient,
    code: str,
    code_verifier: str,
    redirect_uri: str,
    *,
    post: Post = post_form,
    now: Callable[[], float] = time.time,
) -> Tokens:
    """The tokens for an authorization code (with the PKCE verifier that started it)."""
    status, document, asked = _token_request(
        client,
        {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "code_verifier": code_verifier,
        },
        post,
        now,
    )
    if status != 200:
        said = document.get("error_description") or document.get("error") or f"HTTP {status}"
        raise OAuthError(f"{client.name} did not accept the sign-in: {said}.")
    tokens = _tokens(document, asked, None)
    if not tokens.refresh_token:
        raise OAuthError(
            f"{client.name} gave no refresh token, so autosmime could not stay signed in: "
            "check the OAuth client's settings (offline access)."
        )
    return tokens


def refresh(
    client: SignInClient,
    refresh_token: str,
    address: str,
    *,
    post: Post = post_form,
    now: Callable[[], float] = time.time,
) -> Tokens:
    """A new access token (and the refresh token that now stands, rotated or not).
    SignInRequired when the provider no longer honours the grant."""
    status, document, asked = _token_request(
        client, {"grant_type": "refresh_token", "refresh_token": refresh_token}, post, now
    )
    if status in (400, 401) and document.get("error") in ("invalid_grant", "unauthorized_client"):
        raise SignInRequired(client.name, address)
    if status != 200:
        said = document.get("error_description") or document.get("error") or f"HTTP {status}"
        raise OAuthError(f"{client.name} did not renew the sign-in: {said}.")
    return _tokens(document, asked, refresh_token)
