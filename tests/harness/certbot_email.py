"""What certbot's `acme` package lacks for RFC 8823, taught to it from outside (REFERENCE.md):
the `email` identifier type and the `email-reply-00` challenge and its (empty) response."""

from __future__ import annotations

import josepy as jose
from acme import challenges, messages

IDENTIFIER_EMAIL = messages.IdentifierType("email")


@challenges.Challenge.register
class EmailReply00(challenges.Challenge):
    """RFC 8823 section 3: token (token-part2) and from (the CA's sender address)."""

    typ = "email-reply-00"
    token: str = jose.field("token")
    sender: str = jose.field("from")


@challenges.ChallengeResponse.register
class EmailReply00Response(challenges.ChallengeResponse):
    """The POST to the challenge URL after the reply mail went out: an empty object."""

    typ = "email-reply-00"

    def __bool__(self) -> bool:
        # The package sends an empty payload (POST-as-GET) for a falsy object, and an object
        # without fields is falsy: RFC 8555 7.5.1 wants the empty JSON object {} here.
        return True
