"""The PKI services (I/O side of shared_pki): one ASGI application serving the ACME CA, the
certificate directory, the time-stamp authority, CRLs and CA bundles, over one store (SQLite by
default, PostgreSQL at scale). The crypto they use is the pure library beside them."""
