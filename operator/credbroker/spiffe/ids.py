"""SPIFFE IDs and trust domains: parsing by the rules of the SPIFFE ID specification.

A SPIFFE ID is a URI ``spiffe://<trust domain><path>``. Parsing is strict and
never normalises, so two different strings never parse to the same ID. An
uppercase trust domain, percent-encoding, a port, userinfo, a query, a
fragment, and empty, ``.`` or ``..`` path segments are rejected rather than
rewritten. Every rejection raises ``IdentityRejected`` with INVALID_SPIFFE_ID.
"""

from __future__ import annotations

import string
from dataclasses import dataclass

from credbroker.errors import IdentityRejected
from credbroker.reasons import Reason
from credbroker.spiffe.quoting import quote

SPIFFE_SCHEME = "spiffe"
SPIFFE_ID_PREFIX = f"{SPIFFE_SCHEME}://"
MAX_SPIFFE_ID_BYTES = 2048
MAX_TRUST_DOMAIN_BYTES = 255

TRUST_DOMAIN_CHARACTERS = frozenset(string.ascii_lowercase + string.digits + ".-_")
PATH_SEGMENT_CHARACTERS = frozenset(string.ascii_letters + string.digits + ".-_")

# Kubernetes service-account identities, as spiffe://<trust domain>/ns/<namespace>/sa/<name>.
NAMESPACE_SEGMENT = "ns"
SERVICE_ACCOUNT_SEGMENT = "sa"


def _reject(message: str) -> IdentityRejected:
    return IdentityRejected(Reason.INVALID_SPIFFE_ID, message)


@dataclass(frozen=True, slots=True, order=True)
class TrustDomain:
    """The trust domain name of a SPIFFE ID, such as ``example.org``.

    The constructor checks the name, so every instance is valid.
    """

    name: str

    def __post_init__(self) -> None:
        _check_trust_domain_name(self.name, original=self.name)

    @classmethod
    def parse(cls, text: str) -> TrustDomain:
        """Parse a trust domain name, or the trust domain's own ID ``spiffe://<name>``."""
        if text.startswith(SPIFFE_ID_PREFIX):
            spiffe_id = SpiffeId.parse(text)
            if spiffe_id.path:
                raise _reject(
                    f"{quote(text)} is a workload ID, not a trust domain. Pass the trust "
                    f"domain name alone, such as {spiffe_id.trust_domain.name!r}"
                )
            return spiffe_id.trust_domain
        return cls(text)

    @property
    def id(self) -> SpiffeId:
        """The SPIFFE ID of the trust domain itself, ``spiffe://<name>``, with no path."""
        return SpiffeId(trust_domain=self, path="")

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True, slots=True, order=True)
class SpiffeId:
    """A valid SPIFFE ID: a trust domain and a path that is empty or starts with ``/``.

    The constructor checks the path and the total length, so every instance
    is valid. ``str()`` returns the URI.
    """

    trust_domain: TrustDomain
    path: str

    def __post_init__(self) -> None:
        _check_path(self.path, original=self.path)
        length = len(SPIFFE_ID_PREFIX) + len(self.trust_domain.name) + len(self.path)
        if length > MAX_SPIFFE_ID_BYTES:
            raise _reject(
                f"SPIFFE ID is {length} bytes long, more than the maximum of {MAX_SPIFFE_ID_BYTES}"
            )

    @classmethod
    def parse(cls, text: str) -> SpiffeId:
        """Parse ``spiffe://<trust domain>[/<segment>...]`` without normalising it.

        Raises IdentityRejected with INVALID_SPIFFE_ID naming the first rule broken.
        """
        if not isinstance(text, str):
            raise _reject(f"SPIFFE ID must be a string, found {type(text).__name__}")
        if len(text.encode("utf-8", errors="replace")) > MAX_SPIFFE_ID_BYTES:
            raise _reject(
                f"SPIFFE ID {quote(text)} is longer than the maximum of {MAX_SPIFFE_ID_BYTES} bytes"
            )
        _check_uri_shape(text)

        rest = text[len(SPIFFE_ID_PREFIX) :]
        name, slash, path = rest.partition("/")
        _check_trust_domain_name(name, original=text)
        return cls(trust_domain=TrustDomain(name), path=slash + path)

    @property
    def segments(self) -> tuple[str, ...]:
        """The path segments, empty for the ID of a trust domain."""
        if not self.path:
            return ()
        return tuple(self.path[1:].split("/"))

    def is_member_of(self, trust_domain: TrustDomain) -> bool:
        """Tell whether this ID lies in ``trust_domain``."""
        return self.trust_domain == trust_domain

    def __str__(self) -> str:
        return f"{SPIFFE_ID_PREFIX}{self.trust_domain.name}{self.path}"


def derive_from_service_account(
    *, trust_domain: TrustDomain, namespace: str, service_account: str
) -> SpiffeId:
    """Return ``spiffe://<trust domain>/ns/<namespace>/sa/<service account>``.

    This is the ID credbroker gives a Kubernetes service account. The default
    ``spiffeIDTemplate`` of the SPIRE Helm charts' controller manager uses the
    same layout. Each name must be a single valid path segment, so a ``/`` in
    a name cannot add segments to the ID.
    """
    for label, value in (("namespace", namespace), ("service account", service_account)):
        if "/" in value:
            raise _reject(f"{label} name {quote(value)} contains '/', so it is not one segment")
        _check_segment(value, original=value)
    path = f"/{NAMESPACE_SEGMENT}/{namespace}/{SERVICE_ACCOUNT_SEGMENT}/{service_account}"
    return SpiffeId(trust_domain=trust_domain, path=path)


