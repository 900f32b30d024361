"""POST /v1/exchange through the aiohttp test client: proofs, error codes, audit, secrecy."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from credbroker.errors import IdentityRejected
from credbroker.reasons import Reason

from .conftest import BUNDLE_NAME, Exchange
from .fakes import NAMESPACE, POD_NAME, TRUST_DOMAIN, binding_spec, pod_body

SPIFFE_SPEC = {
    "trustDomain": TRUST_DOMAIN,
    "allowedIDs": [{"pathPrefix": "/ns/shop/"}],
    "bundleRef": {"kind": "ConfigMap", "name": BUNDLE_NAME},
}


def audit_records(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [
        json.loads(record.getMessage())
        for record in caplog.records
        if record.name == "credbroker.audit"
    ]


# Accepted exchanges


async def test_sa_token_returns_credential(exchange: Exchange, sa_token, caplog):
    caplog.set_level(logging.INFO)

    status, body, headers = await exchange.post(token=sa_token())

    assert status == 200
    credential = body["credential"]
    assert credential["password"] == exchange.cluster.target.passwords[0]
    assert credential["username"].startswith("credbroker_")
    expires_at = datetime.fromisoformat(credential["expires_at"])
    assert timedelta(minutes=9) < expires_at - datetime.now(UTC) <= timedelta(minutes=10)
    assert headers["Cache-Control"] == "no-store"
    (request,) = exchange.cluster.target.requests
    assert request.secret_name == ""
    assert (request.binding_namespace, request.binding_name) == (NAMESPACE, "orders")
    assert credential["credential_id"] == request.credential_id
    assert exchange.woken == [f"{NAMESPACE}/orders"]
    assert exchange.cluster.reviewed[0].name == POD_NAME


async def test_refresh_only_returns_accepted(exchange: Exchange, sa_token):
    exchange.cluster.put_binding(binding_spec(delivery=None))

    status, body, _ = await exchange.post(token=sa_token())

    assert status == 202
    assert "credential" not in body
    assert body["secret_refresh_requested"] is True
    assert body["secret_name"] == "orders-db"
    assert exchange.cluster.target.requests == []
    assert exchange.woken == [f"{NAMESPACE}/orders"]


async def test_sa_token_derived_spiffe_id(exchange: Exchange, sa_token):
    exchange.cluster.put_binding(binding_spec(serviceAccounts=None, spiffe=SPIFFE_SPEC))

    status, body, _ = await exchange.post(token=sa_token())

    assert status == 200
    assert body["spiffe_id"] == "spiffe://example.org/ns/shop/sa/orders"


async def test_jwt_svid_returns_credential(exchange: Exchange, jwt_signer):
    exchange.cluster.put_binding(binding_spec(serviceAccounts=None, spiffe=SPIFFE_SPEC))
    token = jwt_signer.mint(sub="spiffe://example.org/ns/shop/sa/batch", aud="credbroker.dev")

    status, body, _ = await exchange.post(token=token)

    assert status == 200
    assert body["spiffe_id"] == "spiffe://example.org/ns/shop/sa/batch"
    assert body["credential"]["password"] == exchange.cluster.target.passwords[0]
    assert exchange.cluster.reviewed == []


# 400, 401


@pytest.mark.parametrize(
    "body",
    [[], {"namespace": "shop"}, {"namespace": "Shop", "binding": "orders"}, {"x": 1}],
    ids=["list", "no-binding", "bad-namespace", "unknown-field"],
)
async def test_invalid_body_400(exchange: Exchange, sa_token, body):
    status, answer, _ = await exchange.post(token=sa_token(), body=body)

    assert status == 400
    assert answer["error"] == "InvalidRequest"
    assert "namespace" in answer["message"]


async def test_missing_proof_401(exchange: Exchange, caplog):
    caplog.set_level(logging.INFO)

    status, body, headers = await exchange.post()

    assert status == 401
    assert body["error"] == "ProofMissing"
    assert "Authorization: Bearer" in body["message"]
    assert headers["WWW-Authenticate"].startswith("Bearer")
    (record,) = audit_records(caplog)
    assert record["outcome"] == "failure"
    assert record["reason"] == "ProofMissing"
    assert record["binding"] == "shop/orders"


async def test_not_bearer_401(exchange: Exchange):
    status, body, _ = await exchange.post(headers={"Authorization": "Basic b3JkZXJzOng="})

    assert status == 401
    assert body["error"] == "MalformedToken"


async def test_wrong_key_401(exchange: Exchange):
    from identity_issuer import rsa_key

    from .conftest import sa_claims, sign

    rogue = rsa_key("sa-key-1")  # the published kid, but another key
    status, body, _ = await exchange.post(token=sign(sa_claims(), rogue))

    assert status == 401
    assert body["error"] == "SignatureInvalid"


async def test_wrong_audience_401(exchange: Exchange, sa_token):
    status, body, _ = await exchange.post(token=sa_token(audience="other"))

    assert status == 401
    assert body["error"] == "AudienceMismatch"


async def test_review_rejects_401(exchange: Exchange, sa_token):
    exchange.cluster.review_failure = IdentityRejected(
        Reason.TOKEN_REVIEW_REJECTED, "the API server did not authenticate the token"
    )

    status, body, _ = await exchange.post(token=sa_token())

    assert status == 401
    assert body["error"] == "TokenReviewRejected"
    assert exchange.cluster.target.requests == []


async def test_pod_gone_401(exchange: Exchange, sa_token):
    status, body, _ = await exchange.post(token=sa_token(pod_name="orders-9"))

    assert status == 401
    assert body["error"] == "PodNotFound"
    assert "shop/orders-9" in body["message"]


async def test_replaced_pod_401(exchange: Exchange, sa_token):
    status, body, _ = await exchange.post(token=sa_token(pod_uid="another-uid"))

    assert status == 401
    assert body["error"] == "PodMismatch"


async def test_jwt_svid_other_audience_401(exchange: Exchange, jwt_signer):
    exchange.cluster.put_binding(binding_spec(spiffe=SPIFFE_SPEC))
    token = jwt_signer.mint(sub="spiffe://example.org/ns/shop/sa/batch", aud="elsewhere")

    status, body, _ = await exchange.post(token=token)

    assert status == 401
    assert body["error"] == "AudienceMismatch"


# 403, 404


async def test_unselected_pod_403(exchange: Exchange, sa_token):
    exchange.cluster.put_pod(pod_body(labels={"app": "web"}))

    status, body, _ = await exchange.post(token=sa_token())

    assert status == 403
    assert body["error"] == "PodNotSelected"


async def test_unlisted_account_403(exchange: Exchange, sa_token):
    exchange.cluster.put_pod(pod_body(service_account="web"))

    status, body, _ = await exchange.post(token=sa_token(service_account="web"))

    assert status == 403
    assert body["error"] == "ServiceAccountNotAllowed"


async def test_jwt_svid_outside_ids_403(exchange: Exchange, jwt_signer):
    exchange.cluster.put_binding(binding_spec(spiffe=SPIFFE_SPEC))
    token = jwt_signer.mint(sub="spiffe://example.org/ns/billing/sa/batch", aud="credbroker.dev")

    status, body, _ = await exchange.post(token=token)

    assert status == 403
    assert body["error"] == "SPIFFEIDNotAllowed"


async def test_jwt_svid_without_bundle_403(exchange: Exchange, jwt_signer):
    token = jwt_signer.mint(sub="spiffe://example.org/ns/shop/sa/batch", aud="credbroker.dev")

    status, body, _ = await exchange.post(token=token)

    assert status == 403
    assert body["error"] == "SPIFFENotConfigured"


async def test_exchange_disabled_403(exchange: Exchange, sa_token):
    disabled = {"exchange": {"returnCredential": False, "refreshSecret": False}}
    exchange.cluster.put_binding(binding_spec(delivery=disabled))

    status, body, _ = await exchange.post(token=sa_token())

    assert status == 403
    assert body["error"] == "ExchangeNotAllowed"
    assert exchange.woken == []


async def test_unknown_binding_404(exchange: Exchange, sa_token):
    status, body, _ = await exchange.post(
        token=sa_token(), body={"namespace": NAMESPACE, "binding": "payments"}
    )

    assert status == 404
    assert body["error"] == "BindingNotFound"
    assert "shop/payments" in body["message"]


# 429


async def test_rate_limit_429(exchange: Exchange, sa_token, rate):
    for _ in range(rate.burst):
        status, _, _ = await exchange.post(token=sa_token())
        assert status == 200

    status, body, headers = await exchange.post(token=sa_token())

    assert status == 429
    assert body["error"] == "RateLimited"
    assert int(headers["Retry-After"]) == 2
    assert len(exchange.cluster.target.requests) == rate.burst


# Audit and secrecy


async def test_audit_record_per_exchange(exchange: Exchange, sa_token, caplog):
    caplog.set_level(logging.INFO)

    await exchange.post(token=sa_token())
    await exchange.post(token=sa_token(pod_name="orders-9"))
    await exchange.post()

    records = audit_records(caplog)
    assert [record["outcome"] for record in records] == ["success", "failure", "failure"]
    assert records[0]["credential_id"] == exchange.cluster.target.requests[0].credential_id
    assert records[0]["pod_name"] == POD_NAME
    assert records[0]["reason"] == "Issued"
    assert records[1]["reason"] == "PodNotFound"
    assert all(record["binding"] == "shop/orders" for record in records[:2])


async def test_no_secret_in_logs_or_errors(exchange: Exchange, sa_token, jwt_signer, caplog):
    caplog.set_level(logging.DEBUG)
    good = sa_token()
    unknown_pod = sa_token(pod_name="orders-9")
    svid = jwt_signer.mint(sub="spiffe://example.org/ns/billing/sa/x", aud="credbroker.dev")

    _, accepted, _ = await exchange.post(token=good)
    bodies = [(await exchange.post(token=token))[1] for token in (unknown_pod, svid, good[:-4])]

    password = accepted["credential"]["password"]
    logged = "\n".join(record.getMessage() for record in caplog.records)
    for secret in (good, unknown_pod, svid, password, good.split(".")[2]):
        assert secret not in logged
        assert all(secret not in json.dumps(body) for body in bodies)
    assert [body["error"] for body in bodies] == [
        "PodNotFound",
        "SPIFFENotConfigured",
        "MalformedToken",
    ]
