"""Operations on mail accounts: account.configure (servers proven by a real login, secret in
the keyring, the PKI: our service's URL or any RFC 8823 CA, directory and RFC 3161 TSA, with
the roots), account.list, account.settings (how the account sends: hideSubject), and
signing in with a provider (account.signInOptions, account.signInStart; account.configure
finishes the sign-in). Secrets are taken, never returned."""

from __future__ import annotations

from typing import Any

from native_host.errors import BadParams
from native_host.ops import state
from native_host.ops.account_pki import AccountPki
from native_host.ops.state import bool_param, operation, progress_of, text_param


def _summary(host: state.HostState, account: Any) -> dict[str, Any]:
    settings = account.settings
    pki = host.pki_of(account.address)
    return {
        "address": account.address,
        "imap": settings.imap.url,
        "smtp": settings.smtp.url,
        "provider": getattr(settings, "provider", None),
        "credential": account.credential,
        "caFile": account.ca_file,
        "hideSubject": account.hide_subject,
        "pki": None if pki is None else pki.summary(),
    }


PKI_PARAMS = ("pkiUrl", "acmeDirectoryUrl", "certsUrl", "tsaUrl")


def pki_from_params(params: dict[str, Any]) -> AccountPki | None:
    """The PKI settings in account.configure's params (None when none are given): our
    service's base URL and/or the ACME directory, certificate directory and TSA URLs, always
    with the roots (configured, never fetched and trusted on first use)."""
    given = {name: text_param(params, name) for name in PKI_PARAMS}
    roots = text_param(params, "pkiRoots")
    if not any(given.values()) and not roots:
        return None
    if not roots:
        raise BadParams(
            "Give the PKI's roots PEM with its URLs (the roots are configured, never fetched "
            "and trusted on first use)."
        )
    if not given["pkiUrl"] and not given["acmeDirectoryUrl"]:
        raise BadParams("Give the PKI service's URL (pkiUrl) or its ACME directory URL.")
    tsa_roots = text_param(params, "tsaRoots")
    return AccountPki(
        given["pkiUrl"],
        roots.encode("ascii", "replace"),
        text_param(params, "pkiCaFile"),
        acme_directory=given["acmeDirectoryUrl"],
        certs=given["certsUrl"],
        tsa=given["tsaUrl"],
        tsa_roots_pem=tsa_roots.encode("ascii", "replace") if tsa_roots else None,
        acme_contact=bool_param(params, "acmeContact", True),
        unauthenticated_challenge_from=tuple(params.get("unauthenticatedChallengeFrom") or ()),
    )


@operation
def configure(params: dict[str, Any], ctx: Any) -> dict[str, Any]:
    """Set up (or replace) an account: find the servers, prove them by logging in, keep the
    secret in the keyring, and remember the PKI service with its roots."""
    progress = progress_of(ctx)
    address = text_param(params, "address", required=True)
    password = text_param(params, "password")
    token = text_param(params, "xoauth2Token")
    sign_in = params.get("signIn")
    if sum(bool(x) for x in (password, token, sign_in)) > 1:
        raise BadParams("Give a password, an XOAUTH2 token or a sign-in, not several.")
    pki = pki_from_params(params)  # checked before any login, so a typo fails at once
    host = state.current()
    signed_in = None
    if sign_in:
        progress(0, 2, "Finishing the sign-in")
        signed_in = _finish_sign_in(host, sign_in)
    elif not password and not token:
        from native_host.domain.accounts import PASSWORD

        if not host.accounts.credentials.get(address, PASSWORD):  # type: ignore[arg-type]
            raise BadParams(
                f"No password for {address}: give its password or app password (`autosmime "
                "account add ADDRESS --password-stdin`, or the extension's setup).",
            )
    progress(0, 2, "Checking your mailbox")
    account = host.accounts.configure(
        address,  # type: ignore[arg-type]
        password=password,
        xoauth2_token=token,
        signed_in=signed_in,
        imap_url=text_param(params, "imapUrl"),
        smtp_url=text_param(params, "smtpUrl"),
        ca_file=text_param(params, "caFile"),
    )
    progress(1, 2, "Saving the settings")
    if pki is not None:
        host.set_pki(account.address, pki)
    progress(2, 2, "Done")
    return _summary(host, account)


@operation
def discover(params: dict[str, Any], ctx: Any) -> dict[str, Any]:
    """The organisation's PKI for params.address from the well-known document of its mail
    domain (native_host.domain.discovery): account.configure's PKI params with the roots
    pinned by the document, or found false with what to ask the administrator for."""
    from native_host.domain.discovery import discover as find

    progress = progress_of(ctx)
    address = text_param(params, "address", required=True)
    progress(0, 1, "Looking for your organisation's certificate service")
    found = find(address)  # type: ignore[arg-type]
    progress(1, 1, "Done")
    return found.to_json()


@operation
def list_accounts(params: dict[str, Any], ctx: Any) -> dict[str, Any]:
    host = state.current()
    return {"accounts": [_summary(host, a) for a in host.accounts.list_accounts()]}


def _finish_sign_in(host: state.HostState, sign_in: dict[str, Any]) -> Any:
    """(client, tokens) for the URL the provider's sign-in sent the browser back to."""
    from native_host.infrastructure import oauth

    client = oauth.sign_in_client(host.profile.root, sign_in["provider"])
    client = oauth.with_secret(client, host.profile.keyring(), host.profile.keyring_service)
    code = oauth.code_from_redirect(
        sign_in["redirectUrl"], sign_in["redirectUri"], sign_in["state"]
    )
    tokens = oauth.exchange_code(client, code, sign_in["codeVerifier"], sign_in["redirectUri"])
    return client, tokens


@operation
def sign_in_options(params: dict[str, Any], ctx: Any) -> dict[str, Any]:
    """The providers configured for sign-in (their OAuth client ids are settings)."""
    from native_host.infrastructure import oauth

    clients = oauth.sign_in_clients(state.current().profile.root)
    return {"providers": [{"id": c.provider, "name": c.name} for c in clients.values()]}


@operation
def sign_in_start(params: dict[str, Any], ctx: Any) -> dict[str, Any]:
    """A fresh state and PKCE verifier and the provider's authorization URL. Nothing is kept:
    the extension page that opens the sign-in holds state and verifier until it comes back."""
    from native_host.infrastructure import oauth

    client = oauth.sign_in_client(state.current().profile.root, params["provider"])
    verifier, challenge = oauth.new_pkce()
    sign_in_state = oauth.new_state()
    url = oauth.authorization_url(
        client, params["redirectUri"], sign_in_state, challenge, text_param(params, "address")
    )
    return {"authorizationUrl": url, "state": sign_in_state, "codeVerifier": verifier}


@operation
def settings(params: dict[str, Any], ctx: Any) -> dict[str, Any]:
    """How params.account (default: the only one) sends: params.hideSubject, when given, is
    stored with the account first. Encrypted mail then goes out with the Subject "[...]"
    outside and the real one only inside the encryption (RFC 9788)."""
    host = state.current()
    account = host.account(text_param(params, "account"))
    if "hideSubject" in params:
        hide = bool_param(params, "hideSubject")
        account = host.accounts.set_hide_subject(account.address, hide)
    return {"account": account.address, "hideSubject": account.hide_subject}
