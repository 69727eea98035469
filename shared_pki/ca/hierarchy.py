"""The CA hierarchy made on first start: pure, every key new, nothing stored.

    intl root (self-signed, 20 years)          sm2 root (self-signed, 20 years)
      └ intl issuing CA (10 years, pathLen 0)    └ sm2 issuing CA (10 years, pathLen 0)
          ├ TSA (5 years, critical EKU timeStamping)   └ users' SM2 certificates
          ├ CA mail identity (S/MIME signing, 825 days)
          └ users' RSA/ECDSA certificates

Choices, each for a reason:
- Roots carry no pathLenConstraint (CA/B S/MIME BR 7.1.2.1: NOT RECOMMENDED) and no EKU, so an
  offline root can later certify a new issuing CA for a rollover; issuing CAs have pathLen 0.
- The international issuing CA carries EKU emailProtection AND timeStamping, because it also
  certifies the TSA and relying parties that chain EKUs (Windows, NSS, our validate) would
  otherwise reject one of the two. The BRs want subordinate S/MIME CAs limited to
  emailProtection; a publicly-trusted deployment would put the TSA under its own issuing CA.
- Issued CA certificates carry certificatePolicies, CRL distribution point (the root's CRL) and
  AIA caIssuers (the root's certificate); the root carries neither (nothing above it).
- SM2 signer IDs: CA certificates (root self-signature included) with the empty ID, end
  entities with the standard one (see shared_pki.ca.common), so that `openssl verify -vfyopt
  distid:1234567812345678 -CAfile sm2root -untrusted sm2issuing leaf` accepts the chain.
- The CA mail identity goes through profile.check_csr/issue like any user, signing-only.

URL layout (the service serves these): `{crl_base_url}/{label}.crl` and
`{aia_base_url}/{label}.cer` (DER certificate, application/pkix-cert), where label is one of
`intl-root`, `intl-issuing`, `sm2-root`, `sm2-issuing`: a certificate issued by CA `label`
points at that CA's CRL and certificate.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from asn1crypto import pem
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from shared_pki import sm2
from shared_pki.ca import profile
from shared_pki.ca.common import (
    DEFAULT_POLICY_OIDS,
    INTL,
    SM2,
    KeyCert,
    ProfileError,
    asn1_distribution_extensions,
    crypto_certificate,
    crypto_distribution_extensions,
    resign_sm2,
    signature_hash,
    sm2_signer_id,
    utc,
)
from shared_pki.keys import Certificate, PrivateKey, parse_certificate
from shared_pki.x509 import sm2_certs

ROOT_DAYS = 20 * 365 + 5
ISSUING_DAYS = 10 * 365 + 2
TSA_DAYS = 5 * 365 + 1
MAIL_IDENTITY_DAYS = profile.MAX_DAYS
INTL_KEY_TYPES = ("ecdsa-p256", "ecdsa-p384", "rsa-3072", "rsa-4096")
LABELS = ("intl-root", "intl-issuing", "sm2-root", "sm2-issuing", "tsa", "mail")
_BACKDATE = datetime.timedelta(minutes=5)  # clock skew of relying parties


@dataclass(frozen=True)
class Hierarchy:
    """Every CA key with its certificate, and what was asked for when they were made."""

    name: str
    intl_key_type: str
    crl_base_url: str
    aia_base_url: str
    mail_address: str
    intl_root: KeyCert
    intl_issuing: KeyCert
    sm2_root: KeyCert
    sm2_issuing: KeyCert
    tsa: KeyCert
    mail_identity: KeyCert

    def items(self) -> dict[str, KeyCert]:
        """label -> KeyCert, in LABELS order."""
        return dict(
            zip(
                LABELS,
                (
                    self.intl_root,
                    self.intl_issuing,
                    self.sm2_root,
                    self.sm2_issuing,
                    self.tsa,
                    self.mail_identity,
                ),
                strict=True,
            )
        )

    def issuing(self, family: str) -> KeyCert:
        """The issuing CA for "intl" or "sm2"."""
        if family == INTL:
            return self.intl_issuing
        if family == SM2:
            return self.sm2_issuing
        raise ProfileError(f"Unknown CA family {family!r} (intl or sm2).")

    def root_fingerprints(self) -> dict[str, str]:
        """{"intl": "AB:CD:...", "sm2": ...}: SHA-256 of each root, for printing at first start."""
        return {INTL: self.intl_root.fingerprint, SM2: self.sm2_root.fingerprint}

    def roots_pem(self) -> bytes:
        return self.intl_root.pem + self.sm2_root.pem

    def intermediates_pem(self) -> bytes:
        return self.intl_issuing.pem + self.sm2_issuing.pem

    def chain(self, family: str) -> tuple[Certificate, ...]:
        """Issuing CA then root, for a leaf of that family (what the ACME chain PEM appends)."""
        if family == INTL:
            return (self.intl_issuing.certificate, self.intl_root.certificate)
        return (self.sm2_issuing.certificate, self.sm2_root.certificate)

    def crl_url(self, label: str) -> str:
        return crl_url(self.crl_base_url, label)

    def aia_url(self, label: str) -> str:
        return aia_url(self.aia_base_url, label)


def crl_url(base: str, label: str) -> str:
    return f"{base.rstrip('/')}/{label}.crl"


def aia_url(base: str, label: str) -> str:
    return f"{base.rstrip('/')}/{label}.cer"


def create_hierarchy(
    name: str,
    *,
    intl_key_type: str = "ecdsa-p256",
    crl_base_url: str,
    aia_base_url: str,
    mail_address: str,
    now: datetime.datetime | None = None,
) -> Hierarchy:
    """New keys and certificates for every CA role; `now` (aware) fixes the start time."""
    if not name or not name.strip():
        raise ProfileError("The CA needs a name.")
    if intl_key_type not in INTL_KEY_TYPES:
        raise ProfileError(f"intl_key_type must be one of {', '.join(INTL_KEY_TYPES)}.")
    start = utc(now or datetime.datetime.now(datetime.UTC), "now") - _BACKDATE

    intl_root = _intl_ca(_new_intl_key(intl_key_type), f"{name} Root CA", name, None, start)
    intl_issuing = _intl_ca(
        _new_intl_key(intl_key_type),
        f"{name} S/MIME Issuing CA",
        name,
        (intl_root, crl_url(crl_base_url, "intl-root"), aia_url(aia_base_url, "intl-root")),
        start,
    )
    sm2_root = _sm2_ca(sm2.generate_private_key(), f"{name} SM2 Root CA", name, None, start)
    sm2_issuing = _sm2_ca(
        sm2.generate_private_key(),
        f"{name} SM2 S/MIME Issuing CA",
        name,
        (sm2_root, crl_url(crl_base_url, "sm2-root"), aia_url(aia_base_url, "sm2-root")),
        start,
    )
    leaf_urls = (crl_url(crl_base_url, "intl-issuing"), aia_url(aia_base_url, "intl-issuing"))
    tsa = _tsa(_new_intl_key(intl_key_type), name, intl_issuing, start, *leaf_urls)
    mail_identity = _mail_identity(
        _new_intl_key(intl_key_type), mail_address, intl_issuing, start, *leaf_urls
    )
    return Hierarchy(
        name=name,
        intl_key_type=intl_key_type,
        crl_base_url=crl_base_url,
        aia_base_url=aia_base_url,
        mail_address=mail_address,
        intl_root=intl_root,
        intl_issuing=intl_issuing,
        sm2_root=sm2_root,
        sm2_issuing=sm2_issuing,
        tsa=tsa,
        mail_identity=mail_identity,
    )


def _new_intl_key(kind: str) -> PrivateKey:
    if kind.startswith("rsa-"):
        return rsa.generate_private_key(public_exponent=65537, key_size=int(kind[4:]))
    curve = {"ecdsa-p256": ec.SECP256R1(), "ecdsa-p384": ec.SECP384R1()}[kind]
    return ec.generate_private_key(curve)


def _suffix(key: PrivateKey) -> str:
    return "RSA" if isinstance(key, rsa.RSAPrivateKey) else "ECC"


def _ca_key_usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=False,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=True,
        encipher_only=False,
        decipher_only=False,
    )


def _to_asn1(cert: x509.Certificate) -> Certificate:
    return parse_certificate(cert.public_bytes(serialization.Encoding.DER))


def _intl_ca(
    key: PrivateKey,
    common_name: str,
    organization: str,
    parent: tuple[KeyCert, str, str] | None,
    start: datetime.datetime,
) -> KeyCert:
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
            x509.NameAttribute(NameOID.COMMON_NAME, f"{common_name} {_suffix(key)}"),
        ]
    )
    public_key = key.public_key()
    ski = x509.SubjectKeyIdentifier.from_public_key(public_key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .public_key(public_key)
        .serial_number(profile.random_serial())
        .not_valid_before(start)
        .add_extension(_ca_key_usage(), critical=True)
        .add_extension(ski, critical=False)
    )
    if parent is None:
        signer = key
        builder = (
            builder.issuer_name(subject)
            .not_valid_after(start + datetime.timedelta(days=ROOT_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(  # BR 7.1.2.1: RECOMMENDED on roots, equal to the SKI
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski),
                critical=False,
            )
        )
    else:
        issuer, parent_crl, parent_aia = parent
        signer = issuer.key
        issuer_cert = crypto_certificate(issuer.certificate)
        issuer_ski = issuer_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
        builder = (
            builder.issuer_name(issuer_cert.subject)
            .not_valid_after(start + datetime.timedelta(days=ISSUING_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(issuer_ski.value),
                critical=False,
            )
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.EMAIL_PROTECTION, ExtendedKeyUsageOID.TIME_STAMPING]
                ),
                critical=False,
            )
        )
        for extension in crypto_distribution_extensions(
            parent_crl, parent_aia, DEFAULT_POLICY_OIDS
        ):
            builder = builder.add_extension(extension, critical=False)
    return KeyCert(key, _to_asn1(builder.sign(signer, signature_hash(signer))))


def _sm2_ca(
    key: sm2.SM2PrivateKey,
    common_name: str,
    organization: str,
    parent: tuple[KeyCert, str, str] | None,
    start: datetime.datetime,
) -> KeyCert:
    subject = {"organization_name": organization, "common_name": common_name}
    signer_id = sm2_signer_id(subject_is_ca=True)
    if parent is None:
        der = sm2_certs.issue_certificate(
            key.public_key,
            subject,
            key,
            serial_number=profile.random_serial(),
            not_before=start,
            not_after=start + datetime.timedelta(days=ROOT_DAYS),
            is_ca=True,
            signer_id=signer_id,
        )
        return KeyCert(key, parse_certificate(der))
    issuer, parent_crl, parent_aia = parent
    base = sm2_certs.issue_certificate(
        key.public_key,
        subject,
        issuer.key,
        issuer.certificate,
        serial_number=profile.random_serial(),
        not_before=start,
        not_after=start + datetime.timedelta(days=ISSUING_DAYS),
        is_ca=True,
        path_length=0,
        extended_key_usage=("email_protection",),
        signer_id=signer_id,
    )
    extra = asn1_distribution_extensions(parent_crl, parent_aia, DEFAULT_POLICY_OIDS)
    return KeyCert(key, parse_certificate(resign_sm2(base, extra, issuer.key, signer_id)))


def _tsa(
    key: PrivateKey,
    organization: str,
    issuing: KeyCert,
    start: datetime.datetime,
    leaf_crl: str,
    leaf_aia: str,
) -> KeyCert:
    """RFC 3161 section 2.3: the EKU is critical and holds only id-kp-timeStamping."""
    issuer_cert = crypto_certificate(issuing.certificate)
    issuer_ski = issuer_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    public_key = key.public_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
                    x509.NameAttribute(NameOID.COMMON_NAME, f"{organization} Time-Stamping"),
                ]
            )
        )
        .issuer_name(issuer_cert.subject)
        .public_key(public_key)
        .serial_number(profile.random_serial())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=TSA_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=True,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(issuer_ski.value),
            critical=False,
        )
    )
    for extension in crypto_distribution_extensions(leaf_crl, leaf_aia, ()):
        builder = builder.add_extension(extension, critical=False)
    return KeyCert(key, _to_asn1(builder.sign(issuing.key, signature_hash(issuing.key))))


def _mail_identity(
    key: PrivateKey,
    address: str,
    issuing: KeyCert,
    start: datetime.datetime,
    leaf_crl: str,
    leaf_aia: str,
) -> KeyCert:
    """The CA's own S/MIME signing certificate, through the same gate as every user's."""
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.EMAIL_ADDRESS, address)]))
        .add_extension(x509.SubjectAlternativeName([x509.RFC822Name(address)]), critical=False)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    info = profile.check_csr(csr.public_bytes(serialization.Encoding.DER), address, family=INTL)
    der = profile.issue(
        info,
        issuing,
        serial=profile.random_serial(),
        not_before=start,
        days=MAIL_IDENTITY_DAYS,
        crl_url=leaf_crl,
        aia_url=leaf_aia,
    )
    return KeyCert(key, parse_certificate(der))


def pem_bundle(certs: tuple[Certificate, ...]) -> bytes:
    return b"".join(pem.armor("CERTIFICATE", cert.dump()) for cert in certs)
