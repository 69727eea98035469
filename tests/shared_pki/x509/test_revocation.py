"""shared_pki.x509.revocation and its hook in x509.validate and cms.verify: CRL signatures by the
issuer (RSA, ECDSA, SM2), CRLs current or not, revoked certificates with date and reason, the
rule for a trusted signing time, "revocation not checked" said distinctly, and agreement with
OpenSSL: `openssl crl -verify` and `openssl verify -crl_check` on the CRLs our CA issues
(shared_pki.ca.crl), and our reading of a CRL that `openssl ca -gencrl` made."""

from __future__ import annotations

import datetime
import subprocess
from pathlib import Path

import pytest
from asn1crypto import crl as asn1_crl
from asn1crypto import pem
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from harness import pki
from harness.peers import require
from harness.sm_pki import SmPki

from shared_pki import sm2, smime
from shared_pki.ca import crl as ca_crl
from shared_pki.ca import hierarchy
from shared_pki.ca.common import KeyCert
from shared_pki.cms import signed, verify
from shared_pki.keys import Credential
from shared_pki.x509 import revocation, validate

OPENSSL = require("openssl")
NOW = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
T0 = NOW - datetime.timedelta(hours=1)
DAY = datetime.timedelta(days=1)


class Chain:
    """root -> issuing CA -> leaf, with what make_crl and the checks need."""

    def __init__(self, root: KeyCert, issuing: KeyCert, leaf, leaf_key, extra_leaf) -> None:
        self.root, self.issuing = root, issuing
        self.leaf, self.leaf_key, self.other_leaf = leaf, leaf_key, extra_leaf

    def crl(self, by: str = "issuing", revoked=(), **kw) -> bytes:
        kw.setdefault("this_update", T0)
        kw.setdefault("next_update", T0 + 7 * DAY)
        kw.setdefault("number", 1)
        return ca_crl.make_crl(getattr(self, by), list(revoked), **kw)


def _intl(key_type: str) -> Chain:
    root = pki.root(f"revocation root {key_type}", key_type)
    issuing = root.intermediate(f"revocation issuing {key_type}", key_type)
    leaf = issuing.smime("alice@example.test", "p256")
    other = issuing.smime("bob@example.test", "p256")
    return Chain(
        KeyCert(root.key, root.asn1), KeyCert(issuing.key, issuing.asn1), leaf.asn1, leaf.key,
        other.asn1,
    )  # fmt: skip


def _sm2() -> Chain:
    # OpenSSL checks intermediate certificates with the empty SM2 ID (REFERENCE.md).
    sm = SmPki(intermediate=True, intermediate_id=b"")
    leaf, other = sm.person("alice@example.test"), sm.person("bob@example.test")
    return Chain(
        KeyCert(sm.root.key, sm.root.cert), KeyCert(sm.issuer.key, sm.issuer.cert), leaf.cert,
        leaf.key, other.cert,
    )  # fmt: skip


@pytest.fixture(scope="module", params=["ecdsa", "rsa", "sm2"])
def chain(request) -> Chain:
    return {"ecdsa": lambda: _intl("p256"), "rsa": lambda: _intl("rsa2048"), "sm2": _sm2}[
        request.param
    ]()


def _openssl(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [OPENSSL, *map(str, args)], capture_output=True, text=True, timeout=60, check=False
    )


def _pem(path: Path, ders: list[bytes], label: str = "CERTIFICATE") -> Path:
    path.write_bytes(b"".join(pem.armor(label, der) for der in ders))
    return path


def _tampered(der: bytes) -> bytes:
    """The CRL with one bit of its thisUpdate changed, signature kept."""
    value = asn1_crl.CertificateList.load(der)
    tbs = value["tbs_cert_list"]
    changed = bytearray(tbs.dump())
    encoded = tbs["this_update"].dump()
    at = bytes(changed).index(encoded) + len(encoded) - 2
    changed[at] ^= 0x01
    new_tbs = asn1_crl.TbsCertList.load(bytes(changed))
    return asn1_crl.CertificateList(
        {
            "tbs_cert_list": new_tbs,
            "signature_algorithm": value["signature_algorithm"],
            "signature": value["signature"],
        }
    ).dump()


