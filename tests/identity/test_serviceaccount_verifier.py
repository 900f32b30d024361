"""ServiceAccountTokenVerifier against a local issuer: good tokens, the bad-token corpus, leeway."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from identity_corpus import BAD_TOKENS, BadToken, TokenContext, corpus_ids
from identity_issuer import AUDIENCE, LocalIssuer, SigningKey, ec_key, rsa_key

from credbroker.errors import IdentityRejected
from credbroker.identity.jwks import HTTPFetcher, JWKSCache
from credbroker.identity.pods import PodRef
from credbroker.identity.serviceaccount import (
    MAX_LEEWAY_SECONDS,
    ServiceAccountTokenVerifier,
)
from credbroker.reasons import Reason


async def test_rs256_token_accepted(
    issuer: LocalIssuer,
    verifier: ServiceAccountTokenVerifier,
    pod: PodRef,
    rsa_signing_key: SigningKey,
) -> None:
    claims = issuer.claims(pod)
    token = issuer.mint(claims, key=rsa_signing_key)

    identity = await verifier.verify(token, pod=pod)

    assert identity.namespace == "shop"
    assert identity.service_account == "api"
    assert identity.pod_name == "api-7f9c"
    assert identity.pod_uid == pod.uid
    assert identity.node_name == "node-1"
    assert identity.token_jti == claims["jti"]
    assert identity.token_expires_at == datetime.fromtimestamp(claims["exp"], UTC)
    assert identity.spiffe_id is None


async def test_es256_token_accepted(
    issuer: LocalIssuer,
    verifier: ServiceAccountTokenVerifier,
    pod: PodRef,
    ec_signing_key: SigningKey,
) -> None:
    token = issuer.mint(issuer.claims(pod), key=ec_signing_key)

    identity = await verifier.verify(token, pod=pod)

    assert identity.pod_uid == pod.uid
    assert identity.pod_ref == "shop/api-7f9c"


@pytest.mark.parametrize(
    "signing_key",
    [rsa_key("rs384", "RS384"), rsa_key("ps256", "PS256"), ec_key("es384", "ES384")],
    ids=lambda key: key.alg,
)
async def test_other_allowed_algorithms(pod: PodRef, signing_key: SigningKey) -> None:
    local_issuer = LocalIssuer(keys=[signing_key])
    await local_issuer.start()
    try:
        assert local_issuer.issuer is not None
        verifier = ServiceAccountTokenVerifier(
            issuer=local_issuer.issuer,
            audience=AUDIENCE,
            jwks=JWKSCache(issuer=local_issuer.issuer, fetcher=HTTPFetcher()),
        )
        identity = await verifier.verify(local_issuer.token_for(pod), pod=pod)
    finally:
        await local_issuer.close()

    assert identity.pod_uid == pod.uid


async def test_token_without_jti(
    issuer: LocalIssuer, verifier: ServiceAccountTokenVerifier, pod: PodRef
) -> None:
    claims = issuer.claims(pod)
    del claims["jti"]

    identity = await verifier.verify(issuer.mint(claims), pod=pod)

    assert identity.token_jti is None


async def test_node_name_from_token(
    issuer: LocalIssuer, verifier: ServiceAccountTokenVerifier, pod: PodRef
) -> None:
    unscheduled = PodRef(
        namespace=pod.namespace, name=pod.name, uid=pod.uid, service_account=pod.service_account
    )

    identity = await verifier.verify(issuer.token_for(pod), pod=unscheduled)

    assert identity.node_name == "node-1"


@pytest.mark.parametrize("case", BAD_TOKENS, ids=corpus_ids())
async def test_bad_token_rejected(
    case: BadToken,
    issuer: LocalIssuer,
    verifier: ServiceAccountTokenVerifier,
    pod: PodRef,
    rogue_signing_key: SigningKey,
) -> None:
    token = case.build(TokenContext(issuer=issuer, pod=pod, rogue_key=rogue_signing_key))

    with pytest.raises(IdentityRejected) as caught:
        await verifier.verify(token, pod=pod)

    assert caught.value.reason == case.reason, caught.value.message
    assert case.message_contains in caught.value.message


@pytest.mark.parametrize("case_name", ["alg-none", "hs256-public-key"])
async def test_bad_alg_fetches_no_keys(
    case_name: str,
    issuer: LocalIssuer,
    verifier: ServiceAccountTokenVerifier,
    pod: PodRef,
    rogue_signing_key: SigningKey,
) -> None:
    case = next(case for case in BAD_TOKENS if case.name == case_name)
    token = case.build(TokenContext(issuer=issuer, pod=pod, rogue_key=rogue_signing_key))

    with pytest.raises(IdentityRejected):
        await verifier.verify(token, pod=pod)

    assert issuer.discovery_requests == 0
    assert issuer.jwks_requests == 0


async def test_unknown_kid_refetches_once(
    issuer: LocalIssuer,
    verifier: ServiceAccountTokenVerifier,
    pod: PodRef,
    rogue_signing_key: SigningKey,
) -> None:
    await verifier.verify(issuer.token_for(pod), pod=pod)
    assert issuer.jwks_requests == 1

    with pytest.raises(IdentityRejected) as caught:
        await verifier.verify(issuer.token_for(pod, key=rogue_signing_key), pod=pod)

    assert caught.value.reason == Reason.UNKNOWN_KEY_ID
    assert issuer.jwks_requests == 2


async def test_rotated_key_found_by_refetch(
    issuer: LocalIssuer, verifier: ServiceAccountTokenVerifier, pod: PodRef
) -> None:
    await verifier.verify(issuer.token_for(pod), pod=pod)
    rotated = ec_key("ec-2")
    issuer.keys.append(rotated)

    identity = await verifier.verify(issuer.token_for(pod, key=rotated), pod=pod)

    assert identity.pod_uid == pod.uid
    assert issuer.jwks_requests == 2


async def test_verify_claims_without_pod(
    issuer: LocalIssuer, verifier: ServiceAccountTokenVerifier, pod: PodRef
) -> None:
    claims = issuer.claims(pod)

    verified = await verifier.verify_claims(issuer.mint(claims))

    assert verified.subject == "system:serviceaccount:shop:api"
    assert verified.namespace == "shop"
    assert verified.service_account == "api"
    assert verified.pod_name == "api-7f9c"
    assert verified.pod_uid == pod.uid
    assert verified.audiences == (AUDIENCE,)
    assert verified.key_id == "rsa-1"
    assert verified.issued_at == datetime.fromtimestamp(claims["iat"], UTC)


async def test_audience_as_string(
    issuer: LocalIssuer, verifier: ServiceAccountTokenVerifier, pod: PodRef
) -> None:
    claims = issuer.claims(pod)
    claims["aud"] = AUDIENCE

    identity = await verifier.verify(issuer.mint(claims), pod=pod)

    assert identity.pod_uid == pod.uid


async def test_oversized_token_rejected(verifier: ServiceAccountTokenVerifier, pod: PodRef) -> None:
    with pytest.raises(IdentityRejected) as caught:
        await verifier.verify("a" * 20_000 + ".b.c", pod=pod)

    assert caught.value.reason == Reason.MALFORMED_TOKEN


class FixedClock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.mark.parametrize(
    ("seconds_after_exp", "reason"),
    [(-1, None), (29, None), (30, Reason.TOKEN_EXPIRED), (3600, Reason.TOKEN_EXPIRED)],
)
async def test_expiry_leeway(
    issuer: LocalIssuer,
    jwks_cache: JWKSCache,
    pod: PodRef,
    seconds_after_exp: int,
    reason: Reason | None,
) -> None:
    claims = issuer.claims(pod)
    clock = FixedClock(datetime.fromtimestamp(claims["exp"] + seconds_after_exp, UTC))
    assert issuer.issuer is not None
    verifier = ServiceAccountTokenVerifier(
        issuer=issuer.issuer, audience=AUDIENCE, jwks=jwks_cache, leeway_seconds=30, clock=clock
    )
    token = issuer.mint(claims)

    if reason is None:
        identity = await verifier.verify(token, pod=pod)
        assert identity.pod_uid == pod.uid
    else:
        with pytest.raises(IdentityRejected) as caught:
            await verifier.verify(token, pod=pod)
        assert caught.value.reason == reason


@pytest.mark.parametrize(
    ("seconds_before_nbf", "reason"),
    [(0, None), (30, None), (31, Reason.TOKEN_NOT_YET_VALID)],
)
async def test_not_before_leeway(
    issuer: LocalIssuer,
    jwks_cache: JWKSCache,
    pod: PodRef,
    seconds_before_nbf: int,
    reason: Reason | None,
) -> None:
    claims = issuer.claims(pod)
    clock = FixedClock(datetime.fromtimestamp(claims["nbf"] - seconds_before_nbf, UTC))
    assert issuer.issuer is not None
    verifier = ServiceAccountTokenVerifier(
        issuer=issuer.issuer, audience=AUDIENCE, jwks=jwks_cache, leeway_seconds=30, clock=clock
    )
    token = issuer.mint(claims)

    if reason is None:
        identity = await verifier.verify(token, pod=pod)
        assert identity.pod_uid == pod.uid
    else:
        with pytest.raises(IdentityRejected) as caught:
            await verifier.verify(token, pod=pod)
        assert caught.value.reason == reason


@pytest.mark.parametrize("leeway_seconds", [-1, MAX_LEEWAY_SECONDS + 1, 3600])
def test_leeway_out_of_bounds(jwks_cache: JWKSCache, leeway_seconds: int) -> None:
    with pytest.raises(ValueError, match="leeway_seconds") as caught:
        ServiceAccountTokenVerifier(
            issuer=jwks_cache.issuer,
            audience=AUDIENCE,
            jwks=jwks_cache,
            leeway_seconds=leeway_seconds,
        )

    assert str(leeway_seconds) in str(caught.value)


def test_jwks_for_other_issuer(jwks_cache: JWKSCache) -> None:
    with pytest.raises(ValueError, match="issuer"):
        ServiceAccountTokenVerifier(
            issuer="https://issuer.invalid", audience=AUDIENCE, jwks=jwks_cache
        )


async def test_naive_clock_rejected(
    issuer: LocalIssuer, jwks_cache: JWKSCache, pod: PodRef
) -> None:
    assert issuer.issuer is not None
    verifier = ServiceAccountTokenVerifier(
        issuer=issuer.issuer,
        audience=AUDIENCE,
        jwks=jwks_cache,
        clock=lambda: datetime.now(UTC).replace(tzinfo=None),
    )

    with pytest.raises(ValueError, match="aware"):
        await verifier.verify(issuer.token_for(pod), pod=pod)
