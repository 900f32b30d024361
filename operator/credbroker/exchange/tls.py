"""TLS for the exchange endpoint: the server's certificate and the client CAs it accepts.

The context requests a client certificate without requiring one
(``CERT_OPTIONAL``), because two of the three proofs travel in the
``Authorization`` header. OpenSSL verifies a presented client certificate
during the handshake against the CAs added by ``ServerTls.trust_bundle``.
The application then verifies the leaf again, as an X.509-SVID, against the
bundle of the binding named in the request.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import ssl
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from credbroker.spiffe.bundle import Bundle

logger = logging.getLogger(__name__)

SELF_ISSUED_LIFETIME = timedelta(days=1)
SELF_ISSUED_BACKDATE = timedelta(minutes=5)


@dataclass(frozen=True, kw_only=True)
class CertificatePair:
    """A PEM certificate chain and its private key. ``key_pem`` is excluded from ``repr``."""

    cert_pem: bytes
    key_pem: bytes = field(repr=False)


@dataclass(frozen=True, kw_only=True)
class SelfIssued:
    """A server certificate and the in-memory CA that signed it."""

    ca_pem: bytes
    pair: CertificatePair


def issue_self_signed(hostnames: tuple[str, ...]) -> SelfIssued:
    """Create a CA and a server certificate for ``hostnames`` (DNS names or IP addresses)."""
    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "credbroker exchange test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - SELF_ISSUED_BACKDATE)
        .not_valid_after(now + SELF_ISSUED_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_ca_key_usage(), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )

    server_key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = []
    for hostname in hostnames:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(hostname)))
        except ValueError:
            names.append(x509.DNSName(hostname))
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostnames[0])]))
        .issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - SELF_ISSUED_BACKDATE)
        .not_valid_after(now + SELF_ISSUED_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    key_pem = server_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return SelfIssued(
        ca_pem=ca_cert.public_bytes(serialization.Encoding.PEM),
        pair=CertificatePair(
            cert_pem=server_cert.public_bytes(serialization.Encoding.PEM), key_pem=key_pem
        ),
    )


class ServerTls:
    """The server's ``ssl.SSLContext``, whose certificate and client CAs change while it runs."""

    def __init__(self) -> None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.verify_mode = ssl.CERT_OPTIONAL
        self.context = context
        self._trusted: set[bytes] = set()

    def load_pair(self, pair: CertificatePair) -> None:
        """Use ``pair`` for new connections. Raises ``ssl.SSLError`` when they do not match.

        ``ssl`` reads certificates and keys only from files, so the pair is
        written to a private temporary directory and removed right after.
        """
        with tempfile.TemporaryDirectory(prefix="credbroker-tls-") as directory:
            os.chmod(directory, 0o700)
            cert_path = Path(directory) / "tls.crt"
            key_path = Path(directory) / "tls.key"
            cert_path.write_bytes(pair.cert_pem)
            key_path.touch(mode=0o600)
            key_path.write_bytes(pair.key_pem)
            self.context.load_cert_chain(certfile=cert_path, keyfile=key_path)

    def trust_bundle(self, bundle: Bundle) -> int:
        """Accept client certificates that chain to the bundle's X.509 authorities.

        Returns how many authorities were new. NOTE: OpenSSL cannot remove a
        CA from a live context, so an authority dropped from a bundle stays
        accepted in the handshake until restart; the X.509-SVID check after
        the handshake uses the current bundle and rejects it.
        """
        added = 0
        for authority in bundle.x509_authorities:
            der = authority.public_bytes(serialization.Encoding.DER)
            if der in self._trusted:
                continue
            self.context.load_verify_locations(cadata=der)
            self._trusted.add(der)
            added += 1
        if added:
            logger.info(
                "Accepting client certificates of trust domain %s: %d new authorities",
                bundle.trust_domain,
                added,
            )
        return added


def peer_certificate_der(transport: Any) -> bytes | None:
    """Return the DER leaf certificate that the TLS client presented, or None.

    NOTE: Python 3.11 exposes only the peer's leaf, not the intermediates it
    sent, so an X.509-SVID verifies here only when a bundle authority signed
    it directly.
    """
    if transport is None:
        return None
    ssl_object = transport.get_extra_info("ssl_object")
    if ssl_object is None:
        return None
    der = ssl_object.getpeercert(binary_form=True)
    return bytes(der) if der else None


def _ca_key_usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=True,
        encipher_only=False,
        decipher_only=False,
    )
