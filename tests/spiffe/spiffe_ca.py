"""A test SPIFFE CA: root and intermediate CAs, X.509-SVIDs, JWT-SVID keys and bundles.

Everything is made in memory with ``cryptography`` and PyJWT. ``issue`` takes
overrides for each field the verifier checks, so a test can build one broken
SVID at a time.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

SVID_LIFETIME = timedelta(hours=1)
CA_LIFETIME = timedelta(days=30)
DEFAULT_EKU = (ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH)


def new_key(key_type: str = "ec") -> PrivateKey:
    if key_type == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return ec.generate_private_key(ec.SECP256R1())


def key_usage(
    *,
    digital_signature: bool = False,
    key_encipherment: bool = False,
    key_cert_sign: bool = False,
    crl_sign: bool = False,
) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=key_encipherment,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=key_cert_sign,
        crl_sign=crl_sign,
        encipher_only=False,
        decipher_only=False,
    )


LEAF_KEY_USAGE = key_usage(digital_signature=True)
CA_KEY_USAGE = key_usage(key_cert_sign=True, crl_sign=True)


@dataclass
class SpiffeCA:
    """A signing certificate and key of one trust domain."""

    trust_domain: str
    key: PrivateKey
    certificate: x509.Certificate
    parents: list[x509.Certificate] = field(default_factory=list)

    @classmethod
    def create(cls, trust_domain: str, *, key_type: str = "ec") -> SpiffeCA:
        """Create a self-signed root CA whose own SVID is ``spiffe://<trust domain>``."""
        key = new_key(key_type)
        name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, trust_domain)])
        now = datetime.now(UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + CA_LIFETIME)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(CA_KEY_USAGE, critical=True)
            .add_extension(
                x509.SubjectAlternativeName(
                    [x509.UniformResourceIdentifier(f"spiffe://{trust_domain}")]
                ),
                critical=False,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
            .sign(key, hashes.SHA256())
        )
        return cls(trust_domain=trust_domain, key=key, certificate=certificate)

    def intermediate(self, *, key_type: str = "ec") -> SpiffeCA:
        """Create an intermediate CA signed by this CA."""
        key = new_key(key_type)
        certificate, _ = self.issue(
            uris=[f"spiffe://{self.trust_domain}"],
            key=key,
            ca=True,
            usage=CA_KEY_USAGE,
            eku=None,
            subject=f"intermediate of {self.trust_domain}",
            lifetime=CA_LIFETIME,
        )
        return SpiffeCA(
            trust_domain=self.trust_domain,
            key=key,
            certificate=certificate,
            parents=[self.certificate, *self.parents],
        )

    def issue(
        self,
        *,
        uris: Sequence[str] | None = None,
        path: str = "/ns/shop/sa/web",
        key: PrivateKey | None = None,
        key_type: str = "ec",
        ca: bool = False,
        usage: x509.KeyUsage | None = LEAF_KEY_USAGE,
        usage_critical: bool = True,
        eku: Sequence[x509.ObjectIdentifier] | None = DEFAULT_EKU,
        subject: str = "workload",
        not_before: datetime | None = None,
        lifetime: timedelta = SVID_LIFETIME,
    ) -> tuple[x509.Certificate, PrivateKey]:
        """Issue a certificate with the given URI SANs (default: one SPIFFE ID with ``path``)."""
        key = key if key is not None else new_key(key_type)
        start = not_before if not_before is not None else datetime.now(UTC) - timedelta(minutes=1)
        uri_values = uris if uris is not None else [f"spiffe://{self.trust_domain}{path}"]
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, subject)]))
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(start + lifetime)
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
        )
        if usage is not None:
            builder = builder.add_extension(usage, critical=usage_critical)
        if uri_values:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(
                    [x509.UniformResourceIdentifier(uri) for uri in uri_values]
                ),
                critical=False,
            )
        if eku:
            builder = builder.add_extension(x509.ExtendedKeyUsage(list(eku)), critical=False)
        return builder.sign(self.key, hashes.SHA256()), key

    def chain_pem(self, leaf: x509.Certificate) -> bytes:
        """Return the leaf and this CA's intermediates (not the root) as PEM, leaf first."""
        chain = [leaf]
        if self.parents:
            chain.append(self.certificate)
            chain.extend(self.parents[:-1])
        return b"".join(
            certificate.public_bytes(serialization.Encoding.PEM) for certificate in chain
        )

    @property
    def root(self) -> x509.Certificate:
        return self.parents[-1] if self.parents else self.certificate


