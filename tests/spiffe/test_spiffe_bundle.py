"""SPIFFE bundle parsing, the file, ConfigMap and Secret loaders, and BundleSet."""

from __future__ import annotations

import base64
import copy
import json
from pathlib import Path
from typing import Any

import pytest
from spiffe_ca import JwtSigner, SpiffeCA, bundle_document, x509_authority_jwk

from credbroker.errors import IdentityRejected
from credbroker.reasons import Reason
from credbroker.spiffe import bundle as bundle_loader
from credbroker.spiffe.bundle import DEFAULT_BUNDLE_KEY, BundleSet
from credbroker.spiffe.ids import TrustDomain


@pytest.fixture
def document(ca: SpiffeCA, rsa_ca: SpiffeCA, ec_signer: JwtSigner) -> dict[str, Any]:
    return bundle_document(
        authorities=[ca.certificate, rsa_ca.certificate],
        signers=[ec_signer],
        sequence=7,
        refresh_hint=600,
    )


def _rejection(document: Any) -> IdentityRejected:
    with pytest.raises(IdentityRejected) as caught:
        bundle_loader.from_json(document, trust_domain="example.org")
    assert caught.value.reason == Reason.BUNDLE_INVALID
    return caught.value


def test_parse_full_bundle(
    document: dict[str, Any], ca: SpiffeCA, rsa_ca: SpiffeCA, ec_signer: JwtSigner
) -> None:
    bundle = bundle_loader.from_json(json.dumps(document), trust_domain="example.org")

    assert bundle.trust_domain == TrustDomain("example.org")
    assert bundle.x509_authorities == (ca.certificate, rsa_ca.certificate)
    assert [authority.key_id for authority in bundle.jwt_authorities] == ["ec-1"]
    assert bundle.sequence == 7
    assert bundle.refresh_hint_seconds == 600
    authority = bundle.jwt_authority("ec-1")
    assert authority is not None
    assert (
        authority.public_key.public_numbers() == ec_signer.private_key.public_key().public_numbers()
    )
    assert bundle.jwt_authority("missing") is None


def test_optional_members_absent(ec_signer: JwtSigner) -> None:
    document = bundle_document(signers=[ec_signer], sequence=None, refresh_hint=None)

    bundle = bundle_loader.from_json(document, trust_domain=TrustDomain("example.org"))

    assert bundle.sequence is None
    assert bundle.refresh_hint_seconds is None
    assert bundle.x509_authorities == ()


def test_unknown_use_and_kty_ignored(document: dict[str, Any]) -> None:
    document["keys"].append({"kty": "EC", "use": "wit-svid", "crv": "P-256"})
    document["keys"].append({"kty": "OKP", "use": "jwt-svid", "kid": "ed", "crv": "Ed25519"})

    bundle = bundle_loader.from_json(document, trust_domain="example.org")

    assert len(bundle.x509_authorities) == 2
    assert [authority.key_id for authority in bundle.jwt_authorities] == ["ec-1"]


def test_x5c_missing_ignored(document: dict[str, Any]) -> None:
    del document["keys"][0]["x5c"]

    bundle = bundle_loader.from_json(document, trust_domain="example.org")

    assert len(bundle.x509_authorities) == 1


def test_x5c_extra_values_ignored(document: dict[str, Any], rsa_ca: SpiffeCA, ca: SpiffeCA) -> None:
    extra = x509_authority_jwk(rsa_ca.certificate)["x5c"][0]
    document["keys"][0]["x5c"].append(extra)

    bundle = bundle_loader.from_json(document, trust_domain="example.org")

    assert bundle.x509_authorities[0] == ca.certificate


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ("not json", "not valid JSON"),
        ("[]", "not an object"),
        ("{}", "'keys' must be a list"),
        ('{"keys": {}}', "'keys' must be a list"),
        ('{"keys": []}', "would trust nothing"),
        ('{"keys": ["x"]}', "keys[0] must be an object"),
        ('{"keys": [{"kty": "EC"}]}', "keys[0] has no 'use'"),
    ],
)
def test_invalid_documents(data: str, fragment: str) -> None:
    assert fragment in _rejection(data).message


