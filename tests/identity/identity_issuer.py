"""A local stand-in for the API server's token issuer: signing keys, discovery and JWKS.

``LocalIssuer`` serves ``/.well-known/openid-configuration`` and
``/openid/v1/jwks`` on 127.0.0.1, counts requests, can fail or stall on
demand, and mints tokens shaped like Kubernetes projected service-account
tokens.
"""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import jwt
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from credbroker.identity.pods import PodRef

AUDIENCE = "credbroker"
TOKEN_LIFETIME_SECONDS = 600


@dataclass
class SigningKey:
    """A private key with the ``kid`` and ``alg`` it is published under."""

    kid: str
    alg: str
    private_key: Any

    def public_jwk(self) -> dict[str, Any]:
        public_key = self.private_key.public_key()
        if isinstance(public_key, rsa.RSAPublicKey):
            jwk = RSAAlgorithm.to_jwk(public_key, as_dict=True)
        else:
            jwk = ECAlgorithm.to_jwk(public_key, as_dict=True)
        return {**jwk, "kid": self.kid, "alg": self.alg, "use": "sig"}

    def public_pem(self) -> bytes:
        return self.private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


def rsa_key(kid: str, alg: str = "RS256") -> SigningKey:
    return SigningKey(kid=kid, alg=alg, private_key=rsa.generate_private_key(65537, 2048))


def ec_key(kid: str, alg: str = "ES256") -> SigningKey:
    curve = {"ES256": ec.SECP256R1(), "ES384": ec.SECP384R1(), "ES512": ec.SECP521R1()}[alg]
    return SigningKey(kid=kid, alg=alg, private_key=ec.generate_private_key(curve))


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_json(value: Any) -> str:
    return b64url(json.dumps(value, separators=(",", ":")).encode())


def unsigned_token(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    """Assemble a compact JWS from parts, with any signature bytes."""
    return f"{b64url_json(header)}.{b64url_json(claims)}.{b64url(signature)}"


@dataclass
class LocalIssuer:
    """Discovery and JWKS on 127.0.0.1, plus token minting.

    ``issuer`` defaults to the server URL. Set ``fail_status`` to make both
    endpoints return that HTTP status, and ``jwks_delay_seconds`` to stall the
    JWKS response. ``required_bearer_token`` makes both endpoints return 401
    without that bearer token.
    """

    keys: list[SigningKey]
    issuer: str | None = None
    ssl_context: ssl.SSLContext | None = None
    required_bearer_token: str | None = None
    fail_status: int | None = None
    jwks_delay_seconds: float = 0.0
    discovery_requests: int = 0
    jwks_requests: int = 0
    _server: TestServer | None = field(default=None, repr=False)
    _url: str | None = None

    @property
    def url(self) -> str:
        assert self._url is not None, "start the issuer first"
        return self._url

    @property
    def jwks_uri(self) -> str:
        return self.url + "/openid/v1/jwks"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/.well-known/openid-configuration", self._discovery)
        app.router.add_get("/openid/v1/jwks", self._jwks)
        self._server = TestServer(app, host="127.0.0.1")
        await self._server.start_server(ssl=self.ssl_context)
        self._url = str(self._server.make_url("")).rstrip("/")
        if self.issuer is None:
            self.issuer = self.url

    async def close(self) -> None:
        if self._server is not None:
            await self._server.close()

    def _rejection_response(self, request: web.Request) -> web.Response | None:
        if self.fail_status is not None:
            return web.json_response({"message": "unavailable"}, status=self.fail_status)
        if self.required_bearer_token is not None:
            expected = f"Bearer {self.required_bearer_token}"
            if request.headers.get("Authorization") != expected:
                return web.json_response({"message": "Unauthorized"}, status=401)
        return None

    async def _discovery(self, request: web.Request) -> web.Response:
        self.discovery_requests += 1
        rejection = self._rejection_response(request)
        if rejection is not None:
            return rejection
        return web.json_response(
            {
                "issuer": self.issuer,
                "jwks_uri": self.jwks_uri,
                "response_types_supported": ["id_token"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": sorted({k.alg for k in self.keys}),
            }
        )

    async def _jwks(self, request: web.Request) -> web.Response:
        self.jwks_requests += 1
        if self.jwks_delay_seconds:
            await asyncio.sleep(self.jwks_delay_seconds)
        rejection = self._rejection_response(request)
        if rejection is not None:
            return rejection
        return web.json_response(
            {"keys": [key.public_jwk() for key in self.keys]},
            content_type="application/jwk-set+json",
        )

    def claims(self, pod: PodRef, *, now: datetime | None = None) -> dict[str, Any]:
        """Claims of a token the API server would issue for ``pod``."""
        issued = int((now or datetime.now(UTC)).timestamp())
        return {
            "aud": [AUDIENCE],
            "exp": issued + TOKEN_LIFETIME_SECONDS,
            "iat": issued,
            "nbf": issued,
            "iss": self.issuer,
            "jti": str(uuid.uuid4()),
            "kubernetes.io": {
                "namespace": pod.namespace,
                "node": {"name": pod.node_name or "node-1", "uid": str(uuid.uuid4())},
                "pod": {"name": pod.name, "uid": pod.uid},
                "serviceaccount": {"name": pod.service_account, "uid": str(uuid.uuid4())},
            },
            "sub": pod.subject,
        }

    def mint(
        self,
        claims: dict[str, Any],
        *,
        key: SigningKey | None = None,
        headers: dict[str, Any] | None = None,
    ) -> str:
        """Sign ``claims`` with ``key`` (the first key by default) under its kid and alg."""
        key = key or self.keys[0]
        return jwt.encode(
            claims,
            key.private_key,
            algorithm=key.alg,
            headers={"kid": key.kid, **(headers or {})},
        )

    def token_for(self, pod: PodRef, *, key: SigningKey | None = None) -> str:
        return self.mint(self.claims(pod), key=key)
