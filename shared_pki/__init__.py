"""The PKI both sides share: CMS/S/MIME, X.509 profiles, SM2/SM3/SM4, RFC 3161 (pure, no I/O),
and the services (ACME CA, certificate directory, TSA). Filled in by later issues."""
