"""Test PKIs made on the fly: roots, intermediates and S/MIME end entities of every key type,
with the extensions the S/MIME profile needs (or deliberately without them), written to files
for OpenSSL and gpgsm when a test needs peers.

Test keys only: RSA keys are 2048 bits to keep tests fast (the product enrolls RSA-3072).
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from pathlib import Path

from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

NOW = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
KEY_TYPES = ("rsa2048", "rsa3072", "p256", "p384")


def new_key(key_type: str):
    if key_type.startswith("rsa"):
        return rsa.generate_private_key(65537, int(key_type[3:]))
    curves = {"p256": ec.SECP256R1(), "p384": ec.SECP384R1(), "p521": ec.SECP521R1()}
    return ec.generate_private_key(curves[key_type])


def _name(common_name: str, email: str | None = None) -> x509.Name:
    attributes = [
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "autosmime tests"),
        x509.NameAttribute(NameOID.COMMON_NAME, common_name),
    ]
    if email:
        attributes.append(x509.NameAttribute(NameOID.EMAIL_ADDRESS, email))
    return x509.Name(attributes)


@dataclass
class Party:
    """A key and its certificate (cryptography and asn1crypto views), plus its issuers."""

    key: object
    cert: x509.Certificate
    chain: list[x509.Certificate] = field(default_factory=list)

    @property
    def der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)

    @property
    def asn1(self) -> asn1_x509.Certificate:
        return asn1_x509.Certificate.load(self.der)

    @property
    def chain_asn1(self) -> list[asn1_x509.Certificate]:
        return [
            asn1_x509.Certificate.load(c.public_bytes(serialization.Encoding.DER))
            for c in self.chain
        ]

    def key_pem(self) -> bytes:
        return self.key.private_bytes(  # type: ignore[attr-defined]
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def chain_pem(self) -> bytes:
        return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in self.chain)

    def pkcs12(self, password: bytes, legacy: bool = False) -> bytes:
        """PKCS#12 of key, cert and chain; legacy=True uses the 3DES/SHA-1 form gpgsm imports."""
        if legacy:
            algorithm = (
                serialization.PrivateFormat.PKCS12.encryption_builder()
                .kdf_rounds(2048)
                .key_cert_algorithm(pkcs12.PBES.PBESv1SHA1And3KeyTripleDESCBC)
                .hmac_hash(hashes.SHA1())
                .build(password)
            )
        else:
            algorithm = serialization.BestAvailableEncryption(password)
        return pkcs12.serialize_key_and_certificates(
            b"test",
            self.key,
            self.cert,
            self.chain or None,
            algorithm,  # type: ignore[arg-type]
        )

    def write(self, folder: Path, stem: str) -> dict[str, Path]:
        """key.pem, cert.pem, chain.pem (issuers, no root) for peers on the command line."""
        folder.mkdir(parents=True, exist_ok=True)
        paths = {
            "key": folder / f"{stem}.key.pem",
            "cert": folder / f"{stem}.cert.pem",
            "chain": folder / f"{stem}.chain.pem",
        }
        paths["key"].write_bytes(self.key_pem())
        paths["key"].chmod(0o600)
        paths["cert"].write_bytes(self.cert_pem())
        paths["chain"].write_bytes(self.chain_pem())
        return paths


def _signature_hash(key: object) -> hashes.HashAlgorithm:
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.key_size >= 384:
        return hashes.SHA384()
    return hashes.SHA256()


class Authority(Party):
    """A CA that issues intermediates and S/MIME certificates."""

    def _builder(
        self,
        subject: x509.Name,
        public_key: object,
        days: int,
        not_before: datetime.datetime | None = None,
        not_after: datetime.datetime | None = None,
    ) -> x509.CertificateBuilder:
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.cert.subject)
            .public_key(public_key)  # type: ignore[arg-type]
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before or NOW - datetime.timedelta(days=1))
            .not_valid_after(not_after or NOW + datetime.timedelta(days=days))
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(
                    self.key.public_key()  # type: ignore[attr-defined]
                ),
                critical=False,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(public_key),  # type: ignore[arg-type]
                critical=False,
            )
        )

    def _sign(self, builder: x509.CertificateBuilder) -> x509.Certificate:
        return builder.sign(self.key, _signature_hash(self.key))  # type: ignore[arg-type]

    def intermediate(self, name: str, key_type: str = "p256") -> Authority:
        key = new_key(key_type)
        builder = (
            self._builder(_name(name), key.public_key(), 3650)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_ca_usage(), critical=True)
        )
        return Authority(key, self._sign(builder), [self.cert, *self.chain])

    def smime(
        self,
        address: str,
        key_type: str = "rsa2048",
        *,
        key_usage: str = "dual",
        email_protection: bool = True,
        not_before: datetime.datetime | None = None,
        not_after: datetime.datetime | None = None,
        include_san: bool = True,
    ) -> Party:
        """An S/MIME end-entity certificate for address (key_usage: dual, sign or encrypt)."""
        key = new_key(key_type)
        builder = self._builder(
            _name(address, address), key.public_key(), 365, not_before, not_after
        )
        builder = builder.add_extension(
            x509.BasicConstraints(ca=False, path_length=None), critical=True
        ).add_extension(_end_entity_usage(key, key_usage), critical=True)
        if email_protection:
            builder = builder.add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False
            )
        if include_san:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.RFC822Name(address)]), critical=False
            )
        return Party(key, self._sign(builder), [self.cert, *self.chain])


def _ca_usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True, content_commitment=False, key_encipherment=False,
        data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
        encipher_only=False, decipher_only=False,
    )  # fmt: skip


def _end_entity_usage(key: object, usage: str) -> x509.KeyUsage:
    sign = usage in ("dual", "sign")
    encrypt = usage in ("dual", "encrypt")
    is_ec = isinstance(key, ec.EllipticCurvePrivateKey)
    return x509.KeyUsage(
        digital_signature=sign, content_commitment=sign, key_encipherment=encrypt and not is_ec,
        data_encipherment=False, key_agreement=encrypt and is_ec, key_cert_sign=False,
        crl_sign=False, encipher_only=False, decipher_only=False,
    )  # fmt: skip


def root(name: str = "autosmime test root", key_type: str = "p256") -> Authority:
    key = new_key(key_type)
    subject = _name(name)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - datetime.timedelta(days=2))
        .not_valid_after(NOW + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_ca_usage(), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, _signature_hash(key))
    )
    return Authority(key, cert, [])
