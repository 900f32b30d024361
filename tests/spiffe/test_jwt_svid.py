"""JWT-SVID verification: good tokens accepted, and a corpus each rejected with its reason."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from spiffe_ca import JwtSigner, bundle_document

from credbroker.errors import IdentityRejected
from credbroker.reasons import Reason
from credbroker.spiffe import bundle as bundle_loader
from credbroker.spiffe.bundle import Bundle, BundleSet
from credbroker.spiffe.ids import TrustDomain
from credbroker.spiffe.jwtsvid import read_unverified_spiffe_id, verify_jwt_svid

AUDIENCE = "credbroker"


def _rejection(token: str, bundles: Bundle | BundleSet, **kwargs: Any) -> IdentityRejected:
    with pytest.raises(IdentityRejected) as caught:
        verify_jwt_svid(token, bundles=bundles, audience=AUDIENCE, **kwargs)
    assert token not in caught.value.message
    return caught.value


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _unsigned(header: dict[str, Any], claims: dict[str, Any]) -> str:
    return f"{_b64(header)}.{_b64(claims)}."


def _claims(**overrides: Any) -> dict[str, Any]:
    now = int(datetime.now(UTC).timestamp())
    claims = {"sub": "spiffe://example.org/ns/shop/sa/web", "aud": AUDIENCE, "exp": now + 300}
    claims.update(overrides)
    return claims


@pytest.mark.parametrize("signer_name", ["ec_signer", "rsa_signer"])
def test_good_token_accepted(
    signer_name: str, bundle: Bundle, request: pytest.FixtureRequest
) -> None:
    signer: JwtSigner = request.getfixturevalue(signer_name)
    token = signer.mint()

    verified = verify_jwt_svid(token, bundles=bundle, audience=AUDIENCE)

    assert str(verified.spiffe_id) == "spiffe://example.org/ns/shop/sa/web"
    assert verified.audiences == (AUDIENCE,)
    assert verified.key_id == signer.kid
    assert verified.expires_at > datetime.now(UTC)
    assert verified.issued_at is not None


@pytest.mark.parametrize("alg", ["ES384", "ES512", "PS256", "RS512"])
def test_other_algorithms_accepted(alg: str) -> None:
    signer = JwtSigner.create(f"key-{alg}", alg)
    bundle = bundle_loader.from_json(bundle_document(signers=[signer]), trust_domain="example.org")

    verified = verify_jwt_svid(signer.mint(), bundles=bundle, audience=AUDIENCE)

    assert verified.key_id == f"key-{alg}"


@pytest.mark.parametrize("typ", ["JWT", "JOSE"])
def test_allowed_typ(ec_signer: JwtSigner, bundle: Bundle, typ: str) -> None:
    token = ec_signer.mint(headers={"typ": typ})

    assert verify_jwt_svid(token, bundles=bundle, audience=AUDIENCE).key_id == "ec-1"


def test_typ_absent(ec_signer: JwtSigner, bundle: Bundle) -> None:
    token = ec_signer.mint(headers={"typ": None})

    assert "typ" not in jwt.get_unverified_header(token)
    assert verify_jwt_svid(token, bundles=bundle, audience=AUDIENCE).key_id == "ec-1"


def test_audience_in_list(ec_signer: JwtSigner, bundle: Bundle) -> None:
    token = ec_signer.mint(aud=["reports", AUDIENCE])

    verified = verify_jwt_svid(token, bundles=bundle, audience=AUDIENCE)

    assert verified.audiences == ("reports", AUDIENCE)


def test_bundle_set_picks_domain(bundle: Bundle) -> None:
    foreign_signer = JwtSigner.create("other-1")
    foreign = bundle_loader.from_json(
        bundle_document(signers=[foreign_signer]), trust_domain="other.org"
    )
    token = foreign_signer.mint(sub="spiffe://other.org/billing")

    verified = verify_jwt_svid(token, bundles=BundleSet([bundle, foreign]), audience=AUDIENCE)

    assert str(verified.spiffe_id) == "spiffe://other.org/billing"


def test_alg_none(bundle: Bundle) -> None:
    token = _unsigned({"alg": "none", "kid": "ec-1"}, _claims())

    rejection = _rejection(token, bundle)

    assert rejection.reason == Reason.ALGORITHM_NOT_ALLOWED
    assert "'none' is not allowed" in rejection.message


def test_hs256(bundle: Bundle) -> None:
    token = jwt.encode(_claims(), "s" * 32, algorithm="HS256", headers={"kid": "ec-1"})

    rejection = _rejection(token, bundle)

    assert rejection.reason == Reason.ALGORITHM_NOT_ALLOWED
    assert "'HS256'" in rejection.message


def test_alg_missing(bundle: Bundle) -> None:
    rejection = _rejection(_unsigned({"kid": "ec-1"}, _claims()), bundle)

    assert rejection.reason == Reason.ALGORITHM_NOT_ALLOWED


@pytest.mark.parametrize("typ", ["at+jwt", "jwt", "JWS", 1])
def test_bad_typ(ec_signer: JwtSigner, bundle: Bundle, typ: object) -> None:
    rejection = _rejection(ec_signer.mint(headers={"typ": typ}), bundle)

    assert rejection.reason == Reason.JWT_SVID_HEADER_INVALID
    assert "typ" in rejection.message


@pytest.mark.parametrize("header", ["jku", "x5c", "crit", "cty"])
def test_extra_header(ec_signer: JwtSigner, bundle: Bundle, header: str) -> None:
    rejection = _rejection(ec_signer.mint(headers={header: ["x"]}), bundle)

    assert rejection.reason == Reason.JWT_SVID_HEADER_INVALID
    assert f"header has '{header}'" in rejection.message


def test_missing_kid(ec_signer: JwtSigner, bundle: Bundle) -> None:
    token = jwt.encode(_claims(), ec_signer.private_key, algorithm="ES256")

    rejection = _rejection(token, bundle)

    assert rejection.reason == Reason.JWT_SVID_HEADER_INVALID
    assert "no kid" in rejection.message


def test_missing_aud(ec_signer: JwtSigner, bundle: Bundle) -> None:
    rejection = _rejection(ec_signer.mint(aud=None), bundle)

    assert rejection.reason == Reason.MISSING_CLAIM
    assert "'aud'" in rejection.message


def test_empty_aud_list(ec_signer: JwtSigner, bundle: Bundle) -> None:
    rejection = _rejection(ec_signer.mint(aud=[]), bundle)

    assert rejection.reason == Reason.MISSING_CLAIM


def test_missing_exp(ec_signer: JwtSigner, bundle: Bundle) -> None:
    rejection = _rejection(ec_signer.mint(lifetime=None), bundle)

    assert rejection.reason == Reason.MISSING_CLAIM
    assert "'exp'" in rejection.message


def test_missing_sub(ec_signer: JwtSigner, bundle: Bundle) -> None:
    rejection = _rejection(ec_signer.mint(sub=None), bundle)

    assert rejection.reason == Reason.MISSING_CLAIM
    assert "'sub'" in rejection.message


@pytest.mark.parametrize(
    ("sub", "fragment"),
    [
        ("system:serviceaccount:shop:web", "must start with 'spiffe://'"),
        ("spiffe://Example.org/ns/shop", "uppercase"),
        ("spiffe://example.org/ns/%2e%2e", "percent-encoding"),
        ("spiffe://example.org", "has no path"),
    ],
)
def test_sub_not_spiffe_id(ec_signer: JwtSigner, bundle: Bundle, sub: str, fragment: str) -> None:
    rejection = _rejection(ec_signer.mint(sub=sub), bundle)

    assert rejection.reason == Reason.INVALID_SPIFFE_ID
    assert fragment in rejection.message


def test_sub_not_string(ec_signer: JwtSigner, bundle: Bundle) -> None:
    token = ec_signer.mint(extra_claims={"sub": ["spiffe://example.org/a"]})

    rejection = _rejection(token, bundle)

    assert rejection.reason == Reason.INVALID_SPIFFE_ID


def test_wrong_audience(ec_signer: JwtSigner, bundle: Bundle) -> None:
    rejection = _rejection(ec_signer.mint(aud="reports"), bundle)

    assert rejection.reason == Reason.AUDIENCE_MISMATCH
    assert "does not contain 'credbroker'" in rejection.message


def test_unknown_kid(ec_signer: JwtSigner, bundle: Bundle) -> None:
    rejection = _rejection(ec_signer.mint(kid="rotated-away"), bundle)

    assert rejection.reason == Reason.UNKNOWN_KEY_ID
    assert "'rotated-away'" in rejection.message
    assert "'ec-1'" in rejection.message


def test_wrong_key_signature(bundle: Bundle) -> None:
    impostor = JwtSigner.create("ec-1")

    rejection = _rejection(impostor.mint(), bundle)

    assert rejection.reason == Reason.SIGNATURE_INVALID


def test_alg_does_not_fit_key(ec_signer: JwtSigner, bundle: Bundle) -> None:
    rejection = _rejection(ec_signer.mint(kid="rsa-1"), bundle)

    assert rejection.reason == Reason.ALGORITHM_NOT_ALLOWED
    assert "does not fit key 'rsa-1'" in rejection.message


def test_curve_does_not_fit_alg(bundle: Bundle) -> None:
    signer = JwtSigner.create("ec-384", "ES384")
    mixed = bundle_loader.from_json(bundle_document(signers=[signer]), trust_domain="example.org")
    token = _unsigned({"alg": "ES256", "kid": "ec-384"}, _claims()) + "AAAA"

    rejection = _rejection(token, mixed)

    assert rejection.reason == Reason.ALGORITHM_NOT_ALLOWED


def test_expired(ec_signer: JwtSigner, bundle: Bundle) -> None:
    rejection = _rejection(ec_signer.mint(lifetime=timedelta(seconds=-120)), bundle)

    assert rejection.reason == Reason.TOKEN_EXPIRED


def test_leeway_covers_skew(ec_signer: JwtSigner, bundle: Bundle) -> None:
    token = ec_signer.mint(lifetime=timedelta(seconds=-10))

    verified = verify_jwt_svid(token, bundles=bundle, audience=AUDIENCE, leeway_seconds=30)
    assert verified.key_id == "ec-1"
    with pytest.raises(IdentityRejected):
        verify_jwt_svid(token, bundles=bundle, audience=AUDIENCE, leeway_seconds=0)


def test_not_yet_valid(ec_signer: JwtSigner, bundle: Bundle) -> None:
    future = int((datetime.now(UTC) + timedelta(minutes=10)).timestamp())

    rejection = _rejection(ec_signer.mint(extra_claims={"nbf": future}), bundle)

    assert rejection.reason == Reason.TOKEN_NOT_YET_VALID


def test_exp_not_number(ec_signer: JwtSigner, bundle: Bundle) -> None:
    rejection = _rejection(ec_signer.mint(extra_claims={"exp": "tomorrow"}), bundle)

    assert rejection.reason == Reason.MALFORMED_TOKEN


def test_wrong_trust_domain(bundle: Bundle) -> None:
    foreign_signer = JwtSigner.create("ec-1")
    token = foreign_signer.mint(sub="spiffe://other.org/ns/shop/sa/web")

    rejection = _rejection(token, bundle)

    assert rejection.reason == Reason.TRUST_DOMAIN_MISMATCH


def test_pinned_trust_domain(ec_signer: JwtSigner, bundle: Bundle) -> None:
    rejection = _rejection(ec_signer.mint(), bundle, trust_domain=TrustDomain("other.org"))

    assert rejection.reason == Reason.TRUST_DOMAIN_MISMATCH
    assert "expected other.org" in rejection.message


@pytest.mark.parametrize("token", ["", "abc", "a.b", "a.b.c", "x" * 20000])
def test_malformed(bundle: Bundle, token: str) -> None:
    rejection = _rejection(token, bundle) if token else None
    if rejection is None:
        with pytest.raises(IdentityRejected) as caught:
            verify_jwt_svid(token, bundles=bundle, audience=AUDIENCE)
        rejection = caught.value

    assert rejection.reason == Reason.MALFORMED_TOKEN


def test_invalid_arguments(ec_signer: JwtSigner, bundle: Bundle) -> None:
    token = ec_signer.mint()

    with pytest.raises(ValueError, match="audience"):
        verify_jwt_svid(token, bundles=bundle, audience="")
    with pytest.raises(ValueError, match="leeway_seconds"):
        verify_jwt_svid(token, bundles=bundle, audience=AUDIENCE, leeway_seconds=3600)


def test_read_unverified_id(ec_signer: JwtSigner) -> None:
    spiffe_id = read_unverified_spiffe_id(ec_signer.mint(sub="spiffe://example.org/a/b"))

    assert str(spiffe_id) == "spiffe://example.org/a/b"
