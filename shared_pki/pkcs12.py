"""PKCS#12 (RFC 7292) files holding any number of keys of every kind we use, SM2 included.

Why our own: `cryptography` writes and reads PKCS#12, but only one key per file and only key
types it knows, so SM2 keys (and a backup of every key ever held) cannot go through it. Here the
PFX is built from asn1crypto structures and the primitives come from `cryptography`/`hashlib`.

What we write (`build_pfx`):

    PFX v3
      authSafe = data: AuthenticatedSafe
        [ encryptedData: SafeContents of CertBags (x509), encrypted like the keys ]  if certs
        [ data: SafeContents of pkcs8ShroudedKeyBags ]
      macData = HMAC over the authSafe content octets, key from the RFC 7292 B.2 KDF (ID 3)

  flavour "modern": keys and certificates under PBES2 = PBKDF2-HMAC-SHA256 (default 600,000
  iterations, 16-octet salt) + AES-256-CBC; MAC HMAC-SHA-256 with the same iteration count (a
  cheaper MAC would be the cheapest way to test password guesses). That is what OpenSSL 3
  `pkcs12 -export` and cryptography's BestAvailableEncryption write; RFC 9579 PBMAC1 is newer
  and OpenSSL 3.0 does not read it, so the classic MacData with SHA-256 is used.
  flavour "legacy": pbeWithSHAAnd3-KeyTripleDES-CBC for keys and certificates, MAC HMAC-SHA-1,
  2048 iterations by default (OpenSSL's default): what older Outlook/Thunderbird and gpgsm 2.2
  import. It is weak; use it only for those clients.

  Every key bag carries localKeyId (SHA-1 of the key's SubjectPublicKeyInfo, 20 octets) and,
  when given, friendlyName (BMPString); the certificates of that key carry the same localKeyId,
  chain certificates carry none. Callers may add attributes of their own to a key bag
  (`Pkcs12Entry.attributes`: dotted OID -> DER of one value); they are covered by the MAC.

What we read (`parse_pfx`): the above and what OpenSSL/cryptography/Windows/NSS write: PBES2
with PBKDF2 (HMAC-SHA-1/224/256/384/512) and AES-128/192/256-CBC or 3DES-CBC, the PKCS#12 PBEs
with 3DES, RC2 or RC4 (40 and 128 bits each), plain keyBags, nested SafeContents, MacData
with SHA-1/224/256/384/512, in DER or BER: NSS (Thunderbird, Firefox)
writes indefinite lengths and constructed OCTET STRINGs, which asn1crypto reads, and the MAC is
checked over the authSafe's content octets as they came. Files without a MAC are refused unless
`require_mac=False` (integrity is otherwise unchecked); PBMAC1 and public-key integrity mode
are refused.

Errors (all shared_pki.errors types; nothing else escapes):
  * `WrongPassword` (a KeyLoadError): the MAC does not verify and nothing in the file decrypts
    under the password. A file altered in every encrypted part looks the same: the format
    cannot tell the two apart, and both are refused.
  * `Pkcs12Tampered` (a KeyLoadError): the MAC does not verify but some encrypted part decrypts
    cleanly under the password, so the password is right and the file was altered.
  * `MalformedInput`: not a PFX at all, or a MAC-verified file whose content does not parse.
  * `UnsupportedAlgorithm`: a well-formed file using something we do not implement.
We chose KeyLoadError subclasses for both wrong password and tampering (not DecryptionFailed,
which in shared_pki means a CMS message's content did not decrypt): both mean "this key file
does not load", and callers that care tell them apart by type or by `code`.

Passwords are `str` (or UTF-8 `bytes`). PBES2 uses the UTF-8 octets, the PKCS#12 KDF (MAC and
legacy PBE) the BMPString form with a two-octet terminator, as OpenSSL does.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass, field
from typing import Literal

from asn1crypto import algos, cms, core
from asn1crypto import keys as asn1_keys
from asn1crypto import pkcs12 as asn1_p12
from asn1crypto import x509 as asn1_x509
from cryptography.hazmat.decrepit.ciphers.algorithms import ARC4, TripleDES
from cryptography.hazmat.primitives import hashes, padding, serialization
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

from shared_pki import sm2
from shared_pki.errors import KeyLoadError, MalformedInput, PkiError, UnsupportedAlgorithm
from shared_pki.keys import Certificate, Credential, PrivateKey, load_pkcs8

Flavour = Literal["modern", "legacy"]
MODERN_ITERATIONS = 600_000
LEGACY_ITERATIONS = 2048
MIN_ITERATIONS = 1000  # what we accept to write; tests may go this low, people should not
MAX_ITERATIONS = 10_000_000  # what we agree to spend when reading someone's file
_SALT_BYTES = 16

_HASHES = {
    "sha1": (hashlib.sha1, hashes.SHA1, 64),
    "sha224": (hashlib.sha224, hashes.SHA224, 64),
    "sha256": (hashlib.sha256, hashes.SHA256, 64),
    "sha384": (hashlib.sha384, hashes.SHA384, 128),
    "sha512": (hashlib.sha512, hashes.SHA512, 128),
}


class WrongPassword(KeyLoadError):
    """The MAC does not verify and nothing decrypts: the wrong password (or every encrypted
    part altered, which the format cannot tell apart)."""

    code = "wrong_password"


class Pkcs12Tampered(KeyLoadError):
    """The password is right (something decrypts under it) but the MAC does not verify."""

    code = "pkcs12_tampered"


@dataclass(frozen=True)
class Pkcs12Entry:
    """One private key, its certificate (None for a key not yet certified), the issuers of that
    certificate, further certificates of the same key (older or newer), and bag attributes."""

    key: PrivateKey
    certificate: Certificate | None = None
    chain: tuple[Certificate, ...] = ()
    friendly_name: str | None = None
    other_certificates: tuple[Certificate, ...] = ()
    attributes: dict[str, bytes] = field(default_factory=dict)  # dotted OID -> DER value


# ---- primitives -----------------------------------------------------------------------------


def _password_bytes(password: str | bytes) -> bytes:
    if isinstance(password, bytes):
        try:
            password.decode("utf-8")
        except UnicodeDecodeError:
            raise KeyLoadError("A PKCS#12 password must be UTF-8 text.") from None
        return password
    if isinstance(password, str):
        return password.encode("utf-8")
    raise KeyLoadError("A PKCS#12 password must be str or bytes.")


def _bmp(password: bytes) -> bytes:
    return password.decode("utf-8").encode("utf-16-be") + b"\x00\x00"


def pkcs12_kdf(
    password: bytes,
    salt: bytes,
    purpose: int,
    iterations: int,
    length: int,
    digest: str,
    *,
    states: list[bytes] | None = None,
) -> bytes:
    """RFC 7292 appendix B.2 (purpose 1 key, 2 IV, 3 MAC key); password as UTF-8 octets.
    states, when given, receives I after each update (what the next round hashes)."""
    hash_new, _, v = _HASHES[digest]
    u = hash_new().digest_size
    d = bytes([purpose]) * v

    def fill(data: bytes) -> bytes:
        if not data:
            return b""
        count = -(-len(data) // v) * v
        return (data * (count // len(data) + 1))[:count]

    i = bytearray(fill(salt) + fill(_bmp(password)))
    out = b""
    while len(out) < length:
        a = hash_new(d + bytes(i)).digest()
        for _ in range(iterations - 1):
            a = hash_new(a).digest()
        out += a
        if len(out) >= length:
            break
        b = int.from_bytes((a * (v // u + 1))[:v], "big") + 1
        for start in range(0, len(i), v):
            block = (int.from_bytes(i[start : start + v], "big") + b) % (1 << (8 * v))
            i[start : start + v] = block.to_bytes(v, "big")
        if states is not None:
            states.append(bytes(i))
    return out[:length]


def gnupg_derives_the_same_key(password: bytes, salt: bytes, iterations: int) -> bool:
    """Whether GnuPG 2.2's gpgsm derives the same 3DES key from this salt. Its PKCS#12 KDF
    writes each updated 64-octet block of I without its leading zero octets (sm/minip12.c,
    gcry_mpi_print), so a block that starts with 0x00 gives it another key: about 1 salt in
    128, and the import fails ("decryption failed")."""
    states: list[bytes] = []
    pkcs12_kdf(password, salt, 1, iterations, 24, "sha1", states=states)
    return all(state[start] != 0 for state in states for start in range(0, len(state), 64))


def _check_iterations(iterations: int, *, writing: bool) -> None:
    low = MIN_ITERATIONS if writing else 1
    if not isinstance(iterations, int) or not low <= iterations <= MAX_ITERATIONS:
        raise UnsupportedAlgorithm(f"PKCS#12 iteration count {iterations!r} outside {low}.."
                                   f"{MAX_ITERATIONS}.")  # fmt: skip


def _cbc(algorithm: object, iv: bytes, data: bytes, *, encrypt: bool) -> bytes:
    cipher = Cipher(algorithm, modes.CBC(iv))  # type: ignore[arg-type]
    block = algorithm.block_size  # type: ignore[attr-defined]
    if encrypt:
        padder = padding.PKCS7(block).padder()
        encryptor = cipher.encryptor()
        return encryptor.update(padder.update(data) + padder.finalize()) + encryptor.finalize()
    decryptor = cipher.decryptor()
    padded = decryptor.update(data) + decryptor.finalize()
    unpadder = padding.PKCS7(block).unpadder()
    return unpadder.update(padded) + unpadder.finalize()  # ValueError on bad padding


def _pbes2_algorithm(iterations: int) -> algos.EncryptionAlgorithm:
    return algos.EncryptionAlgorithm(
        {
            "algorithm": "pbes2",
            "parameters": {
                "key_derivation_func": {
                    "algorithm": "pbkdf2",
                    "parameters": {
                        "salt": algos.Pbkdf2Salt(name="specified", value=os.urandom(_SALT_BYTES)),
                        "iteration_count": iterations,
                        "prf": {"algorithm": "sha256", "parameters": core.Null()},
                    },
                },
                "encryption_scheme": {"algorithm": "aes256_cbc", "parameters": os.urandom(16)},
            },
        }
    )


def _legacy_algorithm(iterations: int, password: bytes) -> algos.EncryptionAlgorithm:
    """3DES with a salt gpgsm derives the right key from (the legacy flavour is for it)."""
    salt = os.urandom(8)
    while not gnupg_derives_the_same_key(password, salt, iterations):
        salt = os.urandom(8)
    return algos.EncryptionAlgorithm(
        {
            "algorithm": "pkcs12_sha1_tripledes_3key",
            "parameters": {"salt": salt, "iterations": iterations},
        }
    )


def _pbe(algorithm: algos.EncryptionAlgorithm, password: bytes, data: bytes, *, encrypt: bool):
    """Encrypt or decrypt under a password-based scheme (ValueError on bad padding)."""
    name = algorithm["algorithm"].native
    if name == "pbes2":
        params = algorithm["parameters"]
        kdf = params["key_derivation_func"]
        if kdf["algorithm"].native != "pbkdf2":
            raise UnsupportedAlgorithm(f"PBES2 with {kdf['algorithm'].native} is not supported.")
        kdf_params = kdf["parameters"]
        if kdf_params["salt"].name != "specified":
            raise UnsupportedAlgorithm("PBKDF2 with an 'other source' salt is not supported.")
        prf = kdf_params["prf"]["algorithm"].native
        if prf not in _HASHES:
            raise UnsupportedAlgorithm(f"PBKDF2 with HMAC-{prf} is not supported.")
        iterations = kdf_params["iteration_count"].native
        _check_iterations(iterations, writing=encrypt)
        scheme = params["encryption_scheme"]
        cipher_name = scheme["algorithm"].native
        sizes = {"aes128_cbc": 16, "aes192_cbc": 24, "aes256_cbc": 32, "tripledes_3key": 24}
        if cipher_name not in sizes:
            raise UnsupportedAlgorithm(f"PBES2 with {cipher_name} is not supported.")
        length = sizes[cipher_name]
        if kdf_params["key_length"].native not in (None, length):
            raise MalformedInput("PBES2 key length does not fit its cipher.")
        key = PBKDF2HMAC(
            _HASHES[prf][1](), length, kdf_params["salt"].chosen.native, iterations
        ).derive(password)
        iv = scheme["parameters"].native
        cipher = TripleDES(key) if cipher_name == "tripledes_3key" else algorithms.AES(key)
        if not isinstance(iv, bytes) or len(iv) != cipher.block_size // 8:
            raise MalformedInput("PBES2 IV of the wrong length.")
        return _cbc(cipher, iv, data, encrypt=encrypt)
    if name in ("pkcs12_sha1_tripledes_3key", "pkcs12_sha1_tripledes_2key"):
        salt = algorithm["parameters"]["salt"].native
        iterations = algorithm["parameters"]["iterations"].native
        _check_iterations(iterations, writing=encrypt)
        key = pkcs12_kdf(password, salt, 1, iterations, 24, "sha1")
        if name.endswith("2key"):
            key = key[:16] + key[:8]
        iv = pkcs12_kdf(password, salt, 2, iterations, 8, "sha1")
        return _cbc(TripleDES(key), iv, data, encrypt=encrypt)
    if name in _RC2_BITS:
        if encrypt:
            raise UnsupportedAlgorithm("RC2 is read from old files, never written.")
        salt = algorithm["parameters"]["salt"].native
        iterations = algorithm["parameters"]["iterations"].native
        _check_iterations(iterations, writing=False)
        bits = _RC2_BITS[name]
        key = pkcs12_kdf(password, salt, 1, iterations, bits // 8, "sha1")
        iv = pkcs12_kdf(password, salt, 2, iterations, 8, "sha1")
        # imported here: pycryptodome loads cffi and pycparser (20 ms), for old files only
        from Cryptodome.Cipher import ARC2

        padded = ARC2.new(key, ARC2.MODE_CBC, iv=iv, effective_keylen=bits).decrypt(
            _whole_blocks(data, 8)
        )
        unpadder = padding.PKCS7(64).unpadder()
        return unpadder.update(padded) + unpadder.finalize()  # ValueError on bad padding
    if name in _RC4_BITS:
        if encrypt:
            raise UnsupportedAlgorithm("RC4 is read from old files, never written.")
        salt = algorithm["parameters"]["salt"].native
        iterations = algorithm["parameters"]["iterations"].native
        _check_iterations(iterations, writing=False)
        key = pkcs12_kdf(password, salt, 1, iterations, _RC4_BITS[name] // 8, "sha1")
        return Cipher(ARC4(key), None).decryptor().update(data)  # a stream: no padding
    raise UnsupportedAlgorithm(
        f"PKCS#12 encryption {name} is not supported (only PBES2, 3DES, RC2 and RC4)."
    )


# RC2 with the PKCS#12 KDF (RFC 7292 appendix C): what NSS (Thunderbird and Firefox backups
# before NSS chose PBES2), Windows and OpenSSL before 3.0 encrypted certificates with, 40-bit
# keys by default. `cryptography`'s RC2 takes 128-bit keys only, so pycryptodomex does it.
_RC2_BITS = {"pkcs12_sha1_rc2_40": 40, "pkcs12_sha1_rc2_128": 128}


# RC4 with the PKCS#12 KDF, which nothing writes by default any more; read so that no file
# `cryptography`'s loader opened is refused now.
_RC4_BITS = {"pkcs12_sha1_rc4_40": 40, "pkcs12_sha1_rc4_128": 128}


def _whole_blocks(data: bytes, block: int) -> bytes:
    if not data or len(data) % block:
        raise ValueError("ciphertext is not a whole number of blocks")
    return data


# ---- keys -----------------------------------------------------------------------------------


def _pkcs8(key: PrivateKey) -> bytes:
    if isinstance(key, sm2.SM2PrivateKey):
        return key.to_der()
    try:
        return key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    except (AttributeError, TypeError, ValueError) as error:
        raise UnsupportedAlgorithm(
            f"Cannot put a {type(key).__name__} in PKCS#12: {error}"
        ) from None


def _load_pkcs8(der: bytes) -> PrivateKey:
    try:
        return load_pkcs8(der)
    except MalformedInput as error:
        raise MalformedInput(f"A PKCS#12 key bag is not PKCS#8: {error.message}") from None
    except KeyLoadError as error:
        raise UnsupportedAlgorithm(f"A PKCS#12 key does not load: {error.message}") from None


def public_key_info(key: PrivateKey) -> bytes:
    """The DER SubjectPublicKeyInfo of a private key (cryptography or SM2)."""
    if isinstance(key, sm2.SM2PrivateKey):
        return key.public_key.to_der()
    return key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _public_bits(spki_der: bytes) -> bytes:
    return asn1_keys.PublicKeyInfo.load(spki_der)["public_key"].dump()


def certificate_matches(key: PrivateKey, certificate: Certificate) -> bool:
    """Whether the certificate is for this private key (compares the public key bits)."""
    try:
        ours = _public_bits(public_key_info(key))
        theirs = certificate["tbs_certificate"]["subject_public_key_info"]["public_key"].dump()
    except (ValueError, TypeError, KeyError):
        return False
    return hmac.compare_digest(ours, theirs)


def local_key_id(key: PrivateKey) -> bytes:
    return hashlib.sha1(public_key_info(key)).digest()


# ---- building -------------------------------------------------------------------------------


def _attributes(items: list[tuple[str, object]]) -> asn1_p12.Attributes | None:
    if not items:
        return None
    return asn1_p12.Attributes([{"type": oid, "values": [value]} for oid, value in items])


def build_pfx(
    entries: list[Pkcs12Entry],
    password: str | bytes,
    *,
    flavour: Flavour = "modern",
    iterations: int | None = None,
) -> bytes:
    """A PFX holding every entry's key, certificates and chain (see the module docstring)."""
    if flavour not in ("modern", "legacy"):
        raise UnsupportedAlgorithm(f"Unknown PKCS#12 flavour {flavour!r}.")
    if not entries:
        raise KeyLoadError("A PKCS#12 file needs at least one key.")
    secret = _password_bytes(password)
    if iterations is None:
        iterations = MODERN_ITERATIONS if flavour == "modern" else LEGACY_ITERATIONS
    _check_iterations(iterations, writing=True)

    def new_algorithm() -> algos.EncryptionAlgorithm:
        if flavour == "modern":
            return _pbes2_algorithm(iterations)
        return _legacy_algorithm(iterations, secret)

    key_bags, cert_bags, seen_certs = [], [], set()

    def add_cert(cert: Certificate, key_id: bytes | None) -> None:
        der = cert.dump()
        if der in seen_certs:
            return
        seen_certs.add(der)
        bag = asn1_p12.CertBag({"cert_id": "x509", "cert_value": asn1_x509.Certificate.load(der)})
        attributes = [("local_key_id", core.OctetString(key_id))] if key_id else []
        cert_bags.append(
            {"bag_id": "cert_bag", "bag_value": bag, "bag_attributes": _attributes(attributes)}
        )

    for entry in entries:
        key_id = local_key_id(entry.key)
        for cert in (entry.certificate, *entry.other_certificates):
            if cert is None:
                continue
            if not certificate_matches(entry.key, cert):
                raise KeyLoadError("A certificate given for a key is not that key's.")
            add_cert(cert, key_id)
    for entry in entries:
        for cert in entry.chain:
            add_cert(cert, None)
    for entry in entries:
        algorithm = new_algorithm()
        encrypted = _pbe(algorithm, secret, _pkcs8(entry.key), encrypt=True)
        shrouded = asn1_keys.EncryptedPrivateKeyInfo(
            {"encryption_algorithm": algorithm, "encrypted_data": encrypted}
        )
        attributes: list[tuple[str, object]] = [
            ("local_key_id", core.OctetString(local_key_id(entry.key)))
        ]
        if entry.friendly_name:
            attributes.append(("friendly_name", core.BMPString(entry.friendly_name)))
        for oid, value in entry.attributes.items():
            try:
                attributes.append((oid, core.Any.load(value)))
            except ValueError as error:
                raise MalformedInput(f"Attribute {oid} is not DER: {error}") from None
        key_bags.append(
            {
                "bag_id": "pkcs8_shrouded_key_bag",
                "bag_value": shrouded,
                "bag_attributes": _attributes(attributes),
            }
        )

    safe = []
    if cert_bags:
        algorithm = new_algorithm()
        plain = asn1_p12.SafeContents(cert_bags).dump()
        encrypted_data = cms.EncryptedData(
            {
                "version": "v0",
                "encrypted_content_info": {
                    "content_type": "data",
                    "content_encryption_algorithm": algorithm,
                    "encrypted_content": _pbe(algorithm, secret, plain, encrypt=True),
                },
            }
        )
        safe.append(cms.ContentInfo({"content_type": "encrypted_data", "content": encrypted_data}))
    safe.append(
        cms.ContentInfo({"content_type": "data", "content": asn1_p12.SafeContents(key_bags).dump()})
    )
    auth_safe = asn1_p12.AuthenticatedSafe(safe).dump()
    digest = "sha256" if flavour == "modern" else "sha1"
    salt = os.urandom(_SALT_BYTES if flavour == "modern" else 8)
    mac = _mac(secret, salt, iterations, digest, auth_safe)
    pfx = asn1_p12.Pfx(
        {
            "version": "v3",
            "auth_safe": {"content_type": "data", "content": auth_safe},
            "mac_data": {
                "mac": {
                    "digest_algorithm": {"algorithm": digest, "parameters": core.Null()},
                    "digest": mac,
                },
                "mac_salt": salt,
                "iterations": iterations,
            },
        }
    )
    return pfx.dump()