def _sm2_opts(chain: Chain) -> list[str]:
    if isinstance(chain.leaf_key, sm2.SM2PrivateKey):
        return ["-vfyopt", "distid:1234567812345678"]
    return []


BOTH_IDS = (sm2.DEFAULT_ID, b"")


# ---- the CRL's signature -------------------------------------------------------------------


def test_a_crl_is_signed_by_its_issuer_and_openssl_agrees(chain, tmp_path):
    good = chain.crl()
    cases = {
        "signed by the issuer": (good, chain.issuing.certificate),
        "checked against another CA": (good, chain.root.certificate),
        "altered after signing": (_tampered(good), chain.issuing.certificate),
    }
    for name, (der, issuer) in cases.items():
        ours = revocation.signed_by(revocation.parse_crl(der), issuer)
        crl_path = _pem(tmp_path / "c.crl", [der], "X509 CRL")
        theirs = _openssl("crl", "-in", crl_path, "-noout", "-verify",
                          "-CAfile", _pem(tmp_path / "ca.pem", [issuer.dump()]))  # fmt: skip
        openssl_ok = "verify OK" in theirs.stdout + theirs.stderr
        assert ours == openssl_ok == (name == "signed by the issuer"), (name, theirs)


def test_an_issuer_without_crl_sign_cannot_sign_crls(chain):
    leaf_as_issuer = revocation.parse_crl(chain.crl())
    assert not revocation.signed_by(leaf_as_issuer, chain.leaf)


# ---- currency, status, reason --------------------------------------------------------------


def test_a_crl_counts_only_while_current(chain):
    der = chain.crl(revoked=[(chain.leaf.serial_number, T0 - DAY, "key_compromise")])
    issuer = chain.issuing.certificate
    for now in (T0 - DAY, T0 + 8 * DAY):
        result = revocation.check(chain.leaf, issuer, [der], now=now)
        assert (result.status, result.detail) == (
            revocation.NOT_CHECKED,
            revocation.CRL_NOT_CURRENT,
        )
        assert "not checked" in result.message and "not current" in result.message
    assert revocation.check(chain.leaf, issuer, [der], now=NOW).status == revocation.REVOKED


def test_a_revoked_certificate_with_its_date_and_reason_and_a_good_one(chain):
    when = (T0 - 2 * DAY).replace(microsecond=0)
    der = chain.crl(revoked=[(chain.leaf.serial_number, when, "keyCompromise")], number=7)
    issuer = chain.issuing.certificate
    revoked = revocation.check(chain.leaf, issuer, [der], now=NOW)
    assert (revoked.status, revoked.revoked_at, revoked.reason) == (
        revocation.REVOKED, when, "key_compromise",
    )  # fmt: skip
    assert revoked.invalidates and revoked.crl_number == 7
    assert f"revoked on {when:%Y-%m-%d %H:%M} UTC (key compromise)" in revoked.message
    good = revocation.check(chain.other_leaf, issuer, [der], now=NOW)
    assert (good.status, good.invalidates) == (revocation.GOOD, False)
    assert "is not revoked" in good.message


def test_without_a_usable_crl_revocation_is_not_checked_in_words(chain):
    issuer = chain.issuing.certificate
    cases = {
        revocation.NO_CRL: [],
        revocation.CRL_MALFORMED: [b"\x30\x03\x02\x01\x00"],
        revocation.CRL_NOT_SIGNED_BY_ISSUER: [_tampered(chain.crl())],
    }
    for detail, crls in cases.items():
        result = revocation.check(chain.leaf, issuer, crls, now=NOW)
        assert (result.status, result.detail, result.checked) == (
            revocation.NOT_CHECKED, detail, False,
        )  # fmt: skip
        assert result.message.startswith("Revocation of 'alice@example.test")
        assert "not checked" in result.message
    # Another issuer's CRL says nothing about this certificate.
    root_crl = chain.crl("root", revoked=[(chain.leaf.serial_number, T0, None)])
    assert revocation.check(chain.leaf, issuer, [root_crl], now=NOW).detail == revocation.NO_CRL


