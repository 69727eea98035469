"""The native messaging transport: frames on stdio, the host loop, and which callers it serves."""
