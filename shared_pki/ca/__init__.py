"""The certificate authority's pure functions: hierarchy creation (hierarchy), keys sealed at
rest (keystore), the CA/B Forum S/MIME mailbox-validated strict profile (profile) and CRLs (crl).

Nothing here does I/O, keeps state or knows about HTTP or storage: the PKI service calls these
and decides where bytes live. Two families of CAs exist side by side: "intl" (RSA or ECDSA,
built with `cryptography`) and "sm2" (SM2-with-SM3, built from asn1crypto structures).
"""
