"""The CA of the service: its material on disk, issuance and revocation, CA files and CRLs."""