@dataclass(frozen=True, slots=True)
class SpiffeIdPattern:
    """A rule that matches SPIFFE IDs: one exact ID, or every ID below a path prefix.

    ``spiffe://example.org/ns/shop/sa/web`` matches that ID only. A trailing
    slash makes a prefix: ``spiffe://example.org/ns/shop/`` matches IDs whose
    path starts with the segments ``ns``, ``shop`` and has at least one more,
    so it matches ``/ns/shop/sa/web`` but neither ``/ns/shopping/sa/web`` nor
    ``/ns/shop`` itself. ``spiffe://example.org/`` matches every workload ID
    of the trust domain.
    """

    trust_domain: TrustDomain
    segments: tuple[str, ...]
    is_prefix: bool

    @classmethod
    def parse(cls, text: str) -> SpiffeIdPattern:
        """Parse an exact SPIFFE ID, or a prefix written as a SPIFFE ID with a trailing slash.

        Raises IdentityRejected with INVALID_SPIFFE_ID when the ID part is invalid.
        """
        is_prefix = isinstance(text, str) and text.endswith("/")
        spiffe_id = SpiffeId.parse(text[:-1] if is_prefix else text)
        return cls(
            trust_domain=spiffe_id.trust_domain,
            segments=spiffe_id.segments,
            is_prefix=is_prefix,
        )

    def matches(self, spiffe_id: SpiffeId) -> bool:
        """Tell whether ``spiffe_id`` is the pattern's ID or, for a prefix, lies below it."""
        if spiffe_id.trust_domain != self.trust_domain:
            return False
        segments = spiffe_id.segments
        if not self.is_prefix:
            return segments == self.segments
        return len(segments) > len(self.segments) and segments[: len(self.segments)] == (
            self.segments
        )

    def __str__(self) -> str:
        path = "".join(f"/{segment}" for segment in self.segments)
        suffix = "/" if self.is_prefix else ""
        return f"{SPIFFE_ID_PREFIX}{self.trust_domain.name}{path}{suffix}"


def _check_uri_shape(text: str) -> None:
    """Reject a wrong scheme and the URI parts a SPIFFE ID must not have."""
    if not text.startswith(SPIFFE_ID_PREFIX):
        scheme, separator, _ = text.partition(":")
        if separator and scheme.lower() == SPIFFE_SCHEME:
            raise _reject(
                f"SPIFFE ID {quote(text)} must start with 'spiffe://' exactly: the scheme is "
                "lowercase and followed by '//'"
            )
        raise _reject(f"{quote(text)} is not a SPIFFE ID: it must start with 'spiffe://'")
    if "%" in text:
        raise _reject(
            f"SPIFFE ID {quote(text)} contains percent-encoding, which SPIFFE IDs do not allow"
        )
    if "?" in text:
        raise _reject(f"SPIFFE ID {quote(text)} has a query ('?'), which SPIFFE IDs do not allow")
    if "#" in text:
        raise _reject(
            f"SPIFFE ID {quote(text)} has a fragment ('#'), which SPIFFE IDs do not allow"
        )


def _check_trust_domain_name(name: str, *, original: str) -> None:
    if not isinstance(name, str):
        raise _reject(f"trust domain must be a string, found {type(name).__name__}")
    if not name:
        raise _reject(f"SPIFFE ID {quote(original)} has no trust domain")
    if "@" in name:
        raise _reject(
            f"trust domain of {quote(original)} contains userinfo ('@'), which SPIFFE IDs "
            "do not allow"
        )
    if ":" in name:
        raise _reject(
            f"trust domain of {quote(original)} contains a port (':'), which SPIFFE IDs do "
            "not allow"
        )
    if len(name) > MAX_TRUST_DOMAIN_BYTES:
        raise _reject(
            f"trust domain of {quote(original)} is {len(name)} characters long, more than the "
            f"maximum of {MAX_TRUST_DOMAIN_BYTES}"
        )
    bad = sorted({char for char in name if char not in TRUST_DOMAIN_CHARACTERS})
    if bad and all(char in string.ascii_uppercase for char in bad):
        raise _reject(
            f"trust domain {quote(name)} contains uppercase letters. Trust domains are "
            f"lowercase and are not normalised, so write {name.lower()!r}"
        )
    if bad:
        raise _reject(
            f"trust domain {quote(name)} contains {quote(''.join(bad))}. Only lowercase letters, "
            "digits, '.', '-' and '_' are allowed"
        )


def _check_path(path: str, *, original: str) -> None:
    if not isinstance(path, str):
        raise _reject(f"SPIFFE ID path must be a string, found {type(path).__name__}")
    if not path:
        return
    if not path.startswith("/"):
        raise _reject(f"SPIFFE ID path {quote(original)} must start with '/'")
    if path.endswith("/"):
        raise _reject(f"SPIFFE ID path {quote(original)} must not end with '/'")
    for segment in path[1:].split("/"):
        _check_segment(segment, original=original)


def _check_segment(segment: str, *, original: str) -> None:
    if not segment:
        raise _reject(f"SPIFFE ID path {quote(original)} has an empty segment ('//')")
    if segment in (".", ".."):
        raise _reject(
            f"SPIFFE ID path {quote(original)} has a {segment!r} segment, which SPIFFE IDs do not "
            "allow"
        )
    bad = sorted({char for char in segment if char not in PATH_SEGMENT_CHARACTERS})
    if bad:
        raise _reject(
            f"SPIFFE ID path {quote(original)} contains {quote(''.join(bad))}. Path segments allow "
            "only letters, digits, '.', '-' and '_'"
        )
