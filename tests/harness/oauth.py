"""A real OAuth 2.0 authorization server on loopback: npm `oidc-provider` (tests/oauth/server.mjs,
installed from tests/oauth/package-lock.json by `npm ci` on first use).

It issues authorization codes (PKCE required), access tokens, rotating refresh tokens, revokes
them (RFC 7009) and answers token introspection (RFC 7662) for Dovecot's oauth2 passdb, which
validates every XOAUTH2 login of the OAuth mail stack (harness.mail.MailStack with `oauth=`).
Sign-in is oidc-provider's development interaction: a login form (the login becomes the token's
subject, so the person types their address) and a consent page; a browser test fills them in,
`authorize()` walks them over HTTP for tests without a browser.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import threading
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.mail import HarnessError, stop_process_tree

OAUTH_DIR = Path(__file__).resolve().parents[1] / "oauth"
#: The public client the extension (and the host) use: PKCE, no secret.
CLIENT_ID = "autosmime-test"
#: The same, but its access tokens end after SHORT_TTL seconds (tokens that run out early).
SHORT_CLIENT_ID = "autosmime-short"
SHORT_TTL = 2
#: The confidential client Dovecot introspects tokens with.
INTROSPECTION_CLIENT = ("dovecot", "dovecot-introspection-secret")
SCOPES = ("openid", "email", "offline_access")


def ensure_installed() -> Path:
    """tests/oauth/node_modules, installed from the lockfile when missing."""
    if not (OAUTH_DIR / "node_modules" / "oidc-provider").is_dir():
        npm = shutil.which("npm")
        if npm is None:
            raise HarnessError("npm is not installed: the OAuth tests need Node.js and npm")
        done = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=OAUTH_DIR,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise HarnessError(f"npm ci in {OAUTH_DIR} failed:\n{done.stdout}\n{done.stderr}")
    return OAUTH_DIR


@dataclass(frozen=True)
class Provider:
    """What the host's sign-in settings say about this server (a custom provider entry)."""

    id: str
    name: str
    authorization_endpoint: str
    token_endpoint: str
    client_id: str
    scopes: tuple[str, ...]
    #: oidc-provider, like Google, hands out a refresh token only after an explicit consent.
    params: tuple[tuple[str, str], ...] = (("prompt", "consent"),)

    def settings(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "authorizationEndpoint": self.authorization_endpoint,
            "tokenEndpoint": self.token_endpoint,
            "clientId": self.client_id,
            "scopes": list(self.scopes),
            "params": dict(self.params),
        }

    def cli_arguments(self) -> list[str]:
        """`autosmime signin-client set` arguments that set this provider up."""
        arguments = ["set", self.id, "--client-id", self.client_id, "--name", self.name]
        arguments += ["--authorize-url", self.authorization_endpoint]
        arguments += ["--token-url", self.token_endpoint]
        for scope in self.scopes:
            arguments += ["--scope", scope]
        for key, value in self.params:
            arguments += ["--param", f"{key}={value}"]
        return arguments


