"""The host's domain: accounts, keystore, certificates, sending, reading, backups and enrollment,
built on the pure PKI library and the infrastructure below."""
