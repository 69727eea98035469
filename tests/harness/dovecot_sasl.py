"""SMTP AUTH XOAUTH2 checked by Dovecot, as Postfix checks it through Dovecot SASL: the harness's
SMTP server hands the client's response to Dovecot's auth service (the auth-client socket,
Dovecot's authentication protocol 1.2) and accepts only what Dovecot accepts. With the OAuth
mail stack Dovecot's oauth2 passdb validates the token at the real authorization server, so IMAP
and SMTP logins are judged by the same party.
"""

from __future__ import annotations

import asyncio
import base64
import os
import socket
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult

#: What Dovecot's XOAUTH2 sends after a refused token (RFC-less, Google's shape).
XOAUTH2_ERROR = b'{"status":"401","schemes":"bearer","scope":"mail"}'


def dovecot_authenticate(
    socket_path: Path, mechanism: str, response: bytes, service: str = "smtp"
) -> str | None:
    """The user Dovecot authenticated with this initial response, or None when it refused."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(15)
        conn.connect(str(socket_path))
        stream = conn.makefile("rwb", buffering=0)
        stream.write(f"VERSION\t1\t2\nCPID\t{os.getpid()}\n".encode())
        while (line := stream.readline()) and line.rstrip(b"\n") != b"DONE":
            pass
        resp = base64.b64encode(response).decode()
        stream.write(f"AUTH\t1\t{mechanism}\tservice={service}\tsecured\tresp={resp}\n".encode())
        while True:
            fields = stream.readline().rstrip(b"\n").decode().split("\t")
            if fields[0] == "CONT":  # a refused token: Dovecot wants the client's empty answer
                stream.write(b"CONT\t1\t\n")
                continue
            if fields[0] == "OK":
                user = next((f[5:] for f in fields[2:] if f.startswith("user=")), None)
                return user
            return None


class XOAuth2ByDovecot:
    """Mixin for the harness's aiosmtpd handler: AUTH XOAUTH2 (initial response) judged by
    Dovecot; a refusal is answered with the 334 error challenge and then 535, as Gmail does."""

    auth_socket: Path

    async def auth_XOAUTH2(self, server: SMTP, args: list[str]) -> AuthResult:
        if len(args) != 2:
            return AuthResult(success=False, handled=False)
        try:
            response = base64.b64decode(args[1], validate=True)
        except ValueError:
            return AuthResult(success=False, handled=False)
        loop = asyncio.get_running_loop()
        user: Any = await loop.run_in_executor(
            None, dovecot_authenticate, self.auth_socket, "XOAUTH2", response
        )
        if user:
            return AuthResult(success=True, auth_data=user)
        await server.challenge_auth(XOAUTH2_ERROR)
        return AuthResult(success=False, handled=False)
