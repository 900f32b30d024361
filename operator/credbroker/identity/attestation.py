"""Pod attestation: prove which pod a workload is by a token the API server binds to it.

``PodAttestor.attest`` makes three calls: a TokenRequest for the pod's service
account, bound to the pod's name and uid, then local verification of the
returned token, then a TokenReview. The TokenReview confirms that the API
server still accepts the token, which fails once the pod is deleted. The
token exists only in local variables of ``attest`` and is never logged.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import urllib3.exceptions
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from credbroker.errors import IdentityRejected
from credbroker.identity.pods import PodRef
from credbroker.identity.serviceaccount import ServiceAccountTokenVerifier
from credbroker.identity.workload import WorkloadIdentity
from credbroker.reasons import Reason

logger = logging.getLogger(__name__)

# The API server rejects a TokenRequest with expirationSeconds below 600.
MIN_TOKEN_EXPIRATION_SECONDS = 600
POD_UID_EXTRA = "authentication.kubernetes.io/pod-uid"
POD_NAME_EXTRA = "authentication.kubernetes.io/pod-name"


class ServiceAccountTokenAPI(Protocol):
    """The part of ``kubernetes.client.CoreV1Api`` that creates TokenRequests."""

    def create_namespaced_service_account_token(
        self, name: str, namespace: str, body: Any, **kwargs: Any
    ) -> Any: ...


class TokenReviewAPI(Protocol):
    """The part of ``kubernetes.client.AuthenticationV1Api`` that creates TokenReviews."""

    def create_token_review(self, body: Any, **kwargs: Any) -> Any: ...


class PodAttestor:
    """Attestor that turns a pod into a verified ``WorkloadIdentity`` through the API server."""

    def __init__(
        self,
        *,
        core_api: ServiceAccountTokenAPI,
        authn_api: TokenReviewAPI,
        verifier: ServiceAccountTokenVerifier,
        audience: str,
        token_expiration_seconds: int = MIN_TOKEN_EXPIRATION_SECONDS,
    ) -> None:
        """Configure the APIs and the audience, which must be the verifier's audience."""
        if audience != verifier.audience:
            raise ValueError(
                f"audience {audience!r} differs from the verifier's audience "
                f"{verifier.audience!r}, so every requested token would fail verification"
            )
        if token_expiration_seconds < MIN_TOKEN_EXPIRATION_SECONDS:
            raise ValueError(
                f"token_expiration_seconds must be at least {MIN_TOKEN_EXPIRATION_SECONDS} "
                f"(the API server's minimum), got {token_expiration_seconds}"
            )
        self.audience = audience
        self.token_expiration_seconds = token_expiration_seconds
        self._core_api = core_api
        self._authn_api = authn_api
        self._verifier = verifier

    async def attest(self, pod: PodRef) -> WorkloadIdentity:
        """Request, verify and review a token bound to ``pod``, and return its identity.

        Raises IdentityRejected: TOKEN_REQUEST_FAILED when the API server does
        not issue a token, the verifier's reasons when the token fails
        verification, and TOKEN_REVIEW_REJECTED, POD_MISMATCH,
        SERVICE_ACCOUNT_MISMATCH or AUDIENCE_MISMATCH when the TokenReview
        disagrees.
        """
        token = await self._request_token(pod)
        try:
            identity = await self._verifier.verify(token, pod=pod)
            await self._review_token(token, pod=pod)
        finally:
            # NOTE: Python cannot wipe a str, so this only drops this frame's reference.
            del token

        logger.info(
            "Attested pod %s as service account %s (token expires %s)",
            pod,
            identity.service_account,
            identity.token_expires_at.isoformat(),
        )
        return identity

    async def _request_token(self, pod: PodRef) -> str:
        body = client.AuthenticationV1TokenRequest(
            api_version="authentication.k8s.io/v1",
            kind="TokenRequest",
            spec=client.V1TokenRequestSpec(
                audiences=[self.audience],
                expiration_seconds=self.token_expiration_seconds,
                bound_object_ref=client.V1BoundObjectReference(
                    api_version="v1", kind="Pod", name=pod.name, uid=pod.uid
                ),
            ),
        )
        action = f"TokenRequest for service account {pod.namespace}/{pod.service_account}"
        response = await _call_api(
            self._core_api.create_namespaced_service_account_token,
            pod.service_account,
            pod.namespace,
            body,
            reason=Reason.TOKEN_REQUEST_FAILED,
            action=f"{action} bound to pod {pod}",
            hints=_TOKEN_REQUEST_HINTS,
        )

        status = getattr(response, "status", None)
        token = getattr(status, "token", None)
        if not isinstance(token, str) or not token:
            raise IdentityRejected(
                Reason.TOKEN_REQUEST_FAILED,
                f"{action} bound to pod {pod} returned no status.token",
            )
        return token

    async def _review_token(self, token: str, *, pod: PodRef) -> None:
        body = client.V1TokenReview(
            api_version="authentication.k8s.io/v1",
            kind="TokenReview",
            spec=client.V1TokenReviewSpec(token=token, audiences=[self.audience]),
        )
        # The response echoes spec.token, so it is read here and never logged or kept.
        response = await _call_api(
            self._authn_api.create_token_review,
            body,
            reason=Reason.TOKEN_REVIEW_REJECTED,
            action=f"TokenReview of the token for pod {pod}",
            hints=_TOKEN_REVIEW_HINTS,
        )
        del body
        status = getattr(response, "status", None)
        del response
        _check_review_status(status, pod=pod, audience=self.audience)


