"""Native messaging host of autosmime: every crypto, mailbox and PKI operation of the extension.

Imports here stay empty so that the host starts fast (the browser spawns it on demand).
"""

__version__ = "0.1.0"
