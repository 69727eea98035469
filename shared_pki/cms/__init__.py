"""CMS (RFC 5652) for S/MIME: SignedData, EnvelopedData, AuthEnvelopedData, and the algorithm
registries that let new algorithms (SM2/SM3/SM4) plug in without touching this code."""

from shared_pki import oids as _oids  # noqa: F401  registrations asn1crypto lacks
