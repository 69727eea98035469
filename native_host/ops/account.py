"""Operations on mail accounts: account.configure (servers proven by a real login, secret in
the keyring, PKI service and roots), account.list, and account.settings (how the account
sends: hideSubject). Secrets are taken, never returned."""

from __future__ import annotations

from typing import Any

from native_host.errors import BadParams
from native_host.ops import state
from native_host.ops.state import AccountPki, bool_param, operation, progress_of, text_param


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
        "pki": None
        if pki is None
        else {
            "url": pki.base,
            "certs": pki.certs_url,
            "tsa": pki.tsa_url,
            "acmeDirectory": pki.acme_directory_url,
            "roots": [cert.subject.human_friendly for cert in pki.roots()],
        },
    }


@operation
def configure(params: dict[str, Any], ctx: Any) -> dict[str, Any]:
    """Set up (or replace) an account: find the servers, prove them by logging in, keep the
    secret in the keyring, and remember the PKI service with its roots."""
    progress = progress_of(ctx)
    address = text_param(params, "address", required=True)
    password = text_param(params, "password")
    token = text_param(params, "xoauth2Token")
    pki_url = text_param(params, "pkiUrl")
    roots = text_param(params, "pkiRoots")
    if password and token:
        raise BadParams("Give a password or an XOAUTH2 token, not both.")
    if bool(pki_url) != bool(roots):
        raise BadParams(
            "Give the PKI service's URL and its roots PEM together (the roots are configured, "
            "never fetched and trusted on first use).",
        )
    pki = None
    if pki_url and roots:  # checked before any login, so a typo fails at once
        pki = AccountPki(pki_url, roots.encode("ascii", "replace"), text_param(params, "pkiCaFile"))
    host = state.current()
    if not password and not token:
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
def list_accounts(params: dict[str, Any], ctx: Any) -> dict[str, Any]:
    host = state.current()
    return {"accounts": [_summary(host, a) for a in host.accounts.list_accounts()]}


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
