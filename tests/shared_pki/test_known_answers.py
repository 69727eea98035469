"""Known-answer tests from published CMS examples (issue 3, point 7).

The vectors live in tests/vectors/ and were copied byte for byte from their sources (the README
there says from where and how): RFC 9216's example keys and certificates, the CMS examples made
with those keys in the davidi67/examples-cms repository (draft-ireland-examples-cms), RFC 4134's
examples, and two protected-headers samples signed with the pre-RFC LAMPS sample keys.

What we implement is verified and decrypted to the published content; what we do not (DSA,
SHA-1, Ed25519, X25519, ChaCha20-Poly1305, AES-192, KEK recipients, 3DES, RC2) must fail with
the typed error or the per-signer `unsupported_algorithm` problem, never with a crash. Each
vector is also checked with `openssl cms` where OpenSSL 3.0 reads it, so the vector itself is
proven good; those tests skip without the openssl CLI.
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import subprocess
from pathlib import Path

import pytest
from asn1crypto import pem
from cryptography.hazmat.primitives import serialization
from harness.peers import require

from shared_pki import mime, smime
from shared_pki.cms import enveloped
from shared_pki.cms.verify import verify
from shared_pki.errors import (
    DecryptionFailed,
    KeyLoadError,
    MalformedInput,
    NoMatchingKey,
    UnsupportedAlgorithm,
)
from shared_pki.keys import Certificate, load_certificates, load_private_key
from shared_pki.pkcs12 import load_pkcs12
from shared_pki.x509.validate import certificate_addresses

VECTORS = Path(__file__).resolve().parents[1] / "vectors"
RFC9216 = VECTORS / "rfc9216"
EXAMPLES = VECTORS / "examples-cms"
RFC4134 = VECTORS / "rfc4134"
HEADERS = VECTORS / "protected-headers"

# Inside every RFC 9216 certificate (2019-11-20 / 2020-12-15 until 2052) and RFC 4134's
# (1999 until 2039), so the tests do not depend on today's date.
AT = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)
CONTENT = b"This is some sample content."  # RFC 4134 section 2.1, used by both example sets

OID_RSA = "1.2.840.113549.1.1.1"
OID_PSS = "1.2.840.113549.1.1.10"
OID_ED25519 = "1.3.101.112"
OID_DSA_SHA1 = "1.2.840.10040.4.3"

OPENSSL = require("openssl")


# --- loading -----------------------------------------------------------------------------------


def der_of(path: Path) -> bytes:
    data = path.read_bytes()
    return pem.unarmor(data)[2] if pem.detect(data) else data


@functools.cache
def cert(name: str) -> Certificate:
    """An RFC 9216 certificate by section ("4.1") or an RFC 4134 one by file name."""
    path = RFC9216 / f"section-{name}.crt" if name[0].isdigit() else RFC4134 / f"{name}.cer"
    (certificate,) = load_certificates(path.read_bytes())
    return certificate


@functools.cache
def key(name: str):
    path = RFC9216 / f"section-{name}.key" if name[0].isdigit() else RFC4134 / f"{name}.pri"
    return load_private_key(path.read_bytes())


RSA_CA, ED25519_CA = "3.1", "6.1"
ALICE_SIGN, ALICE_ENC = "4.1", "4.3"
BOB_SIGN, BOB_ENC = "5.1", "5.3"
CARLOS_SIGN, DANA_ENC = "7.1", "8.3"
KEY_OF = {"3.1": "3.2", "4.1": "4.2", "4.3": "4.4", "5.1": "5.2", "5.3": "5.4", "8.3": "8.4"}


def key_pair(section: str) -> tuple[Certificate, object]:
    return cert(section), key(KEY_OF[section])


def public_der(private_or_public) -> bytes:
    public = getattr(private_or_public, "public_key", lambda: private_or_public)()
    return public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


# --- RFC 9216: the example keys and certificates themselves --------------------------------------


@pytest.mark.parametrize(
    ("section", "issuer", "address"),
    [
        ("4.1", "3.1", "alice@smime.example"),
        ("4.3", "3.1", "alice@smime.example"),
        ("5.1", "3.1", "bob@smime.example"),
        ("5.3", "3.1", "bob@smime.example"),
        ("7.1", "6.1", "carlos@smime.example"),
        ("7.3", "6.1", "carlos@smime.example"),
        ("8.1", "6.1", "dana@smime.example"),
        ("8.3", "6.1", "dana@smime.example"),
    ],
)
def test_rfc9216_certificates_name_their_persona_and_issuer(section, issuer, address):
    certificate = cert(section)
    assert certificate_addresses(certificate) == (address,)
    assert certificate.issuer == cert(issuer).subject
    assert certificate.not_valid_before < AT < certificate.not_valid_after


@pytest.mark.parametrize(
    ("key_section", "cert_section"),
    [("3.2", "3.1"), ("4.2", "4.1"), ("4.4", "4.3"), ("5.2", "5.1"), ("5.4", "5.3"),
     ("6.2", "6.1"), ("7.2", "7.1"), ("7.4", "7.3"), ("8.2", "8.1"), ("8.4", "8.3")],
)  # fmt: skip
def test_rfc9216_private_keys_match_their_certificates(key_section, cert_section):
    certificate = cert(cert_section)
    assert public_der(key(key_section)) == certificate.public_key.dump()


@pytest.mark.parametrize(
    ("section", "password", "address"),
    [("4.5", b"alice", "alice@smime.example"), ("5.5", b"bob", "bob@smime.example")],
)
def test_rfc9216_pkcs12_objects_open_with_their_published_passwords(section, password, address):
    data = der_of(RFC9216 / f"section-{section}.p12.pem")
    credential = load_pkcs12(data, password)
    assert certificate_addresses(credential.certificate) == (address,)
    assert public_der(credential.key) == credential.certificate.public_key.dump()
    with pytest.raises(KeyLoadError):
        load_pkcs12(data, b"wrong")


# --- examples-cms (RFC 9216 keys): signed-data ----------------------------------------------------


@pytest.mark.parametrize(
    ("name", "signature_oid", "has_attributes"),
    [("signedByAliceRSA", OID_RSA, False), ("signedByAliceRSAPSS", OID_PSS, True)],
)
def test_alice_rsa_examples_verify(name, signature_oid, has_attributes):
    result = verify(
        der_of(EXAMPLES / f"{name}.pem"),
        trust_anchors=[cert(RSA_CA)],
        from_address="alice@smime.example",
        at=AT,
    )
    assert result.valid, result.summary
    assert result.content == CONTENT and not result.detached
    (signer,) = result.signers
    assert signer.certificate.dump() == cert(ALICE_SIGN).dump()
    assert signer.signature_algorithm == signature_oid
    assert signer.digest_algorithm == "sha256"
    assert signer.signature_ok and signer.address_ok
    assert signer.message_digest_ok is (True if has_attributes else None)
    assert [c.subject for c in signer.chain.path] == [
        cert(ALICE_SIGN).subject,
        cert(RSA_CA).subject,
    ]


@pytest.mark.parametrize(
    ("name", "code"),
    [("signedByAliceRSA", "bad_signature"), ("signedByAliceRSAPSS", "message_digest_mismatch")],
)
def test_alice_rsa_examples_fail_when_the_content_is_changed(name, code):
    der = der_of(EXAMPLES / f"{name}.pem")
    assert der.count(CONTENT) == 1
    tampered = der.replace(CONTENT, CONTENT.replace(b"sample", b"simple"))
    result = verify(tampered, trust_anchors=[cert(RSA_CA)], at=AT)
    assert not result.valid
    assert code in result.signers[0].codes


def test_alice_rsa_example_is_untrusted_under_another_anchor():
    result = verify(
        der_of(EXAMPLES / "signedByAliceRSA.pem"), trust_anchors=[cert(ED25519_CA)], at=AT
    )
    (signer,) = result.signers
    assert signer.signature_ok and not signer.trusted
    assert signer.codes == ("untrusted",)


def test_two_signers_without_certificates_one_ed25519_one_rsa():
    """Carlos (Ed25519) is reported unsupported; Alice (RSA) still verifies: one exotic signer
    does not hide a good one. The message carries no certificates, so the caller supplies them."""
    result = verify(
        der_of(EXAMPLES / "signedByAliceAndCarlosNoCerts.pem"),
        trust_anchors=[cert(RSA_CA), cert(ED25519_CA)],
        intermediates=[cert(ALICE_SIGN), cert(CARLOS_SIGN)],
        at=AT,
    )
    carlos, alice = result.signers
    assert result.content == CONTENT and not result.valid
    assert carlos.certificate.dump() == cert(CARLOS_SIGN).dump()
    assert carlos.signature_algorithm == OID_ED25519
    assert "unsupported_algorithm" in carlos.codes and not carlos.signature_ok
    assert alice.valid, alice.summary
    assert alice.certificate.dump() == cert(ALICE_SIGN).dump()
    without_certs = verify(
        der_of(EXAMPLES / "signedByAliceAndCarlosNoCerts.pem"), trust_anchors=[cert(RSA_CA)], at=AT
    )
    assert all("signer_certificate_missing" in s.codes for s in without_certs.signers)


@pytest.mark.parametrize(
    ("name", "content"),
    [("signedByCarlosEd25519", None), ("signedByCarlosDetached", CONTENT)],
)
def test_ed25519_examples_are_reported_unsupported_not_crashed(name, content):
    result = verify(
        der_of(EXAMPLES / f"{name}.pem"), content=content, trust_anchors=[cert(ED25519_CA)], at=AT
    )
    (signer,) = result.signers
    assert result.content == CONTENT and result.detached is (content is not None)
    assert signer.certificate.dump() == cert(CARLOS_SIGN).dump()
    assert signer.signature_algorithm == OID_ED25519
    assert "unsupported_algorithm" in signer.codes
    assert not signer.signature_ok and not result.valid


# --- examples-cms (RFC 9216 keys): enveloped-data ---------------------------------------------


@pytest.mark.parametrize("name", ["encryptedForBobRSAOaep", "encryptedForBobAndDana"])
def test_bob_decrypts_the_rsa_oaep_examples(name):
    der = der_of(EXAMPLES / f"{name}.pem")
    assert enveloped.decrypt(der, [key_pair(ALICE_ENC), key_pair(BOB_ENC)]) == CONTENT
    info = enveloped.inspect(der)
    assert (info.content_type, info.cipher, info.inner_content_type) == (
        "enveloped_data",
        "aes128_cbc",
        "data",
    )
    bob = info.recipients[0]
    assert (bob.kind, bob.key_encryption) == ("ktri", "rsaes_oaep")
    assert bob.rid.matches(cert(BOB_ENC)) and not bob.rid.matches(cert(BOB_SIGN))


def test_bob_and_dana_example_names_dana_as_an_x25519_agreement_recipient():
    kinds = [
        r.kind
        for r in enveloped.inspect(der_of(EXAMPLES / "encryptedForBobAndDana.pem")).recipients
    ]
    assert kinds == ["ktri", "kari"]


def test_bobs_signing_key_is_not_a_recipient():
    with pytest.raises(NoMatchingKey):
        enveloped.decrypt(der_of(EXAMPLES / "encryptedForBobRSAOaep.pem"), [key_pair(BOB_SIGN)])


def test_bobs_certificate_with_the_wrong_private_key_fails_cleanly():
    wrong = (cert(BOB_ENC), key(KEY_OF[ALICE_ENC]))
    with pytest.raises(DecryptionFailed):
        enveloped.decrypt(der_of(EXAMPLES / "encryptedForBobRSAOaep.pem"), [wrong])


@pytest.mark.parametrize(
    ("name", "recipient", "cipher"),
    [
        # ChaCha20-Poly1305 (RFC 8103) content encryption.
        ("authEnvelopedForBobChaCha20Poly1305", BOB_ENC, "1.2.840.113549.1.9.16.3.18"),
        # X25519 key agreement (RFC 8418), Dana's slot of the two-recipient message.
        ("encryptedForBobAndDana", DANA_ENC, "aes128_cbc"),
        # X25519 with HKDF (RFC 9629 style kari) and AES-128-GCM.
        ("authEnvelopedForDanaX25519HKDF", DANA_ENC, "aes128_gcm"),
        # A KEK recipient (kekri) and AES-192-CBC, neither of which we implement.
        ("encryptedKekri", BOB_ENC, "2.16.840.1.101.3.4.1.22"),
    ],
)
def test_unsupported_envelopes_raise_unsupported_algorithm(name, recipient, cipher):
    der = der_of(EXAMPLES / f"{name}.pem")
    assert enveloped.inspect(der).cipher == cipher
    with pytest.raises(UnsupportedAlgorithm):
        enveloped.decrypt(der, [key_pair(recipient)])


def test_misencoded_early_chacha_example_is_malformed_input():
    """An earlier commit of examples-cms put the AuthEnvelopedData `mac` inside the
    EncryptedContentInfo (indefinite-length BER); OpenSSL rejects it too."""
    der = der_of(EXAMPLES / "authEnvelopedForBobChaCha20Poly1305.malformed-ac350e7.pem")
    for operation in (enveloped.inspect, lambda d: enveloped.decrypt(d, [key_pair(BOB_ENC)])):
        with pytest.raises(MalformedInput):
            operation(der)


# --- RFC 4134 -------------------------------------------------------------------------------------

RFC4134_SIGNERS = ["CarlRSASelf", "CarlDSSSelf"]
RFC4134_CERTS = [
    "AliceRSASignByCarl", "BobRSASignByCarl", "DianeRSASignByCarl",
    "AliceDSSSignByCarlNoInherit", "DianeDSSSignByCarlInherit",
]  # fmt: skip


def test_rfc4134_sample_content():
    assert (RFC4134 / "ExContent.bin").read_bytes() == CONTENT


@pytest.mark.parametrize(
    ("example", "signature_oids"),
    [
        ("4.1", [OID_DSA_SHA1]),
        ("4.2", [OID_RSA]),
        ("4.3", [OID_DSA_SHA1]),
        ("4.4", [OID_DSA_SHA1]),
        ("4.5", [OID_RSA]),
        ("4.6", [OID_DSA_SHA1, OID_DSA_SHA1]),
        ("4.7", [OID_DSA_SHA1]),
        ("4.10", [OID_DSA_SHA1]),
    ],
)
def test_rfc4134_signed_examples_are_unsupported_per_signer(example, signature_oids):
    """Every RFC 4134 signature uses DSA or SHA-1, neither of which we verify: each signer is
    reported unsupported_algorithm, and the content is still handed back intact."""
    content = CONTENT if example == "4.3" else None
    result = verify(
        (RFC4134 / f"{example}.bin").read_bytes(),
        content=content,
        trust_anchors=[cert(n) for n in RFC4134_SIGNERS],
        intermediates=[cert(n) for n in RFC4134_CERTS],
        at=AT,
    )
    assert result.content == CONTENT and not result.valid
    assert [s.signature_algorithm for s in result.signers] == signature_oids
    for signer in result.signers:
        assert "unsupported_algorithm" in signer.codes and not signer.signature_ok
        assert signer.certificate is not None


def test_rfc4134_certificates_only_message_is_not_a_signed_message():
    with pytest.raises(MalformedInput):
        verify((RFC4134 / "4.11.bin").read_bytes(), trust_anchors=[cert("CarlRSASelf")], at=AT)


@pytest.mark.parametrize(
    ("example", "cipher"), [("5.1", "1.2.840.113549.3.7"), ("5.2", "1.2.840.113549.3.2")]
)
def test_rfc4134_enveloped_examples_name_bob_but_use_ciphers_we_lack(example, cipher):
    """5.1 is Triple-DES, 5.2 RC2 (with an extra RC2-wrap KEK recipient): both for Bob's RSA key."""
    der = (RFC4134 / f"{example}.bin").read_bytes()
    info = enveloped.inspect(der)
    assert info.cipher == cipher
    assert info.recipients[0].rid.matches(cert("BobRSASignByCarl"))
    with pytest.raises(UnsupportedAlgorithm):
        enveloped.decrypt(der, [(cert("BobRSASignByCarl"), key("BobPrivRSAEncrypt"))])


