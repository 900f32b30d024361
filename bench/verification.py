"""Verification: service-account JWTs verified per second with the JWKS already cached.

``ServiceAccountTokenVerifier.verify`` runs on tokens signed here with a
fresh RSA-2048 key (RS256, as the API server signs by default). The JWKS
fetcher returns the key from memory, so no request leaves the process. The
same tokens also go through a bare ``jwt.decode`` with the same key, which
is the floor for the verifier's own checks.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from credbroker.identity.jwks import JWKSCache
from credbroker.identity.pods import PodRef
from credbroker.identity.serviceaccount import ServiceAccountTokenVerifier
from credbroker.settings import DEFAULT_AUDIENCE

ISSUER = "https://kubernetes.default.svc.cluster.local"
# Never fetched over the network: the fetcher below returns the keys from memory.
JWKS_URI = "https://127.0.0.1/openid/v1/jwks"
KEY_ID = "bench-key"
DISTINCT_TOKENS = 16


def run_verification(count: int) -> dict[str, Any]:
    """Verify ``count`` tokens with the operator's verifier and with bare PyJWT."""
    return asyncio.run(_run(count))


async def _run(count: int) -> dict[str, Any]:
    private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(private_key.public_key()))
    public_jwk.update({"kid": KEY_ID, "alg": "RS256", "use": "sig"})
    document = {"keys": [public_jwk]}

    async def fetch(url: str) -> Mapping[str, Any]:
        return document

    jwks = JWKSCache(issuer=ISSUER, fetcher=fetch, jwks_uri=JWKS_URI)
    verifier = ServiceAccountTokenVerifier(issuer=ISSUER, audience=DEFAULT_AUDIENCE, jwks=jwks)
    samples = [_signed_token(private_key) for _ in range(DISTINCT_TOKENS)]

    # The first call loads the keys into the cache; it is not timed.
    await verifier.verify(samples[0][0], pod=samples[0][1])

    started = time.perf_counter()
    for index in range(count):
        token, pod = samples[index % DISTINCT_TOKENS]
        await verifier.verify(token, pod=pod)
    verifier_seconds = time.perf_counter() - started

    public_key = private_key.public_key()
    started = time.perf_counter()
    for index in range(count):
        token, _ = samples[index % DISTINCT_TOKENS]
        jwt.decode(
            token, key=public_key, algorithms=["RS256"], audience=DEFAULT_AUDIENCE, issuer=ISSUER
        )
    pyjwt_seconds = time.perf_counter() - started

    return {
        "verifications": count,
        "algorithm": "RS256",
        "key_bits": 2048,
        "verifier_per_second": round(count / verifier_seconds, 1),
        "verifier_microseconds_each": round(verifier_seconds / count * 1e6, 1),
        "pyjwt_decode_per_second": round(count / pyjwt_seconds, 1),
        "jwks_fetches": jwks.fetch_count,
    }


def _signed_token(private_key: rsa.RSAPrivateKey) -> tuple[str, PodRef]:
    now = datetime.now(UTC)
    pod = PodRef(
        namespace="bench",
        name=f"pod-{uuid.uuid4().hex[:8]}",
        uid=str(uuid.uuid4()),
        service_account="app",
        node_name=None,
    )
    claims = {
        "iss": ISSUER,
        "aud": [DEFAULT_AUDIENCE],
        "sub": pod.subject,
        "iat": int(now.timestamp()),
        "nbf": int(now.timestamp()),
        "exp": int((now + timedelta(minutes=10)).timestamp()),
        "jti": str(uuid.uuid4()),
        "kubernetes.io": {
            "namespace": pod.namespace,
            "serviceaccount": {"name": pod.service_account, "uid": str(uuid.uuid4())},
            "pod": {"name": pod.name, "uid": pod.uid},
        },
    }
    token = jwt.encode(claims, private_key, algorithm="RS256", headers={"kid": KEY_ID})
    return token, pod
