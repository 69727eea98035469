"""RFC 8823 mail validation: challenge mail out, replies in, over the CA's own mailbox."""