def _check_review_status(status: Any, *, pod: PodRef, audience: str) -> None:
    """Raise unless the TokenReview status authenticates exactly ``pod``'s service account."""
    if status is None or status.authenticated is not True:
        error = getattr(status, "error", None) or "no error given"
        raise IdentityRejected(
            Reason.TOKEN_REVIEW_REJECTED,
            f"the API server did not authenticate the token of pod {pod}: {error}",
        )

    audiences = status.audiences
    if audiences and audience not in audiences:
        raise IdentityRejected(
            Reason.AUDIENCE_MISMATCH,
            f"TokenReview for pod {pod} returned audiences {list(audiences)!r}, "
            f"which do not contain {audience!r}",
        )

    user = status.user
    username = getattr(user, "username", None)
    if username != pod.subject:
        raise IdentityRejected(
            Reason.SERVICE_ACCOUNT_MISMATCH,
            f"TokenReview for pod {pod} authenticated user {username!r}, expected {pod.subject!r}",
        )

    extra: Mapping[str, Sequence[str]] = getattr(user, "extra", None) or {}
    # The API server reports a pod-bound token's pod in user.extra (the keys are defined in
    # Kubernetes pkg/serviceaccount/util.go by v1.14), so a missing pod-uid is a mismatch.
    pod_uids = extra.get(POD_UID_EXTRA)
    if pod_uids is None or list(pod_uids) != [pod.uid]:
        raise _extra_mismatch(POD_UID_EXTRA, expected=pod.uid, found=pod_uids, pod=pod)
    pod_names = extra.get(POD_NAME_EXTRA)
    if pod_names is not None and list(pod_names) != [pod.name]:
        raise _extra_mismatch(POD_NAME_EXTRA, expected=pod.name, found=pod_names, pod=pod)


def _extra_mismatch(
    key: str, *, expected: str, found: Sequence[str] | None, pod: PodRef
) -> IdentityRejected:
    shown = "missing" if found is None else repr(list(found))
    return IdentityRejected(
        Reason.POD_MISMATCH,
        f"TokenReview user.extra {key} is {shown}, expected [{expected!r}] for pod {pod}, "
        "so the API server did not confirm that the token is bound to this pod",
    )


_TOKEN_REQUEST_HINTS = {
    403: "Grant the operator's ServiceAccount 'create' on serviceaccounts/token",
    404: "The service account or the pod no longer exists",
}
_TOKEN_REVIEW_HINTS = {
    403: "Grant the operator's ServiceAccount 'create' on tokenreviews.authentication.k8s.io",
}


async def _call_api(
    method: Callable[..., Any],
    *args: Any,
    reason: Reason,
    action: str,
    hints: Mapping[int, str],
) -> Any:
    """Run a blocking kubernetes client call in a thread and map its failures to ``reason``.

    The message carries the HTTP status, never the response body, because a
    TokenReview body echoes the token.
    """
    failure: str | None = None
    try:
        return await asyncio.to_thread(method, *args)
    except ApiException as exc:
        failure = f"HTTP {exc.status} {exc.reason or ''}".rstrip()
        hint = hints.get(exc.status or 0)
        if hint is not None:
            failure = f"{failure}. {hint}"
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        failure = f"{type(exc).__name__}: {exc}. Check that the API server is reachable"
    # Raised outside the except block so the API exception and its body are not chained.
    raise IdentityRejected(reason, f"{action} failed: {failure}")