@dataclass
class JwtSigner:
    """A JWT-SVID signing key with the ``kid`` and ``alg`` it is published under."""

    kid: str
    alg: str
    private_key: PrivateKey

    @classmethod
    def create(cls, kid: str, alg: str = "ES256") -> JwtSigner:
        if alg.startswith("ES"):
            curve = {"ES256": ec.SECP256R1(), "ES384": ec.SECP384R1(), "ES512": ec.SECP521R1()}
            return cls(kid=kid, alg=alg, private_key=ec.generate_private_key(curve[alg]))
        return cls(kid=kid, alg=alg, private_key=new_key("rsa"))

    def public_jwk(self) -> dict[str, Any]:
        public_key = self.private_key.public_key()
        if isinstance(public_key, rsa.RSAPublicKey):
            jwk = RSAAlgorithm.to_jwk(public_key, as_dict=True)
        else:
            jwk = ECAlgorithm.to_jwk(public_key, as_dict=True)
        return {**jwk, "kid": self.kid, "use": "jwt-svid"}

    def mint(
        self,
        *,
        sub: str | None = "spiffe://example.org/ns/shop/sa/web",
        aud: str | list[str] | None = "credbroker",
        lifetime: timedelta | None = timedelta(minutes=5),
        headers: dict[str, Any] | None = None,
        alg: str | None = None,
        kid: str | None = None,
        extra_claims: dict[str, Any] | None = None,
    ) -> str:
        """Sign a JWT-SVID. ``None`` leaves a claim out."""
        now = datetime.now(UTC)
        claims: dict[str, Any] = {"iat": int(now.timestamp())}
        if sub is not None:
            claims["sub"] = sub
        if aud is not None:
            claims["aud"] = aud
        if lifetime is not None:
            claims["exp"] = int((now + lifetime).timestamp())
        claims.update(extra_claims or {})
        return jwt.encode(
            claims,
            self.private_key,
            algorithm=alg or self.alg,
            headers={"kid": kid or self.kid, **(headers or {})},
        )


def x509_authority_jwk(certificate: x509.Certificate) -> dict[str, Any]:
    """Return the x509-svid JWK of a CA certificate."""
    public_key = certificate.public_key()
    if isinstance(public_key, rsa.RSAPublicKey):
        jwk = RSAAlgorithm.to_jwk(public_key, as_dict=True)
    else:
        assert isinstance(public_key, ec.EllipticCurvePublicKey)
        jwk = ECAlgorithm.to_jwk(public_key, as_dict=True)
    der = certificate.public_bytes(serialization.Encoding.DER)
    return {**jwk, "use": "x509-svid", "x5c": [base64.b64encode(der).decode("ascii")]}


def bundle_document(
    *,
    authorities: Sequence[x509.Certificate] = (),
    signers: Sequence[JwtSigner] = (),
    sequence: int | None = 1,
    refresh_hint: int | None = 300,
) -> dict[str, Any]:
    """Return a SPIFFE bundle document with these X.509 and JWT authorities."""
    document: dict[str, Any] = {
        "keys": [x509_authority_jwk(certificate) for certificate in authorities]
        + [signer.public_jwk() for signer in signers]
    }
    if sequence is not None:
        document["spiffe_sequence"] = sequence
    if refresh_hint is not None:
        document["spiffe_refresh_hint"] = refresh_hint
    return document


def write_bundle(path: Path, document: dict[str, Any]) -> Path:
    path.write_text(json.dumps(document))
    return path
