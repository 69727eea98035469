"""RFC 3161 interoperability with the real OpenSSL 3.0 CLI, both ways.

Theirs -> ours: `openssl ts -query` requests answered by make_response must pass
`openssl ts -verify` (against the query and against the data; a tampered answer must not).
Ours -> theirs: make_request answered by `openssl ts -reply` (a TSA configured in a file) must
pass parse_response/verify_token, and its token attached to one of our CMS signatures must pass
signature_timestamps (and `openssl cms -verify` must still accept the signature).
"""

from __future__ import annotations

import datetime
import subprocess
from functools import cache
from pathlib import Path

import pytest
from asn1crypto import cms
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from harness import pki
from harness.peers import require

from shared_pki import tsp as ts
from shared_pki.cms import signed
from shared_pki.cms.verify import verify
from shared_pki.keys import Credential

OPENSSL = require("openssl")

NOW = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
DATA = b"Data for OpenSSL's time-stamp authority.\n"
CONTENT = b"Content-Type: text/plain\r\n\r\nSigned here, stamped by OpenSSL.\r\n"
POLICY = "1.3.6.1.4.1.99999.1.1"
OPENSSL_POLICY = "1.3.6.1.4.1.99999.2.1"


@cache
def root() -> pki.Authority:
    return pki.root("tsp interop root", "p256")


@cache
def tsa(key_type: str = "p256") -> pki.Party:
    """A TSA certificate as OpenSSL wants one: critical extendedKeyUsage, timeStamping only."""
    issuer = root()
    key = pki.new_key(key_type)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"TSA {key_type}")]))
        .issuer_name(issuer.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - datetime.timedelta(days=1))
        .not_valid_after(NOW + datetime.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]),
            critical=True,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
            critical=False,
        )
        .sign(issuer.key, hashes.SHA256())
    )
    return pki.Party(key, cert, [issuer.cert])


def credential(party: pki.Party) -> Credential:
    return Credential(party.key, party.asn1, tuple(party.chain_asn1))


def openssl(*args: str | Path) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([OPENSSL, *map(str, args)], capture_output=True, timeout=60)


def ok(result: subprocess.CompletedProcess[bytes]) -> bytes:
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    return result.stdout


CONFIG = """\
[ tsa ]
default_tsa = tsa_config

[ tsa_config ]
dir = {folder}
serial = $dir/serial
crypto_device = builtin
signer_cert = $dir/tsa.cert.pem
signer_key = $dir/tsa.key.pem
signer_digest = sha256
default_policy = {policy}
other_policies = 1.3.6.1.4.1.99999.2.2
digests = sha256, sha384, sha512
accuracy = secs:1, millisecs:500
clock_precision_digits = 3
ordering = yes
tsa_name = yes
ess_cert_id_chain = no
ess_cert_id_alg = sha256
"""


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tsp_interop")
    (path / "root.pem").write_bytes(root().cert_pem())
    (path / "data.bin").write_bytes(DATA)
    tsa().write(path, "tsa")
    (path / "serial").write_text("1000\n")
    (path / "tsa.cnf").write_text(CONFIG.format(folder=path, policy=OPENSSL_POLICY))
    return path


def openssl_verify(folder: Path, response: bytes, *against: str | Path):
    (folder / "r.tsr").write_bytes(response)
    return openssl(
        "ts", "-verify", "-in", folder / "r.tsr", *against,
        "-CAfile", folder / "root.pem", "-untrusted", folder / "tsa.cert.pem",
    )  # fmt: skip


# ---- OpenSSL asks, we answer -------------------------------------------------------------------