@pytest.mark.parametrize(
    ("example", "kind"),
    [("4.8", "multipart_signed"), ("4.9", "signed_opaque"), ("5.3", "enveloped")],
)
def test_rfc4134_mime_examples_unwrap(example, kind):
    layer = mime.unwrap((RFC4134 / f"{example}.eml").read_bytes())
    assert layer.kind == kind


@pytest.mark.parametrize("example", ["4.8", "4.9"])
def test_rfc4134_signed_mime_examples_open_with_an_unsupported_dsa_signer(example):
    opened = smime.open_message(
        (RFC4134 / f"{example}.eml").read_bytes(),
        trust_anchors=[cert("CarlDSSSelf")],
        at=AT,
    )
    (layer,) = opened.layers
    (signer,) = layer.verification.signers
    assert signer.signature_algorithm == OID_DSA_SHA1
    assert "unsupported_algorithm" in signer.codes
    assert layer.verification.content.endswith(CONTENT)


def test_rfc4134_enveloped_mime_example_is_unsupported():
    with pytest.raises(UnsupportedAlgorithm):
        smime.open_message(
            (RFC4134 / "5.3.eml").read_bytes(),
            keys=[(cert("BobRSASignByCarl"), key("BobPrivRSAEncrypt"))],
        )


# --- protected-headers samples (pre-RFC 9216 LAMPS keys; their CA is not published) -------------