class OAuthServer:
    """oidc-provider in a Node process. redirect_uris: where the public client may be sent back
    (the browsers' extension redirect URLs). access_token_ttl: seconds."""

    def __init__(self, redirect_uris: list[str], *, access_token_ttl: int = 3600) -> None:
        self.redirect_uris = redirect_uris
        self.access_token_ttl = access_token_ttl
        self.issuer = ""
        self.port = 0
        self._process: subprocess.Popen[str] | None = None
        self._log: list[str] = []

    def start(self) -> OAuthServer:
        node = shutil.which("node")
        if node is None:
            raise HarnessError("node is not installed: the OAuth tests need Node.js")
        ensure_installed()
        public = [
            {
                "client_id": client_id,
                "token_endpoint_auth_method": "none",
                "redirect_uris": self.redirect_uris,
                "grant_types": ["authorization_code", "refresh_token"],
                "response_types": ["code"],
            }
            for client_id in (CLIENT_ID, SHORT_CLIENT_ID)
        ]
        config = {
            "accessTokenTtl": self.access_token_ttl,
            "shortLived": {SHORT_CLIENT_ID: SHORT_TTL},
            "clients": [
                *public,
                {
                    "client_id": INTROSPECTION_CLIENT[0],
                    "client_secret": INTROSPECTION_CLIENT[1],
                    "token_endpoint_auth_method": "client_secret_basic",
                    "redirect_uris": [],
                    "grant_types": [],
                    "response_types": [],
                },
            ],
        }
        self._process = subprocess.Popen(
            [node, str(OAUTH_DIR / "server.mjs"), json.dumps(config)],
            cwd=OAUTH_DIR,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        line = self._process.stdout.readline() if self._process.stdout else ""
        if not line:
            stderr = self._process.stderr.read() if self._process.stderr else ""
            self.stop()
            raise HarnessError(f"the OAuth server did not start:\n{stderr}")
        started = json.loads(line)
        self.issuer, self.port = started["issuer"], started["port"]
        threading.Thread(target=self._drain, daemon=True).start()
        return self

    def _drain(self) -> None:
        process = self._process
        if process is not None and process.stderr is not None:
            for line in process.stderr:
                self._log.append(line)

    def stop(self) -> None:
        if self._process is not None:
            stop_process_tree(self._process, timeout=10)  # type: ignore[arg-type]
            self._process = None

    def __enter__(self) -> OAuthServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- endpoints --------------------------------------------------------------------------

    @property
    def authorization_endpoint(self) -> str:
        return f"{self.issuer}/auth"

    @property
    def token_endpoint(self) -> str:
        return f"{self.issuer}/token"

    @property
    def introspection_endpoint(self) -> str:
        return f"{self.issuer}/token/introspection"

    @property
    def revocation_endpoint(self) -> str:
        return f"{self.issuer}/token/revocation"

    def provider(
        self, provider_id: str = "example", name: str = "Example Mail", client_id: str = CLIENT_ID
    ) -> Provider:
        return Provider(
            provider_id,
            name,
            self.authorization_endpoint,
            self.token_endpoint,
            client_id,
            SCOPES,
        )

    # ---- what a test does at the server ----------------------------------------------------

    def introspect(self, token: str) -> dict[str, Any]:
        """The server's own word on a token (as Dovecot asks it)."""
        import httpx

        answer = httpx.post(
            self.introspection_endpoint, data={"token": token}, auth=INTROSPECTION_CLIENT
        )
        answer.raise_for_status()
        return answer.json()

    def revoke(self, token: str, client_id: str = CLIENT_ID) -> None:
        """Revokes a token (RFC 7009): oidc-provider takes the whole grant with it."""
        import httpx

        answer = httpx.post(self.revocation_endpoint, data={"token": token, "client_id": client_id})
        answer.raise_for_status()

    def authorize(self, authorization_url: str, login: str) -> str:
        """Walks the sign-in and consent pages over HTTP as a person would in the browser and
        returns the URL the server finally redirects to (the client's redirect URI with code and
        state), without following it."""
        import httpx

        with httpx.Client(follow_redirects=False, timeout=10) as client:
            answer = client.get(authorization_url)
            for _ in range(10):
                if answer.status_code in (302, 303):
                    location = urllib.parse.urljoin(str(answer.url), answer.headers["location"])
                    if not location.startswith(self.issuer):
                        return location
                    answer = client.get(location)
                    continue
                form = re.search(r'<form[^>]*action="([^"]+)"', answer.text)
                prompt = re.search(r'name="prompt" value="(\w+)"', answer.text)
                if answer.status_code != 200 or not form or not prompt:
                    raise HarnessError(f"unexpected page from the OAuth server:\n{answer.text}")
                fields = {"prompt": prompt[1]}
                if prompt[1] == "login":
                    fields.update({"login": login, "password": "any"})
                action = urllib.parse.urljoin(str(answer.url), form[1])
                answer = client.post(action, data=fields)
            raise HarnessError("the OAuth server's pages never ended in a redirect")
