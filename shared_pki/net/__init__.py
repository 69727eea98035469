"""Connections to servers that both the native host and the PKI service make."""