@pytest.mark.parametrize("key_type", ["p256", "rsa2048"])
@pytest.mark.parametrize("digest", ["sha256", "sha384", "sha512"])
def test_openssl_verifies_our_response(folder: Path, digest: str, key_type: str) -> None:
    query = folder / f"q-{digest}.tsq"
    ok(openssl("ts", "-query", "-data", folder / "data.bin", f"-{digest}", "-cert", "-out", query))
    request = ts.parse_request(query.read_bytes())
    assert request.digest == digest and request.cert_req and request.nonce is not None
    response = ts.make_response(
        query.read_bytes(),
        tsa=credential(tsa(key_type)),
        policy_oid=POLICY,
        serial_number=0x1234567890ABCDEF,
        gen_time=NOW.replace(microsecond=123000),
        accuracy_ms=1500,
        tsa_name=True,
    )
    # OpenSSL reads what we wrote...
    text = ok(openssl("ts", "-reply", "-in", _write(folder, response), "-text")).decode()
    assert "Status: Granted." in text and POLICY in text
    assert "Serial number: 0x1234567890ABCDEF" in text
    assert "Accuracy: 0x01 seconds, 0x01F4 millis, unspecified micros" in text
    # ...and accepts it, against the query and against the data.
    query_check = openssl_verify(folder, response, "-queryfile", query)
    assert query_check.returncode == 0 and b"Verification: OK" in query_check.stdout, (
        query_check.stdout + query_check.stderr
    )
    data_check = openssl_verify(folder, response, "-data", folder / "data.bin")
    assert data_check.returncode == 0, data_check.stdout + data_check.stderr


def _write(folder: Path, response: bytes) -> Path:
    path = folder / "ours.tsr"
    path.write_bytes(response)
    return path


def test_openssl_refuses_what_it_should(folder: Path) -> None:
    """The checks above can fail: other data, a tampered token, a request without -cert."""
    query = folder / "q.tsq"
    ok(openssl("ts", "-query", "-data", folder / "data.bin", "-sha256", "-cert", "-out", query))
    settings = {
        "tsa": credential(tsa()),
        "policy_oid": POLICY,
        "serial_number": 77,
        "gen_time": NOW,
    }
    response = ts.make_response(query.read_bytes(), **settings)
    (folder / "other.bin").write_bytes(DATA + b"!")
    assert openssl_verify(folder, response, "-data", folder / "other.bin").returncode != 0
    signature = ts.parse_response(response)
    value = cms.ContentInfo.load(signature.der)["content"]["signer_infos"][0]["signature"].native
    tampered = response.replace(value, value[:-1] + bytes([value[-1] ^ 1]))
    assert openssl_verify(folder, tampered, "-queryfile", query).returncode != 0
    # Without -cert the token carries no certificate; -untrusted supplies it.
    bare = folder / "bare.tsq"
    ok(openssl("ts", "-query", "-data", folder / "data.bin", "-sha256", "-out", bare))
    bare_response = ts.make_response(bare.read_bytes(), **settings)
    signed_data = cms.ContentInfo.load(ts.parse_response(bare_response).der)["content"]
    assert not signed_data["certificates"]
    assert openssl_verify(folder, bare_response, "-queryfile", bare).returncode == 0


def test_openssl_query_with_policy_we_do_not_offer(folder: Path) -> None:
    query = folder / "policy.tsq"
    ok(openssl("ts", "-query", "-data", folder / "data.bin", "-tspolicy", "1.2.3.4", "-out", query))
    response = ts.make_response(
        query.read_bytes(),
        tsa=credential(tsa()),
        policy_oid=POLICY,
        serial_number=78,
        gen_time=NOW,
    )
    text = ok(openssl("ts", "-reply", "-in", _write(folder, response), "-text")).decode()
    assert "Status: Rejected." in text
    assert "Failure info: the requested TSA policy is not supported by the TSA" in text
    assert "TST info:\nNot included." in text


# ---- we ask, OpenSSL answers -------------------------------------------------------------------


def openssl_reply(folder: Path, request: bytes, name: str = "theirs") -> bytes:
    query = folder / f"{name}.tsq"
    query.write_bytes(request)
    out = folder / f"{name}.tsr"
    ok(openssl("ts", "-reply", "-queryfile", query, "-config", folder / "tsa.cnf", "-out", out))
    return out.read_bytes()


