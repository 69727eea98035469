"""Infrastructure of the host: the profile folder and keyring, the user's mailbox (IMAP, SMTP), the
ACME client. Talks to the outside world; knows nothing of the operations above it."""
