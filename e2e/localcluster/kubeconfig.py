"""Kubeconfig files: writing them for the local cluster and reading an existing one."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

CLUSTER_NAME = "credbroker-e2e"


class KubeconfigError(ValueError):
    """Raised when a kubeconfig lacks the server or CA that the e2e suite needs."""


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def write_kubeconfig(
    path: Path,
    *,
    server: str,
    ca_file: Path,
    client_cert: Path,
    client_key: Path,
    user: str,
) -> Path:
    """Write a self-contained kubeconfig (certificates inline) for one client certificate."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": CLUSTER_NAME,
                "cluster": {"server": server, "certificate-authority-data": _b64(ca_file)},
            }
        ],
        "users": [
            {
                "name": user,
                "user": {
                    "client-certificate-data": _b64(client_cert),
                    "client-key-data": _b64(client_key),
                },
            }
        ],
        "contexts": [{"name": user, "context": {"cluster": CLUSTER_NAME, "user": user}}],
        "current-context": user,
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o600)
    return path


@dataclass(frozen=True)
class KubeconfigCluster:
    """The server of a kubeconfig's current context and its CA, as PEM bytes or a file."""

    server: str
    ca_pem: bytes | None
    ca_file: Path | None


def _named(entries: list[dict[str, Any]], name: str, kind: str, path: Path) -> dict[str, Any]:
    for entry in entries or []:
        if entry.get("name") == name:
            return entry
    raise KubeconfigError(f"{path}: {kind} {name!r} named by the current context not found")


def read_current_cluster(path: Path) -> KubeconfigCluster:
    """Return the server and CA of the current context in the kubeconfig at ``path``."""
    config = yaml.safe_load(path.read_text()) or {}
    context_name = config.get("current-context")
    if not context_name:
        raise KubeconfigError(
            f"{path}: current-context is missing; set it with kubectl config use-context"
        )
    context = _named(config.get("contexts", []), context_name, "context", path)["context"]
    cluster = _named(config.get("clusters", []), context["cluster"], "cluster", path)["cluster"]

    server = cluster.get("server")
    if not server:
        raise KubeconfigError(f"{path}: cluster {context['cluster']!r} has no server")
    ca_data = cluster.get("certificate-authority-data")
    ca_path = cluster.get("certificate-authority")
    if ca_path is not None:
        ca_file = Path(ca_path)
        if not ca_file.is_absolute():
            # kubectl resolves relative paths against the kubeconfig's directory.
            ca_file = path.parent / ca_file
        return KubeconfigCluster(server=server, ca_pem=None, ca_file=ca_file)
    if ca_data is not None:
        return KubeconfigCluster(server=server, ca_pem=base64.b64decode(ca_data), ca_file=None)
    raise KubeconfigError(
        f"{path}: cluster {context['cluster']!r} has neither certificate-authority nor "
        "certificate-authority-data; the e2e suite needs the cluster CA to verify tokens and TLS"
    )
