"""Service-account token verification: a projected token checked against the pod it claims.

A Kubernetes projected service-account token is a JWS signed by the API
server. ``ServiceAccountTokenVerifier`` checks it in a fixed order: the header
and its ``alg`` (before any key is touched), the signing key by ``kid``, the
signature, then issuer, audience, validity times, required claims and, for
``verify``, the binding to one pod. Every refusal raises ``IdentityRejected``
with its own ``Reason``. No message contains the token.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import jwt
from jwt.exceptions import (
    DecodeError,
    InvalidAlgorithmError,
    InvalidKeyError,
    InvalidSignatureError,
    InvalidTokenError,
)

from credbroker.errors import IdentityRejected
from credbroker.identity.jwks import ALLOWED_SIGNING_ALGORITHMS, JWKSCache
from credbroker.identity.pods import SERVICE_ACCOUNT_SUBJECT_PREFIX, PodRef
from credbroker.identity.workload import WorkloadIdentity
from credbroker.reasons import Reason

logger = logging.getLogger(__name__)

DEFAULT_LEEWAY_SECONDS = 30
MAX_LEEWAY_SECONDS = 120
# Kubernetes tokens are about 1 KiB; anything far larger is not one.
MAX_TOKEN_CHARS = 16 * 1024
KUBERNETES_CLAIM = "kubernetes.io"
REQUIRED_CLAIMS = ("iss", "aud", "sub", "exp", KUBERNETES_CLAIM)
_MAX_SHOWN_CHARS = 120

# PyJWS checks only the signature. This module checks every claim, against the injected clock.
_JWS = jwt.PyJWS(options={"verify_signature": True, "enforce_minimum_key_length": True})


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceAccountTokenClaims:
    """The claims of a token whose signature, issuer, audience and times were verified.

    ``pod_name`` and ``pod_uid`` are None for a token not bound to a pod.
    Holds no token text.
    """

    issuer: str
    audiences: tuple[str, ...]
    subject: str
    namespace: str
    service_account: str
    service_account_uid: str | None
    pod_name: str | None
    pod_uid: str | None
    node_name: str | None
    jti: str | None
    issued_at: datetime | None
    not_before: datetime | None
    expires_at: datetime
    key_id: str


class ServiceAccountTokenVerifier:
    """Verifier of projected service-account tokens from one issuer, for one audience."""

    def __init__(
        self,
        *,
        issuer: str,
        audience: str,
        jwks: JWKSCache,
        leeway_seconds: int = DEFAULT_LEEWAY_SECONDS,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        """Configure the expected issuer and audience.

        ``leeway_seconds`` (0 to MAX_LEEWAY_SECONDS) absorbs clock skew in the
        ``exp``, ``nbf`` and ``iat`` checks. ``clock`` returns the current time
        as an aware datetime and defaults to the system clock in UTC.
        """
        if not issuer:
            raise ValueError("issuer must be the API server's --service-account-issuer URL")
        if not audience:
            raise ValueError("audience must be a non-empty string")
        if not 0 <= leeway_seconds <= MAX_LEEWAY_SECONDS:
            raise ValueError(
                f"leeway_seconds must be between 0 and {MAX_LEEWAY_SECONDS}, got {leeway_seconds}"
            )
        if jwks.issuer != issuer:
            raise ValueError(f"the JWKS cache is for issuer {jwks.issuer!r}, not {issuer!r}")

        self.issuer = issuer
        self.audience = audience
        self.leeway_seconds = leeway_seconds
        self.jwks = jwks
        self._clock = clock if clock is not None else _utc_now

    async def verify(self, token: str, *, pod: PodRef) -> WorkloadIdentity:
        """Verify the token and its binding to ``pod``, and return the pod's identity.

        Raises IdentityRejected with the reason of the first check that fails.
        """
        claims = await self.verify_claims(token)
        _check_pod_binding(claims, pod)

        logger.debug(
            "Verified service-account token for pod %s (kid %s, jti %s)",
            pod,
            claims.key_id,
            claims.jti,
        )
        return WorkloadIdentity(
            namespace=pod.namespace,
            service_account=pod.service_account,
            pod_name=pod.name,
            pod_uid=pod.uid,
            node_name=pod.node_name or claims.node_name,
            token_jti=claims.jti,
            token_expires_at=claims.expires_at,
        )

    async def verify_claims(self, token: str) -> ServiceAccountTokenClaims:
        """Verify everything except the pod binding, and return the claims.

        For tools that inspect a token without knowing its pod. The operator
        calls ``verify``.
        """
        header = _read_header(token)

        alg = header.get("alg")
        if alg not in ALLOWED_SIGNING_ALGORITHMS:
            raise IdentityRejected(
                Reason.ALGORITHM_NOT_ALLOWED,
                f"token header alg {_show(alg)} is not allowed. Service-account tokens must be "
                f"signed with one of {', '.join(sorted(ALLOWED_SIGNING_ALGORITHMS))}",
            )
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise IdentityRejected(
                Reason.MALFORMED_TOKEN,
                f"token header has no kid (found {_show(kid)}). The API server sets one on every "
                "service-account token, so this token comes from elsewhere",
            )

        key = await self.jwks.get_signing_key(kid)
        if key.algorithm_name != alg:
            raise IdentityRejected(
                Reason.ALGORITHM_NOT_ALLOWED,
                f"token header alg {alg} does not match algorithm {key.algorithm_name} "
                f"of key {kid!r} in the issuer's JWKS",
            )

        payload = _verify_signature(token, key=key, alg=alg, kid=kid)
        return self._check_claims(payload, kid=kid)

    def _check_claims(self, payload: Mapping[str, Any], *, kid: str) -> ServiceAccountTokenClaims:
        for claim in REQUIRED_CLAIMS:
            if payload.get(claim) is None:
                raise IdentityRejected(
                    Reason.MISSING_CLAIM,
                    f"required claim {claim!r} is missing. Only projected service-account "
                    "tokens from the Kubernetes API server are accepted",
                )

        issuer = payload["iss"]
        if issuer != self.issuer:
            raise IdentityRejected(
                Reason.ISSUER_MISMATCH,
                f"iss is {_show(issuer)}, expected {self.issuer!r}. Set the issuer to the API "
                "server's --service-account-issuer",
            )

        audiences = _read_audiences(payload["aud"])
        if self.audience not in audiences:
            raise IdentityRejected(
                Reason.AUDIENCE_MISMATCH,
                f"aud {_show(list(audiences))} does not contain {self.audience!r}. Request the "
                f"token with audience {self.audience!r}",
            )

        expires_at = _read_time(payload, "exp")
        not_before = _read_optional_time(payload, "nbf")
        issued_at = _read_optional_time(payload, "iat")
        self._check_times(expires_at=expires_at, not_before=not_before, issued_at=issued_at)

        kubernetes = payload[KUBERNETES_CLAIM]
        if not isinstance(kubernetes, Mapping):
            raise IdentityRejected(
                Reason.MALFORMED_TOKEN,
                f"claim {KUBERNETES_CLAIM!r} must be an object, found {type(kubernetes).__name__}",
            )
        namespace = _read_nested_string(kubernetes, "namespace")
        service_account = _read_nested_string(kubernetes, "serviceaccount", "name")
        service_account_uid = _read_optional_nested_string(kubernetes, "serviceaccount", "uid")
        pod_name, pod_uid = _read_pod_claims(kubernetes)
        node_name = _read_optional_nested_string(kubernetes, "node", "name")

        subject = payload["sub"]
        expected_subject = f"{SERVICE_ACCOUNT_SUBJECT_PREFIX}{namespace}:{service_account}"
        if subject != expected_subject:
            raise IdentityRejected(
                Reason.SERVICE_ACCOUNT_MISMATCH,
                f"sub is {_show(subject)}, but the {KUBERNETES_CLAIM} claim names service "
                f"account {namespace}/{service_account} (expected sub {expected_subject!r})",
            )

        jti = payload.get("jti")
        if jti is not None and not isinstance(jti, str):
            raise IdentityRejected(
                Reason.MALFORMED_TOKEN, f"claim 'jti' must be a string, found {type(jti).__name__}"
            )

        return ServiceAccountTokenClaims(
            issuer=self.issuer,
            audiences=audiences,
            subject=expected_subject,
            namespace=namespace,
            service_account=service_account,
            service_account_uid=service_account_uid,
            pod_name=pod_name,
            pod_uid=pod_uid,
            node_name=node_name,
            jti=jti,
            issued_at=issued_at,
            not_before=not_before,
            expires_at=expires_at,
            key_id=kid,
        )

    def _check_times(
        self,
        *,
        expires_at: datetime,
        not_before: datetime | None,
        issued_at: datetime | None,
    ) -> None:
        now = self._clock()
        if now.tzinfo is None:
            raise ValueError("the verifier's clock must return an aware datetime")
        now_seconds = now.timestamp()
        leeway = self.leeway_seconds
        context = f"now {_format_time(now)}, leeway {leeway} s"

        if now_seconds >= expires_at.timestamp() + leeway:
            raise IdentityRejected(
                Reason.TOKEN_EXPIRED,
                f"token expired at {_format_time(expires_at)} ({context}). Request a new token",
            )
        if not_before is not None and now_seconds + leeway < not_before.timestamp():
            raise IdentityRejected(
                Reason.TOKEN_NOT_YET_VALID,
                f"token is not valid before {_format_time(not_before)} ({context}). Check that "
                "the clocks of the API server and the operator agree",
            )
        if issued_at is not None and now_seconds + leeway < issued_at.timestamp():
            raise IdentityRejected(
                Reason.TOKEN_NOT_YET_VALID,
                f"token is issued in the future, at {_format_time(issued_at)} ({context}). Check "
                "that the clocks of the API server and the operator agree",
            )


def _check_pod_binding(claims: ServiceAccountTokenClaims, pod: PodRef) -> None:
    """Raise POD_MISMATCH or SERVICE_ACCOUNT_MISMATCH unless the claims name exactly ``pod``."""
    if claims.namespace != pod.namespace:
        raise _pod_mismatch("namespace", expected=pod.namespace, found=claims.namespace, pod=pod)
    if claims.pod_name is None or claims.pod_uid is None:
        raise IdentityRejected(
            Reason.MISSING_CLAIM,
            f"claim '{KUBERNETES_CLAIM}.pod' is missing, so the token is not bound to a pod. "
            f"Request it with a boundObjectRef to pod {pod}",
        )
    if claims.pod_name != pod.name:
        raise _pod_mismatch("pod.name", expected=pod.name, found=claims.pod_name, pod=pod)
    if claims.pod_uid != pod.uid:
        raise _pod_mismatch("pod.uid", expected=pod.uid, found=claims.pod_uid, pod=pod)
    if pod.node_name is not None and claims.node_name not in (None, pod.node_name):
        raise _pod_mismatch("node.name", expected=pod.node_name, found=claims.node_name, pod=pod)

    if claims.service_account != pod.service_account:
        raise IdentityRejected(
            Reason.SERVICE_ACCOUNT_MISMATCH,
            f"{KUBERNETES_CLAIM}.serviceaccount.name is {claims.service_account!r}, expected "
            f"{pod.service_account!r} (spec.serviceAccountName of pod {pod})",
        )
    if claims.subject != pod.subject:
        raise IdentityRejected(
            Reason.SERVICE_ACCOUNT_MISMATCH,
            f"sub is {claims.subject!r}, expected {pod.subject!r} for pod {pod}",
        )


def _pod_mismatch(field: str, *, expected: str, found: str | None, pod: PodRef) -> IdentityRejected:
    return IdentityRejected(
        Reason.POD_MISMATCH,
        f"{KUBERNETES_CLAIM}.{field} is {found!r}, expected {expected!r} for pod {pod}, "
        "so the token was issued for another pod",
    )


def _read_header(token: str) -> dict[str, Any]:
    """Return the unverified JOSE header, or raise MALFORMED_TOKEN."""
    if not isinstance(token, str):
        raise IdentityRejected(
            Reason.MALFORMED_TOKEN, f"token must be a string, got {type(token).__name__}"
        )
    if len(token) > MAX_TOKEN_CHARS:
        raise IdentityRejected(
            Reason.MALFORMED_TOKEN,
            f"token is {len(token)} characters long, more than the {MAX_TOKEN_CHARS} limit",
        )
    if not token.isascii() or token.count(".") != 2:
        raise IdentityRejected(
            Reason.MALFORMED_TOKEN,
            "token is not a JWS in compact form (three base64url segments separated by dots)",
        )
    try:
        return jwt.get_unverified_header(token)
    except InvalidTokenError as exc:
        # PyJWT's messages describe the defect (padding, JSON syntax) and quote no token text.
        raise IdentityRejected(
            Reason.MALFORMED_TOKEN, f"token header cannot be decoded: {exc}"
        ) from None


def _verify_signature(token: str, *, key: jwt.PyJWK, alg: str, kid: str) -> Mapping[str, Any]:
    """Check the signature with ``key`` and return the decoded payload."""
    try:
        decoded = _JWS.decode_complete(token, key=key, algorithms=[alg])
    except InvalidSignatureError:
        raise IdentityRejected(
            Reason.SIGNATURE_INVALID,
            f"signature does not verify with key {kid!r} ({alg}), so the token was altered or "
            "signed by a different key",
        ) from None
    except InvalidAlgorithmError as exc:
        raise IdentityRejected(
            Reason.ALGORITHM_NOT_ALLOWED, f"algorithm {alg} cannot be used with key {kid!r}: {exc}"
        ) from None
    except InvalidKeyError as exc:
        raise IdentityRejected(
            Reason.SIGNATURE_INVALID, f"key {kid!r} cannot verify {alg} signatures: {exc}"
        ) from None
    except (DecodeError, InvalidTokenError) as exc:
        raise IdentityRejected(Reason.MALFORMED_TOKEN, f"token cannot be decoded: {exc}") from None

    try:
        payload = json.loads(decoded["payload"])
    except (ValueError, RecursionError):
        raise IdentityRejected(Reason.MALFORMED_TOKEN, "token payload is not valid JSON") from None
    if not isinstance(payload, dict):
        raise IdentityRejected(
            Reason.MALFORMED_TOKEN,
            f"token payload must be a JSON object, found {type(payload).__name__}",
        )
    return payload


def _read_audiences(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return tuple(value)
    raise IdentityRejected(
        Reason.MALFORMED_TOKEN, "claim 'aud' must be a string or a list of strings"
    )


def _read_time(payload: Mapping[str, Any], claim: str) -> datetime:
    value = payload[claim]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise IdentityRejected(
            Reason.MALFORMED_TOKEN,
            f"claim {claim!r} must be a number of seconds since the epoch, found {_show(value)}",
        )
    try:
        return datetime.fromtimestamp(value, UTC)
    except (OverflowError, OSError, ValueError):
        raise IdentityRejected(
            Reason.MALFORMED_TOKEN, f"claim {claim!r} is out of range: {_show(value)}"
        ) from None


def _read_optional_time(payload: Mapping[str, Any], claim: str) -> datetime | None:
    if payload.get(claim) is None:
        return None
    return _read_time(payload, claim)


def _read_nested_string(claim: Mapping[str, Any], *path: str) -> str:
    """Return ``claim[path[0]][path[1]]...`` as a string, or raise MISSING_CLAIM naming the path."""
    value = _read_optional_nested_string(claim, *path)
    if value is None:
        name = ".".join((KUBERNETES_CLAIM, *path))
        raise IdentityRejected(
            Reason.MISSING_CLAIM,
            f"required claim {name!r} is missing. Only projected service-account tokens "
            "from the Kubernetes API server are accepted",
        )
    return value


def _read_optional_nested_string(claim: Mapping[str, Any], *path: str) -> str | None:
    """Return ``claim[path[0]][path[1]]...`` as a string, or None when absent or empty."""
    value: Any = claim
    for part in path:
        value = value.get(part) if isinstance(value, Mapping) else None
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        name = ".".join((KUBERNETES_CLAIM, *path))
        raise IdentityRejected(
            Reason.MALFORMED_TOKEN, f"claim {name!r} must be a string, found {type(value).__name__}"
        )
    return value


def _read_pod_claims(kubernetes: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """Return the bound pod's name and uid, both None when the token is not pod-bound."""
    if kubernetes.get("pod") is None:
        return None, None
    name = _read_nested_string(kubernetes, "pod", "name")
    uid = _read_nested_string(kubernetes, "pod", "uid")
    return name, uid


def _show(value: Any) -> str:
    """Return ``repr(value)``, cut to a length that keeps a hostile claim out of huge messages."""
    text = repr(value)
    if len(text) > _MAX_SHOWN_CHARS:
        return text[:_MAX_SHOWN_CHARS] + "..."
    return text


def _format_time(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _utc_now() -> datetime:
    return datetime.now(UTC)
