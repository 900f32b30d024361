"""JWT-SVID verification: a JWS checked against the jwt-svid keys of its trust domain's bundle.

``verify_jwt_svid`` checks, in this order:

- the header: ``alg`` is one of the asymmetric algorithms of the JWT-SVID
  specification, ``typ`` is absent, ``JWT`` or ``JOSE``, and no header other
  than ``alg``, ``kid`` and ``typ`` is present;
- the ``sub`` claim as a SPIFFE ID, and the bundle of its trust domain;
- the key by ``kid``, and the signature (PyJWT);
- ``aud`` and ``exp``, which must be present, and ``nbf`` and ``iat`` when present.

Every rejection raises ``IdentityRejected`` with its own ``Reason``. No
message contains the token.
"""

from __future__ import annotations

import base64
import json
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.exceptions import InvalidKeyError, InvalidSignatureError, InvalidTokenError

from credbroker.errors import IdentityRejected
from credbroker.identity.jwks import ALLOWED_SIGNING_ALGORITHMS
from credbroker.identity.serviceaccount import DEFAULT_LEEWAY_SECONDS, MAX_LEEWAY_SECONDS
from credbroker.reasons import Reason
from credbroker.spiffe.bundle import Bundle, BundleSet, JwtAuthority, select_bundle
from credbroker.spiffe.ids import SpiffeId, TrustDomain
from credbroker.spiffe.quoting import quote
from credbroker.timestamps import format_timestamp, utcnow

logger = logging.getLogger(__name__)

ALLOWED_HEADERS = frozenset({"alg", "kid", "typ"})
ALLOWED_TYPES = frozenset({"JWT", "JOSE"})
MAX_TOKEN_CHARS = 16 * 1024

# The curve each ECDSA algorithm signs with (RFC 7518, section 3.4).
_CURVE_OF_ALGORITHM: dict[str, type[ec.EllipticCurve]] = {
    "ES256": ec.SECP256R1,
    "ES384": ec.SECP384R1,
    "ES512": ec.SECP521R1,
}

# PyJWS checks only the signature, so every claim is checked here against the given time.
_JWS = jwt.PyJWS(options={"verify_signature": True, "enforce_minimum_key_length": True})
# Reads ``sub`` to choose the bundle. The signature is verified afterwards with ``_JWS``.
_UNVERIFIED_JWS = jwt.PyJWS(options={"verify_signature": False})


@dataclass(frozen=True, slots=True, kw_only=True)
class VerifiedJwtSvid:
    """A JWT-SVID whose signature and claims were verified. Holds no token text."""

    spiffe_id: SpiffeId
    audiences: tuple[str, ...]
    expires_at: datetime
    issued_at: datetime | None
    key_id: str


def read_unverified_spiffe_id(token: str) -> SpiffeId:
    """Return the ``sub`` of a token as a SPIFFE ID, without verifying the token.

    For choosing the bundle to verify with. Raises MALFORMED_TOKEN,
    MISSING_CLAIM or INVALID_SPIFFE_ID.
    """
    _check_size(token)
    try:
        decoded = _UNVERIFIED_JWS.decode_complete(token)
    except InvalidTokenError as exc:
        raise IdentityRejected(
            Reason.MALFORMED_TOKEN, f"the JWT-SVID is not a compact JWS: {exc}"
        ) from exc
    return _read_subject(_parse_payload(decoded["payload"]))


def verify_jwt_svid(
    token: str,
    *,
    bundles: Bundle | BundleSet,
    audience: str,
    trust_domain: TrustDomain | None = None,
    leeway_seconds: int = DEFAULT_LEEWAY_SECONDS,
    now: datetime | None = None,
) -> VerifiedJwtSvid:
    """Verify a JWT-SVID for ``audience`` and return its SPIFFE ID.

    ``bundles`` is the bundle of one trust domain, or a set to pick from by
    the trust domain of ``sub``. With ``trust_domain``, ``sub`` must also lie
    in that trust domain. ``leeway_seconds`` (0 to MAX_LEEWAY_SECONDS)
    absorbs clock skew in the ``exp``, ``nbf`` and ``iat`` checks. ``now``
    (aware) defaults to the current time.

    Raises IdentityRejected with the reason of the first check that fails.
    """
    if not audience:
        raise ValueError("audience must be a non-empty string")
    if not 0 <= leeway_seconds <= MAX_LEEWAY_SECONDS:
        raise ValueError(
            f"leeway_seconds must be between 0 and {MAX_LEEWAY_SECONDS}, got {leeway_seconds}"
        )
    moment = utcnow() if now is None else now
    if moment.tzinfo is None:
        raise ValueError("now must be an aware datetime")

    header = _read_header(token)
    alg, kid = _check_header(header)

    spiffe_id = read_unverified_spiffe_id(token)
    bundle = select_bundle(
        bundles, spiffe_id=spiffe_id, expected=trust_domain, subject="the JWT-SVID's sub"
    )
    authority = _find_authority(bundle, kid=kid, spiffe_id=spiffe_id)
    _check_key_fits_algorithm(authority, alg=alg)

    payload = _verify_signature(token, authority=authority, alg=alg)
    verified_id = _read_subject(payload)
    audiences = _check_audience(payload, expected=audience)
    expires_at, issued_at = _check_times(payload, moment=moment, leeway_seconds=leeway_seconds)

    logger.debug("Verified JWT-SVID %s (kid %s)", verified_id, kid)
    return VerifiedJwtSvid(
        spiffe_id=verified_id,
        audiences=audiences,
        expires_at=expires_at,
        issued_at=issued_at,
        key_id=kid,
    )


