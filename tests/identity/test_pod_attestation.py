"""PodAttestor with fake CoreV1 and AuthenticationV1 APIs and a real verifier on a local issuer."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from identity_issuer import AUDIENCE, LocalIssuer
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from credbroker.errors import IdentityRejected
from credbroker.identity.attestation import (
    MIN_TOKEN_EXPIRATION_SECONDS,
    POD_UID_EXTRA,
    PodAttestor,
)
from credbroker.identity.pods import PodRef
from credbroker.identity.serviceaccount import ServiceAccountTokenVerifier
from credbroker.reasons import Reason


class FakeCoreAPI:
    """Fake that returns ``respond(name, namespace, body)`` for each TokenRequest and records it."""

    def __init__(self, respond: Callable[[str, str, Any], Any]) -> None:
        self.respond = respond
        self.calls: list[tuple[str, str, Any]] = []

    def create_namespaced_service_account_token(
        self, name: str, namespace: str, body: Any, **kwargs: Any
    ) -> Any:
        self.calls.append((name, namespace, body))
        return self.respond(name, namespace, body)


class FakeAuthnAPI:
    """Fake that returns ``respond(body)`` for each TokenReview and records its spec."""

    def __init__(self, respond: Callable[[Any], Any]) -> None:
        self.respond = respond
        self.reviewed_tokens: list[str] = []
        self.reviewed_audiences: list[list[str]] = []

    def create_token_review(self, body: Any, **kwargs: Any) -> Any:
        self.reviewed_tokens.append(body.spec.token)
        self.reviewed_audiences.append(body.spec.audiences)
        return self.respond(body)


def token_response(token: str | None) -> client.AuthenticationV1TokenRequest:
    return client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(audiences=[AUDIENCE]),
        status=client.V1TokenRequestStatus(
            token=token, expiration_timestamp="2030-01-01T00:00:00Z"
        ),
    )


def review(
    body: Any,
    *,
    pod: PodRef,
    authenticated: bool = True,
    error: str | None = None,
    pod_uid: str | None = None,
    username: str | None = None,
) -> client.V1TokenReview:
    extra = {
        POD_UID_EXTRA: [pod_uid or pod.uid],
        "authentication.kubernetes.io/pod-name": [pod.name],
    }
    return client.V1TokenReview(
        spec=body.spec,
        status=client.V1TokenReviewStatus(
            authenticated=authenticated,
            error=error,
            audiences=[AUDIENCE] if authenticated else None,
            user=client.V1UserInfo(username=username or pod.subject, extra=extra)
            if authenticated
            else None,
        ),
    )


def make_attestor(
    verifier: ServiceAccountTokenVerifier, core: FakeCoreAPI, authn: FakeAuthnAPI
) -> PodAttestor:
    return PodAttestor(core_api=core, authn_api=authn, verifier=verifier, audience=AUDIENCE)


async def test_attest_pod(
    issuer: LocalIssuer, verifier: ServiceAccountTokenVerifier, pod: PodRef
) -> None:
    core = FakeCoreAPI(lambda name, namespace, body: token_response(issuer.token_for(pod)))
    authn = FakeAuthnAPI(lambda body: review(body, pod=pod))

    identity = await make_attestor(verifier, core, authn).attest(pod)

    assert identity.pod_uid == pod.uid
    assert identity.service_account == "api"
    name, namespace, body = core.calls[0]
    assert (name, namespace) == ("api", "shop")
    request = client.ApiClient().sanitize_for_serialization(body)
    assert request["spec"]["boundObjectRef"] == {
        "apiVersion": "v1",
        "kind": "Pod",
        "name": "api-7f9c",
        "uid": pod.uid,
    }
    assert request["spec"]["audiences"] == [AUDIENCE]
    assert request["spec"]["expirationSeconds"] == MIN_TOKEN_EXPIRATION_SECONDS
    assert authn.reviewed_audiences == [[AUDIENCE]]
    assert len(authn.reviewed_tokens) == 1


async def test_token_request_forbidden(verifier: ServiceAccountTokenVerifier, pod: PodRef) -> None:
    leaked = "eyJhbGciOiJSUzI1NiJ9.body-that-must-not-leak.sig"

    def forbid(name: str, namespace: str, body: Any) -> Any:
        raise ApiException(status=403, reason="Forbidden", body=f'{{"message": "{leaked}"}}')

    authn = FakeAuthnAPI(lambda body: review(body, pod=pod))

    with pytest.raises(IdentityRejected) as caught:
        await make_attestor(verifier, FakeCoreAPI(forbid), authn).attest(pod)

    assert caught.value.reason == Reason.TOKEN_REQUEST_FAILED
    assert "HTTP 403 Forbidden" in caught.value.message
    assert "shop/api-7f9c" in caught.value.message
    assert "serviceaccounts/token" in caught.value.message
    assert leaked not in str(caught.value)
    assert caught.value.__context__ is None
    assert authn.reviewed_tokens == []


async def test_token_request_unreachable(
    verifier: ServiceAccountTokenVerifier, pod: PodRef
) -> None:
    def refuse(name: str, namespace: str, body: Any) -> Any:
        raise ConnectionRefusedError(111, "Connection refused")

    core = FakeCoreAPI(refuse)
    authn = FakeAuthnAPI(lambda body: review(body, pod=pod))

    with pytest.raises(IdentityRejected) as caught:
        await make_attestor(verifier, core, authn).attest(pod)

    assert caught.value.reason == Reason.TOKEN_REQUEST_FAILED
    assert "ConnectionRefusedError" in caught.value.message


async def test_token_request_without_token(
    verifier: ServiceAccountTokenVerifier, pod: PodRef
) -> None:
    core = FakeCoreAPI(lambda name, namespace, body: token_response(None))
    authn = FakeAuthnAPI(lambda body: review(body, pod=pod))

    with pytest.raises(IdentityRejected) as caught:
        await make_attestor(verifier, core, authn).attest(pod)

    assert caught.value.reason == Reason.TOKEN_REQUEST_FAILED
    assert "status.token" in caught.value.message


async def test_token_review_rejected(
    issuer: LocalIssuer, verifier: ServiceAccountTokenVerifier, pod: PodRef
) -> None:
    core = FakeCoreAPI(lambda name, namespace, body: token_response(issuer.token_for(pod)))
    authn = FakeAuthnAPI(
        lambda body: review(
            body,
            pod=pod,
            authenticated=False,
            error="service account token has been invalidated",
        )
    )

    with pytest.raises(IdentityRejected) as caught:
        await make_attestor(verifier, core, authn).attest(pod)

    assert caught.value.reason == Reason.TOKEN_REVIEW_REJECTED
    assert "service account token has been invalidated" in caught.value.message
    assert "shop/api-7f9c" in caught.value.message


async def test_token_review_pod_uid_mismatch(
    issuer: LocalIssuer, verifier: ServiceAccountTokenVerifier, pod: PodRef
) -> None:
    other_uid = str(uuid.uuid4())
    core = FakeCoreAPI(lambda name, namespace, body: token_response(issuer.token_for(pod)))
    authn = FakeAuthnAPI(lambda body: review(body, pod=pod, pod_uid=other_uid))

    with pytest.raises(IdentityRejected) as caught:
        await make_attestor(verifier, core, authn).attest(pod)

    assert caught.value.reason == Reason.POD_MISMATCH
    assert other_uid in caught.value.message
    assert pod.uid in caught.value.message


async def test_token_review_other_user(
    issuer: LocalIssuer, verifier: ServiceAccountTokenVerifier, pod: PodRef
) -> None:
    core = FakeCoreAPI(lambda name, namespace, body: token_response(issuer.token_for(pod)))
    authn = FakeAuthnAPI(
        lambda body: review(body, pod=pod, username="system:serviceaccount:shop:admin")
    )

    with pytest.raises(IdentityRejected) as caught:
        await make_attestor(verifier, core, authn).attest(pod)

    assert caught.value.reason == Reason.SERVICE_ACCOUNT_MISMATCH
    assert "system:serviceaccount:shop:admin" in caught.value.message


async def test_token_review_without_pod_uid(
    issuer: LocalIssuer, verifier: ServiceAccountTokenVerifier, pod: PodRef
) -> None:
    def bare_review(body: Any) -> client.V1TokenReview:
        return client.V1TokenReview(
            spec=body.spec,
            status=client.V1TokenReviewStatus(
                authenticated=True, user=client.V1UserInfo(username=pod.subject)
            ),
        )

    core = FakeCoreAPI(lambda name, namespace, body: token_response(issuer.token_for(pod)))

    with pytest.raises(IdentityRejected) as caught:
        await make_attestor(verifier, core, FakeAuthnAPI(bare_review)).attest(pod)

    assert caught.value.reason == Reason.POD_MISMATCH
    assert "pod-uid is missing" in caught.value.message


async def test_token_review_pod_name_mismatch(
    issuer: LocalIssuer, verifier: ServiceAccountTokenVerifier, pod: PodRef
) -> None:
    def renamed(body: Any) -> client.V1TokenReview:
        answer = review(body, pod=pod)
        answer.status.user.extra["authentication.kubernetes.io/pod-name"] = ["api-other"]
        return answer

    core = FakeCoreAPI(lambda name, namespace, body: token_response(issuer.token_for(pod)))

    with pytest.raises(IdentityRejected) as caught:
        await make_attestor(verifier, core, FakeAuthnAPI(renamed)).attest(pod)

    assert caught.value.reason == Reason.POD_MISMATCH
    assert "'api-other'" in caught.value.message


async def test_token_review_other_audience(
    issuer: LocalIssuer, verifier: ServiceAccountTokenVerifier, pod: PodRef
) -> None:
    def other_audience(body: Any) -> client.V1TokenReview:
        answer = review(body, pod=pod)
        answer.status.audiences = ["vault"]
        return answer

    core = FakeCoreAPI(lambda name, namespace, body: token_response(issuer.token_for(pod)))

    with pytest.raises(IdentityRejected) as caught:
        await make_attestor(verifier, core, FakeAuthnAPI(other_audience)).attest(pod)

    assert caught.value.reason == Reason.AUDIENCE_MISMATCH
    assert "'vault'" in caught.value.message


async def test_token_review_forbidden(
    issuer: LocalIssuer, verifier: ServiceAccountTokenVerifier, pod: PodRef
) -> None:
    token = issuer.token_for(pod)

    def forbid(body: Any) -> Any:
        # A TokenReview body carries the token, so the rejection must not repeat it.
        raise ApiException(status=403, reason="Forbidden", body=f'{{"spec": "{token}"}}')

    core = FakeCoreAPI(lambda name, namespace, body: token_response(token))

    with pytest.raises(IdentityRejected) as caught:
        await make_attestor(verifier, core, FakeAuthnAPI(forbid)).attest(pod)

    assert caught.value.reason == Reason.TOKEN_REVIEW_REJECTED
    assert "HTTP 403" in caught.value.message
    assert "tokenreviews" in caught.value.message
    assert token not in str(caught.value)


async def test_token_for_other_pod(
    issuer: LocalIssuer, verifier: ServiceAccountTokenVerifier, pod: PodRef
) -> None:
    """A token bound to another pod fails verification before any TokenReview."""
    other = PodRef(
        namespace=pod.namespace,
        name="api-other",
        uid=str(uuid.uuid4()),
        service_account=pod.service_account,
    )
    core = FakeCoreAPI(lambda name, namespace, body: token_response(issuer.token_for(other)))
    authn = FakeAuthnAPI(lambda body: review(body, pod=pod))

    with pytest.raises(IdentityRejected) as caught:
        await make_attestor(verifier, core, authn).attest(pod)

    assert caught.value.reason == Reason.POD_MISMATCH
    assert authn.reviewed_tokens == []


async def test_attestation_logs_no_token(
    issuer: LocalIssuer,
    verifier: ServiceAccountTokenVerifier,
    pod: PodRef,
    caplog: pytest.LogCaptureFixture,
) -> None:
    token = issuer.token_for(pod)
    core = FakeCoreAPI(lambda name, namespace, body: token_response(token))
    authn = FakeAuthnAPI(lambda body: review(body, pod=pod))

    with caplog.at_level(logging.DEBUG):
        await make_attestor(verifier, core, authn).attest(pod)

    assert "Attested pod shop/api-7f9c" in caplog.text
    for segment in token.split("."):
        assert segment not in caplog.text


def test_audience_must_match_verifier(verifier: ServiceAccountTokenVerifier) -> None:
    core = FakeCoreAPI(lambda name, namespace, body: None)
    authn = FakeAuthnAPI(lambda body: None)

    with pytest.raises(ValueError, match="'vault'"):
        PodAttestor(core_api=core, authn_api=authn, verifier=verifier, audience="vault")


def test_expiration_minimum(verifier: ServiceAccountTokenVerifier) -> None:
    core = FakeCoreAPI(lambda name, namespace, body: None)
    authn = FakeAuthnAPI(lambda body: None)

    with pytest.raises(ValueError, match="at least 600"):
        PodAttestor(
            core_api=core,
            authn_api=authn,
            verifier=verifier,
            audience=AUDIENCE,
            token_expiration_seconds=599,
        )
