"""The ``credbroker verify-svid`` and ``verify-jwt-svid`` debugging commands.

Each verifies one SVID against a SPIFFE bundle file with the library's
verifier and prints the verified identity as JSON. A bundle file does not
name its trust domain, so without ``--trust-domain`` the bundle is taken to
belong to the SVID's own trust domain, and the output says that the trust
domain was not pinned.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from credbroker.errors import IdentityRejected
from credbroker.identity.serviceaccount import DEFAULT_LEEWAY_SECONDS, MAX_LEEWAY_SECONDS
from credbroker.spiffe import bundle as bundle_loader
from credbroker.spiffe.ids import TrustDomain
from credbroker.spiffe.jwtsvid import read_unverified_spiffe_id, verify_jwt_svid
from credbroker.spiffe.x509svid import (
    MAX_CHAIN_BYTES,
    load_certificate_chain,
    spiffe_id_from_certificate,
    verify_x509_svid,
)
from credbroker.timestamps import format_timestamp
from credbroker.tokenargs import add_token_argument, read_token

logger = logging.getLogger(__name__)

EXIT_REJECTED = 1
EXIT_USAGE = 2
_UNPINNED_NOTE = (
    "no --trust-domain given, so the bundle was taken to be the bundle of the SVID's own "
    "trust domain. Pass --trust-domain to require a trust domain"
)


def add_verify_svid_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``verify-svid`` options and the CERT argument to ``parser``."""
    _add_common_arguments(parser)
    parser.add_argument(
        "certificate",
        metavar="CERT",
        help="file with the X.509-SVID leaf and its intermediates, leaf first, in PEM or DER",
    )


def add_verify_jwt_svid_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``verify-jwt-svid`` options and the TOKEN argument to ``parser``."""
    _add_common_arguments(parser)
    parser.add_argument(
        "--audience", required=True, help="audience the JWT-SVID's aud claim must contain"
    )
    parser.add_argument(
        "--leeway-seconds",
        type=int,
        default=DEFAULT_LEEWAY_SECONDS,
        help=f"allowed clock skew in seconds, 0 to {MAX_LEEWAY_SECONDS} "
        f"(default {DEFAULT_LEEWAY_SECONDS})",
    )
    add_token_argument(parser, what="the JWT-SVID")


async def run_verify_svid(args: argparse.Namespace) -> int:
    """Verify the X.509-SVID, print the result and return the process exit code.

    Prints the identity as JSON on stdout and returns 0, or prints the reason
    and message on stderr and returns 1. Returns 2 for invalid options.
    """
    try:
        pinned = _trust_domain_from_args(args)
        data = await asyncio.to_thread(_read_limited_file, Path(args.certificate))
    except ValueError as exc:
        print(f"verify-svid: {exc}", file=sys.stderr)
        return EXIT_USAGE

    try:
        chain = load_certificate_chain(data)
        trust_domain = pinned or spiffe_id_from_certificate(chain[0]).trust_domain
        bundle = await asyncio.to_thread(
            bundle_loader.from_file, args.bundle, trust_domain=trust_domain
        )
        verified = verify_x509_svid(chain, bundles=bundle, trust_domain=pinned)
    except IdentityRejected as exc:
        return _print_rejection(exc)

    result: dict[str, Any] = {
        "spiffe_id": str(verified.spiffe_id),
        "trust_domain": str(verified.spiffe_id.trust_domain),
        "trust_domain_pinned": pinned is not None,
        "expires_at": verified.expires_at,
        "serial_number": format(verified.serial_number, "x"),
        "chain_subjects": [certificate.subject.rfc4514_string() for certificate in verified.chain],
    }
    if pinned is None:
        result["note"] = _UNPINNED_NOTE
    _print_json(result)
    return 0


async def run_verify_jwt_svid(args: argparse.Namespace) -> int:
    """Verify the JWT-SVID, print the result and return the process exit code.

    Prints the identity as JSON on stdout and returns 0, or prints the reason
    and message on stderr and returns 1. Returns 2 for invalid options.
    """
    try:
        pinned = _trust_domain_from_args(args)
        token = await read_token(args.token)
    except ValueError as exc:
        print(f"verify-jwt-svid: {exc}", file=sys.stderr)
        return EXIT_USAGE

    try:
        trust_domain = pinned or read_unverified_spiffe_id(token).trust_domain
        bundle = await asyncio.to_thread(
            bundle_loader.from_file, args.bundle, trust_domain=trust_domain
        )
        verified = verify_jwt_svid(
            token,
            bundles=bundle,
            audience=args.audience,
            trust_domain=pinned,
            leeway_seconds=args.leeway_seconds,
        )
    except IdentityRejected as exc:
        return _print_rejection(exc)
    except ValueError as exc:
        print(f"verify-jwt-svid: {exc}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        del token

    result: dict[str, Any] = {
        "spiffe_id": str(verified.spiffe_id),
        "trust_domain": str(verified.spiffe_id.trust_domain),
        "trust_domain_pinned": pinned is not None,
        "audiences": list(verified.audiences),
        "expires_at": verified.expires_at,
        "issued_at": verified.issued_at,
        "key_id": verified.key_id,
    }
    if pinned is None:
        result["note"] = _UNPINNED_NOTE
    _print_json(result)
    return 0


def _add_common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--bundle",
        required=True,
        metavar="FILE",
        help="SPIFFE bundle (JWK Set JSON) of the SVID's trust domain",
    )
    parser.add_argument(
        "--trust-domain",
        metavar="TD",
        help="trust domain of the bundle, which the SVID must belong to, such as example.org "
        "(default: the SVID's own trust domain)",
    )


def _trust_domain_from_args(args: argparse.Namespace) -> TrustDomain | None:
    if args.trust_domain is None:
        return None
    try:
        return TrustDomain.parse(args.trust_domain)
    except IdentityRejected as exc:
        raise ValueError(f"--trust-domain: {exc.message}") from exc


def _read_limited_file(path: Path) -> bytes:
    try:
        with path.open("rb") as file:
            return file.read(MAX_CHAIN_BYTES + 1)
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from exc


def _print_rejection(exc: IdentityRejected) -> int:
    print(f"rejected: {exc.reason.value}: {exc.message}", file=sys.stderr)
    return EXIT_REJECTED


def _print_json(result: dict[str, Any]) -> None:
    print(json.dumps(result, indent=2, default=_json_default))


def _json_default(value: object) -> str:
    if isinstance(value, datetime):
        return format_timestamp(value)
    raise TypeError(f"cannot serialize {type(value).__name__} to JSON")
