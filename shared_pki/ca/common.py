"""What the CA modules share: a key with its certificate, the two CA families, fingerprints,
and the SM2 signer-ID rule.

SM2 signer IDs (decided here, used by hierarchy, profile and crl): a certificate whose subject
is a CA, and every CRL, is signed with the EMPTY ID; an end-entity certificate with the standard
ID 1234567812345678 (GM/T 0009). Reason, measured with OpenSSL 3.0.19: `openssl verify -vfyopt
distid:1234567812345678` applies the ID to the leaf only and checks intermediate (and, with
-check_ss_sig, self-signed root) certificates with the empty ID, and `openssl crl -verify` has
no ID option at all and uses the empty ID. So the rule is "the ID depends on the cA flag of the
certificate's subject"; a verifier that knows it tries `sm2_signer_id(is_ca)`, one that does
not tries both IDs (shared_pki.x509.validate's `sm2_ids`).
"""

from __future__ import annotations

import datetime
import hashlib
from typing import NamedTuple

from asn1crypto import core, pem
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from shared_pki import sm2
from shared_pki.errors import PkiError, SigningError
from shared_pki.keys import Certificate, PrivateKey

INTL = "intl"
SM2 = "sm2"
FAMILIES = (INTL, SM2)

OID_SMIME_CAPABILITIES = "1.2.840.113549.1.9.15"
# CA/B Forum S/MIME BR 7.1.6.1: mailbox-validated, strict profile.
OID_CABF_MAILBOX_STRICT = "2.23.140.1.5.1.3"
# Our own certificate policy. We hold no enterprise arc, so this is a UUID-derived OID under
# 2.25 (ITU-T X.667), which needs no registration; replace it if the project gets a PEN.
OID_AUTOSMIME_POLICY = "2.25.258016432398734045186435339862779466730"
DEFAULT_POLICY_OIDS = (OID_CABF_MAILBOX_STRICT, OID_AUTOSMIME_POLICY)

SM2_CA_SIGNER_ID = b""
SM2_END_ENTITY_SIGNER_ID = sm2.DEFAULT_ID


class ProfileError(PkiError):
    """A caller asked the CA for something its profile forbids (validity too long, a serial
    without enough randomness, a CA of the wrong family): a bug or misconfiguration of the
    service, not the applicant's fault."""

    code = "profile_error"


class KeyCert(NamedTuple):
    """A private key and its certificate (asn1crypto, DER-exact); unpacks as (key, cert)."""

    key: PrivateKey
    certificate: Certificate

    @property
    def family(self) -> str:
        return family_of_key(self.key)

    @property
    def der(self) -> bytes:
        return self.certificate.dump()

    @property
    def pem(self) -> bytes:
        return pem.armor("CERTIFICATE", self.certificate.dump())

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.certificate)


def family_of_key(key: object) -> str:
    if isinstance(key, sm2.SM2PrivateKey):
        return SM2
    if isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        return INTL
    raise ProfileError(f"Not a CA key of a family we run: {type(key).__name__}")


def fingerprint(cert: Certificate | bytes) -> str:
    """SHA-256 of the DER certificate as upper-case colon-separated hex (AB:CD:...)."""
    der = cert if isinstance(cert, bytes) else cert.dump()
    return hashlib.sha256(der).digest().hex(":").upper()


def sm2_signer_id(subject_is_ca: bool) -> bytes:
    """The SM2 ID a certificate is signed with under our rule (see the module docstring)."""
    return SM2_CA_SIGNER_ID if subject_is_ca else SM2_END_ENTITY_SIGNER_ID


def utc(value: datetime.datetime, what: str) -> datetime.datetime:
    """An aware datetime in UTC, whole seconds; naive ones are refused (no silent local time)."""
    if not isinstance(value, datetime.datetime) or value.tzinfo is None:
        raise ProfileError(f"{what} must be a timezone-aware datetime")
    return value.astimezone(datetime.UTC).replace(microsecond=0)


def crypto_certificate(cert: Certificate) -> x509.Certificate:
    return x509.load_der_x509_certificate(cert.dump())


