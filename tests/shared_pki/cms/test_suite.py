"""The dual-algorithm policy: SM only when the sender prefers it and everyone (sender included)
has a usable SM2 certificate; otherwise international; never a mixture."""

from __future__ import annotations

import datetime

import pytest
from harness import pki
from harness.sm_pki import SmPki

from shared_pki import sm_oids
from shared_pki.cms import choice
from shared_pki.cms.capabilities import Capability
from shared_pki.cms.suite import (
    INTERNATIONAL_SUITE,
    SM_SUITE,
    Party,
    certificates_for,
    choose_suite,
    infer,
)
from shared_pki.errors import EncryptionError

NOW = datetime.datetime.now(datetime.UTC)


@pytest.fixture(scope="module")
def people():
    sm, intl = SmPki(), pki.root()
    past = NOW - datetime.timedelta(days=100)
    return {
        "alice": Party(intl.smime("alice@x.test", "p256").asn1, sm.person("alice@x.test").cert),
        "bob": Party(intl.smime("bob@x.test").asn1, sm.person("bob@x.test").cert),
        "carol_intl_only": Party(intl.smime("carol@x.test").asn1, None),
        "dan_sm_only": Party(None, sm.person("dan@x.test").cert),
        "erin_expired_sm": Party(
            intl.smime("erin@x.test").asn1,
            sm.person("erin@x.test", not_before=past, not_after=past + datetime.timedelta(1)).cert,
        ),
        "frank_sign_only_sm": Party(
            intl.smime("frank@x.test").asn1,
            sm.person("frank@x.test", key_usage=("digital_signature",)).cert,
        ),
    }


def test_sm_when_preferred_and_everyone_has_sm2(people) -> None:
    assert choose_suite(True, people["alice"], [people["bob"], people["dan_sm_only"]]) is SM_SUITE


@pytest.mark.parametrize("recipient", ["carol_intl_only", "erin_expired_sm", "frank_sign_only_sm"])
def test_international_when_a_recipient_has_no_usable_sm2(people, recipient) -> None:
    chosen = choose_suite(True, people["alice"], [people["bob"], people[recipient]])
    assert chosen is INTERNATIONAL_SUITE


def test_international_unless_preferred_and_the_sender_counts(people) -> None:
    assert choose_suite(False, people["alice"], [people["bob"]]) is INTERNATIONAL_SUITE
    assert choose_suite(True, people["carol_intl_only"], [people["bob"]]) is INTERNATIONAL_SUITE
    # A sender whose SM2 certificate cannot sign gets international for a signed message.
    frank = people["frank_sign_only_sm"]
    assert choose_suite(True, frank, [people["bob"]], signing=True) is INTERNATIONAL_SUITE
    # The caller's own check (trust, revocation) can veto a certificate.
    veto = choose_suite(True, people["alice"], [people["bob"]], usable=lambda cert: False)
    assert veto is INTERNATIONAL_SUITE


def test_certificates_for_a_suite_never_mix(people) -> None:
    chosen = certificates_for(SM_SUITE, [people["alice"], people["bob"]])
    assert infer(chosen) is SM_SUITE
    assert infer(certificates_for("intl", [people["alice"], people["bob"]])) is (
        INTERNATIONAL_SUITE
    )
    with pytest.raises(EncryptionError, match="no international certificate"):
        certificates_for("intl", [people["dan_sm_only"]])
    with pytest.raises(EncryptionError, match="all-international or all-SM"):
        infer([people["alice"].intl, people["bob"].sm])


def test_cipher_choice_stays_inside_the_suite(people) -> None:
    bob = people["bob"]
    everything = (
        Capability(sm_oids.SM4_CBC),
        Capability("2.16.840.1.101.3.4.1.46"),
        Capability(sm_oids.SM2_ENCRYPT),
    )
    sm = choice.choose([(bob.sm, everything)], suite="sm")
    assert (sm.cipher, sm.key_transports) == ("sm4_cbc", ("sm2_encrypt",))
    only_sm4 = choice.choose([(bob.intl, (Capability(sm_oids.SM4_CBC),))], suite="intl")
    assert only_sm4.cipher == "aes256_cbc"
    assert only_sm4.key_transports == ("rsa_pkcs1v15",)
    with pytest.raises(EncryptionError):
        choice.choose([(bob.intl, None)], suite="sm")
