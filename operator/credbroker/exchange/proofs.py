"""The three proofs a workload can present, and how a request carries each.

A projected service-account token and a JWT-SVID both arrive as
``Authorization: Bearer <token>``. They are told apart by the scheme of the
unverified ``sub`` claim: a JWT-SVID's subject is a ``spiffe://`` URI and a
service-account token's is ``system:serviceaccount:...``. The choice only
selects the verifier, which then checks everything. An X.509-SVID arrives
as the TLS client certificate.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from enum import StrEnum

import jwt
from jwt.exceptions import InvalidTokenError

from credbroker.errors import IdentityRejected
from credbroker.identity.serviceaccount import MAX_TOKEN_CHARS
from credbroker.reasons import Reason
from credbroker.spiffe.ids import SPIFFE_ID_PREFIX

logger = logging.getLogger(__name__)

BEARER_PREFIX = "Bearer "


class ProofKind(StrEnum):
    """The kind of proof a request presented."""

    SERVICE_ACCOUNT_TOKEN = "service-account-token"  # noqa: S105 (a name, not a token)
    JWT_SVID = "jwt-svid"
    X509_SVID = "x509-svid"


@dataclass(frozen=True, slots=True, kw_only=True)
class Proof:
    """One proof as received. ``token`` is a secret and is excluded from ``repr``."""

    kind: ProofKind
    token: str = field(default="", repr=False)
    certificate_der: bytes = field(default=b"", repr=False)


def read_proof(*, authorization: str | None, peer_certificate: bytes | None) -> Proof:
    """Return the single proof a request carries.

    Raises IdentityRejected: PROOF_MISSING when there is none,
    PROOF_AMBIGUOUS when a bearer token and a client certificate are both
    present, MALFORMED_TOKEN when the header is not ``Bearer <token>`` or
    the token's payload cannot be read.
    """
    if authorization is None and not peer_certificate:
        raise IdentityRejected(
            Reason.PROOF_MISSING,
            "the request carries no proof of identity; send 'Authorization: Bearer <token>' "
            "with a projected service-account token or a JWT-SVID, or connect with an "
            "X.509-SVID as the TLS client certificate",
        )
    if authorization is not None and peer_certificate:
        raise IdentityRejected(
            Reason.PROOF_AMBIGUOUS,
            "the request carries both a bearer token and a TLS client certificate; present "
            "exactly one proof",
        )
    if authorization is None:
        return Proof(kind=ProofKind.X509_SVID, certificate_der=peer_certificate or b"")

    if not authorization.startswith(BEARER_PREFIX):
        raise IdentityRejected(
            Reason.MALFORMED_TOKEN,
            "the Authorization header must have the form 'Bearer <token>'",
        )
    token = authorization[len(BEARER_PREFIX) :].strip()
    return Proof(kind=classify_bearer_token(token), token=token)


def classify_bearer_token(token: str) -> ProofKind:
    """Tell a JWT-SVID from a service-account token by the scheme of ``sub``, unverified."""
    if not token or len(token) > MAX_TOKEN_CHARS or token.count(".") != 2:
        raise IdentityRejected(
            Reason.MALFORMED_TOKEN,
            f"the bearer token is not a JWS in compact form of at most {MAX_TOKEN_CHARS} "
            "characters",
        )
    try:
        payload = jwt.decode(token, options={"verify_signature": False})
    except InvalidTokenError as exc:
        # PyJWT's messages describe the defect and quote no token text.
        raise IdentityRejected(
            Reason.MALFORMED_TOKEN, f"the bearer token's payload cannot be read: {exc}"
        ) from None
    subject = payload.get("sub")
    if isinstance(subject, str) and subject.startswith(SPIFFE_ID_PREFIX):
        return ProofKind.JWT_SVID
    return ProofKind.SERVICE_ACCOUNT_TOKEN
