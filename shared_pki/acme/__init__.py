"""The ACME (RFC 8555) protocol layer with RFC 8823 email-reply-00, shared by the CA and the
client: pure functions and data, no I/O, no HTTP framework, no database.

- `problems`: RFC 8555 section 6.7 problem documents (`AcmeProblem`).
- `jws`: flattened JWS signing and strict verification (ES256, ES384, RS256, EdDSA), JWKs and
  RFC 7638 thumbprints.
- `objects`: directory, account, order, authorization, challenge and identifier objects, the
  status machines of RFC 8555 section 7.1.6, and `email` identifier normalisation.
- `email_reply`: RFC 8823 tokens, key authorization, challenge and response mail parts, and the
  checks a CA applies to a reply.
"""
