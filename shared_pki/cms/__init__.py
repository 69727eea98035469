"""CMS (RFC 5652) for S/MIME: SignedData, EnvelopedData, AuthEnvelopedData, and the algorithm
registries that let new algorithms (SM2/SM3/SM4) plug in without touching this code."""

from shared_pki import oids as _oids  # noqa: F401  registrations asn1crypto lacks

# SM2/SM3/SM4 and the GM/T 0010 content types, registered wherever CMS is used.
from shared_pki.cms import sm as _sm  # noqa: F401
