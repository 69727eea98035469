"""The ACME server (RFC 8555) for email identifiers (RFC 8823)."""