def _read_header(token: str) -> Mapping[str, Any]:
    """Decode the JOSE header without PyJWT's own header checks, so each gets its own reason."""
    _check_size(token)
    encoded_header = token.split(".", 1)[0]
    try:
        padding = "=" * (-len(encoded_header) % 4)
        header = json.loads(base64.urlsafe_b64decode(encoded_header + padding))
    except (ValueError, TypeError) as exc:
        raise IdentityRejected(
            Reason.MALFORMED_TOKEN, f"the JWT-SVID header cannot be decoded: {exc}"
        ) from exc
    if not isinstance(header, dict):
        raise IdentityRejected(
            Reason.MALFORMED_TOKEN,
            f"the JWT-SVID header is a JSON {type(header).__name__}, not an object",
        )
    return header


def _check_header(header: Mapping[str, Any]) -> tuple[str, str]:
    """Return ``alg`` and ``kid`` of a header that follows the JWT-SVID rules."""
    alg = header.get("alg")
    if alg not in ALLOWED_SIGNING_ALGORITHMS:
        raise IdentityRejected(
            Reason.ALGORITHM_NOT_ALLOWED,
            f"JWT-SVID header alg {quote(alg)} is not allowed. JWT-SVIDs are signed with one of "
            f"{', '.join(sorted(ALLOWED_SIGNING_ALGORITHMS))}",
        )

    extra = sorted(str(name) for name in header if name not in ALLOWED_HEADERS)
    if extra:
        raise IdentityRejected(
            Reason.JWT_SVID_HEADER_INVALID,
            f"JWT-SVID header has {quote(', '.join(extra))}, but a JWT-SVID header may contain "
            "only alg, kid and typ",
        )

    typ = header.get("typ")
    if typ is not None and typ not in ALLOWED_TYPES:
        raise IdentityRejected(
            Reason.JWT_SVID_HEADER_INVALID,
            f"JWT-SVID header typ {quote(typ)} is not allowed. It must be absent, JWT or JOSE",
        )

    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        # NOTE: the JWT-SVID specification makes kid optional, but without it no key can be
        # chosen from the bundle, so a token without one is rejected here.
        raise IdentityRejected(
            Reason.JWT_SVID_HEADER_INVALID,
            f"JWT-SVID header has no kid (found {quote(kid)}), so its key cannot be found in "
            "the bundle",
        )
    return str(alg), kid


def _read_subject(payload: Mapping[str, Any]) -> SpiffeId:
    subject = payload.get("sub")
    if subject is None:
        raise IdentityRejected(
            Reason.MISSING_CLAIM, "the JWT-SVID has no 'sub' claim, which holds its SPIFFE ID"
        )
    if not isinstance(subject, str):
        raise IdentityRejected(
            Reason.INVALID_SPIFFE_ID,
            f"the JWT-SVID's 'sub' claim must be a SPIFFE ID string, found "
            f"{type(subject).__name__}",
        )
    spiffe_id = SpiffeId.parse(subject)
    if not spiffe_id.path:
        raise IdentityRejected(
            Reason.INVALID_SPIFFE_ID,
            f"the JWT-SVID's sub {spiffe_id} has no path, so it names a trust domain and not "
            "a workload",
        )
    return spiffe_id


def _find_authority(bundle: Bundle, *, kid: str, spiffe_id: SpiffeId) -> JwtAuthority:
    authority = bundle.jwt_authority(kid)
    if authority is None:
        known = ", ".join(repr(key.key_id) for key in bundle.jwt_authorities) or "none"
        raise IdentityRejected(
            Reason.UNKNOWN_KEY_ID,
            f"the bundle of trust domain {bundle.trust_domain} has no jwt-svid key with kid "
            f"{quote(kid)} (known kids: {known}), so the JWT-SVID for {spiffe_id} cannot be "
            "verified. Refresh the bundle if the trust domain rotated its keys",
        )
    return authority


def _check_key_fits_algorithm(authority: JwtAuthority, *, alg: str) -> None:
    key = authority.public_key
    if alg.startswith(("RS", "PS")):
        fits = isinstance(key, rsa.RSAPublicKey)
    else:
        fits = isinstance(key, ec.EllipticCurvePublicKey) and isinstance(
            key.curve, _CURVE_OF_ALGORITHM[alg]
        )
    if not fits:
        raise IdentityRejected(
            Reason.ALGORITHM_NOT_ALLOWED,
            f"JWT-SVID header alg {alg} does not fit key {authority.key_id!r} of the bundle "
            f"({_describe_key(key)})",
        )