def test_protected_headers_onepart_signed_sample_verifies_but_is_untrusted():
    """Signed by a draft-era Alice whose CA certificate is in none of the stored material, so
    the chain is untrusted, but signature and messageDigest verify over the embedded entity."""
    opened = smime.open_message((HEADERS / "smime-onepart-signed.eml").read_bytes(), at=AT)
    (layer,) = opened.layers
    (signer,) = layer.verification.signers
    assert signer.signature_ok and signer.message_digest_ok
    assert signer.codes == ("untrusted",)
    assert b"Bob, we need to cancel this contract.\r\n" in opened.message


def test_protected_headers_multipart_signed_sample_was_signed_over_lf_line_ends():
    """This sample's signature covers the first part with bare LF line ends; RFC 8551 section
    3.1.1 says the canonical (CRLF) form is signed, which is what crosses SMTP. We hash the
    canonical form, so the digest differs while the signature over the attributes is good.
    OpenSSL agrees (it verifies this file only with -binary)."""
    layer = mime.unwrap((HEADERS / "smime-multipart-signed.eml").read_bytes())
    result = verify(layer.signature, content=layer.content, trust_anchors=[], at=AT)
    (signer,) = result.signers
    assert signer.signature_ok
    assert "message_digest_mismatch" in signer.codes
    lf_only = verify(
        layer.signature, content=layer.content.replace(b"\r\n", b"\n"), trust_anchors=[], at=AT
    )
    assert lf_only.signers[0].message_digest_ok


