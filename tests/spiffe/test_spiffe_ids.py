"""SPIFFE ID and trust domain parsing, the service-account convention, and ID patterns."""

from __future__ import annotations

import pytest

from credbroker.errors import IdentityRejected
from credbroker.reasons import Reason
from credbroker.spiffe.ids import (
    MAX_SPIFFE_ID_BYTES,
    MAX_TRUST_DOMAIN_BYTES,
    SpiffeId,
    SpiffeIdPattern,
    TrustDomain,
    derive_from_service_account,
)

VALID_IDS = [
    ("spiffe://example.org", "example.org", ""),
    ("spiffe://example.org/ns/shop/sa/web", "example.org", "/ns/shop/sa/web"),
    ("spiffe://a-b_c.0/x", "a-b_c.0", "/x"),
    ("spiffe://example.org/Mixed.Case-path_1/..a/a..", "example.org", "/Mixed.Case-path_1/..a/a.."),
    ("spiffe://example.org/.hidden", "example.org", "/.hidden"),
]

INVALID_IDS = [
    ("", "must start with 'spiffe://'"),
    ("example.org/ns/shop", "must start with 'spiffe://'"),
    ("https://example.org/ns", "must start with 'spiffe://'"),
    ("SPIFFE://example.org/ns", "scheme is lowercase"),
    ("Spiffe://example.org/ns", "scheme is lowercase"),
    ("spiffe:example.org/ns", "scheme is lowercase and followed by '//'"),
    ("spiffe://", "has no trust domain"),
    ("spiffe:///ns/shop", "has no trust domain"),
    ("spiffe://Example.org/ns", "uppercase"),
    ("spiffe://EXAMPLE.ORG", "uppercase"),
    ("spiffe://exa mple.org", "contains ' '"),
    ("spiffe://exämple.org", "contains"),
    ("spiffe://example.org:8443/ns", "port"),
    ("spiffe://user@example.org/ns", "userinfo"),
    ("spiffe://example.org/ns?x=1", "query"),
    ("spiffe://example.org/ns#frag", "fragment"),
    ("spiffe://example.org/ns/sh%6Fp", "percent-encoding"),
    ("spiffe://example%2Eorg/ns", "percent-encoding"),
    ("spiffe://example.org/", "must not end with '/'"),
    ("spiffe://example.org/ns/shop/", "must not end with '/'"),
    ("spiffe://example.org//ns", "empty segment"),
    ("spiffe://example.org/ns//shop", "empty segment"),
    ("spiffe://example.org/ns/./shop", "'.' segment"),
    ("spiffe://example.org/ns/../shop", "'..' segment"),
    ("spiffe://example.org/..", "'..' segment"),
    ("spiffe://example.org/ns/sh*p", "contains '*'"),
    ("spiffe://example.org/ns/shöp", "contains 'ö'"),
    ("spiffe://example.org/ns/a b", "contains ' '"),
    ("spiffe://" + "a" * (MAX_TRUST_DOMAIN_BYTES + 1), "more than the maximum of 255"),
    ("spiffe://example.org/" + "a" * MAX_SPIFFE_ID_BYTES, "longer than the maximum of 2048"),
]


@pytest.mark.parametrize(("text", "trust_domain", "path"), VALID_IDS)
def test_parse_valid(text: str, trust_domain: str, path: str) -> None:
    spiffe_id = SpiffeId.parse(text)

    assert spiffe_id.trust_domain == TrustDomain(trust_domain)
    assert spiffe_id.path == path
    assert str(spiffe_id) == text


@pytest.mark.parametrize(("text", "fragment"), INVALID_IDS)
def test_parse_invalid(text: str, fragment: str) -> None:
    with pytest.raises(IdentityRejected) as caught:
        SpiffeId.parse(text)

    assert caught.value.reason == Reason.INVALID_SPIFFE_ID
    assert fragment in caught.value.message


def test_parse_length_limit_exact() -> None:
    prefix = "spiffe://example.org/"
    at_limit = prefix + "a" * (MAX_SPIFFE_ID_BYTES - len(prefix))

    assert len(str(SpiffeId.parse(at_limit))) == MAX_SPIFFE_ID_BYTES
    with pytest.raises(IdentityRejected):
        SpiffeId.parse(at_limit + "a")


def test_parse_rejects_non_string() -> None:
    with pytest.raises(IdentityRejected) as caught:
        SpiffeId.parse(42)  # type: ignore[arg-type]

    assert caught.value.reason == Reason.INVALID_SPIFFE_ID
    assert "must be a string" in caught.value.message


def test_message_shortens_long_input() -> None:
    with pytest.raises(IdentityRejected) as caught:
        SpiffeId.parse("spiffe://example.org/" + "%" * 1500)

    assert len(caught.value.message) < 300


