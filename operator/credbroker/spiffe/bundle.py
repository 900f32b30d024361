"""SPIFFE trust bundles: the X.509 and JWT authorities of one trust domain.

A SPIFFE bundle is a JWK Set. Each key has ``use`` set to ``x509-svid`` (a CA
certificate in ``x5c``, for X.509-SVIDs) or ``jwt-svid`` (a public key with a
``kid``, for JWT-SVIDs), and the set may carry ``spiffe_sequence`` and
``spiffe_refresh_hint``. The document does not name its trust domain, so every
loader takes the trust domain from the caller. A ``BundleSet`` contains at
most one bundle per trust domain and never merges two. An invalid document raises
``IdentityRejected`` with BUNDLE_INVALID naming the problem.

Keys with an unknown ``use`` or ``kty``, and ``x509-svid`` keys without
``x5c``, are skipped with a log line, because the SPIFFE bundle format
requires clients to ignore such entries.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from jwt.exceptions import InvalidKeyError

from credbroker.errors import IdentityRejected
from credbroker.reasons import Reason
from credbroker.spiffe.ids import SpiffeId, TrustDomain
from credbroker.spiffe.quoting import quote

logger = logging.getLogger(__name__)

X509_SVID_USE = "x509-svid"
JWT_SVID_USE = "jwt-svid"
DEFAULT_BUNDLE_KEY = "bundle.spiffe"
MAX_BUNDLE_BYTES = 1024 * 1024
MAX_SEQUENCE = 2**64 - 1

PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey
"""The public key types a bundle accepts: RSA and EC, the key types of JWT-SVID algorithms."""

_KEY_LOADERS = {"RSA": RSAAlgorithm.from_jwk, "EC": ECAlgorithm.from_jwk}
# JWK members that only a private key has (RFC 7518, section 6).
_PRIVATE_KEY_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth"})


@dataclass(frozen=True, slots=True, kw_only=True)
class JwtAuthority:
    """A public key that signs JWT-SVIDs, found by its ``kid``."""

    key_id: str
    public_key: PublicKey


@dataclass(frozen=True, slots=True, kw_only=True)
class Bundle:
    """The trust anchors of one trust domain.

    ``x509_authorities`` are the CA certificates that X.509-SVIDs chain to.
    ``jwt_authorities`` are the keys that sign JWT-SVIDs, with unique key ids.
    ``sequence`` and ``refresh_hint_seconds`` are None when the document omits them.
    """

    trust_domain: TrustDomain
    x509_authorities: tuple[x509.Certificate, ...]
    jwt_authorities: tuple[JwtAuthority, ...]
    sequence: int | None = None
    refresh_hint_seconds: int | None = None

    def jwt_authority(self, key_id: str) -> JwtAuthority | None:
        """Return the JWT authority with ``key_id``, or None when the bundle has none."""
        for authority in self.jwt_authorities:
            if authority.key_id == key_id:
                return authority
        return None


class BundleSet:
    """Bundles keyed by trust domain, at most one per trust domain.

    ``add`` rejects a second bundle for a trust domain, because merging the
    authorities of two documents would trust keys that neither publisher
    vouches for alone. A refreshed bundle goes in through ``replace``.
    """

    def __init__(self, bundles: Iterable[Bundle] = ()) -> None:
        self._bundles: dict[TrustDomain, Bundle] = {}
        for bundle in bundles:
            self.add(bundle)

    def add(self, bundle: Bundle) -> None:
        """Add the bundle of a trust domain that has none yet.

        Raises IdentityRejected with BUNDLE_INVALID when the trust domain already has one.
        """
        if bundle.trust_domain in self._bundles:
            raise IdentityRejected(
                Reason.BUNDLE_INVALID,
                f"a bundle for trust domain {bundle.trust_domain} is already loaded. Each "
                "trust domain has exactly one bundle and bundles are never merged, so remove "
                "the duplicate source or replace the bundle",
            )
        self._bundles[bundle.trust_domain] = bundle

    def replace(self, bundle: Bundle) -> None:
        """Set the bundle of its trust domain, dropping the one loaded before, if any."""
        self._bundles[bundle.trust_domain] = bundle

    def get(self, trust_domain: TrustDomain) -> Bundle | None:
        """Return the bundle of ``trust_domain``, or None when none is loaded."""
        return self._bundles.get(trust_domain)

    def require(self, trust_domain: TrustDomain) -> Bundle:
        """Return the bundle of ``trust_domain``.

        Raises IdentityRejected with TRUST_DOMAIN_MISMATCH when none is loaded.
        """
        bundle = self._bundles.get(trust_domain)
        if bundle is None:
            known = ", ".join(sorted(str(domain) for domain in self._bundles)) or "none"
            raise IdentityRejected(
                Reason.TRUST_DOMAIN_MISMATCH,
                f"no bundle is loaded for trust domain {trust_domain} (bundles are loaded for: "
                f"{known}). Add that trust domain's bundle if it should be trusted",
            )
        return bundle

    @property
    def trust_domains(self) -> tuple[TrustDomain, ...]:
        """The trust domains that have a bundle, sorted by name."""
        return tuple(sorted(self._bundles))

    def __iter__(self) -> Iterator[Bundle]:
        return iter(self._bundles.values())

    def __len__(self) -> int:
        return len(self._bundles)

    def __repr__(self) -> str:
        return f"BundleSet(trust_domains={[str(domain) for domain in self.trust_domains]!r})"


def from_json(data: str | bytes | Mapping[str, Any], *, trust_domain: TrustDomain | str) -> Bundle:
    """Parse a SPIFFE bundle document, given as JSON text or as an already decoded object.

    Raises IdentityRejected with BUNDLE_INVALID naming the first problem found.
    """
    domain = _as_trust_domain(trust_domain)
    document = data if isinstance(data, Mapping) else _decode_json(data, trust_domain=domain)
    return _parse_document(document, trust_domain=domain)


def from_file(path: str | Path, *, trust_domain: TrustDomain | str) -> Bundle:
    """Read and parse a SPIFFE bundle file in JSON form.

    Raises IdentityRejected with BUNDLE_INVALID when the file cannot be read or is invalid.
    """
    domain = _as_trust_domain(trust_domain)
    try:
        with Path(path).open("rb") as file:
            data = file.read(MAX_BUNDLE_BYTES + 1)
    except OSError as exc:
        raise IdentityRejected(
            Reason.BUNDLE_INVALID,
            f"cannot read the bundle file {path} for trust domain {domain}: {exc.strerror or exc}",
        ) from exc
    return from_json(data, trust_domain=domain)


def from_config_map(
    body: Mapping[str, Any],
    *,
    trust_domain: TrustDomain | str,
    key: str = DEFAULT_BUNDLE_KEY,
) -> Bundle:
    """Parse the bundle stored under ``key`` of a ConfigMap body.

    The bundle is read from ``data`` as text, or from ``binaryData`` as base64.
    """
    domain = _as_trust_domain(trust_domain)
    source = _describe_object(body, kind="ConfigMap")
    text = _section(body, "data", source=source, trust_domain=domain).get(key)
    if text is not None:
        return from_json(_require_str(text, where=f"{source} data[{key!r}]"), trust_domain=domain)
    encoded = _section(body, "binaryData", source=source, trust_domain=domain).get(key)
    if encoded is not None:
        return from_json(
            _decode_base64(encoded, where=f"{source} binaryData[{key!r}]"), trust_domain=domain
        )
    raise _missing_key(source, key=key, trust_domain=domain)


def from_secret(
    body: Mapping[str, Any],
    *,
    trust_domain: TrustDomain | str,
    key: str = DEFAULT_BUNDLE_KEY,
) -> Bundle:
    """Parse the bundle stored under ``key`` of a Secret body.

    The bundle is read from ``data`` as base64 (as the API returns Secrets),
    or from ``stringData`` as text (as a manifest may write it).
    """
    domain = _as_trust_domain(trust_domain)
    source = _describe_object(body, kind="Secret")
    encoded = _section(body, "data", source=source, trust_domain=domain).get(key)
    if encoded is not None:
        return from_json(
            _decode_base64(encoded, where=f"{source} data[{key!r}]"), trust_domain=domain
        )
    text = _section(body, "stringData", source=source, trust_domain=domain).get(key)
    if text is not None:
        return from_json(
            _require_str(text, where=f"{source} stringData[{key!r}]"), trust_domain=domain
        )
    raise _missing_key(source, key=key, trust_domain=domain)


def _parse_document(document: Mapping[str, Any], *, trust_domain: TrustDomain) -> Bundle:
    if not isinstance(document, Mapping):
        raise _invalid(
            trust_domain, f"the document is a JSON {type(document).__name__}, not an object"
        )
    raw_keys = document.get("keys")
    if not isinstance(raw_keys, list):
        raise _invalid(trust_domain, f"'keys' must be a list, found {quote(raw_keys)}")

    x509_authorities: list[x509.Certificate] = []
    jwt_authorities: list[JwtAuthority] = []
    for index, raw_key in enumerate(raw_keys):
        where = f"keys[{index}]"
        if not isinstance(raw_key, Mapping):
            raise _invalid(trust_domain, f"{where} must be an object, found {quote(raw_key)}")
        use = raw_key.get("use")
        if use == X509_SVID_USE:
            certificate = _parse_x509_authority(raw_key, trust_domain=trust_domain, where=where)
            if certificate is not None:
                x509_authorities.append(certificate)
        elif use == JWT_SVID_USE:
            authority = _parse_jwt_authority(raw_key, trust_domain=trust_domain, where=where)
            if authority is None:
                continue
            if any(known.key_id == authority.key_id for known in jwt_authorities):
                raise _invalid(trust_domain, f"{where} repeats kid {quote(authority.key_id)}")
            jwt_authorities.append(authority)
        elif use is None:
            raise _invalid(trust_domain, f"{where} has no 'use'. Set it to x509-svid or jwt-svid")
        else:
            logger.info(
                "Ignoring %s of the bundle of %s: unknown use %s", where, trust_domain, quote(use)
            )

    if not x509_authorities and not jwt_authorities:
        raise _invalid(
            trust_domain,
            "it has no usable x509-svid or jwt-svid key, so it would trust nothing",
        )
    return Bundle(
        trust_domain=trust_domain,
        x509_authorities=tuple(x509_authorities),
        jwt_authorities=tuple(jwt_authorities),
        sequence=_read_count(document, "spiffe_sequence", trust_domain=trust_domain),
        refresh_hint_seconds=_read_count(
            document, "spiffe_refresh_hint", trust_domain=trust_domain
        ),
    )


def _parse_x509_authority(
    raw_key: Mapping[str, Any], *, trust_domain: TrustDomain, where: str
) -> x509.Certificate | None:
    """Return the CA certificate of an x509-svid key, or None for an entry to skip."""
    chain = raw_key.get("x5c")
    if chain is None or chain == []:
        logger.warning(
            "Ignoring %s of the bundle of %s: an x509-svid key without x5c", where, trust_domain
        )
        return None
    if not isinstance(chain, list) or not all(isinstance(item, str) for item in chain):
        raise _invalid(trust_domain, f"{where}.x5c must be a list of base64 strings")
    if len(chain) > 1:
        # The X.509-SVID specification uses only the first certificate of x5c.
        logger.warning(
            "Using only the first of %d certificates in %s.x5c of the bundle of %s",
            len(chain),
            where,
            trust_domain,
        )

    try:
        der = base64.b64decode(chain[0], validate=True)
        certificate = x509.load_der_x509_certificate(der)
    except (binascii.Error, ValueError) as exc:
        raise _invalid(
            trust_domain, f"{where}.x5c[0] is not a base64 DER certificate: {exc}"
        ) from exc

    jwk_key = _load_public_key(raw_key, trust_domain=trust_domain, where=where)
    if jwk_key is None:
        return None
    if not _same_public_key(jwk_key, certificate.public_key()):
        raise _invalid(
            trust_domain,
            f"the key parameters of {where} differ from the public key of its x5c certificate "
            f"({certificate.subject.rfc4514_string() or 'empty subject'})",
        )
    return certificate


def _parse_jwt_authority(
    raw_key: Mapping[str, Any], *, trust_domain: TrustDomain, where: str
) -> JwtAuthority | None:
    """Return the key of a jwt-svid entry, or None for an entry to skip."""
    key_id = raw_key.get("kid")
    if not isinstance(key_id, str) or not key_id:
        raise _invalid(
            trust_domain, f"{where} is a jwt-svid key without a kid (found {quote(key_id)})"
        )
    public_key = _load_public_key(raw_key, trust_domain=trust_domain, where=where)
    if public_key is None:
        return None
    return JwtAuthority(key_id=key_id, public_key=public_key)


def _load_public_key(
    raw_key: Mapping[str, Any], *, trust_domain: TrustDomain, where: str
) -> PublicKey | None:
    """Return the public key of a JWK, or None when its ``kty`` is unknown."""
    key_type = raw_key.get("kty")
    loader = _KEY_LOADERS.get(key_type) if isinstance(key_type, str) else None
    if loader is None:
        logger.info(
            "Ignoring %s of the bundle of %s: unknown kty %s", where, trust_domain, quote(key_type)
        )
        return None
    private_members = sorted(_PRIVATE_KEY_MEMBERS.intersection(raw_key))
    if private_members:
        raise _invalid(
            trust_domain,
            f"{where} contains private key members ({', '.join(private_members)}). A bundle "
            "publishes public keys only, so rotate this key and publish its public part",
        )

    try:
        key = loader(dict(raw_key))
    except (InvalidKeyError, ValueError, TypeError, KeyError) as exc:
        raise _invalid(trust_domain, f"{where} is not a valid {key_type} key: {exc}") from exc
    if not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        raise _invalid(trust_domain, f"{where} is not a public {key_type} key")
    return key


def _same_public_key(first: PublicKey, second: object) -> bool:
    if isinstance(first, rsa.RSAPublicKey) and isinstance(second, rsa.RSAPublicKey):
        return first.public_numbers() == second.public_numbers()
    if isinstance(first, ec.EllipticCurvePublicKey) and isinstance(
        second, ec.EllipticCurvePublicKey
    ):
        return first.public_numbers() == second.public_numbers()
    return False


def _read_count(
    document: Mapping[str, Any], member: str, *, trust_domain: TrustDomain
) -> int | None:
    value = document.get(member)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SEQUENCE:
        raise _invalid(
            trust_domain,
            f"{member!r} must be an integer from 0 to 2^64-1, found {quote(value)}",
        )
    return value


def _decode_json(data: str | bytes, *, trust_domain: TrustDomain) -> Mapping[str, Any]:
    if len(data) > MAX_BUNDLE_BYTES:
        raise _invalid(trust_domain, f"it is larger than the {MAX_BUNDLE_BYTES} byte limit")
    try:
        document = json.loads(data)
    except ValueError as exc:
        raise _invalid(trust_domain, f"it is not valid JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise _invalid(
            trust_domain, f"the document is a JSON {type(document).__name__}, not an object"
        )
    return document


def _section(
    body: Mapping[str, Any], name: str, *, source: str, trust_domain: TrustDomain
) -> Mapping[str, Any]:
    section = body.get(name)
    if section is None:
        return {}
    if not isinstance(section, Mapping):
        raise _invalid(trust_domain, f"{source} field {name!r} is not a map")
    return section


def _describe_object(body: Mapping[str, Any], *, kind: str) -> str:
    if not isinstance(body, Mapping):
        raise IdentityRejected(
            Reason.BUNDLE_INVALID, f"the {kind} body must be a map, found {type(body).__name__}"
        )
    metadata = body.get("metadata")
    if not isinstance(metadata, Mapping):
        return kind
    namespace = metadata.get("namespace")
    name = metadata.get("name")
    if namespace and name:
        return f"{kind} {namespace}/{name}"
    if name:
        return f"{kind} {name}"
    return kind


def _missing_key(source: str, *, key: str, trust_domain: TrustDomain) -> IdentityRejected:
    return _invalid(
        trust_domain,
        f"{source} has no key {key!r}. Store the bundle under that key or configure the key name",
    )


def _require_str(value: object, *, where: str) -> str:
    if not isinstance(value, str):
        raise IdentityRejected(
            Reason.BUNDLE_INVALID, f"{where} must be a string, found {type(value).__name__}"
        )
    return value


def _decode_base64(value: object, *, where: str) -> bytes:
    text = _require_str(value, where=where)
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error as exc:
        raise IdentityRejected(
            Reason.BUNDLE_INVALID, f"{where} is not valid base64: {exc}"
        ) from exc


def _as_trust_domain(trust_domain: TrustDomain | str) -> TrustDomain:
    if isinstance(trust_domain, TrustDomain):
        return trust_domain
    return TrustDomain.parse(trust_domain)


def _invalid(trust_domain: TrustDomain, problem: str) -> IdentityRejected:
    return IdentityRejected(
        Reason.BUNDLE_INVALID, f"the bundle of trust domain {trust_domain} is invalid: {problem}"
    )


def select_bundle(
    bundles: Bundle | BundleSet,
    *,
    spiffe_id: SpiffeId,
    expected: TrustDomain | None,
    subject: str,
) -> Bundle:
    """Return the bundle of ``spiffe_id``'s trust domain; raise when it is not the expected one.

    ``subject`` names the ID in messages, such as "SPIFFE ID" or "the JWT-SVID's sub".
    """
    if expected is not None and spiffe_id.trust_domain != expected:
        raise IdentityRejected(
            Reason.TRUST_DOMAIN_MISMATCH,
            f"{subject} {spiffe_id} is in trust domain {spiffe_id.trust_domain}, "
            f"expected {expected}",
        )
    if isinstance(bundles, BundleSet):
        return bundles.require(spiffe_id.trust_domain)
    if bundles.trust_domain != spiffe_id.trust_domain:
        raise IdentityRejected(
            Reason.TRUST_DOMAIN_MISMATCH,
            f"{subject} {spiffe_id} is in trust domain {spiffe_id.trust_domain}, but "
            f"the bundle is for trust domain {bundles.trust_domain}. SVIDs are verified only "
            "against the bundle of their own trust domain",
        )
    return bundles
