"""Cluster access: the attributes and admin helpers that every e2e test uses.

:class:`ClusterAccess` is what the ``cluster`` fixture provides.
:class:`ExternalCluster` fills it in from the admin kubeconfig of a cluster
that already exists, such as kind, k3d or a real one.
:class:`~localcluster.cluster.LocalCluster` fills it in for the control plane
that it starts.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import subprocess
import tempfile
from pathlib import Path

from kubernetes import config as kubernetes_config
from kubernetes.client import ApiClient

from . import binaries
from .kubeconfig import read_current_cluster

logger = logging.getLogger(__name__)


class ClusterError(RuntimeError):
    """Raised when the control plane fails to start, or a state directory is unusable."""


class KubectlError(subprocess.CalledProcessError):
    """A failed kubectl call whose message includes kubectl's stderr."""

    def __str__(self) -> str:
        return f"{super().__str__()}\nstderr:\n{self.stderr}"


class ClusterAccess:
    """Connection details of a cluster and helpers to drive it as an admin.

    Attributes: ``kubeconfig`` (admin kubeconfig), ``server`` (https URL of
    the apiserver), ``ca_file`` (PEM of the CA that signs the serving
    certificate), ``issuer`` (service-account token issuer), ``helm`` (pinned
    helm binary) and ``binary`` (control-plane binary, used for kubectl).
    """

    def __init__(
        self,
        *,
        kubeconfig: Path,
        server: str,
        ca_file: Path,
        issuer: str,
        helm: Path,
        binary: Path,
    ) -> None:
        self.kubeconfig = kubeconfig
        self.server = server
        self.ca_file = ca_file
        self.issuer = issuer
        self.helm = helm
        self.binary = binary

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl from the control-plane binary against this cluster and capture its output.

        Raises :class:`KubectlError` on a non-zero exit when ``check`` is true.
        """
        command = [str(self.binary), "kubectl", *self.kubectl_options(), *args]
        result = subprocess.run(command, input=input, capture_output=True, text=True, check=False)
        if check and result.returncode != 0:
            raise KubectlError(result.returncode, command, result.stdout, result.stderr)
        return result

    def kubectl_options(self) -> list[str]:
        """Return the kubectl flags that select this cluster."""
        return [f"--kubeconfig={self.kubeconfig}"]

    def env(self) -> dict[str, str]:
        """Return this process's environment with KUBECONFIG set, for helm and other tools."""
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig)}

    def api_client(self) -> ApiClient:
        """Return a new admin ``kubernetes.client.ApiClient``, which the caller closes."""
        api_client: ApiClient = kubernetes_config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=str(self.kubeconfig)
        )
        return api_client

    def stop(self) -> None:
        """Release the cluster. The base class owns nothing, so it does nothing."""


class ExternalCluster(ClusterAccess):
    """A cluster that exists already, reached through an admin kubeconfig.

    ``stop`` leaves it running.
    """

    @classmethod
    def connect(cls, kubeconfig: Path) -> ExternalCluster:
        """Read ``kubeconfig``, then ask the cluster for its issuer with the cached kubectl."""
        kubeconfig = kubeconfig.expanduser().resolve()
        if not kubeconfig.is_file():
            raise ClusterError(f"kubeconfig {kubeconfig} not found")
        current = read_current_cluster(kubeconfig)
        if current.ca_file is not None:
            ca_file = current.ca_file
        else:
            handle, name = tempfile.mkstemp(prefix="credbroker-e2e-ca-", suffix=".crt")
            with os.fdopen(handle, "wb") as ca_out:
                ca_out.write(current.ca_pem or b"")
            ca_file = Path(name)
            atexit.register(ca_file.unlink, missing_ok=True)

        cluster = cls(
            kubeconfig=kubeconfig,
            server=current.server,
            ca_file=ca_file,
            issuer="",
            helm=binaries.ensure_helm().path,
            binary=binaries.ensure_controlplane_binary().path,
        )
        discovery = cluster.kubectl("get", "--raw", "/.well-known/openid-configuration")
        cluster.issuer = json.loads(discovery.stdout)["issuer"]
        logger.info("using existing cluster %s (issuer %s)", cluster.server, cluster.issuer)
        return cluster
