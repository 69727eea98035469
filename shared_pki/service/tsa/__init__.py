"""The RFC 3161 time-stamp authority over HTTP."""
