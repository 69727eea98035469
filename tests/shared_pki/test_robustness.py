"""Mutated, truncated, oversized, wrong-OID, wrong-version and missing-field S/MIME: only typed
errors (PkiError) may come out of the whole pipeline, never a crash or garbage.

The mutation run is seeded (AUTOSMIME_FUZZ_SEED, default fixed) so a failure reproduces; the
number of cases and their outcomes are printed at the end of the pytest run."""

from __future__ import annotations

import os
import random
from collections.abc import Callable

import pytest
from asn1crypto import cms
from harness import pki
from harness.fuzz_report import counter as counts

from shared_pki import mime, smime
from shared_pki.cms import enveloped, signed
from shared_pki.cms.verify import verify
from shared_pki.errors import MalformedInput, PkiError, UnsupportedAlgorithm
from shared_pki.keys import Credential

SEED = int(os.environ.get("AUTOSMIME_FUZZ_SEED", "20261128"))
CASES_PER_SAMPLE = int(os.environ.get("AUTOSMIME_FUZZ_CASES", "400"))
MESSAGE = (
    b"From: alice@example.test\r\nTo: bob@example.test\r\nSubject: fuzz\r\nMIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n\r\nSome text to protect.\r\n"
)


@pytest.fixture(scope="module")
def world():
    root = pki.root()
    alice = root.smime("alice@example.test", "p256")
    bob = root.smime("bob@example.test", "rsa2048")
    alice_credential = Credential(alice.key, alice.asn1, tuple(alice.chain_asn1))
    samples = {
        "multipart_signed": smime.sign_message(MESSAGE, alice_credential),
        "opaque_signed": smime.sign_message(MESSAGE, alice_credential, detached=False),
        "enveloped_rsa_cbc": smime.encrypt_message(
            MESSAGE, [bob.asn1], sender=alice.asn1, cipher="aes256_cbc"
        ),
        "auth_enveloped_gcm": smime.encrypt_message(
            MESSAGE, [bob.asn1], sender=alice.asn1, cipher="aes128_gcm"
        ),
    }
    keys = [(alice.asn1, alice.key), (bob.asn1, bob.key)]
    return root, keys, samples


def mutate(rng: random.Random, data: bytes) -> bytes:
    """One structural accident: flipped bits, a cut, a splice, a duplicated run, a wild length."""
    out = bytearray(data)
    kind = rng.randrange(6)
    position = rng.randrange(len(out))
    if kind == 0:
        for _ in range(rng.randint(1, 4)):
            out[rng.randrange(len(out))] ^= 1 << rng.randrange(8)
    elif kind == 1:
        del out[position:]
    elif kind == 2:
        out[position:position] = rng.randbytes(rng.randint(1, 16))
    elif kind == 3:
        end = min(len(out), position + rng.randint(1, 64))
        out[position:position] = out[position:end]
    elif kind == 4:
        out[position] = rng.choice([0x80, 0x84, 0xFF, 0x00, 0x30, 0x06])
    else:
        end = min(len(out), position + rng.randint(1, 32))
        del out[position:end]
    return bytes(out)


def open_or_typed_error(message: bytes, root, keys) -> str:
    """What opening gives; as a bytearray (how the command line opens, decoding and decrypting
    in the buffer) the very same result or error."""
    outcomes: list[tuple] = []
    for given in (message, bytearray(message)):
        try:
            opened = smime.open_message(given, keys=keys, trust_anchors=[root.asn1])
        except PkiError as error:
            outcomes.append((type(error).__name__, str(error)))
        else:
            layers = [
                (layer.kind, layer.cipher, layer.verification and layer.verification.summary)
                for layer in opened.layers
            ]  # a signature's certificates are parsed anew each time: its summary compares
            outcomes.append(("opened", opened.message, opened.payload, layers))
    assert outcomes[0] == outcomes[1]
    return outcomes[0][0]


@pytest.mark.parametrize("layer", ["mime", "der"])
def test_mutated_messages_give_only_typed_errors(world, layer: str) -> None:
    """Mutations of the raw message hit the MIME parser; mutations of the CMS inside (re-wrapped
    in valid MIME) reach the CMS parsers and the crypto."""
    root, keys, samples = world
    rng = random.Random(SEED)
    seen = counts(f"open_message, {layer} mutations (seed {SEED})")
    for message in samples.values():
        outer, _ = mime.split_headers(message)
        unwrapped = mime.unwrap(message)
        for _ in range(CASES_PER_SAMPLE):
            if layer == "mime":
                candidate = mutate(rng, message)
            elif unwrapped.kind == "multipart_signed":
                assert unwrapped.signature is not None and unwrapped.content is not None
                try:
                    entity = mime.wrap_multipart_signed(
                        unwrapped.content, mutate(rng, unwrapped.signature), "sha-256"
                    )
                except MalformedInput:
                    seen["refused by wrap"] = seen.get("refused by wrap", 0) + 1
                    continue
                candidate = mime.with_outer_headers(entity, outer)
            else:
                assert unwrapped.der is not None
                candidate = outer + b"MIME-Version: 1.0\r\n" + raw_pkcs7(mutate(rng, unwrapped.der))
            outcome = open_or_typed_error(candidate, root, keys)
            seen[outcome] = seen.get(outcome, 0) + 1
    assert sum(seen.values()) >= CASES_PER_SAMPLE * len(samples) * 0.9