def _mac(password: bytes, salt: bytes, iterations: int, digest: str, data: bytes) -> bytes:
    hash_new = _HASHES[digest][0]
    key = pkcs12_kdf(password, salt, 3, iterations, hash_new().digest_size, digest)
    return hmac.new(key, data, hash_new).digest()


# ---- parsing --------------------------------------------------------------------------------


@dataclass
class _Bag:
    kind: str  # "key" or "cert"
    value: object  # PrivateKey or Certificate
    key_id: bytes | None
    friendly_name: str | None
    attributes: dict[str, bytes]


def _bag_attributes(bag: asn1_p12.SafeBag) -> tuple[bytes | None, str | None, dict[str, bytes]]:
    key_id = name = None
    extra: dict[str, bytes] = {}
    for attribute in bag["bag_attributes"]:
        kind = attribute["type"].native
        values = list(attribute["values"])
        if not values:
            continue
        if kind == "local_key_id":
            key_id = values[0].native
        elif kind == "friendly_name":
            name = values[0].native
        else:
            extra[attribute["type"].dotted] = values[0].dump()
    return key_id, name, extra


def _collect(contents: bytes, password: bytes, bags: list[_Bag], depth: int = 0) -> None:
    if depth > 4:
        raise MalformedInput("PKCS#12 SafeContents nested too deeply.")
    for bag in asn1_p12.SafeContents.load(contents):
        kind = bag["bag_id"].native
        key_id, name, extra = _bag_attributes(bag)
        if kind == "pkcs8_shrouded_key_bag":
            shrouded = bag["bag_value"]
            try:
                der = _pbe(
                    shrouded["encryption_algorithm"],
                    password,
                    shrouded["encrypted_data"].native,
                    encrypt=False,
                )
            except ValueError:
                raise MalformedInput("A PKCS#12 key bag does not decrypt.") from None
            bags.append(_Bag("key", _load_pkcs8(der), key_id, name, extra))
        elif kind == "key_bag":
            bags.append(_Bag("key", _load_pkcs8(bag["bag_value"].dump()), key_id, name, extra))
        elif kind == "cert_bag":
            cert_bag = bag["bag_value"]
            if cert_bag["cert_id"].native != "x509":
                continue
            der = cert_bag["cert_value"].parsed.dump()
            cert = asn1_x509.Certificate.load(der, strict=True)
            cert.native  # noqa: B018  full parse now
            bags.append(_Bag("cert", cert, key_id, name, extra))
        elif kind == "safe_contents":
            _collect(bag["bag_value"].dump(), password, bags, depth + 1)
        # CRL and secret bags are not ours to read.


