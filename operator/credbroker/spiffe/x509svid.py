"""X.509-SVID verification: a certificate chain checked against its trust domain's bundle.

``verify_x509_svid`` reads the SPIFFE ID from the leaf, picks the bundle of
that ID's trust domain, and runs cryptography's client verifier
(``x509.verification``) on the chain. That verifier applies RFC 5280 path
validation with the Web PKI profile of cryptography 48, which also requires
the leaf's authorityKeyIdentifier, a critical subjectAltName when the subject
is empty, and clientAuth in an extendedKeyUsage that is present.

The SPIFFE rules that the verifier does not check run first, each with its
own reason:

- exactly one URI SAN (SVID_URI_SAN_COUNT), a valid SPIFFE ID with a path
  (INVALID_SPIFFE_ID);
- a leaf that is not a CA (SVID_NOT_LEAF);
- a critical keyUsage with digitalSignature and without keyCertSign or
  cRLSign (SVID_KEY_USAGE_INVALID);
- the bundle's trust domain (TRUST_DOMAIN_MISMATCH);
- the leaf's validity period (SVID_EXPIRED, SVID_NOT_YET_VALID).

A chain that does not verify raises SVID_CHAIN_INVALID.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from credbroker.errors import IdentityRejected
from credbroker.reasons import Reason
from credbroker.spiffe.bundle import Bundle, BundleSet, select_bundle
from credbroker.spiffe.ids import SpiffeId, TrustDomain
from credbroker.spiffe.quoting import quote
from credbroker.timestamps import format_timestamp, utcnow

logger = logging.getLogger(__name__)

MAX_CHAIN_BYTES = 256 * 1024
MAX_CHAIN_CERTIFICATES = 8
_PEM_CERTIFICATE_MARKER = b"-----BEGIN CERTIFICATE-----"
_DER_SEQUENCE_TAG = 0x30


@dataclass(frozen=True, slots=True, kw_only=True)
class VerifiedX509Svid:
    """An X.509-SVID whose chain and SPIFFE rules were verified.

    ``expires_at`` is the earliest notAfter of the leaf and the verified
    chain, the time from which the SVID no longer verifies. Holds no key.
    """

    spiffe_id: SpiffeId
    expires_at: datetime
    serial_number: int
    chain: tuple[x509.Certificate, ...]


def load_certificate_chain(data: bytes) -> list[x509.Certificate]:
    """Load a leaf and its intermediates, leaf first, from PEM or from concatenated DER.

    Raises IdentityRejected with MALFORMED_SVID when the data contains no certificate,
    cannot be parsed, or exceeds MAX_CHAIN_BYTES or MAX_CHAIN_CERTIFICATES.
    """
    if len(data) > MAX_CHAIN_BYTES:
        raise _malformed(f"the chain is larger than the {MAX_CHAIN_BYTES} byte limit")
    if not data.strip():
        raise _malformed("the chain is empty")

    try:
        if _PEM_CERTIFICATE_MARKER in data:
            certificates = x509.load_pem_x509_certificates(data)
        else:
            certificates = [x509.load_der_x509_certificate(part) for part in _split_der(data)]
    except ValueError as exc:
        raise _malformed(f"the chain is not PEM or DER certificates: {exc}") from exc

    if len(certificates) > MAX_CHAIN_CERTIFICATES:
        raise _malformed(
            f"the chain has {len(certificates)} certificates, more than the maximum of "
            f"{MAX_CHAIN_CERTIFICATES}"
        )
    return certificates


def spiffe_id_from_certificate(certificate: x509.Certificate) -> SpiffeId:
    """Return the SPIFFE ID in the certificate's single URI SAN, without verifying anything else.

    Raises SVID_URI_SAN_COUNT unless there is exactly one URI SAN, and
    INVALID_SPIFFE_ID when it is not a SPIFFE ID or has no path.
    """
    try:
        extension = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        uris: list[str] = []
    except ValueError as exc:
        raise _malformed(f"the leaf's extensions cannot be parsed: {exc}") from exc
    else:
        uris = extension.value.get_values_for_type(x509.UniformResourceIdentifier)

    if len(uris) != 1:
        listed = ", ".join(quote(uri) for uri in uris[:3]) or "none"
        raise IdentityRejected(
            Reason.SVID_URI_SAN_COUNT,
            f"an X.509-SVID has exactly one URI SAN, but the leaf has {len(uris)} ({listed})",
        )

    spiffe_id = SpiffeId.parse(uris[0])
    if not spiffe_id.path:
        raise IdentityRejected(
            Reason.INVALID_SPIFFE_ID,
            f"the leaf's SPIFFE ID {spiffe_id} has no path, so it names a trust domain and "
            "not a workload",
        )
    return spiffe_id


def verify_x509_svid(
    chain: bytes | bytearray | memoryview | Sequence[x509.Certificate],
    *,
    bundles: Bundle | BundleSet,
    trust_domain: TrustDomain | None = None,
    now: datetime | None = None,
) -> VerifiedX509Svid:
    """Verify an X.509-SVID chain, leaf first, and return its SPIFFE ID.

    ``chain`` is PEM or DER bytes, or parsed certificates. ``bundles`` is the
    bundle of one trust domain, or a set to pick from by the leaf's trust
    domain. With ``trust_domain``, the leaf must also lie in that trust
    domain. ``now`` (aware) defaults to the current time.

    Raises IdentityRejected with the reason of the first check that fails.
    """
    if isinstance(chain, bytes | bytearray | memoryview):
        certificates = load_certificate_chain(bytes(chain))
    else:
        certificates = list(chain)
    if not certificates:
        raise _malformed("the chain is empty")
    leaf, intermediates = certificates[0], certificates[1:]
    moment = utcnow() if now is None else now
    if moment.tzinfo is None:
        raise ValueError("now must be an aware datetime")

    spiffe_id = spiffe_id_from_certificate(leaf)
    _check_not_ca(leaf, spiffe_id=spiffe_id)
    _check_key_usage(leaf, spiffe_id=spiffe_id)
    bundle = select_bundle(bundles, spiffe_id=spiffe_id, expected=trust_domain, subject="SPIFFE ID")
    _check_validity_period(leaf, spiffe_id=spiffe_id, moment=moment)

    verified_chain = _verify_chain(
        leaf, intermediates=intermediates, bundle=bundle, moment=moment, spiffe_id=spiffe_id
    )
    expires_at = min(certificate.not_valid_after_utc for certificate in verified_chain)
    logger.debug(
        "Verified X.509-SVID %s (serial %x, chain of %d)",
        spiffe_id,
        leaf.serial_number,
        len(verified_chain),
    )
    return VerifiedX509Svid(
        spiffe_id=spiffe_id,
        expires_at=expires_at,
        serial_number=leaf.serial_number,
        chain=tuple(verified_chain),
    )


def _check_not_ca(leaf: x509.Certificate, *, spiffe_id: SpiffeId) -> None:
    try:
        constraints = leaf.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return
    if constraints.ca:
        raise IdentityRejected(
            Reason.SVID_NOT_LEAF,
            f"the certificate for {spiffe_id} is a CA certificate (basicConstraints cA is true). "
            "Signing certificates cannot prove a workload identity, so present the leaf SVID",
        )


def _check_key_usage(leaf: x509.Certificate, *, spiffe_id: SpiffeId) -> None:
    try:
        extension = leaf.extensions.get_extension_for_class(x509.KeyUsage)
    except x509.ExtensionNotFound:
        raise IdentityRejected(
            Reason.SVID_KEY_USAGE_INVALID,
            f"the leaf for {spiffe_id} has no keyUsage extension. X.509-SVIDs need a critical "
            "keyUsage with digitalSignature",
        ) from None

    usage = extension.value
    if not extension.critical:
        problem = "keyUsage is not marked critical"
    elif not usage.digital_signature:
        problem = "keyUsage lacks digitalSignature"
    elif usage.key_cert_sign:
        problem = "keyUsage asserts keyCertSign"
    elif usage.crl_sign:
        problem = "keyUsage asserts cRLSign"
    else:
        return
    raise IdentityRejected(
        Reason.SVID_KEY_USAGE_INVALID,
        f"the leaf for {spiffe_id} is not a valid X.509-SVID: its {problem}. A leaf SVID has "
        "a critical keyUsage with digitalSignature and without keyCertSign or cRLSign",
    )


def _check_validity_period(
    leaf: x509.Certificate, *, spiffe_id: SpiffeId, moment: datetime
) -> None:
    not_after = leaf.not_valid_after_utc
    not_before = leaf.not_valid_before_utc
    if moment > not_after:
        raise IdentityRejected(
            Reason.SVID_EXPIRED,
            f"the X.509-SVID for {spiffe_id} expired at {format_timestamp(not_after)} "
            f"(now {format_timestamp(moment)}). Present a current SVID",
        )
    if moment < not_before:
        raise IdentityRejected(
            Reason.SVID_NOT_YET_VALID,
            f"the X.509-SVID for {spiffe_id} is not valid before {format_timestamp(not_before)} "
            f"(now {format_timestamp(moment)}). Check that the clocks of the issuer and the "
            "operator agree",
        )


def _verify_chain(
    leaf: x509.Certificate,
    *,
    intermediates: list[x509.Certificate],
    bundle: Bundle,
    moment: datetime,
    spiffe_id: SpiffeId,
) -> list[x509.Certificate]:
    if not bundle.x509_authorities:
        raise IdentityRejected(
            Reason.SVID_CHAIN_INVALID,
            f"the bundle of trust domain {bundle.trust_domain} has no x509-svid authorities, "
            f"so the X.509-SVID for {spiffe_id} cannot be verified",
        )
    verifier = (
        PolicyBuilder()
        .store(Store(list(bundle.x509_authorities)))
        .time(moment)
        .max_chain_depth(MAX_CHAIN_CERTIFICATES)
        .build_client_verifier()
    )
    try:
        verified = verifier.verify(leaf, intermediates)
    except VerificationError as exc:
        raise IdentityRejected(
            Reason.SVID_CHAIN_INVALID,
            f"the chain of the X.509-SVID for {spiffe_id} does not verify against the bundle "
            f"of trust domain {bundle.trust_domain}: {exc}",
        ) from exc
    return list(verified.chain)


def _split_der(data: bytes) -> list[bytes]:
    """Split concatenated DER certificates by their outer SEQUENCE lengths."""
    parts: list[bytes] = []
    offset = 0
    while offset < len(data):
        if data[offset] != _DER_SEQUENCE_TAG or offset + 2 > len(data):
            raise ValueError(f"no DER SEQUENCE at byte {offset}")
        first_length_byte = data[offset + 1]
        header_length = 2
        if first_length_byte < 0x80:
            content_length = first_length_byte
        else:
            length_bytes = first_length_byte & 0x7F
            if not 1 <= length_bytes <= 4 or offset + 2 + length_bytes > len(data):
                raise ValueError(f"invalid DER length at byte {offset + 1}")
            content_length = int.from_bytes(data[offset + 2 : offset + 2 + length_bytes], "big")
            header_length += length_bytes
        end = offset + header_length + content_length
        if end > len(data):
            raise ValueError(f"DER certificate at byte {offset} is truncated")
        parts.append(data[offset:end])
        offset = end
    return parts


def _malformed(problem: str) -> IdentityRejected:
    return IdentityRejected(Reason.MALFORMED_SVID, f"invalid X.509-SVID: {problem}")