def raw_pkcs7(der: bytes) -> bytes:
    """An application/pkcs7-mime entity around any bytes, without wrap_pkcs7_mime's checks."""
    import base64

    encoded = base64.encodebytes(der).replace(b"\n", b"\r\n")
    return (
        b"Content-Type: application/pkcs7-mime; smime-type=enveloped-data; name=smime.p7m\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n" + encoded
    )


def signed_der(world) -> bytes:
    _, _, samples = world
    der = mime.unwrap(samples["opaque_signed"]).der
    assert der is not None
    return der


def enveloped_der(world) -> bytes:
    _, _, samples = world
    der = mime.unwrap(samples["enveloped_rsa_cbc"]).der
    assert der is not None
    return der


def rebuild(der: bytes, edit: Callable[[cms.ContentInfo], None]) -> bytes:
    info = cms.ContentInfo.load(der)
    edit(info)
    return cms.ContentInfo({"content_type": info["content_type"], "content": info["content"]}).dump(
        force=True
    )


def test_every_truncation_of_signed_and_enveloped_data_is_malformed(world) -> None:
    root, keys, _ = world
    seen = counts("truncations")
    for der, action in (
        (signed_der(world), lambda d: verify(d, trust_anchors=[root.asn1])),
        (enveloped_der(world), lambda d: enveloped.decrypt(d, keys)),
    ):
        for cut in range(len(der)):
            with pytest.raises(MalformedInput):
                action(der[:cut])
            seen["MalformedInput"] = seen.get("MalformedInput", 0) + 1


def test_oversized_lengths_are_malformed_not_memory_errors(world) -> None:
    root, keys, _ = world
    for der in (signed_der(world), enveloped_der(world)):
        huge = b"\x30\x84\x7f\xff\xff\xff" + der[4:]
        with pytest.raises(MalformedInput):
            verify(huge, trust_anchors=[root.asn1]) if der == signed_der(world) else (
                enveloped.decrypt(huge, keys)
            )
    with pytest.raises(MalformedInput):
        mime.unwrap(raw_pkcs7(b"\x30\x84\x7f\xff\xff\xff\x06\x09"))


def test_wrong_content_type_oid_is_refused(world) -> None:
    root, keys, _ = world
    der = signed_der(world)

    def to_unknown(info: cms.ContentInfo) -> None:
        info["content_type"] = "1.2.3.4.5"

    with pytest.raises((MalformedInput, UnsupportedAlgorithm)):
        verify(rebuild(der, to_unknown), trust_anchors=[root.asn1])
    with pytest.raises((MalformedInput, UnsupportedAlgorithm)):
        enveloped.decrypt(rebuild(enveloped_der(world), to_unknown), keys)


def test_wrong_versions_are_refused(world) -> None:
    root, keys, _ = world

    def bad_version(info: cms.ContentInfo) -> None:
        info["content"]["version"] = 99

    with pytest.raises(MalformedInput, match="version"):
        verify(rebuild(signed_der(world), bad_version), trust_anchors=[root.asn1])
    with pytest.raises(MalformedInput, match="version"):
        enveloped.decrypt(rebuild(enveloped_der(world), bad_version), keys)


@pytest.mark.parametrize("field", ["signer_infos", "digest_algorithms", "encap_content_info"])
def test_missing_signed_data_fields_are_malformed(world, field: str) -> None:
    root, _, _ = world
    der = signed_der(world)
    signed_data = cms.ContentInfo.load(der)["content"]
    fields = [
        (name, signed_data[name]) for name, _spec, *_ in cms.SignedData._fields if name != field
    ]
    body = b"".join(value.dump() for _, value in fields if value.contents is not None)
    broken = cms.ContentInfo.load(der)
    inner = b"\x30" + _length(len(body)) + body
    outer_body = broken["content_type"].dump() + b"\xa0" + _length(len(inner)) + inner
    with pytest.raises(MalformedInput):
        verify(b"\x30" + _length(len(outer_body)) + outer_body, trust_anchors=[root.asn1])


@pytest.mark.parametrize("field", ["recipient_infos", "encrypted_content_info"])
def test_missing_enveloped_data_fields_are_malformed(world, field: str) -> None:
    _, keys, _ = world
    der = enveloped_der(world)
    data = cms.ContentInfo.load(der)["content"]
    body = b"".join(
        data[name].dump()
        for name, *_ in cms.EnvelopedData._fields
        if name != field and data[name].contents is not None
    )
    inner = b"\x30" + _length(len(body)) + body
    outer_body = cms.ContentInfo.load(der)["content_type"].dump() + b"\xa0"
    outer_body += _length(len(inner)) + inner
    with pytest.raises(MalformedInput):
        enveloped.decrypt(b"\x30" + _length(len(outer_body)) + outer_body, keys)


def _length(size: int) -> bytes:
    if size < 0x80:
        return bytes([size])
    raw = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def test_add_unsigned_attribute_refuses_garbage(world) -> None:
    with pytest.raises(MalformedInput):
        signed.add_unsigned_attribute(b"\x30\x03\x02\x01\x01", 0, "1.2.3", b"\x05\x00")