def _safe_contents(info: cms.ContentInfo, password: bytes) -> bytes:
    content_type = info["content_type"].native
    if content_type == "data":
        return info["content"].native
    if content_type == "encrypted_data":
        eci = info["content"]["encrypted_content_info"]
        try:
            return _pbe(
                eci["content_encryption_algorithm"],
                password,
                eci["encrypted_content"].native,
                encrypt=False,
            )
        except ValueError:
            raise MalformedInput("A PKCS#12 EncryptedData does not decrypt.") from None
    raise UnsupportedAlgorithm(f"PKCS#12 content of type {content_type} is not supported.")


def _probe(auth_safe: bytes, password: bytes) -> bool:
    """Whether anything in the file decrypts cleanly under the password (after a MAC failure)."""
    try:
        infos = asn1_p12.AuthenticatedSafe.load(auth_safe)
        for info in infos:
            try:
                contents = _safe_contents(info, password)
                if info["content_type"].native == "encrypted_data":
                    asn1_p12.SafeContents.load(contents).native  # noqa: B018
                    return True
                for bag in asn1_p12.SafeContents.load(contents):
                    if bag["bag_id"].native == "pkcs8_shrouded_key_bag":
                        shrouded = bag["bag_value"]
                        der = _pbe(
                            shrouded["encryption_algorithm"],
                            password,
                            shrouded["encrypted_data"].native,
                            encrypt=False,
                        )
                        asn1_keys.PrivateKeyInfo.load(der, strict=True).native  # noqa: B018
                        return True
            except (PkiError, ValueError, TypeError, KeyError):
                continue
    except (ValueError, TypeError, KeyError):
        return False
    return False