# ---- the signing-time rule -------------------------------------------------------------------


def test_revoked_before_the_trusted_time_is_invalid_after_it_still_valid_then(chain):
    revoked_at = T0 - DAY
    der = chain.crl(revoked=[(chain.leaf.serial_number, revoked_at, "superseded")])
    issuer = chain.issuing.certificate

    def at(trusted: datetime.datetime | None) -> revocation.RevocationCheck:
        return revocation.check(chain.leaf, issuer, [der], now=NOW, trusted_time=trusted)

    before = at(revoked_at - DAY)  # signed, and timestamped, a day before the revocation
    assert (before.status, before.invalidates, before.valid_as_of) == (
        revocation.REVOKED, False, revoked_at - DAY,
    )  # fmt: skip
    assert "valid as of that time" in before.message
    after = at(revoked_at + DAY)
    assert (after.status, after.invalidates) == (revocation.REVOKED, True)
    assert "before the trusted time" in after.message
    assert at(None).invalidates  # no trusted time: revoked means not valid


def test_an_invalidity_date_moves_the_revocation_back():
    chain = _intl("p256")
    value = asn1_crl.CertificateList.load(chain.crl(revoked=[(chain.leaf.serial_number, T0, 1)]))
    entry = value["tbs_cert_list"]["revoked_certificates"][0]
    entry["crl_entry_extensions"] = [
        *entry["crl_entry_extensions"],
        {"extn_id": "invalidity_date", "critical": False, "extn_value": T0 - 3 * DAY},
    ]
    tbs = asn1_crl.TbsCertList.load(value["tbs_cert_list"].dump(force=True))
    key = chain.issuing.key
    signature = key.sign(tbs.dump(), ec.ECDSA(hashes.SHA256()))
    der = asn1_crl.CertificateList(
        {"tbs_cert_list": tbs, "signature_algorithm": value["signature_algorithm"],
         "signature": signature}
    ).dump()  # fmt: skip
    result = revocation.check(
        chain.leaf, chain.issuing.certificate, [der], now=NOW, trusted_time=T0 - 2 * DAY
    )
    assert result.revoked_at == T0 - 3 * DAY and result.invalidates


# ---- validate and verify ----------------------------------------------------------------------


def test_validate_says_revocation_not_checked_distinctly_and_fails_a_revoked_path(chain):
    anchors, pool = [chain.root.certificate], [chain.issuing.certificate]
    plain = validate.validate(
        chain.leaf, trust_anchors=anchors, intermediates=pool, sm2_ids=BOTH_IDS
    )
    assert plain.valid and plain.revocation is None and not plain.revocation_checked
    assert plain.revocation_summary == "Revocation not checked (no CRLs were consulted)."
    unknown = validate.validate(
        chain.leaf, trust_anchors=anchors, intermediates=pool, crls=[], sm2_ids=BOTH_IDS
    )
    assert unknown.valid and not unknown.revocation_checked
    assert [c.detail for c in unknown.revocation] == [revocation.NO_CRL, revocation.NO_CRL]
    assert unknown.revocation_summary.count("not checked") == 2
    clean = [chain.crl(), chain.crl("root")]
    checked = validate.validate(
        chain.leaf, trust_anchors=anchors, intermediates=pool, crls=clean, sm2_ids=BOTH_IDS
    )
    assert checked.valid and checked.revocation_checked
    dirty = [chain.crl(revoked=[(chain.leaf.serial_number, T0, "key_compromise")]), clean[1]]
    revoked = validate.validate(
        chain.leaf, trust_anchors=anchors, intermediates=pool, crls=dirty, sm2_ids=BOTH_IDS
    )
    assert not revoked.valid and [p.code for p in revoked.problems] == ["revoked"]
    # The issuing CA revoked by the root fails the leaf's path too.
    ca_revoked = [
        clean[0],
        chain.crl("root", revoked=[(chain.issuing.certificate.serial_number, T0, 2)]),
    ]
    assert not validate.validate(
        chain.leaf, trust_anchors=anchors, intermediates=pool, crls=ca_revoked, sm2_ids=BOTH_IDS
    ).valid