def signature_hash(key: PrivateKey) -> hashes.HashAlgorithm:
    """SHA-256 for RSA and P-256, SHA-384 for P-384, SHA-512 for P-521 (matching strengths)."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return {384: hashes.SHA384(), 521: hashes.SHA512()}.get(key.curve.key_size, hashes.SHA256())
    if isinstance(key, rsa.RSAPrivateKey):
        return hashes.SHA256()
    raise SigningError(f"No signature hash for a {type(key).__name__}")


def resign_sm2(
    der: bytes,
    extra_extensions: list[dict[str, object]],
    issuer_key: sm2.SM2PrivateKey,
    signer_id: bytes,
) -> bytes:
    """A certificate from shared_pki.x509.sm2_certs with extensions added, signed again.

    sm2_certs writes basicConstraints, SKI/AKI, keyUsage, EKU and SAN; the CA profile also needs
    certificatePolicies, AIA, CRL distribution points and SMIMECapabilities. Rather than
    duplicate the builder, its TBSCertificate is extended and re-signed (one more SM2 signature,
    about 0.3 ms)."""
    cert = asn1_x509.Certificate.load(der)
    tbs = cert["tbs_certificate"]
    extensions = [asn1_x509.Extension.load(ext.dump()) for ext in tbs["extensions"]]
    extensions += [asn1_x509.Extension(ext) for ext in extra_extensions]
    fields = {
        name: tbs[name]
        for name, *_spec in tbs._fields
        if name != "extensions" and not isinstance(tbs[name], core.Void)
    }
    new_tbs = asn1_x509.TbsCertificate({**fields, "extensions": extensions})
    signature = issuer_key.sign(new_tbs.dump(), signer_id=signer_id)
    return asn1_x509.Certificate(
        {
            "tbs_certificate": new_tbs,
            "signature_algorithm": cert["signature_algorithm"],
            "signature_value": signature,
        }
    ).dump()


def asn1_extension(extn_id: str, value: object, critical: bool = False) -> dict[str, object]:
    return {"extn_id": extn_id, "critical": critical, "extn_value": value}


def asn1_uri(url: str) -> asn1_x509.GeneralName:
    return asn1_x509.GeneralName(name="uniform_resource_identifier", value=url)


def asn1_distribution_extensions(
    crl_url: str | None, aia_url: str | None, policy_oids: tuple[str, ...] = ()
) -> list[dict[str, object]]:
    """CRL distribution point, AIA caIssuers and certificatePolicies as asn1crypto extensions."""
    extensions = []
    if policy_oids:
        policies = [{"policy_identifier": oid} for oid in policy_oids]
        extensions.append(asn1_extension("certificate_policies", policies))
    if aia_url:
        access = [{"access_method": "ca_issuers", "access_location": asn1_uri(aia_url)}]
        extensions.append(asn1_extension("authority_information_access", access))
    if crl_url:
        name = asn1_x509.DistributionPointName(name="full_name", value=[asn1_uri(crl_url)])
        points = [{"distribution_point": name}]
        extensions.append(asn1_extension("crl_distribution_points", points))
    return extensions


def crypto_distribution_extensions(
    crl_url: str | None, aia_url: str | None, policy_oids: tuple[str, ...] = ()
) -> list[x509.ExtensionType]:
    """The same three extensions for cryptography's builders (all non-critical)."""
    extensions: list[x509.ExtensionType] = []
    if policy_oids:
        extensions.append(
            x509.CertificatePolicies(
                [x509.PolicyInformation(x509.ObjectIdentifier(oid), None) for oid in policy_oids]
            )
        )
    if aia_url:
        extensions.append(
            x509.AuthorityInformationAccess(
                [
                    x509.AccessDescription(
                        x509.AuthorityInformationAccessOID.CA_ISSUERS,
                        x509.UniformResourceIdentifier(aia_url),
                    )
                ]
            )
        )
    if crl_url:
        extensions.append(
            x509.CRLDistributionPoints(
                [
                    x509.DistributionPoint(
                        [x509.UniformResourceIdentifier(crl_url)], None, None, None
                    )
                ]
            )
        )
    return extensions