def _verify_mac(pfx: asn1_p12.Pfx, auth_safe: bytes, password: bytes) -> None:
    mac_data = pfx["mac_data"]
    digest = mac_data["mac"]["digest_algorithm"]["algorithm"].native
    if digest not in _HASHES:
        if mac_data["mac"]["digest_algorithm"]["algorithm"].dotted == "1.2.840.113549.1.5.14":
            raise UnsupportedAlgorithm("PKCS#12 with a PBMAC1 (RFC 9579) MAC is not supported.")
        raise UnsupportedAlgorithm(f"PKCS#12 MAC with {digest} is not supported.")
    iterations = mac_data["iterations"].native
    _check_iterations(iterations, writing=False)
    expected = _mac(password, mac_data["mac_salt"].native, iterations, digest, auth_safe)
    if hmac.compare_digest(expected, mac_data["mac"]["digest"].native):
        return
    if _probe(auth_safe, password):
        raise Pkcs12Tampered("The PKCS#12 file was altered (its MAC does not verify).")
    raise WrongPassword("Wrong password for the PKCS#12 file (or the file was altered).")


def parse_pfx(data: bytes, password: str | bytes, *, require_mac: bool = True) -> list[Pkcs12Entry]:
    """Every key in the PFX with its certificate(s) and chain, in file order."""
    secret = _password_bytes(password)
    if not isinstance(data, bytes | bytearray):
        raise MalformedInput("PKCS#12 data must be bytes.")
    try:
        pfx = asn1_p12.Pfx.load(bytes(data), strict=True)
        if pfx["version"].native != "v3":
            raise UnsupportedAlgorithm(f"PKCS#12 version {pfx['version'].native} is not v3.")
        if pfx["auth_safe"]["content_type"].native != "data":
            raise UnsupportedAlgorithm("PKCS#12 in public-key integrity mode is not supported.")
        auth_safe = pfx["auth_safe"]["content"].native
        if not isinstance(auth_safe, bytes):
            raise MalformedInput("PKCS#12 authSafe is not an OCTET STRING.")
        has_mac = pfx["mac_data"].native is not None
    except (ValueError, TypeError, KeyError) as error:
        raise MalformedInput(f"Not a PKCS#12 file: {error}") from None
    if has_mac:
        try:
            _verify_mac(pfx, auth_safe, secret)
        except (ValueError, TypeError, KeyError) as error:
            raise MalformedInput(f"PKCS#12 MAC data does not parse: {error}") from None
    elif require_mac:
        raise KeyLoadError("The PKCS#12 file has no MAC, so its integrity cannot be checked.")
    bags: list[_Bag] = []
    try:
        for info in asn1_p12.AuthenticatedSafe.load(auth_safe):
            _collect(_safe_contents(info, secret), secret, bags)
    except (ValueError, TypeError, KeyError) as error:
        raise MalformedInput(f"PKCS#12 content does not parse: {error}") from None
    return _pair(bags)