def test_a_crl_source_is_asked_for_the_path_built_and_decides_as_the_crls_would(chain):
    """validate(crls=callable): asked once, with the path it built (leaf first, anchor last),
    and the outcome is the one those CRLs give directly; never asked when no path reaches an
    anchor (a sender's own certificates make us fetch nothing)."""
    anchors, pool = [chain.root.certificate], [chain.issuing.certificate]
    dirty = [
        chain.crl(revoked=[(chain.leaf.serial_number, T0, "key_compromise")]),
        chain.crl("root"),
    ]
    asked: list[tuple] = []

    def source(path):
        asked.append(path)
        return dirty

    revoked = validate.validate(
        chain.leaf, trust_anchors=anchors, intermediates=pool, crls=source, sm2_ids=BOTH_IDS
    )
    assert [tuple(c.dump() for c in path) for path in asked] == [
        (chain.leaf.dump(), chain.issuing.certificate.dump(), chain.root.certificate.dump())
    ]
    direct = validate.validate(
        chain.leaf, trust_anchors=anchors, intermediates=pool, crls=dirty, sm2_ids=BOTH_IDS
    )
    assert not revoked.valid and revoked.problems == direct.problems
    asked.clear()
    stranger = validate.validate(chain.leaf, trust_anchors=[chain.leaf], crls=source)
    assert stranger.revocation == () and asked == []
    untrusted = validate.validate(chain.leaf, trust_anchors=[], intermediates=pool, crls=source)
    assert not untrusted.valid and asked == []


def test_openssl_verify_crl_check_agrees_with_validate(chain, tmp_path):
    anchors, pool = [chain.root.certificate], [chain.issuing.certificate]
    root = _pem(tmp_path / "root.pem", [chain.root.certificate.dump()])
    issuing = _pem(tmp_path / "issuing.pem", [chain.issuing.certificate.dump()])
    leaf = _pem(tmp_path / "leaf.pem", [chain.leaf.dump()])
    for revoked in ([], [(chain.leaf.serial_number, T0, "key_compromise")]):
        crls = [chain.crl(revoked=revoked), chain.crl("root")]
        crl_file = _pem(tmp_path / "crls.pem", crls, "X509 CRL")
        theirs = _openssl("verify", "-crl_check_all", "-CRLfile", crl_file, "-CAfile", root,
                          "-untrusted", issuing, *_sm2_opts(chain), leaf)  # fmt: skip
        ours = validate.validate(chain.leaf, trust_anchors=anchors, intermediates=pool,
                                 crls=crls, sm2_ids=BOTH_IDS)  # fmt: skip
        assert ours.revocation_checked
        assert ours.valid == (theirs.returncode == 0) == (not revoked), (theirs, ours.problems)
        if revoked:
            assert "revoked" in theirs.stdout + theirs.stderr


def test_a_signature_by_a_revoked_signer_follows_the_trusted_time():
    chain = _intl("p256")
    credential = Credential(chain.leaf_key, chain.leaf, (chain.issuing.certificate,))
    der = signed.sign(b"Content-Type: text/plain\r\n\r\nsigned\r\n", credential, detached=False)
    crls = [chain.crl(revoked=[(chain.leaf.serial_number, T0 - DAY, None)]), chain.crl("root")]

    def result(trusted):
        return verify.verify(der, trust_anchors=[chain.root.certificate], crls=crls,
                             trusted_time=trusted).signers[0]  # fmt: skip

    assert not result(None).valid and "revoked" in result(None).codes
    assert result(T0 - 2 * DAY).valid  # timestamped before the revocation
    assert not result(T0).valid  # timestamped after it
    unchecked = verify.verify(der, trust_anchors=[chain.root.certificate]).signers[0]
    assert unchecked.valid and unchecked.chain.revocation is None


