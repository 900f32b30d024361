"""Cluster PKI: the CA, serving and client certificates and the service-account keys.

Everything is generated fresh for each cluster with ``cryptography`` and written
as PEM files into the cluster's state directory. Certificates and the CA use
ECDSA P-256 because it is fast to generate. The service-account signing key is
RSA 2048, the kind kubeadm creates, so tokens are RS256 as on most real clusters.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CERTIFICATE_VALIDITY_DAYS = 30
SERVICE_ACCOUNT_KEY_BITS = 2048

SigningKey = ec.EllipticCurvePrivateKey


@dataclass(frozen=True)
class CertificatePair:
    """PEM paths of one certificate and its private key."""

    cert: Path
    key: Path


@dataclass(frozen=True)
class ClusterPKI:
    """Paths of every PEM file that the control plane and its clients use."""

    ca: CertificatePair
    apiserver: CertificatePair
    admin: CertificatePair
    controller_manager: CertificatePair
    service_account_private_key: Path
    service_account_public_key: Path


def _new_key() -> SigningKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(path: Path, key: SigningKey | rsa.RSAPrivateKey) -> None:
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path.write_bytes(pem)
    path.chmod(0o600)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _name(common_name: str, organization: str | None = None) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization is not None:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(attributes)


def _builder(
    subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey
) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        # Backdated so that small clock differences do not reject a new certificate.
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=CERTIFICATE_VALIDITY_DAYS))
    )


def _issue_leaf(
    *,
    ca_key: SigningKey,
    ca_cert: x509.Certificate,
    subject: x509.Name,
    usage: x509.ObjectIdentifier,
    sans: list[x509.GeneralName] | None = None,
) -> tuple[SigningKey, x509.Certificate]:
    key = _new_key()
    builder = (
        _builder(subject, ca_cert.subject, key.public_key())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return key, builder.sign(ca_key, hashes.SHA256())


def _new_ca() -> tuple[SigningKey, x509.Certificate]:
    key = _new_key()
    subject = _name("credbroker-e2e-ca")
    cert = (
        _builder(subject, subject, key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _apiserver_sans(service_ip: str) -> list[x509.GeneralName]:
    dns_names = [
        "localhost",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
    ]
    return [
        *(x509.DNSName(name) for name in dns_names),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address(service_ip)),
    ]


def write_cluster_pki(directory: Path, *, service_ip: str) -> ClusterPKI:
    """Generate the whole PKI into ``directory`` and return the file paths.

    ``service_ip`` is the ClusterIP of the ``kubernetes`` Service, which the
    apiserver serving certificate names besides 127.0.0.1 and the DNS names.
    """
    directory.mkdir(parents=True, exist_ok=True)

    def pair(name: str, key: SigningKey, cert: x509.Certificate) -> CertificatePair:
        files = CertificatePair(cert=directory / f"{name}.crt", key=directory / f"{name}.key")
        _write_key(files.key, key)
        _write_cert(files.cert, cert)
        return files

    ca_key, ca_cert = _new_ca()
    ca = pair("ca", ca_key, ca_cert)

    apiserver = pair(
        "apiserver",
        *_issue_leaf(
            ca_key=ca_key,
            ca_cert=ca_cert,
            subject=_name("kube-apiserver"),
            usage=ExtendedKeyUsageOID.SERVER_AUTH,
            sans=_apiserver_sans(service_ip),
        ),
    )
    admin = pair(
        "admin",
        *_issue_leaf(
            ca_key=ca_key,
            ca_cert=ca_cert,
            subject=_name("credbroker-e2e-admin", "system:masters"),
            usage=ExtendedKeyUsageOID.CLIENT_AUTH,
        ),
    )
    controller_manager = pair(
        "kube-controller-manager",
        *_issue_leaf(
            ca_key=ca_key,
            ca_cert=ca_cert,
            subject=_name("system:kube-controller-manager"),
            usage=ExtendedKeyUsageOID.CLIENT_AUTH,
        ),
    )

    service_account_key = rsa.generate_private_key(
        public_exponent=65537, key_size=SERVICE_ACCOUNT_KEY_BITS
    )
    service_account_private_key = directory / "sa.key"
    service_account_public_key = directory / "sa.pub"
    _write_key(service_account_private_key, service_account_key)
    service_account_public_key.write_bytes(
        service_account_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )

    return ClusterPKI(
        ca=ca,
        apiserver=apiserver,
        admin=admin,
        controller_manager=controller_manager,
        service_account_private_key=service_account_private_key,
        service_account_public_key=service_account_public_key,
    )
