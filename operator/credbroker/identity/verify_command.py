"""The ``credbroker verify-token`` debugging command: verify one service-account token.

It runs the operator's verifier against a token given on the command line or
on stdin, and prints the verified identity as JSON. Without the pod options it
checks everything except the pod binding, and its output states that.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from dataclasses import asdict
from datetime import datetime
from typing import Any

from kubernetes.client import Configuration
from kubernetes.config import ConfigException, load_kube_config

from credbroker.errors import IdentityRejected
from credbroker.identity.jwks import (
    HTTP_FETCH_TIMEOUT_SECONDS,
    KUBERNETES_JWKS_PATH,
    HTTPFetcher,
    JWKSCache,
    fetcher_from_kube_config,
)
from credbroker.identity.pods import DEFAULT_SERVICE_ACCOUNT, PodRef
from credbroker.identity.serviceaccount import (
    DEFAULT_LEEWAY_SECONDS,
    MAX_LEEWAY_SECONDS,
    ServiceAccountTokenVerifier,
)
from credbroker.tokenargs import add_token_argument, read_token

logger = logging.getLogger(__name__)

EXIT_REJECTED = 1
EXIT_USAGE = 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``verify-token`` options and the TOKEN argument to ``parser``."""
    parser.add_argument(
        "--issuer",
        required=True,
        help="expected iss claim: the API server's --service-account-issuer URL",
    )
    parser.add_argument("--audience", required=True, help="audience the token must contain")
    parser.add_argument(
        "--jwks-uri",
        help="URL of the JWKS (default: the jwks_uri from OIDC discovery)",
    )
    parser.add_argument(
        "--discovery-url",
        help="base URL of /.well-known/openid-configuration when it is not the issuer URL, "
        "for example the API server URL",
    )
    parser.add_argument("--ca-file", help="PEM file of CA certificates for the HTTPS fetches")
    parser.add_argument(
        "--kubeconfig",
        metavar="PATH",
        help="fetch discovery and JWKS through the API server of this kubeconfig's current "
        "context, with its CA and credentials. With it, --jwks-uri defaults to the API "
        "server's /openid/v1/jwks",
    )
    parser.add_argument(
        "--leeway-seconds",
        type=int,
        default=DEFAULT_LEEWAY_SECONDS,
        help=f"allowed clock skew in seconds, 0 to {MAX_LEEWAY_SECONDS} "
        f"(default {DEFAULT_LEEWAY_SECONDS})",
    )
    parser.add_argument(
        "--timeout-seconds",
        type=float,
        default=HTTP_FETCH_TIMEOUT_SECONDS,
        help=f"timeout of each discovery or JWKS request in seconds "
        f"(default {HTTP_FETCH_TIMEOUT_SECONDS:g})",
    )

    pod = parser.add_argument_group(
        "pod binding", "with --namespace, --pod and --pod-uid, the token must be bound to that pod"
    )
    pod.add_argument("--namespace", help="namespace of the pod")
    pod.add_argument("--pod", help="name of the pod")
    pod.add_argument("--pod-uid", help="metadata.uid of the pod")
    pod.add_argument(
        "--service-account",
        help=f"spec.serviceAccountName of the pod (default {DEFAULT_SERVICE_ACCOUNT!r})",
    )

    add_token_argument(parser, what="the token")


async def run(args: argparse.Namespace) -> int:
    """Verify the token, print the result and return the process exit code.

    Prints the identity as JSON on stdout and returns 0, or prints the reason
    and message on stderr and returns 1. Returns 2 for invalid options.
    """
    try:
        pod = _pod_from_args(args)
        token = await read_token(args.token)
        jwks = await _jwks_from_args(args)
        verifier = ServiceAccountTokenVerifier(
            issuer=args.issuer,
            audience=args.audience,
            jwks=jwks,
            leeway_seconds=args.leeway_seconds,
        )
    except ValueError as exc:
        print(f"verify-token: {exc}", file=sys.stderr)
        return EXIT_USAGE

    try:
        result = await _verify(verifier, token=token, pod=pod)
    except IdentityRejected as exc:
        print(f"rejected: {exc.reason.value}: {exc.message}", file=sys.stderr)
        return EXIT_REJECTED
    finally:
        del token

    print(json.dumps(result, indent=2, default=_json_default))
    return 0


async def _verify(
    verifier: ServiceAccountTokenVerifier, *, token: str, pod: PodRef | None
) -> dict[str, Any]:
    if pod is not None:
        identity = await verifier.verify(token, pod=pod)
        return {"pod_binding_checked": True, "identity": asdict(identity)}

    claims = await verifier.verify_claims(token)
    return {
        "pod_binding_checked": False,
        "note": "no pod given (--namespace, --pod, --pod-uid), so the pod-binding checks were "
        "skipped. Signature, issuer, audience, times and claims were verified",
        "claims": asdict(claims),
    }


async def _jwks_from_args(args: argparse.Namespace) -> JWKSCache:
    if args.kubeconfig is None:
        fetcher = HTTPFetcher(ca_file=args.ca_file, timeout_seconds=args.timeout_seconds)
        return JWKSCache(
            issuer=args.issuer,
            fetcher=fetcher,
            discovery_base_url=args.discovery_url,
            jwks_uri=args.jwks_uri,
        )

    configuration = Configuration()
    try:
        await asyncio.to_thread(
            load_kube_config,
            config_file=args.kubeconfig,
            client_configuration=configuration,
            persist_config=False,
        )
    except (ConfigException, OSError) as exc:
        raise ValueError(f"cannot load kubeconfig {args.kubeconfig}: {exc}") from exc
    if args.ca_file is not None:
        configuration.ssl_ca_cert = args.ca_file
    api_server_url = str(configuration.host).rstrip("/")
    return JWKSCache(
        issuer=args.issuer,
        fetcher=fetcher_from_kube_config(configuration, timeout_seconds=args.timeout_seconds),
        discovery_base_url=args.discovery_url or api_server_url,
        jwks_uri=args.jwks_uri or api_server_url + KUBERNETES_JWKS_PATH,
    )


def _pod_from_args(args: argparse.Namespace) -> PodRef | None:
    """Return the PodRef named by the pod options, None when none is given."""
    pod_options = {
        "--namespace": args.namespace,
        "--pod": args.pod,
        "--pod-uid": args.pod_uid,
    }
    if not any(pod_options.values()) and args.service_account is None:
        return None
    missing = [option for option, value in pod_options.items() if not value]
    if missing:
        raise ValueError(
            f"the pod check needs --namespace, --pod and --pod-uid, but {', '.join(missing)} "
            "is missing"
        )
    return PodRef(
        namespace=args.namespace,
        name=args.pod,
        uid=args.pod_uid,
        service_account=args.service_account or DEFAULT_SERVICE_ACCOUNT,
    )


def _json_default(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot serialize {type(value).__name__} to JSON")
