"""The reason vocabulary shared by rejections, status conditions, events and audit.

One enum keeps the words the same everywhere. A rejection raised by the
verifier carries the ``reason`` that also lands in the binding's condition,
in the Kubernetes Event and in the audit record, so an operator can search
for one word across all of them. Values are CamelCase, as Kubernetes
condition reasons are.
"""

from enum import StrEnum


class Reason(StrEnum):
    """A stable, machine-readable cause of an outcome."""

    # Identity: the projected service-account token and its verification.
    TOKEN_REQUEST_FAILED = "TokenRequestFailed"
    MALFORMED_TOKEN = "MalformedToken"
    ALGORITHM_NOT_ALLOWED = "AlgorithmNotAllowed"
    UNKNOWN_KEY_ID = "UnknownKeyId"
    SIGNATURE_INVALID = "SignatureInvalid"
    ISSUER_MISMATCH = "IssuerMismatch"
    AUDIENCE_MISMATCH = "AudienceMismatch"
    TOKEN_EXPIRED = "TokenExpired"
    TOKEN_NOT_YET_VALID = "TokenNotYetValid"
    MISSING_CLAIM = "MissingClaim"
    POD_MISMATCH = "PodMismatch"
    SERVICE_ACCOUNT_MISMATCH = "ServiceAccountMismatch"
    TOKEN_REVIEW_REJECTED = "TokenReviewRejected"
    JWKS_UNAVAILABLE = "JWKSUnavailable"

    # Policy: may this identity have this credential.
    SERVICE_ACCOUNT_NOT_ALLOWED = "ServiceAccountNotAllowed"
    NAMESPACE_NOT_ALLOWED = "NamespaceNotAllowed"
    ROLE_NOT_ALLOWED = "RoleNotAllowed"
    TARGET_NOT_FOUND = "TargetNotFound"
    TARGET_TYPE_UNSUPPORTED = "TargetTypeUnsupported"
    INVALID_SPEC = "InvalidSpec"

    # Targets and delivery.
    ADMIN_SECRET_INVALID = "AdminSecretInvalid"
    TARGET_UNAVAILABLE = "TargetUnavailable"
    ISSUE_FAILED = "IssueFailed"
    REVOKE_FAILED = "RevokeFailed"
    SECRET_CONFLICT = "SecretConflict"
    KUBERNETES_API_ERROR = "KubernetesAPIError"
    INTERNAL_ERROR = "InternalError"

    # Lifecycle outcomes.
    ISSUED = "Issued"
    RENEWED = "Renewed"
    REVOKED = "Revoked"
    SWEPT = "Swept"
    VERIFIED = "Verified"
    NO_VERIFIED_PODS = "NoVerifiedPods"
    WAITING_FOR_PODS = "WaitingForPods"
    BINDING_DELETED = "BindingDeleted"
    EXPIRED = "Expired"
    ORPHANED = "Orphaned"

    # SPIFFE: SPIFFE IDs, trust bundles, X.509-SVIDs and JWT-SVIDs.
    INVALID_SPIFFE_ID = "InvalidSPIFFEID"
    BUNDLE_INVALID = "BundleInvalid"
    TRUST_DOMAIN_MISMATCH = "TrustDomainMismatch"
    MALFORMED_SVID = "MalformedSVID"
    SVID_URI_SAN_COUNT = "SVIDURISANCount"
    SVID_NOT_LEAF = "SVIDNotLeaf"
    SVID_KEY_USAGE_INVALID = "SVIDKeyUsageInvalid"
    SVID_EXPIRED = "SVIDExpired"
    SVID_NOT_YET_VALID = "SVIDNotYetValid"
    SVID_CHAIN_INVALID = "SVIDChainInvalid"
    JWT_SVID_HEADER_INVALID = "JWTSVIDHeaderInvalid"

    # The exchange endpoint: workloads that present their own proof.
    INVALID_REQUEST = "InvalidRequest"
    PROOF_MISSING = "ProofMissing"
    PROOF_AMBIGUOUS = "ProofAmbiguous"
    POD_NOT_FOUND = "PodNotFound"
    POD_NOT_SELECTED = "PodNotSelected"
    SPIFFE_ID_NOT_ALLOWED = "SPIFFEIDNotAllowed"
    SPIFFE_NOT_CONFIGURED = "SPIFFENotConfigured"
    BINDING_NOT_FOUND = "BindingNotFound"
    EXCHANGE_NOT_ALLOWED = "ExchangeNotAllowed"
    RATE_LIMITED = "RateLimited"
    REFRESH_REQUESTED = "RefreshRequested"
