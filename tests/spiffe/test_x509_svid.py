"""X.509-SVID verification: good chains accepted, and a corpus each rejected with its reason."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID
from spiffe_ca import CA_KEY_USAGE, SpiffeCA, bundle_document, key_usage

from credbroker.errors import IdentityRejected
from credbroker.reasons import Reason
from credbroker.spiffe import bundle as bundle_loader
from credbroker.spiffe.bundle import Bundle, BundleSet
from credbroker.spiffe.ids import TrustDomain
from credbroker.spiffe.x509svid import (
    MAX_CHAIN_CERTIFICATES,
    load_certificate_chain,
    verify_x509_svid,
)


def _pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


def _der(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.DER)


def _rejection(chain: bytes, bundles: Bundle | BundleSet, **kwargs: object) -> IdentityRejected:
    with pytest.raises(IdentityRejected) as caught:
        verify_x509_svid(chain, bundles=bundles, **kwargs)  # type: ignore[arg-type]
    return caught.value


@pytest.mark.parametrize("ca_name", ["ca", "rsa_ca"])
@pytest.mark.parametrize("key_type", ["ec", "rsa"])
def test_good_svid_accepted(
    ca_name: str, key_type: str, bundle: Bundle, request: pytest.FixtureRequest
) -> None:
    ca: SpiffeCA = request.getfixturevalue(ca_name)
    leaf, _ = ca.issue(path="/ns/shop/sa/web", key_type=key_type)

    verified = verify_x509_svid(_pem(leaf), bundles=bundle)

    assert str(verified.spiffe_id) == "spiffe://example.org/ns/shop/sa/web"
    assert verified.serial_number == leaf.serial_number
    assert verified.expires_at == leaf.not_valid_after_utc
    assert verified.chain[0] == leaf
    assert verified.chain[-1] == ca.certificate


def test_der_leaf_accepted(ca: SpiffeCA, bundle: Bundle) -> None:
    leaf, _ = ca.issue()

    verified = verify_x509_svid(_der(leaf), bundles=bundle)

    assert verified.spiffe_id.path == "/ns/shop/sa/web"


def test_intermediate_chain_accepted(ca: SpiffeCA, bundle: Bundle) -> None:
    intermediate = ca.intermediate()
    leaf, _ = intermediate.issue(path="/ns/shop/sa/api")

    verified = verify_x509_svid(intermediate.chain_pem(leaf), bundles=bundle)

    assert verified.spiffe_id.path == "/ns/shop/sa/api"
    assert verified.chain == (leaf, intermediate.certificate, ca.certificate)


def test_concatenated_der_chain(ca: SpiffeCA, bundle: Bundle) -> None:
    intermediate = ca.intermediate()
    leaf, _ = intermediate.issue()

    verified = verify_x509_svid(_der(leaf) + _der(intermediate.certificate), bundles=bundle)

    assert len(verified.chain) == 3


def test_parsed_certificates_accepted(ca: SpiffeCA, bundle: Bundle) -> None:
    leaf, _ = ca.issue()

    verified = verify_x509_svid([leaf], bundles=bundle)

    assert verified.serial_number == leaf.serial_number


def test_bytearray_chain_accepted(ca: SpiffeCA, bundle: Bundle) -> None:
    leaf, _ = ca.issue()

    verified = verify_x509_svid(bytearray(_der(leaf)), bundles=bundle)

    assert verified.serial_number == leaf.serial_number


def test_bundle_set_picks_domain(ca: SpiffeCA, foreign_ca: SpiffeCA, bundle: Bundle) -> None:
    foreign = bundle_loader.from_json(
        bundle_document(authorities=[foreign_ca.certificate]), trust_domain="other.org"
    )
    bundles = BundleSet([bundle, foreign])
    leaf, _ = foreign_ca.issue(path="/billing")

    verified = verify_x509_svid(_pem(leaf), bundles=bundles)

    assert str(verified.spiffe_id) == "spiffe://other.org/billing"


def test_expires_at_is_chain_minimum(ca: SpiffeCA, bundle: Bundle) -> None:
    leaf, _ = ca.issue(lifetime=timedelta(days=365))

    verified = verify_x509_svid(_pem(leaf), bundles=bundle)

    assert verified.expires_at == ca.certificate.not_valid_after_utc


def test_two_uri_sans(ca: SpiffeCA, bundle: Bundle) -> None:
    leaf, _ = ca.issue(uris=["spiffe://example.org/a", "spiffe://example.org/b"])

    rejection = _rejection(_pem(leaf), bundle)

    assert rejection.reason == Reason.SVID_URI_SAN_COUNT
    assert "the leaf has 2" in rejection.message


def test_no_uri_san(ca: SpiffeCA, bundle: Bundle) -> None:
    leaf, _ = ca.issue(uris=[])

    rejection = _rejection(_pem(leaf), bundle)

    assert rejection.reason == Reason.SVID_URI_SAN_COUNT
    assert "the leaf has 0 (none)" in rejection.message


def test_uri_not_spiffe(ca: SpiffeCA, bundle: Bundle) -> None:
    leaf, _ = ca.issue(uris=["https://example.org/ns/shop/sa/web"])

    rejection = _rejection(_pem(leaf), bundle)

    assert rejection.reason == Reason.INVALID_SPIFFE_ID
    assert "must start with 'spiffe://'" in rejection.message


def test_ca_certificate_as_leaf(ca: SpiffeCA, bundle: Bundle) -> None:
    leaf, _ = ca.issue(ca=True, usage=CA_KEY_USAGE)

    rejection = _rejection(_pem(leaf), bundle)

    assert rejection.reason == Reason.SVID_NOT_LEAF
    assert "basicConstraints cA is true" in rejection.message


def test_expired(ca: SpiffeCA, bundle: Bundle) -> None:
    start = datetime.now(UTC) - timedelta(hours=3)
    leaf, _ = ca.issue(not_before=start, lifetime=timedelta(hours=1))

    rejection = _rejection(_pem(leaf), bundle)

    assert rejection.reason == Reason.SVID_EXPIRED
    assert "expired at" in rejection.message


def test_not_yet_valid(ca: SpiffeCA, bundle: Bundle) -> None:
    leaf, _ = ca.issue(not_before=datetime.now(UTC) + timedelta(hours=1))

    rejection = _rejection(_pem(leaf), bundle)

    assert rejection.reason == Reason.SVID_NOT_YET_VALID


def test_expired_at_given_time(ca: SpiffeCA, bundle: Bundle) -> None:
    leaf, _ = ca.issue()
    later = datetime.now(UTC) + timedelta(hours=2)

    rejection = _rejection(_pem(leaf), bundle, now=later)

    assert rejection.reason == Reason.SVID_EXPIRED


def test_wrong_trust_domain(foreign_ca: SpiffeCA, bundle: Bundle) -> None:
    leaf, _ = foreign_ca.issue()

    rejection = _rejection(_pem(leaf), bundle)

    assert rejection.reason == Reason.TRUST_DOMAIN_MISMATCH
    assert "the bundle is for trust domain example.org" in rejection.message


def test_pinned_trust_domain(ca: SpiffeCA, bundle: Bundle) -> None:
    leaf, _ = ca.issue()

    rejection = _rejection(_pem(leaf), bundle, trust_domain=TrustDomain("other.org"))

    assert rejection.reason == Reason.TRUST_DOMAIN_MISMATCH
    assert "expected other.org" in rejection.message


def test_trust_domain_without_bundle(foreign_ca: SpiffeCA, bundle: Bundle) -> None:
    leaf, _ = foreign_ca.issue()

    rejection = _rejection(_pem(leaf), BundleSet([bundle]))

    assert rejection.reason == Reason.TRUST_DOMAIN_MISMATCH
    assert "no bundle is loaded for trust domain other.org" in rejection.message


def test_chain_to_other_bundle(rogue_ca: SpiffeCA, bundle: Bundle) -> None:
    leaf, _ = rogue_ca.issue()

    rejection = _rejection(_pem(leaf), bundle)

    assert rejection.reason == Reason.SVID_CHAIN_INVALID
    assert "does not verify against the bundle of trust domain example.org" in rejection.message


def test_untrusted_intermediate(rogue_ca: SpiffeCA, bundle: Bundle) -> None:
    intermediate = rogue_ca.intermediate()
    leaf, _ = intermediate.issue()

    rejection = _rejection(intermediate.chain_pem(leaf), bundle)

    assert rejection.reason == Reason.SVID_CHAIN_INVALID


def test_missing_intermediate(ca: SpiffeCA, bundle: Bundle) -> None:
    intermediate = ca.intermediate()
    leaf, _ = intermediate.issue()

    rejection = _rejection(_pem(leaf), bundle)

    assert rejection.reason == Reason.SVID_CHAIN_INVALID


def test_bundle_without_x509_authorities(ca: SpiffeCA, ec_signer: object) -> None:
    jwt_only = bundle_loader.from_json(
        bundle_document(signers=[ec_signer]),  # type: ignore[list-item]
        trust_domain="example.org",
    )
    leaf, _ = ca.issue()

    rejection = _rejection(_pem(leaf), jwt_only)

    assert rejection.reason == Reason.SVID_CHAIN_INVALID
    assert "has no x509-svid authorities" in rejection.message


@pytest.mark.parametrize(
    ("usage", "critical", "fragment"),
    [
        (key_usage(digital_signature=True, key_cert_sign=True), True, "asserts keyCertSign"),
        (key_usage(digital_signature=True, crl_sign=True), True, "asserts cRLSign"),
        (key_usage(key_encipherment=True), True, "lacks digitalSignature"),
        (key_usage(digital_signature=True), False, "not marked critical"),
        (None, True, "has no keyUsage extension"),
    ],
)
def test_key_usage(
    ca: SpiffeCA, bundle: Bundle, usage: x509.KeyUsage | None, critical: bool, fragment: str
) -> None:
    leaf, _ = ca.issue(usage=usage, usage_critical=critical)

    rejection = _rejection(_pem(leaf), bundle)

    assert rejection.reason == Reason.SVID_KEY_USAGE_INVALID
    assert fragment in rejection.message


@pytest.mark.parametrize(
    ("uri", "fragment"),
    [
        ("spiffe://example.org/ns/sh%6Fp/sa/web", "percent-encoding"),
        ("spiffe://EXAMPLE.org/ns/shop/sa/web", "uppercase"),
        ("spiffe://example.org/ns/./sa/web", "'.' segment"),
        ("spiffe://example.org/ns/../sa/web", "'..' segment"),
        ("spiffe://example.org/" + "a" * 2100, "longer than the maximum of 2048"),
        ("spiffe://example.org", "has no path"),
        ("spiffe://example.org/ns/shop/", "must not end with '/'"),
    ],
)
def test_invalid_spiffe_id(ca: SpiffeCA, bundle: Bundle, uri: str, fragment: str) -> None:
    leaf, _ = ca.issue(uris=[uri])

    rejection = _rejection(_pem(leaf), bundle)

    assert rejection.reason == Reason.INVALID_SPIFFE_ID
    assert fragment in rejection.message


def test_eku_without_client_auth(ca: SpiffeCA, bundle: Bundle) -> None:
    leaf, _ = ca.issue(eku=[ExtendedKeyUsageOID.SERVER_AUTH])

    rejection = _rejection(_pem(leaf), bundle)

    assert rejection.reason == Reason.SVID_CHAIN_INVALID
    assert "EKU" in rejection.message


def test_no_eku_accepted(ca: SpiffeCA, bundle: Bundle) -> None:
    leaf, _ = ca.issue(eku=None)

    verified = verify_x509_svid(_pem(leaf), bundles=bundle)

    assert verified.serial_number == leaf.serial_number


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b"", "the chain is empty"),
        (b"   \n", "the chain is empty"),
        (b"hello", "not PEM or DER"),
        (b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "not PEM or DER"),
        (b"\x30\x82\x01", "not PEM or DER"),
        (b"\x30\x84\xff\xff\xff\xff", "not PEM or DER"),
    ],
)
def test_malformed_input(bundle: Bundle, data: bytes, fragment: str) -> None:
    rejection = _rejection(data, bundle)

    assert rejection.reason == Reason.MALFORMED_SVID
    assert fragment in rejection.message


def test_chain_too_long(ca: SpiffeCA, bundle: Bundle) -> None:
    leaf, _ = ca.issue()

    rejection = _rejection(_pem(leaf) * (MAX_CHAIN_CERTIFICATES + 1), bundle)

    assert rejection.reason == Reason.MALFORMED_SVID
    assert "more than the maximum" in rejection.message


def test_load_chain_keeps_order(ca: SpiffeCA) -> None:
    intermediate = ca.intermediate()
    leaf, _ = intermediate.issue()

    chain = load_certificate_chain(intermediate.chain_pem(leaf))

    assert chain == [leaf, intermediate.certificate]


def test_naive_time_rejected(ca: SpiffeCA, bundle: Bundle) -> None:
    leaf, _ = ca.issue()

    with pytest.raises(ValueError, match="aware"):
        verify_x509_svid(_pem(leaf), bundles=bundle, now=datetime.now())
