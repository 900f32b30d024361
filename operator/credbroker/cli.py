"""The ``credbroker`` command: run the operator, or debug a token with the same verifier."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence

from credbroker import __version__
from credbroker.settings import (
    DEFAULT_API_THREADS,
    DEFAULT_AUDIENCE,
    DEFAULT_EXCHANGE_BURST,
    DEFAULT_EXCHANGE_HOST,
    DEFAULT_EXCHANGE_REFILL_PER_SECOND,
    DEFAULT_LIVENESS_ENDPOINT,
    DEFAULT_METRICS_ADDRESS,
    DEFAULT_METRICS_PORT,
    DEFAULT_ORPHAN_MIN_AGE_SECONDS,
    DEFAULT_RETRY_DELAY_SECONDS,
    DEFAULT_SWEEP_INTERVAL_SECONDS,
    DEFAULT_WATCH_SERVER_TIMEOUT_SECONDS,
    OperatorSettings,
    operator_namespace_from_env,
)

logger = logging.getLogger(__name__)

MAX_PORT = 65535


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of every subcommand."""
    parser = argparse.ArgumentParser(
        prog="credbroker",
        description="Mint short-lived credentials for verified Kubernetes workloads.",
    )
    parser.add_argument("--version", action="version", version=f"credbroker {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run the operator")
    scope = run.add_mutually_exclusive_group()
    scope.add_argument(
        "--namespace",
        "-n",
        action="append",
        dest="namespaces",
        default=[],
        metavar="NAMESPACE",
        help="serve bindings only in this namespace (repeat for several); default: cluster-wide",
    )
    scope.add_argument(
        "--all-namespaces",
        "-A",
        action="store_true",
        help="serve bindings in every namespace (default)",
    )
    run.add_argument(
        "--operator-namespace",
        default=None,
        help="namespace of the operator and of the targets' admin Secrets "
        "(default: $CREDBROKER_NAMESPACE, then the pod's own namespace, then 'credbroker')",
    )
    run.add_argument(
        "--audience", default=DEFAULT_AUDIENCE, help="audience of the tokens requested for pods"
    )
    run.add_argument(
        "--issuer",
        default=None,
        help="expected token issuer (default: read from the API server's OIDC discovery document)",
    )
    run.add_argument(
        "--jwks-uri", default=None, help="JWKS URL (default: the API server's /openid/v1/jwks)"
    )
    run.add_argument(
        "--sweep-interval",
        type=float,
        default=DEFAULT_SWEEP_INTERVAL_SECONDS,
        metavar="SECONDS",
        help="seconds between sweeps of each target",
    )
    run.add_argument(
        "--orphan-min-age",
        type=float,
        default=DEFAULT_ORPHAN_MIN_AGE_SECONDS,
        metavar="SECONDS",
        help="minimum age in seconds before a credential that no Secret references is swept",
    )
    run.add_argument(
        "--retry-delay",
        type=float,
        default=DEFAULT_RETRY_DELAY_SECONDS,
        metavar="SECONDS",
        help="seconds before a failed binding or a transient pod rejection is retried",
    )
    run.add_argument(
        "--pod-label-selector",
        default=None,
        help="server-side label selector for the pods the operator watches, such as "
        "'credbroker.dev/enabled=true' (default: all pods)",
    )
    run.add_argument(
        "--liveness",
        default=DEFAULT_LIVENESS_ENDPOINT,
        metavar="URL",
        help="liveness endpoint served by kopf; empty to disable",
    )
    run.add_argument(
        "--metrics-port",
        type=_port_number,
        default=DEFAULT_METRICS_PORT,
        metavar="PORT",
        help="TCP port for Prometheus metrics at /metrics; 0 disables "
        f"(default: {DEFAULT_METRICS_PORT})",
    )
    run.add_argument(
        "--metrics-address",
        default=DEFAULT_METRICS_ADDRESS,
        metavar="ADDRESS",
        help=f"IP address the metrics server listens on (default: {DEFAULT_METRICS_ADDRESS}, "
        "every interface)",
    )
    run.add_argument(
        "--api-threads",
        type=int,
        default=DEFAULT_API_THREADS,
        help="threads (and HTTP connections) for Kubernetes API calls",
    )
    run.add_argument(
        "--watch-timeout",
        type=float,
        default=DEFAULT_WATCH_SERVER_TIMEOUT_SECONDS,
        metavar="SECONDS",
        help="server-side timeout of each watch request",
    )
    run.add_argument(
        "--peering", default=None, metavar="NAME", help="kopf peering name for hot standby"
    )
    run.add_argument(
        "--exchange-port",
        type=int,
        default=0,
        metavar="PORT",
        help="serve the HTTPS exchange endpoint on this port; 0 (default) disables it",
    )
    run.add_argument(
        "--exchange-host", default=DEFAULT_EXCHANGE_HOST, help="address the exchange endpoint binds"
    )
    run.add_argument(
        "--exchange-tls-secret",
        default=None,
        metavar="NAME",
        help="Secret (tls.crt, tls.key) in the operator's namespace with the endpoint's "
        "certificate; default: a self-issued certificate, for tests only",
    )
    run.add_argument(
        "--exchange-burst",
        type=int,
        default=DEFAULT_EXCHANGE_BURST,
        help="exchange requests one identity may make at once before it is rate limited",
    )
    run.add_argument(
        "--exchange-rate",
        type=float,
        default=DEFAULT_EXCHANGE_REFILL_PER_SECOND,
        metavar="PER_SECOND",
        help="exchange requests per second one identity may make after its burst",
    )
    run.add_argument(
        "--priority",
        type=int,
        default=0,
        help="peering priority of this replica: the live replica with the highest priority "
        "is active; only used with --peering (default: 0)",
    )
    run.add_argument(
        "--log-format", choices=["plain", "full", "json"], default="full", help="log line format"
    )
    run.add_argument("--verbose", "-v", action="store_true", help="log debug messages")

    _show_defaults(run)

    verify = commands.add_parser(
        "verify-token", help="verify a projected service-account token as the operator would"
    )
    from credbroker.identity import verify_command

    verify_command.add_arguments(verify)

    from credbroker.spiffe import commands as spiffe_commands

    svid = commands.add_parser("verify-svid", help="verify an X.509-SVID against a SPIFFE bundle")
    spiffe_commands.add_verify_svid_arguments(svid)
    jwt_svid = commands.add_parser(
        "verify-jwt-svid", help="verify a JWT-SVID against a SPIFFE bundle"
    )
    spiffe_commands.add_verify_jwt_svid_arguments(jwt_svid)
    return parser