def _verify_signature(token: str, *, authority: JwtAuthority, alg: str) -> Mapping[str, Any]:
    try:
        decoded = _JWS.decode_complete(token, key=authority.public_key, algorithms=[alg])
    except InvalidSignatureError as exc:
        raise IdentityRejected(
            Reason.SIGNATURE_INVALID,
            f"the JWT-SVID signature does not verify with key {authority.key_id!r} of the bundle",
        ) from exc
    except (InvalidKeyError, InvalidTokenError) as exc:
        raise IdentityRejected(
            Reason.MALFORMED_TOKEN, f"the JWT-SVID cannot be verified: {exc}"
        ) from exc

    return _parse_payload(decoded["payload"])


def _parse_payload(data: bytes) -> Mapping[str, Any]:
    try:
        payload = json.loads(data)
    except ValueError as exc:
        raise IdentityRejected(
            Reason.MALFORMED_TOKEN, f"the JWT-SVID payload is not JSON: {exc}"
        ) from exc
    if not isinstance(payload, dict):
        raise IdentityRejected(
            Reason.MALFORMED_TOKEN,
            f"the JWT-SVID payload is a JSON {type(payload).__name__}, not an object",
        )
    return payload


def _check_audience(payload: Mapping[str, Any], *, expected: str) -> tuple[str, ...]:
    value = payload.get("aud")
    if value is None or value == []:
        raise IdentityRejected(
            Reason.MISSING_CLAIM,
            "the JWT-SVID has no 'aud' claim. JWT-SVIDs must name at least one audience",
        )
    if isinstance(value, str):
        audiences: tuple[str, ...] = (value,)
    elif isinstance(value, list) and all(isinstance(item, str) for item in value):
        audiences = tuple(value)
    else:
        raise IdentityRejected(
            Reason.MALFORMED_TOKEN,
            f"the JWT-SVID's 'aud' claim must be a string or a list of strings, found "
            f"{quote(value)}",
        )
    if expected not in audiences:
        raise IdentityRejected(
            Reason.AUDIENCE_MISMATCH,
            f"the JWT-SVID's aud {quote(list(audiences))} does not contain {expected!r}. "
            f"Request the JWT-SVID with audience {expected!r}",
        )
    return audiences


def _check_times(
    payload: Mapping[str, Any], *, moment: datetime, leeway_seconds: int
) -> tuple[datetime, datetime | None]:
    """Check ``exp``, ``nbf`` and ``iat``, and return the expiry and issue times."""
    if payload.get("exp") is None:
        raise IdentityRejected(
            Reason.MISSING_CLAIM,
            "the JWT-SVID has no 'exp' claim. JWT-SVIDs must carry an expiry time",
        )
    expires_at = _read_time(payload, "exp")
    not_before = _read_time(payload, "nbf") if payload.get("nbf") is not None else None
    issued_at = _read_time(payload, "iat") if payload.get("iat") is not None else None

    now_seconds = moment.timestamp()
    context = f"now {format_timestamp(moment)}, leeway {leeway_seconds} s"
    if now_seconds >= expires_at.timestamp() + leeway_seconds:
        raise IdentityRejected(
            Reason.TOKEN_EXPIRED,
            f"the JWT-SVID expired at {format_timestamp(expires_at)} ({context}). Fetch a new one",
        )
    for claim, start in (("nbf", not_before), ("iat", issued_at)):
        if start is not None and now_seconds + leeway_seconds < start.timestamp():
            raise IdentityRejected(
                Reason.TOKEN_NOT_YET_VALID,
                f"the JWT-SVID's {claim} is {format_timestamp(start)}, in the future ({context}). "
                "Check that the clocks of the issuer and the operator agree",
            )
    return expires_at, issued_at


def _read_time(payload: Mapping[str, Any], claim: str) -> datetime:
    value = payload[claim]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise IdentityRejected(
            Reason.MALFORMED_TOKEN,
            f"the JWT-SVID's {claim!r} claim must be seconds since the epoch, found {quote(value)}",
        )
    try:
        return datetime.fromtimestamp(value, UTC)
    except (OverflowError, OSError, ValueError):
        raise IdentityRejected(
            Reason.MALFORMED_TOKEN, f"the JWT-SVID's {claim!r} claim is out of range"
        ) from None


def _check_size(token: str) -> None:
    if not isinstance(token, str) or not token:
        raise IdentityRejected(Reason.MALFORMED_TOKEN, "the JWT-SVID is empty or not a string")
    if len(token) > MAX_TOKEN_CHARS:
        raise IdentityRejected(
            Reason.MALFORMED_TOKEN,
            f"the JWT-SVID is {len(token)} characters long, more than the maximum of "
            f"{MAX_TOKEN_CHARS}",
        )


def _describe_key(key: object) -> str:
    if isinstance(key, rsa.RSAPublicKey):
        return f"RSA {key.key_size} bit"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"EC {key.curve.name}"
    return type(key).__name__