def test_message_names_trust_domain() -> None:
    assert "trust domain example.org" in _rejection("{}").message


def test_oversized_document() -> None:
    data = b" " * (bundle_loader.MAX_BUNDLE_BYTES + 1)

    assert "byte limit" in _rejection(data).message


@pytest.mark.parametrize(
    ("member", "value"),
    [
        ("spiffe_sequence", -1),
        ("spiffe_sequence", "1"),
        ("spiffe_sequence", True),
        ("spiffe_sequence", 2**64),
        ("spiffe_sequence", 1.5),
        ("spiffe_refresh_hint", -5),
        ("spiffe_refresh_hint", "300"),
    ],
)
def test_invalid_counts(document: dict[str, Any], member: str, value: object) -> None:
    document[member] = value

    assert member in _rejection(document).message


def test_jwt_key_needs_kid(document: dict[str, Any]) -> None:
    del document["keys"][2]["kid"]

    assert "without a kid" in _rejection(document).message


def test_jwt_key_repeated_kid(document: dict[str, Any]) -> None:
    document["keys"].append(copy.deepcopy(document["keys"][2]))

    assert "repeats kid 'ec-1'" in _rejection(document).message


def test_private_key_rejected(document: dict[str, Any]) -> None:
    document["keys"][2]["d"] = "AAAA"

    message = _rejection(document).message

    assert "private key members (d)" in message
    assert "AAAA" not in message


def test_bad_jwk_parameters(document: dict[str, Any]) -> None:
    document["keys"][2]["x"] = "not-a-coordinate"

    assert "keys[2] is not a valid EC key" in _rejection(document).message


def test_x5c_not_base64(document: dict[str, Any]) -> None:
    document["keys"][0]["x5c"] = ["***"]

    assert "keys[0].x5c[0] is not a base64 DER certificate" in _rejection(document).message


def test_x5c_not_certificate(document: dict[str, Any]) -> None:
    document["keys"][0]["x5c"] = [base64.b64encode(b"\x30\x03\x02\x01\x01").decode()]

    assert "not a base64 DER certificate" in _rejection(document).message


def test_x5c_key_mismatch(document: dict[str, Any], rsa_ca: SpiffeCA) -> None:
    document["keys"][0]["x5c"] = document["keys"][1]["x5c"]

    assert "differ from the public key" in _rejection(document).message


def test_invalid_trust_domain_argument(document: dict[str, Any]) -> None:
    with pytest.raises(IdentityRejected) as caught:
        bundle_loader.from_json(document, trust_domain="Example.org")

    assert caught.value.reason == Reason.INVALID_SPIFFE_ID


def test_from_file(tmp_path: Path, document: dict[str, Any]) -> None:
    path = tmp_path / "bundle.json"
    path.write_text(json.dumps(document))

    bundle = bundle_loader.from_file(path, trust_domain="example.org")

    assert len(bundle.x509_authorities) == 2


def test_from_file_missing(tmp_path: Path) -> None:
    with pytest.raises(IdentityRejected) as caught:
        bundle_loader.from_file(tmp_path / "absent.json", trust_domain="example.org")

    assert caught.value.reason == Reason.BUNDLE_INVALID
    assert "cannot read the bundle file" in caught.value.message


def _metadata() -> dict[str, Any]:
    return {"name": "spiffe-bundle", "namespace": "credbroker"}


def test_from_config_map_data(document: dict[str, Any]) -> None:
    body = {"metadata": _metadata(), "data": {DEFAULT_BUNDLE_KEY: json.dumps(document)}}

    bundle = bundle_loader.from_config_map(body, trust_domain="example.org")

    assert bundle.sequence == 7


