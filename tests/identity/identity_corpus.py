"""The corpus of bad service-account tokens, each with the reason it must be rejected for."""

from __future__ import annotations

import hashlib
import hmac
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jwt
from identity_issuer import LocalIssuer, SigningKey, b64url, b64url_json, unsigned_token

from credbroker.identity.pods import PodRef
from credbroker.reasons import Reason


@dataclass(frozen=True)
class TokenContext:
    """What a bad-token builder may use."""

    issuer: LocalIssuer
    pod: PodRef
    rogue_key: SigningKey

    def claims(self) -> dict[str, Any]:
        return self.issuer.claims(self.pod)


@dataclass(frozen=True)
class BadToken:
    """A token builder, the reason it must raise and a text its message must contain."""

    name: str
    reason: Reason
    build: Callable[[TokenContext], str]
    message_contains: str


def _alg_none(context: TokenContext) -> str:
    header = {"alg": "none", "typ": "JWT", "kid": context.issuer.keys[0].kid}
    return unsigned_token(header, context.claims())


def _hs256_with_public_key(context: TokenContext) -> str:
    """The key-confusion attack: HMAC keyed with the issuer's public key bytes."""
    key = context.issuer.keys[0]
    header = {"alg": "HS256", "typ": "JWT", "kid": key.kid}
    signing_input = f"{b64url_json(header)}.{b64url_json(context.claims())}"
    signature = hmac.new(key.public_pem(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(signature)}"


def _with_claims(**changes: Any) -> Callable[[TokenContext], str]:
    def build(context: TokenContext) -> str:
        claims = context.claims()
        claims.update(changes)
        return context.issuer.mint(claims)

    return build


def _without_claim(name: str) -> Callable[[TokenContext], str]:
    def build(context: TokenContext) -> str:
        claims = context.claims()
        del claims[name]
        return context.issuer.mint(claims)

    return build


def _shifted_times(*, exp: int = 0, nbf: int = 0, iat: int = 0) -> Callable[[TokenContext], str]:
    def build(context: TokenContext) -> str:
        claims = context.claims()
        claims["exp"] += exp
        claims["nbf"] += nbf
        claims["iat"] += iat
        return context.issuer.mint(claims)

    return build


def _unknown_kid(context: TokenContext) -> str:
    return context.issuer.mint(context.claims(), key=context.rogue_key)


def _published_kid_signed_by_rogue_key(context: TokenContext) -> str:
    published = context.issuer.keys[0]
    claims = context.claims()
    return context.issuer.mint(claims, key=context.rogue_key, headers={"kid": published.kid})


def _tampered_payload(context: TokenContext) -> str:
    header, _, signature = context.issuer.token_for(context.pod).split(".")
    claims = context.claims()
    claims["kubernetes.io"]["pod"]["name"] = "admin-0"
    return f"{header}.{b64url_json(claims)}.{signature}"


def _other_pod(field: str) -> Callable[[TokenContext], str]:
    def build(context: TokenContext) -> str:
        claims = context.claims()
        bound = claims["kubernetes.io"]
        if field == "name":
            bound["pod"]["name"] = "api-other"
        elif field == "uid":
            bound["pod"]["uid"] = str(uuid.uuid4())
        elif field == "namespace":
            bound["namespace"] = "billing"
            claims["sub"] = f"system:serviceaccount:billing:{context.pod.service_account}"
        elif field == "node":
            bound["node"]["name"] = "node-9"
        return context.issuer.mint(claims)

    return build


def _wrong_service_account(context: TokenContext) -> str:
    claims = context.claims()
    claims["kubernetes.io"]["serviceaccount"]["name"] = "admin"
    claims["sub"] = f"system:serviceaccount:{context.pod.namespace}:admin"
    return context.issuer.mint(claims)


def _subject_disagrees_with_claim(context: TokenContext) -> str:
    claims = context.claims()
    claims["sub"] = f"system:serviceaccount:{context.pod.namespace}:admin"
    return context.issuer.mint(claims)


def _not_bound_to_pod(context: TokenContext) -> str:
    claims = context.claims()
    del claims["kubernetes.io"]["pod"]
    return context.issuer.mint(claims)


def _no_kid(context: TokenContext) -> str:
    key = context.issuer.keys[0]
    return jwt.encode(context.claims(), key.private_key, algorithm=key.alg)


def _header_alg_differs_from_key(context: TokenContext) -> str:
    """An RS512 signature under the kid of a key published for RS256."""
    key = context.issuer.keys[0]
    return jwt.encode(
        context.claims(), key.private_key, algorithm="RS512", headers={"kid": key.kid}
    )


def _payload_not_json(context: TokenContext) -> str:
    key = context.issuer.keys[0]
    return jwt.api_jws.encode(
        b"not json", key.private_key, algorithm=key.alg, headers={"kid": key.kid}
    )


BAD_TOKENS: list[BadToken] = [
    BadToken("alg-none", Reason.ALGORITHM_NOT_ALLOWED, _alg_none, "'none'"),
    BadToken("hs256-public-key", Reason.ALGORITHM_NOT_ALLOWED, _hs256_with_public_key, "'HS256'"),
    BadToken(
        "alg-differs-from-key",
        Reason.ALGORITHM_NOT_ALLOWED,
        _header_alg_differs_from_key,
        "RS512",
    ),
    BadToken(
        "wrong-issuer",
        Reason.ISSUER_MISMATCH,
        _with_claims(iss="https://issuer.invalid"),
        "https://issuer.invalid",
    ),
    BadToken("wrong-audience", Reason.AUDIENCE_MISMATCH, _with_claims(aud=["vault"]), "'vault'"),
    BadToken(
        "expired",
        Reason.TOKEN_EXPIRED,
        _shifted_times(exp=-3600, iat=-4200, nbf=-4200),
        "expired at",
    ),
    BadToken(
        "not-yet-valid",
        Reason.TOKEN_NOT_YET_VALID,
        _shifted_times(nbf=3600, exp=3600),
        "not valid before",
    ),
    BadToken(
        "issued-in-future",
        Reason.TOKEN_NOT_YET_VALID,
        _shifted_times(iat=3600, exp=3600),
        "issued in the future",
    ),
    BadToken("unknown-kid", Reason.UNKNOWN_KEY_ID, _unknown_kid, "'rogue-1'"),
    BadToken(
        "key-substitution", Reason.SIGNATURE_INVALID, _published_kid_signed_by_rogue_key, "rsa-1"
    ),
    BadToken("tampered-payload", Reason.SIGNATURE_INVALID, _tampered_payload, "altered"),
    BadToken("other-pod-name", Reason.POD_MISMATCH, _other_pod("name"), "'api-other'"),
    BadToken("other-pod-uid", Reason.POD_MISMATCH, _other_pod("uid"), "pod.uid"),
    BadToken("other-pod-namespace", Reason.POD_MISMATCH, _other_pod("namespace"), "'billing'"),
    BadToken("other-node", Reason.POD_MISMATCH, _other_pod("node"), "'node-9'"),
    BadToken(
        "wrong-service-account", Reason.SERVICE_ACCOUNT_MISMATCH, _wrong_service_account, "'admin'"
    ),
    BadToken(
        "sub-disagrees", Reason.SERVICE_ACCOUNT_MISMATCH, _subject_disagrees_with_claim, "sub"
    ),
    BadToken("not-pod-bound", Reason.MISSING_CLAIM, _not_bound_to_pod, "kubernetes.io.pod"),
    BadToken("missing-exp", Reason.MISSING_CLAIM, _without_claim("exp"), "'exp'"),
    BadToken("missing-iss", Reason.MISSING_CLAIM, _without_claim("iss"), "'iss'"),
    BadToken("missing-aud", Reason.MISSING_CLAIM, _without_claim("aud"), "'aud'"),
    BadToken("missing-sub", Reason.MISSING_CLAIM, _without_claim("sub"), "'sub'"),
    BadToken(
        "missing-kubernetes",
        Reason.MISSING_CLAIM,
        _without_claim("kubernetes.io"),
        "'kubernetes.io'",
    ),
    BadToken("no-kid", Reason.MALFORMED_TOKEN, _no_kid, "kid"),
    BadToken("payload-not-json", Reason.MALFORMED_TOKEN, _payload_not_json, "JSON"),
    BadToken("exp-not-number", Reason.MALFORMED_TOKEN, _with_claims(exp="tomorrow"), "'exp'"),
    BadToken("garbage", Reason.MALFORMED_TOKEN, lambda context: "not-a-token", "compact"),
    BadToken(
        "header-not-json",
        Reason.MALFORMED_TOKEN,
        lambda context: f"{b64url(b'{oops')}.{b64url_json({})}.{b64url(b'sig')}",
        "header",
    ),
]


def corpus_ids() -> list[str]:
    return [case.name for case in BAD_TOKENS]


def token_fragments(token: str) -> list[str]:
    """The token and each segment long enough to be recognizable in a log line."""
    return [token, *(segment for segment in token.split(".") if len(segment) >= 16)]