# --- the vectors themselves, cross-checked with OpenSSL ------------------------------------------


def openssl(*args: str | Path) -> subprocess.CompletedProcess[bytes]:
    assert OPENSSL is not None
    return subprocess.run([OPENSSL, *map(str, args)], capture_output=True, timeout=60, check=False)


@pytest.fixture(scope="module")
def pem_files(tmp_path_factory) -> dict[str, Path]:
    """RFC 4134's DER certificates and Bob's key as PEM files, and the trust bundles."""
    folder = tmp_path_factory.mktemp("known-answers")
    files = {}
    for name in [*RFC4134_SIGNERS, *RFC4134_CERTS]:
        files[name] = folder / f"{name}.pem"
        files[name].write_bytes(pem.armor("CERTIFICATE", (RFC4134 / f"{name}.cer").read_bytes()))
    files["rfc4134-anchors"] = folder / "anchors.pem"
    files["rfc4134-anchors"].write_bytes(b"".join(files[n].read_bytes() for n in RFC4134_SIGNERS))
    files["rfc4134-certs"] = folder / "certs.pem"
    files["rfc4134-certs"].write_bytes(b"".join(files[n].read_bytes() for n in RFC4134_CERTS))
    files["bob4134.key"] = folder / "bob4134.key"
    files["bob4134.key"].write_bytes(
        pem.armor("PRIVATE KEY", (RFC4134 / "BobPrivRSAEncrypt.pri").read_bytes())
    )
    files["content"] = folder / "content.bin"
    files["content"].write_bytes(CONTENT)
    return files


