"""X.509 for S/MIME: certificate profile, CSRs, and path validation (chains, EKU, time)."""
