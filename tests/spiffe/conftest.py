"""Fixtures for the SPIFFE tests: test CAs, JWT-SVID signing keys and their bundles."""

from __future__ import annotations

import pytest
from spiffe_ca import JwtSigner, SpiffeCA, bundle_document

from credbroker.spiffe import bundle as bundle_loader
from credbroker.spiffe.bundle import Bundle

TRUST_DOMAIN = "example.org"


@pytest.fixture(scope="session")
def ca() -> SpiffeCA:
    return SpiffeCA.create(TRUST_DOMAIN)


@pytest.fixture(scope="session")
def rsa_ca() -> SpiffeCA:
    return SpiffeCA.create(TRUST_DOMAIN, key_type="rsa")


@pytest.fixture(scope="session")
def rogue_ca() -> SpiffeCA:
    """A CA that names the same trust domain but is in no bundle."""
    return SpiffeCA.create(TRUST_DOMAIN)


@pytest.fixture(scope="session")
def foreign_ca() -> SpiffeCA:
    return SpiffeCA.create("other.org")


@pytest.fixture(scope="session")
def ec_signer() -> JwtSigner:
    return JwtSigner.create("ec-1", "ES256")


@pytest.fixture(scope="session")
def rsa_signer() -> JwtSigner:
    return JwtSigner.create("rsa-1", "RS256")


@pytest.fixture(scope="session")
def bundle(ca: SpiffeCA, rsa_ca: SpiffeCA, ec_signer: JwtSigner, rsa_signer: JwtSigner) -> Bundle:
    """The bundle of example.org: both CAs and both JWT-SVID keys."""
    document = bundle_document(
        authorities=[ca.certificate, rsa_ca.certificate], signers=[ec_signer, rsa_signer]
    )
    return bundle_loader.from_json(document, trust_domain=TRUST_DOMAIN)
