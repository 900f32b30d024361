"""Local Kubernetes control plane for credbroker's end-to-end tests, demo and benchmarks.

Import it with ``e2e/`` on ``sys.path``: pytest does that through
``e2e/conftest.py``, and scripts run with ``PYTHONPATH=e2e`` from the repository
root (for example ``PYTHONPATH=e2e python -m localcluster up``).
"""

from .access import ClusterAccess, ClusterError, ExternalCluster, KubectlError
from .binaries import BuildError, CachedBinary, ensure_controlplane_binary, ensure_helm
from .cluster import LocalCluster, remove_orphaned_clusters, start_cluster
from .waiting import wait_until

__all__ = [
    "BuildError",
    "CachedBinary",
    "ClusterAccess",
    "ClusterError",
    "ExternalCluster",
    "KubectlError",
    "LocalCluster",
    "ensure_controlplane_binary",
    "ensure_helm",
    "remove_orphaned_clusters",
    "start_cluster",
    "wait_until",
]