@pytest.mark.parametrize("name", ["signedByAliceRSA", "signedByAliceRSAPSS"])
def test_openssl_verifies_the_alice_examples(name):
    result = openssl(
        "cms", "-verify", "-inform", "PEM", "-in", EXAMPLES / f"{name}.pem",
        "-CAfile", RFC9216 / "section-3.1.crt", "-purpose", "smimesign",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout == CONTENT


@pytest.mark.parametrize("name", ["encryptedForBobRSAOaep", "encryptedForBobAndDana"])
def test_openssl_decrypts_the_bob_examples(name):
    result = openssl(
        "cms", "-decrypt", "-inform", "PEM", "-in", EXAMPLES / f"{name}.pem",
        "-inkey", RFC9216 / "section-5.4.key", "-recip", RFC9216 / "section-5.3.crt",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout == CONTENT


@pytest.mark.parametrize(
    "name",
    [
        "signedByAliceAndCarlosNoCerts", "signedByCarlosDetached", "signedByCarlosEd25519",
        "authEnvelopedForBobChaCha20Poly1305", "authEnvelopedForDanaX25519HKDF", "encryptedKekri",
    ],
)  # fmt: skip
def test_openssl_parses_the_examples_it_cannot_process(name):
    """OpenSSL 3.0 has no Ed25519 CMS signatures, ChaCha20-Poly1305 or X25519 kari either; it
    must at least read each structure."""
    result = openssl("cms", "-cmsout", "-inform", "PEM", "-in", EXAMPLES / f"{name}.pem", "-noout")
    assert result.returncode == 0, result.stderr


def test_openssl_rejects_the_misencoded_early_chacha_example():
    path = EXAMPLES / "authEnvelopedForBobChaCha20Poly1305.malformed-ac350e7.pem"
    assert openssl("cms", "-cmsout", "-inform", "PEM", "-in", path, "-noout").returncode != 0


@pytest.mark.parametrize(
    ("example", "form"),
    [("4.1", "DER"), ("4.2", "DER"), ("4.3", "DER"), ("4.4", "DER"), ("4.5", "DER"),
     ("4.7", "DER"), ("4.10", "DER"), ("4.8", "SMIME"), ("4.9", "SMIME")],
)  # fmt: skip
def test_openssl_verifies_the_rfc4134_signed_examples(pem_files, example, form):
    """(4.6 is left out: its DSA key inherits its parameters from Carl's, which OpenSSL 3.0
    cannot decode.)"""
    suffix = "eml" if form == "SMIME" else "bin"
    args = ["cms", "-verify", "-inform", form, "-in", RFC4134 / f"{example}.{suffix}"]
    args += ["-CAfile", pem_files["rfc4134-anchors"], "-certfile", pem_files["rfc4134-certs"]]
    args += ["-purpose", "any"]
    if example == "4.3":
        args += ["-content", pem_files["content"], "-binary"]
    result = openssl(*args)
    assert result.returncode == 0, result.stderr
    assert result.stdout.replace(b"\r\n", b"\n").endswith(CONTENT)


@pytest.mark.parametrize(("example", "form"), [("5.1", "DER"), ("5.3", "SMIME")])
def test_openssl_decrypts_the_rfc4134_triple_des_examples(pem_files, example, form):
    suffix = "eml" if form == "SMIME" else "bin"
    result = openssl(
        "cms", "-decrypt", "-inform", form, "-in", RFC4134 / f"{example}.{suffix}",
        "-inkey", pem_files["bob4134.key"], "-recip", pem_files["BobRSASignByCarl"],
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout == CONTENT


def test_openssl_reads_the_rfc4134_certificates_only_message():
    result = openssl("cms", "-cmsout", "-print", "-inform", "DER", "-in", RFC4134 / "4.11.bin")
    assert result.returncode == 0, result.stderr
    assert b"signerInfos:\n      <EMPTY>" in result.stdout


def test_openssl_agrees_on_the_protected_headers_samples():
    onepart = openssl("cms", "-verify", "-noverify", "-in", HEADERS / "smime-onepart-signed.eml")
    assert onepart.returncode == 0, onepart.stderr
    multipart = HEADERS / "smime-multipart-signed.eml"
    assert openssl("cms", "-verify", "-noverify", "-in", multipart).returncode != 0
    assert openssl("cms", "-verify", "-noverify", "-binary", "-in", multipart).returncode == 0


def test_every_vector_file_is_documented_and_unchanged():
    """The README accounts for every file in this suite's folders of tests/vectors (a new vector
    needs its provenance), and SHA256SUMS pins the bytes that were copied from the sources."""
    readme = (VECTORS / "README.md").read_text()
    sums = dict(
        reversed(line.split("  ", 1))
        for line in (VECTORS / "SHA256SUMS").read_text().splitlines()
        if line
    )
    files = sorted(
        path.relative_to(VECTORS).as_posix()
        for folder in (RFC9216, EXAMPLES, RFC4134, HEADERS, VECTORS / "rfc9788")
        for path in folder.rglob("*")
        if path.is_file()
    )
    assert sorted(sums) == files
    for name in files:
        assert Path(name).name in readme, name
        assert hashlib.sha256((VECTORS / name).read_bytes()).hexdigest() == sums[name], name