def _pair(bags: list[_Bag]) -> list[Pkcs12Entry]:
    """Certificates go to the key whose public key they carry (localKeyId is only a hint that
    producers fill in differently); the rest are chain candidates."""
    keys = [bag for bag in bags if bag.kind == "key"]
    certs: list[Certificate] = [bag.value for bag in bags if bag.kind == "cert"]  # type: ignore[misc]
    mine = {i: [c for c in certs if certificate_matches(k.value, c)] for i, k in enumerate(keys)}
    leaf_ders = {c.dump() for found in mine.values() for c in found}
    pool = [c for c in certs if c.dump() not in leaf_ders]
    entries = []
    for index, key_bag in enumerate(keys):
        leaf = mine[index][0] if mine[index] else None
        chain = _chain(leaf, pool) if leaf is not None else []
        if len(keys) == 1:  # a single-key file: every other certificate belongs to it
            chain += [c for c in pool if all(c.dump() != d.dump() for d in chain)]
        entries.append(
            Pkcs12Entry(
                key=key_bag.value,
                certificate=leaf,
                chain=tuple(chain),
                friendly_name=key_bag.friendly_name,
                other_certificates=tuple(mine[index][1:]),
                attributes=key_bag.attributes,
            )
        )
    return entries


def _chain(leaf: Certificate, pool: list[Certificate]) -> list[Certificate]:
    chain: list[Certificate] = []
    seen = {leaf.dump()}
    current = leaf
    while current.issuer.dump() != current.subject.dump():
        issuer = next(
            (c for c in pool if c.subject.dump() == current.issuer.dump() and c.dump() not in seen),
            None,
        )
        if issuer is None:
            break
        chain.append(issuer)
        seen.add(issuer.dump())
        current = issuer
    return chain


def load_pkcs12(data: bytes, password: bytes | None = None) -> Credential:
    """The key, certificate and chain of a PKCS#12 file (.p12/.pfx), through parse_pfx:
    `cryptography`'s loader reads DER only and falls back to BER with a deprecation warning
    ("may become an exception"), and NSS (Thunderbird, Firefox) writes BER. The first key that
    has its certificate in the file is taken (RSA, EC or SM2)."""
    try:
        entries = parse_pfx(data, b"" if password is None else password)
    except KeyLoadError as error:
        # Its subtypes (wrong password, tampered) keep their words but not their codes here:
        # callers of this function know one code for a key file that does not load.
        raise KeyLoadError(error.message) from None
    except PkiError as error:
        raise KeyLoadError(f"Not a PKCS#12 file we can read: {error.message}") from None
    for entry in entries:
        if entry.certificate is not None:
            return Credential(entry.key, entry.certificate, entry.chain)
    raise KeyLoadError("The PKCS#12 file holds no private key with its certificate.")