def test_segments_and_membership() -> None:
    spiffe_id = SpiffeId.parse("spiffe://example.org/ns/shop/sa/web")

    assert spiffe_id.segments == ("ns", "shop", "sa", "web")
    assert spiffe_id.is_member_of(TrustDomain("example.org"))
    assert not spiffe_id.is_member_of(TrustDomain("example.com"))
    assert TrustDomain("example.org").id.segments == ()


def test_constructor_validates() -> None:
    with pytest.raises(IdentityRejected):
        TrustDomain("Example.org")
    with pytest.raises(IdentityRejected):
        SpiffeId(trust_domain=TrustDomain("example.org"), path="/ns/../x")
    with pytest.raises(IdentityRejected):
        SpiffeId(trust_domain=TrustDomain("example.org"), path="ns")


def test_trust_domain_parse_forms() -> None:
    assert TrustDomain.parse("example.org") == TrustDomain("example.org")
    assert TrustDomain.parse("spiffe://example.org") == TrustDomain("example.org")
    assert str(TrustDomain.parse("example.org")) == "example.org"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("spiffe://example.org/ns/shop", "workload ID, not a trust domain"),
        ("Example.org", "uppercase"),
        ("", "has no trust domain"),
        ("example.org:443", "port"),
    ],
)
def test_trust_domain_parse_invalid(text: str, fragment: str) -> None:
    with pytest.raises(IdentityRejected) as caught:
        TrustDomain.parse(text)

    assert caught.value.reason == Reason.INVALID_SPIFFE_ID
    assert fragment in caught.value.message


def test_derive_service_account_id() -> None:
    spiffe_id = derive_from_service_account(
        trust_domain=TrustDomain("cluster.local"), namespace="shop", service_account="web.api"
    )

    assert str(spiffe_id) == "spiffe://cluster.local/ns/shop/sa/web.api"


@pytest.mark.parametrize(
    ("namespace", "service_account", "fragment"),
    [
        ("shop/sa/admin", "web", "contains '/'"),
        ("shop", "", "empty segment"),
        ("shop", "..", "'..' segment"),
        ("shop", "w%65b", "contains '%'"),
    ],
)
def test_derive_rejects_bad_names(namespace: str, service_account: str, fragment: str) -> None:
    with pytest.raises(IdentityRejected) as caught:
        derive_from_service_account(
            trust_domain=TrustDomain("cluster.local"),
            namespace=namespace,
            service_account=service_account,
        )

    assert caught.value.reason == Reason.INVALID_SPIFFE_ID
    assert fragment in caught.value.message


PATTERN_CASES = [
    ("spiffe://example.org/ns/shop/sa/web", "spiffe://example.org/ns/shop/sa/web", True),
    ("spiffe://example.org/ns/shop/sa/web", "spiffe://example.org/ns/shop/sa/web2", False),
    ("spiffe://example.org/ns/shop/sa/web", "spiffe://example.org/ns/shop/sa", False),
    ("spiffe://example.org/ns/shop/sa/web", "spiffe://example.com/ns/shop/sa/web", False),
    ("spiffe://example.org/ns/shop/", "spiffe://example.org/ns/shop/sa/web", True),
    ("spiffe://example.org/ns/shop/", "spiffe://example.org/ns/shop/sa", True),
    ("spiffe://example.org/ns/shop/", "spiffe://example.org/ns/shopping/sa/web", False),
    ("spiffe://example.org/ns/shop/", "spiffe://example.org/ns/shop", False),
    ("spiffe://example.org/ns/shop/", "spiffe://example.org/ns", False),
    ("spiffe://example.org/ns/shop/", "spiffe://example.com/ns/shop/sa/web", False),
    ("spiffe://example.org/", "spiffe://example.org/anything", True),
    ("spiffe://example.org/", "spiffe://example.org", False),
    ("spiffe://example.org", "spiffe://example.org", True),
    ("spiffe://example.org", "spiffe://example.org/x", False),
]


@pytest.mark.parametrize(("pattern", "candidate", "expected"), PATTERN_CASES)
def test_pattern_matches(pattern: str, candidate: str, expected: bool) -> None:
    parsed = SpiffeIdPattern.parse(pattern)

    assert parsed.matches(SpiffeId.parse(candidate)) is expected
    assert str(parsed) == pattern


@pytest.mark.parametrize(
    "text",
    ["spiffe://example.org/ns//", "spiffe://Example.org/ns/", "spiffe://example.org/../", "ns/"],
)
def test_pattern_parse_invalid(text: str) -> None:
    with pytest.raises(IdentityRejected) as caught:
        SpiffeIdPattern.parse(text)

    assert caught.value.reason == Reason.INVALID_SPIFFE_ID
