"""The certificate directory: valid certificates of exactly one address."""