def test_from_config_map_binary_data(document: dict[str, Any]) -> None:
    encoded = base64.b64encode(json.dumps(document).encode()).decode()
    body = {"metadata": _metadata(), "binaryData": {"td.json": encoded}}

    bundle = bundle_loader.from_config_map(body, trust_domain="example.org", key="td.json")

    assert bundle.sequence == 7


def test_from_config_map_missing_key(document: dict[str, Any]) -> None:
    body = {"metadata": _metadata(), "data": {"other": json.dumps(document)}}

    with pytest.raises(IdentityRejected) as caught:
        bundle_loader.from_config_map(body, trust_domain="example.org")

    assert caught.value.reason == Reason.BUNDLE_INVALID
    assert "ConfigMap credbroker/spiffe-bundle has no key 'bundle.spiffe'" in caught.value.message


def test_from_secret_data(document: dict[str, Any]) -> None:
    encoded = base64.b64encode(json.dumps(document).encode()).decode()
    body = {"metadata": _metadata(), "data": {DEFAULT_BUNDLE_KEY: encoded}}

    bundle = bundle_loader.from_secret(body, trust_domain="example.org")

    assert bundle.refresh_hint_seconds == 600


def test_from_secret_string_data(document: dict[str, Any]) -> None:
    body = {"metadata": _metadata(), "stringData": {"b": json.dumps(document)}}

    bundle = bundle_loader.from_secret(body, trust_domain="example.org", key="b")

    assert bundle.refresh_hint_seconds == 600


def test_from_secret_bad_base64() -> None:
    body = {"metadata": _metadata(), "data": {DEFAULT_BUNDLE_KEY: "{not base64}"}}

    with pytest.raises(IdentityRejected) as caught:
        bundle_loader.from_secret(body, trust_domain="example.org")

    assert caught.value.reason == Reason.BUNDLE_INVALID
    assert "Secret credbroker/spiffe-bundle data['bundle.spiffe'] is not valid base64" in (
        caught.value.message
    )


def test_from_secret_data_not_map() -> None:
    with pytest.raises(IdentityRejected) as caught:
        bundle_loader.from_secret({"data": ["x"]}, trust_domain="example.org")

    assert caught.value.reason == Reason.BUNDLE_INVALID
    assert "field 'data' is not a map" in caught.value.message


def test_bundle_set_one_per_domain(document: dict[str, Any], foreign_ca: SpiffeCA) -> None:
    first = bundle_loader.from_json(document, trust_domain="example.org")
    second = bundle_loader.from_json(document, trust_domain="example.org")
    foreign = bundle_loader.from_json(
        bundle_document(authorities=[foreign_ca.certificate]), trust_domain="other.org"
    )
    bundles = BundleSet([first, foreign])

    with pytest.raises(IdentityRejected) as caught:
        bundles.add(second)

    assert caught.value.reason == Reason.BUNDLE_INVALID
    assert "never merged" in caught.value.message
    assert bundles.get(TrustDomain("example.org")) is first
    assert len(bundles) == 2


def test_bundle_set_replace(document: dict[str, Any]) -> None:
    first = bundle_loader.from_json(document, trust_domain="example.org")
    second = bundle_loader.from_json(document, trust_domain="example.org")
    bundles = BundleSet([first])

    bundles.replace(second)

    assert bundles.get(TrustDomain("example.org")) is second
    assert bundles.trust_domains == (TrustDomain("example.org"),)


def test_bundle_set_require_unknown(document: dict[str, Any]) -> None:
    bundles = BundleSet([bundle_loader.from_json(document, trust_domain="example.org")])

    with pytest.raises(IdentityRejected) as caught:
        bundles.require(TrustDomain("other.org"))

    assert caught.value.reason == Reason.TRUST_DOMAIN_MISMATCH
    assert "loaded for: example.org" in caught.value.message
