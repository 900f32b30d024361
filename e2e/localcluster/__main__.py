"""Command line for the local control plane: ``up``, ``down`` and ``kubectl``.

Run from the repository root with ``PYTHONPATH=e2e python -m localcluster ...``.
``up`` prints ``export KUBECONFIG=...`` on stdout and everything else on
stderr, so ``eval "$(PYTHONPATH=e2e python -m localcluster up)"`` works.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys
from pathlib import Path

from .access import ClusterError
from .binaries import BuildError
from .cluster import DEFAULT_STATE_DIR, LocalCluster

logger = logging.getLogger("localcluster")


def _up(state_dir: Path) -> int:
    existing = LocalCluster.from_state_dir(state_dir)
    if existing is not None:
        if existing.is_running():
            logger.info("a cluster is already running from %s at %s", state_dir, existing.server)
            print(f"export KUBECONFIG={shlex.quote(str(existing.kubeconfig))}")
            return 0
        logger.warning("stale cluster state in %s (some components exited): cleaning up", state_dir)
        existing.stop()

    try:
        cluster = LocalCluster.start(state_dir=state_dir, detached=True)
    except (ClusterError, BuildError) as error:
        logger.error("failed to start the control plane: %s", error)
        return 1
    logger.info("logs: %s", state_dir / "logs")
    logger.info("kubectl: %s kubectl (or: python -m localcluster kubectl ...)", cluster.binary)
    logger.info("stop it with: python -m localcluster down --state-dir %s", state_dir)
    print(f"export KUBECONFIG={shlex.quote(str(cluster.kubeconfig))}")
    return 0


def _down(state_dir: Path) -> int:
    cluster = LocalCluster.from_state_dir(state_dir)
    if cluster is None:
        logger.info("no cluster state in %s: nothing to stop", state_dir)
        return 0
    cluster.stop()
    return 0


def _kubectl(state_dir: Path, args: list[str]) -> int:
    cluster = LocalCluster.from_state_dir(state_dir)
    if cluster is None:
        logger.error(
            "no cluster state in %s: start one with `python -m localcluster up`", state_dir
        )
        return 1
    argv = [str(cluster.binary), "kubectl", *cluster.kubectl_options(), *args]
    os.execv(argv[0], argv)
    return 1  # Not reached: execv replaces this process.


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run ``up``, ``down`` or ``kubectl``."""
    parser = argparse.ArgumentParser(prog="python -m localcluster", description=__doc__)
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=DEFAULT_STATE_DIR,
        help=f"directory for certificates, etcd data, logs and pids (default: {DEFAULT_STATE_DIR})",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("up", help="start a detached control plane and print export KUBECONFIG=...")
    commands.add_parser("down", help="stop the control plane recorded in the state directory")
    kubectl = commands.add_parser("kubectl", help="run the bundled kubectl against the cluster")
    kubectl.add_argument("args", nargs=argparse.REMAINDER, help="arguments passed to kubectl")
    # Also accept --state-dir after the subcommand, as `up --state-dir DIR`.
    for subparser in (commands.choices["up"], commands.choices["down"]):
        subparser.add_argument("--state-dir", type=Path, default=argparse.SUPPRESS)
    options = parser.parse_args(argv)

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr
    )
    state_dir = options.state_dir.expanduser().resolve()
    if options.command == "up":
        return _up(state_dir)
    if options.command == "down":
        return _down(state_dir)
    return _kubectl(state_dir, options.args)


if __name__ == "__main__":
    sys.exit(main())