# ---- a CRL OpenSSL's CA made --------------------------------------------------------------------


def test_we_read_a_crl_that_openssl_ca_generates(tmp_path):
    chain = _intl("p256")
    issuer = chain.issuing
    ca_key = tmp_path / "ca.key"
    ca_key.write_bytes(_key_pem(issuer.key))
    ca_cert = _pem(tmp_path / "ca.pem", [issuer.certificate.dump()])
    leaf = _pem(tmp_path / "leaf.pem", [chain.leaf.dump()])
    (tmp_path / "index.txt").write_text("")
    (tmp_path / "crlnumber").write_text("1000\n")
    config = tmp_path / "ca.cnf"
    config.write_text(
        "[ca]\ndefault_ca = CA_default\n[CA_default]\n"
        f"dir = {tmp_path}\ndatabase = $dir/index.txt\ncrlnumber = $dir/crlnumber\n"
        f"certificate = {ca_cert}\nprivate_key = {ca_key}\ndefault_md = sha256\n"
        "default_crl_days = 7\ncrl_extensions = crl_ext\n[crl_ext]\n"
        "authorityKeyIdentifier = keyid:always\n"
    )
    compromised = (NOW - 3 * DAY).strftime("%Y%m%d%H%M%SZ")
    done = _openssl("ca", "-config", config, "-revoke", leaf, "-crl_compromise", compromised)
    assert done.returncode == 0, done.stderr
    out = tmp_path / "crl.pem"
    done = _openssl("ca", "-config", config, "-gencrl", "-out", out)
    assert done.returncode == 0, done.stderr
    der = pem.unarmor(out.read_bytes())[2]
    parsed = revocation.parse_crl(der)
    assert parsed.number == 0x1000 and revocation.signed_by(parsed, issuer.certificate)
    later = datetime.datetime.now(datetime.UTC) + datetime.timedelta(minutes=1)
    result = revocation.check(chain.leaf, issuer.certificate, [der], now=later)
    assert (result.status, result.reason) == (revocation.REVOKED, "key_compromise"), result
    assert result.revoked_at == NOW - 3 * DAY  # the invalidity date, before revocationDate
    good = revocation.check(chain.other_leaf, issuer.certificate, [der], now=later)
    assert good.status == revocation.GOOD


def _key_pem(key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


# ---- for fetching and caching ---------------------------------------------------------------


def test_distribution_points_and_how_long_a_crl_may_be_kept():
    h = hierarchy.create_hierarchy(
        "Revocation Test", crl_base_url="http://pki.example.test/crl",
        aia_base_url="http://pki.example.test/ca", mail_address="ca@pki.example.test",
    )  # fmt: skip
    points = revocation.distribution_points(h.intl_issuing.certificate)
    assert points and all(p.startswith("http://pki.example.test/crl/") for p in points)
    assert revocation.distribution_points(h.intl_root.certificate) == ()
    der = ca_crl.make_crl(h.intl_issuing, [], this_update=T0, next_update=T0 + DAY, number=1)
    assert revocation.keep_until(der, now=NOW) == T0 + DAY
    assert revocation.keep_until(der, now=T0 + 2 * DAY) is None


def test_open_message_checks_signers_against_the_crls_it_is_given():
    chain = _intl("p256")
    credential = Credential(chain.leaf_key, chain.leaf, (chain.issuing.certificate,))
    message = smime.sign_message(
        b"From: alice@example.test\r\nSubject: s\r\nContent-Type: text/plain\r\n\r\nhi\r\n",
        credential,
    )
    anchors = [chain.root.certificate]
    crls = [chain.crl(revoked=[(chain.leaf.serial_number, T0, None)]), chain.crl("root")]
    assert smime.open_message(message, trust_anchors=anchors).signed_and_valid
    assert not smime.open_message(message, trust_anchors=anchors, crls=crls).signed_and_valid