@pytest.mark.parametrize("digest", ["sha256", "sha384", "sha512"])
def test_we_verify_openssl_tokens(folder: Path, digest: str) -> None:
    request, nonce = ts.make_request(DATA, digest=digest)
    token = ts.parse_response(openssl_reply(folder, request))
    assert token.nonce == nonce and token.policy == OPENSSL_POLICY and token.ordering
    assert token.accuracy == datetime.timedelta(seconds=1, milliseconds=500)
    assert token.tsa_name is not None
    result = ts.verify_token(
        token.der, data_or_imprint=DATA, trust_anchors=[root().asn1], nonce=nonce, digest=digest
    )
    assert result.valid, result.summary
    assert result.certificate.dump() == tsa().der
    assert abs(result.gen_time - datetime.datetime.now(datetime.UTC)) < datetime.timedelta(
        minutes=5
    )
    wrong = ts.verify_token(
        token.der, data_or_imprint=DATA + b"!", trust_anchors=[root().asn1], nonce=nonce + 1
    )
    assert set(wrong.codes) == {"imprint_mismatch", "nonce_mismatch"}


def test_openssl_policy_request_and_rejections(folder: Path) -> None:
    request, _ = ts.make_request(DATA, policy="1.3.6.1.4.1.99999.2.2", cert_req=False)
    token = ts.parse_response(openssl_reply(folder, request, "policy"))
    assert token.policy == "1.3.6.1.4.1.99999.2.2"
    alone = ts.verify_token(token.der, data_or_imprint=DATA, trust_anchors=[root().asn1])
    assert alone.codes == ("signer_certificate_missing",)
    given = ts.verify_token(
        token.der, data_or_imprint=DATA, trust_anchors=[root().asn1], intermediates=[tsa().asn1]
    )
    assert given.valid, given.summary
    unoffered, _ = ts.make_request(DATA, policy="1.2.3.4")
    with pytest.raises(ts.TimestampRejected) as caught:
        ts.parse_response(openssl_reply(folder, unoffered, "unoffered"))
    assert caught.value.status == "rejection"
    assert caught.value.fail_info == ("unaccepted_policy",)


def test_openssl_token_on_our_signature(folder: Path) -> None:
    signer = root().smime("alice@example.org", "p256")
    message = signed.sign(CONTENT, credential(signer), capabilities=())
    request, nonce = ts.make_request(ts.timestamp_imprint(message))
    token = ts.parse_response(openssl_reply(folder, request, "signature"))
    assert token.nonce == nonce
    stamped = ts.attach_token(message, 0, token.der)
    (result,) = ts.signature_timestamps(stamped, [root().asn1])[0]
    assert result.valid, result.summary
    times = ts.trusted_times([(result,)])
    checked = verify(stamped, content=CONTENT, trust_anchors=[root().asn1], trusted_time=times)
    assert checked.valid and checked.signers[0].trusted_time == token.gen_time
    # OpenSSL still accepts the signature with its new unsigned attribute.
    (folder / "stamped.der").write_bytes(stamped)
    (folder / "content.bin").write_bytes(CONTENT)
    ok(
        openssl(
            "cms", "-verify", "-inform", "DER", "-binary", "-in", folder / "stamped.der",
            "-content", folder / "content.bin", "-CAfile", folder / "root.pem",
            "-purpose", "any", "-out", folder / "stamped.out",
        )
    )  # fmt: skip
    # Moved to another signature of the same signer, the token is refused.
    other = signed.sign(CONTENT + b"x", credential(signer), capabilities=())
    moved = signed.add_unsigned_attribute(other, 0, ts.OID_SIGNATURE_TIME_STAMP_TOKEN, token.der)
    assert ts.signature_timestamps(moved, [root().asn1])[0][0].codes == ("imprint_mismatch",)
