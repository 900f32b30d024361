"""SPIFFE identities: SPIFFE IDs, trust bundles, and X.509-SVID and JWT-SVID verification.

The library verifies an SVID against the bundle of the SVID's own trust
domain and returns the verified SPIFFE ID. Each refusal raises
``IdentityRejected`` with its own ``Reason``.
"""

from credbroker.spiffe.bundle import Bundle, BundleSet
from credbroker.spiffe.ids import SpiffeId, SpiffeIdPattern, TrustDomain
from credbroker.spiffe.jwtsvid import VerifiedJwtSvid, verify_jwt_svid
from credbroker.spiffe.x509svid import VerifiedX509Svid, verify_x509_svid

__all__ = [
    "Bundle",
    "BundleSet",
    "SpiffeId",
    "SpiffeIdPattern",
    "TrustDomain",
    "VerifiedJwtSvid",
    "VerifiedX509Svid",
    "verify_jwt_svid",
    "verify_x509_svid",
]