def _port_number(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid port {text!r}: expected a number") from None
    if not 0 <= port <= MAX_PORT:
        raise argparse.ArgumentTypeError(f"invalid port {port}: expected 0 to {MAX_PORT}")
    return port


def _show_defaults(parser: argparse.ArgumentParser) -> None:
    """Append ``(default: ...)`` to each option's help unless the help already names one."""
    for action in parser._actions:
        if action.help in (None, argparse.SUPPRESS) or "default" in str(action.help):
            continue
        if action.default in (None, False, [], argparse.SUPPRESS):
            continue
        action.help = f"{action.help} (default: %(default)s)"


def settings_from_args(args: argparse.Namespace) -> OperatorSettings:
    """Turn the ``run`` arguments into operator settings."""
    return OperatorSettings(
        namespace=args.operator_namespace or operator_namespace_from_env(),
        audience=args.audience,
        watch_namespaces=tuple(args.namespaces),
        issuer=args.issuer,
        jwks_uri=args.jwks_uri,
        sweep_interval_seconds=args.sweep_interval,
        orphan_min_age_seconds=args.orphan_min_age,
        retry_delay_seconds=args.retry_delay,
        pod_label_selector=args.pod_label_selector,
        liveness_endpoint=args.liveness or None,
        metrics_port=args.metrics_port or None,
        metrics_address=args.metrics_address,
        exchange_port=args.exchange_port or None,
        exchange_host=args.exchange_host,
        exchange_tls_secret=args.exchange_tls_secret,
        exchange_burst=args.exchange_burst,
        exchange_refill_per_second=args.exchange_rate,
        api_threads=max(1, args.api_threads) if args.api_threads else DEFAULT_API_THREADS,
        watch_server_timeout_seconds=args.watch_timeout,
        watch_client_timeout_seconds=args.watch_timeout + 30,
        peering_name=args.peering,
        priority=args.priority,
    )


def run_operator(settings: OperatorSettings, *, log_format: str, verbose: bool) -> int:
    """Run the operator until it is stopped by a signal."""
    import kopf

    from credbroker import handlers

    kopf.configure(verbose=verbose, log_format=kopf.LogFormat[log_format.upper()])
    if not verbose:
        # kopf logs every pod event handler's success at INFO; that is one
        # line per pod change in the cluster, so keep only its warnings.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    registry = kopf.OperatorRegistry()
    handlers.register(registry, settings)
    logger.info("Starting credbroker %s", __version__)
    asyncio.run(
        kopf.operator(
            registry=registry,
            clusterwide=settings.clusterwide,
            namespaces=list(settings.watch_namespaces),
            liveness_endpoint=settings.liveness_endpoint,
            standalone=settings.peering_name is None,
            peering_name=settings.peering_name,
            priority=settings.priority,
        )
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``credbroker`` console script."""
    args = build_parser().parse_args(argv)
    if args.command == "run":
        return run_operator(
            settings_from_args(args), log_format=args.log_format, verbose=args.verbose
        )
    if args.command == "verify-token":
        from credbroker.identity import verify_command

        return asyncio.run(verify_command.run(args))
    if args.command in ("verify-svid", "verify-jwt-svid"):
        from credbroker.spiffe import commands as spiffe_commands

        if args.command == "verify-svid":
            return asyncio.run(spiffe_commands.run_verify_svid(args))
        return asyncio.run(spiffe_commands.run_verify_jwt_svid(args))
    return 2


if __name__ == "__main__":
    sys.exit(main())
