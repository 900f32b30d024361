"""The HTTP side of the exchange: ``POST /v1/exchange`` as an aiohttp application.

The handler reads the proof (the ``Authorization`` header or the TLS client
certificate) and the JSON body, runs ``ExchangeService.exchange`` and maps
its outcome to a response. Errors are JSON ``{"error": <reason>, "message":
<text>}`` with the status of ``status_for``. No response, log line or audit
record carries the presented token, and only a successful response with a
returned credential carries a password.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from aiohttp import web

from credbroker.errors import CredbrokerError, IdentityRejected, PolicyRejected
from credbroker.exchange.proofs import Proof, read_proof
from credbroker.exchange.ratelimit import RateLimited
from credbroker.exchange.service import (
    CREDENTIAL_ID_FIELD,
    EXPIRES_AT_FIELD,
    ExchangeRequest,
    ExchangeResult,
    ExchangeService,
    emit_rejection,
)
from credbroker.exchange.tls import peer_certificate_der
from credbroker.reasons import Reason
from credbroker.resources import (
    DNS1123_LABEL_MAX_LENGTH,
    DNS1123_LABEL_PATTERN,
    DNS1123_SUBDOMAIN_MAX_LENGTH,
    DNS1123_SUBDOMAIN_PATTERN,
)
from credbroker.timestamps import format_timestamp

logger = logging.getLogger(__name__)

EXCHANGE_PATH = "/v1/exchange"
HEALTH_PATH = "/healthz"
SERVICE_KEY = web.AppKey("exchange_service", ExchangeService)

# Failures of the operator's own dependencies, which the caller cannot fix.
_UNAVAILABLE_REASONS = frozenset(
    {Reason.JWKS_UNAVAILABLE, Reason.BUNDLE_INVALID, Reason.KUBERNETES_API_ERROR}
)
_REQUEST_FIELDS = frozenset({"namespace", "binding"})


def status_for(error: CredbrokerError) -> int:
    """Return the HTTP status of a rejection.

    A malformed request gets 400, a missing or invalid proof 401, a policy
    rejection 403, an unknown binding 404 and the rate limit 429. A failure
    of the API server, the JWKS, a bundle or the target gets 503, and an
    unexpected error 500.
    """
    reason = error.reason
    if reason is Reason.INVALID_REQUEST:
        return 400
    if reason is Reason.BINDING_NOT_FOUND:
        return 404
    if reason is Reason.RATE_LIMITED:
        return 429
    if reason is Reason.INTERNAL_ERROR:
        return 500
    if reason in _UNAVAILABLE_REASONS:
        return 503
    if isinstance(error, IdentityRejected):
        return 401
    if isinstance(error, PolicyRejected):
        return 403
    return 503


def create_app(service: ExchangeService, *, max_body_bytes: int) -> web.Application:
    """Build the application; ``max_body_bytes`` bounds the request body (larger gets 413)."""
    app = web.Application(client_max_size=max_body_bytes)
    app[SERVICE_KEY] = service
    app.router.add_post(EXCHANGE_PATH, _handle_exchange)
    app.router.add_get(HEALTH_PATH, _handle_health)
    return app


async def _handle_health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def _handle_exchange(request: web.Request) -> web.Response:
    service = request.app[SERVICE_KEY]
    proof: Proof | None = None
    exchange_request: ExchangeRequest | None = None
    try:
        exchange_request = _parse_request(await request.read())
        proof = read_proof(
            authorization=request.headers.get("Authorization"),
            peer_certificate=peer_certificate_der(request.transport),
        )
    except CredbrokerError as error:
        emit_rejection(request=exchange_request, proof=proof, error=error)
        return _error_response(error, request=request)

    try:
        result = await service.exchange(exchange_request, proof)
    except CredbrokerError as error:
        return _error_response(error, request=request)
    except Exception:
        logger.exception("Exchange for %s failed unexpectedly", exchange_request.binding_key)
        failure = CredbrokerError(
            Reason.INTERNAL_ERROR, "unexpected error; the operator log has the details"
        )
        emit_rejection(request=exchange_request, proof=proof, error=failure)
        return _error_response(failure, request=request)
    return _result_response(result)


def _parse_request(raw: bytes) -> ExchangeRequest:
    try:
        document: Any = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise _invalid_request("the body is not JSON") from None
    if not isinstance(document, dict):
        raise _invalid_request("the body must be a JSON object")
    unknown = sorted(set(document) - _REQUEST_FIELDS)
    if unknown:
        raise _invalid_request(f"unknown fields {', '.join(map(repr, unknown[:5]))}")
    namespace = _read_name(document, "namespace", DNS1123_LABEL_PATTERN, DNS1123_LABEL_MAX_LENGTH)
    binding = _read_name(
        document, "binding", DNS1123_SUBDOMAIN_PATTERN, DNS1123_SUBDOMAIN_MAX_LENGTH
    )
    return ExchangeRequest(namespace=namespace, binding=binding)


def _read_name(document: dict[str, Any], field: str, pattern: str, max_length: int) -> str:
    value = document.get(field)
    if not isinstance(value, str) or not value:
        raise _invalid_request(f"field {field!r} is missing or not a string")
    if len(value) > max_length or re.fullmatch(pattern, value) is None:
        raise _invalid_request(f"field {field!r} is not a valid Kubernetes name")
    return value


def _invalid_request(problem: str) -> CredbrokerError:
    return CredbrokerError(
        Reason.INVALID_REQUEST,
        f'{problem}; send a JSON object such as {{"namespace": "shop", "binding": "orders"}}',
    )


def _error_response(error: CredbrokerError, *, request: web.Request) -> web.Response:
    status = status_for(error)
    headers = {"Cache-Control": "no-store"}
    if isinstance(error, RateLimited):
        headers["Retry-After"] = str(error.retry_after_seconds)
    if status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="credbroker"'
    logger.info(
        "Exchange from %s rejected with %d %s: %s",
        request.remote,
        status,
        error.reason.value,
        error.message,
    )
    return web.json_response(
        {"error": error.reason.value, "message": error.message}, status=status, headers=headers
    )


def _result_response(result: ExchangeResult) -> web.Response:
    body: dict[str, Any] = {
        "binding": result.binding,
        "spiffe_id": result.spiffe_id,
        "secret_name": result.secret_name,
        "secret_refresh_requested": result.secret_refresh_requested,
    }
    status = 202
    if result.credential is not None and result.expires_at is not None:
        status = 200
        body["credential"] = {
            **result.credential,
            CREDENTIAL_ID_FIELD: result.credential_id,
            EXPIRES_AT_FIELD: format_timestamp(result.expires_at),
        }
    return web.json_response(body, status=status, headers={"Cache-Control": "no-store"})
