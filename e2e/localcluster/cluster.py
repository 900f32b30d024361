"""Local cluster: etcd, kube-apiserver and kube-controller-manager on loopback ports.

There is no kubelet and no scheduler, so Pods stay Pending, but everything an
operator talks to is real: RBAC, admission, CRDs, watches, TokenRequest and
TokenReview, the service-account issuer's JWKS, and the controllers for
namespaces, service accounts, garbage collection and the root CA ConfigMap.

:class:`LocalCluster` starts and stops one such cluster, in a temporary
directory or, for ``python -m localcluster up``, in a state directory that
records its pids.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any

from . import binaries
from .access import ClusterAccess, ClusterError
from .kubeconfig import write_kubeconfig
from .pki import ClusterPKI, write_cluster_pki
from .probes import AdminConnection, http_get, loopback_ports
from .processes import (
    DETACHED_OWNER_PREFIX,
    ComponentProcess,
    executable_of,
    owner_is_alive,
    owner_token,
    start_component,
    stop_components,
    stop_orphaned_components,
)

logger = logging.getLogger(__name__)

DEFAULT_STATE_DIR = binaries.REPO_ROOT / ".cluster"
STATE_FILE_NAME = "cluster.json"
TEMPORARY_STATE_DIR_PREFIX = "credbroker-cluster-"
KEEP_STATE_ENV = "CREDBROKER_E2E_KEEP_STATE"

SERVICE_CLUSTER_IP_RANGE = "10.96.0.0/16"
KUBERNETES_SERVICE_IP = "10.96.0.1"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
ADMISSION_PLUGINS = (
    "NamespaceLifecycle",
    "LimitRanger",
    "ServiceAccount",
    "NodeRestriction",
    "DefaultStorageClass",
    "DefaultTolerationSeconds",
    "PodSecurity",
    "Priority",
    "MutatingAdmissionWebhook",
    "ValidatingAdmissionWebhook",
    "ValidatingAdmissionPolicy",
    "ResourceQuota",
)

ETCD_READY_TIMEOUT_SECONDS = 30.0
APISERVER_READY_TIMEOUT_SECONDS = 120.0
DEFAULT_SERVICE_ACCOUNT_TIMEOUT_SECONDS = 60.0
PROBE_INTERVAL_SECONDS = 0.2

# Entries that LocalCluster creates in a state directory. Stopping removes only
# these, so a --state-dir that points at a folder with other files keeps them.
_STATE_ENTRIES = (
    "pki",
    "etcd",
    "flexvolume",
    "logs",
    "kubectl-cache",
    "admin.kubeconfig",
    "kube-controller-manager.kubeconfig",
    STATE_FILE_NAME,
)


_live_clusters: list[LocalCluster] = []
_sigterm_handler_installed = False


def _stop_live_clusters() -> None:
    for cluster in list(_live_clusters):
        cluster.stop()


def _raise_keyboard_interrupt(signum: int, frame: FrameType | None) -> None:
    # Turns SIGTERM into the same unwinding as Ctrl-C, so pytest runs fixture
    # teardown and context managers call stop().
    raise KeyboardInterrupt(f"received signal {signal.Signals(signum).name}")


def _install_exit_handlers() -> None:
    global _sigterm_handler_installed  # noqa: PLW0603
    if _sigterm_handler_installed:
        return
    _sigterm_handler_installed = True
    atexit.register(_stop_live_clusters)
    in_main_thread = threading.current_thread() is threading.main_thread()
    if in_main_thread and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)


class LocalCluster(ClusterAccess):
    """A control plane that this process started, with its state directory and processes.

    Create one with :meth:`start` (or :func:`start_cluster`), or re-open a
    detached one with :meth:`from_state_dir`.
    """

    def __init__(
        self,
        *,
        state_dir: Path,
        owns_state_dir: bool,
        detached: bool,
        binary: binaries.CachedBinary,
        helm: binaries.CachedBinary,
    ) -> None:
        super().__init__(
            kubeconfig=state_dir / "admin.kubeconfig",
            server="",
            ca_file=state_dir / "pki" / "ca.crt",
            issuer=SERVICE_ACCOUNT_ISSUER,
            helm=helm.path,
            binary=binary.path,
        )
        self.state_dir = state_dir
        self.owns_state_dir = owns_state_dir
        self.detached = detached
        self.binary_from_cache = binary.from_cache
        self.helm_from_cache = helm.from_cache
        self.components: list[ComponentProcess] = []
        self.owner = f"{DETACHED_OWNER_PREFIX}{state_dir}" if detached else owner_token()
        self.startup_seconds = 0.0
        self._stopped = False
        self._stop_lock = threading.RLock()

    @classmethod
    def start(cls, *, state_dir: Path | None = None, detached: bool = False) -> LocalCluster:
        """Build or reuse the binaries, start the control plane, and return it when it is ready.

        Without ``state_dir`` the cluster lives in a new temporary directory.
        A ``detached`` cluster outlives this process: it is stopped only by
        :meth:`stop` on an object from :meth:`from_state_dir`. Otherwise the
        components stop when this process exits, even by SIGTERM or SIGKILL.
        """
        started = time.monotonic()
        remove_orphaned_clusters()
        binary = binaries.ensure_controlplane_binary()
        helm = binaries.ensure_helm()

        if state_dir is None:
            state_dir = Path(tempfile.mkdtemp(prefix=TEMPORARY_STATE_DIR_PREFIX))
            owns_state_dir = True
        else:
            state_dir = state_dir.expanduser().resolve()
            _clean_stale_state_dir(state_dir)
            state_dir.mkdir(parents=True, exist_ok=True)
            owns_state_dir = False

        cluster = cls(
            state_dir=state_dir,
            owns_state_dir=owns_state_dir,
            detached=detached,
            binary=binary,
            helm=helm,
        )
        if not detached:
            _install_exit_handlers()
            _live_clusters.append(cluster)
        try:
            cluster._write_state()
            cluster._launch()
        except BaseException:
            cluster.stop()
            raise
        cluster.startup_seconds = time.monotonic() - started
        logger.info(
            "control plane ready at %s in %.1f s (binary %s, helm %s)",
            cluster.server,
            cluster.startup_seconds,
            "cached" if cluster.binary_from_cache else "built",
            "cached" if cluster.helm_from_cache else "installed",
        )
        return cluster

    def _launch(self) -> None:
        pki = write_cluster_pki(self.state_dir / "pki", service_ip=KUBERNETES_SERVICE_IP)
        etcd_client_port, etcd_peer_port, apiserver_port = loopback_ports(3)
        self.server = f"https://127.0.0.1:{apiserver_port}"
        write_kubeconfig(
            self.kubeconfig,
            server=self.server,
            ca_file=pki.ca.cert,
            client_cert=pki.admin.cert,
            client_key=pki.admin.key,
            user="credbroker-e2e-admin",
        )
        controller_manager_kubeconfig = write_kubeconfig(
            self.state_dir / "kube-controller-manager.kubeconfig",
            server=self.server,
            ca_file=pki.ca.cert,
            client_cert=pki.controller_manager.cert,
            client_key=pki.controller_manager.key,
            user="system:kube-controller-manager",
        )

        etcd_url = f"http://127.0.0.1:{etcd_client_port}"
        etcd = self._start(
            "etcd",
            [
                f"--data-dir={self.state_dir / 'etcd'}",
                f"--listen-client-url={etcd_url}",
                f"--listen-peer-url=http://127.0.0.1:{etcd_peer_port}",
            ],
        )
        self._wait_until(
            etcd,
            lambda: http_get(f"{etcd_url}/health")[0] == 200,
            timeout_seconds=ETCD_READY_TIMEOUT_SECONDS,
            description=f"etcd to serve {etcd_url}/health",
        )

        apiserver = self._start(
            "kube-apiserver", self._apiserver_args(pki, etcd_url, apiserver_port)
        )
        admin = AdminConnection(port=apiserver_port, pki=pki)
        self._wait_until(
            apiserver,
            lambda: admin.get("/readyz")[0] == 200,
            timeout_seconds=APISERVER_READY_TIMEOUT_SECONDS,
            description=f"{self.server}/readyz to return 200",
        )

        controller_manager = self._start(
            "kube-controller-manager",
            self._controller_manager_args(pki, controller_manager_kubeconfig),
        )
        self._wait_until(
            controller_manager,
            lambda: admin.get("/api/v1/namespaces/default/serviceaccounts/default")[0] == 200,
            timeout_seconds=DEFAULT_SERVICE_ACCOUNT_TIMEOUT_SECONDS,
            description="the serviceaccount controller to create default/default",
        )
        self._write_state()

    def _apiserver_args(self, pki: ClusterPKI, etcd_url: str, port: int) -> list[str]:
        return [
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={port}",
            f"--etcd-servers={etcd_url}",
            f"--cert-dir={self.state_dir / 'pki'}",
            f"--tls-cert-file={pki.apiserver.cert}",
            f"--tls-private-key-file={pki.apiserver.key}",
            f"--client-ca-file={pki.ca.cert}",
            "--authorization-mode=Node,RBAC",
            f"--enable-admission-plugins={','.join(ADMISSION_PLUGINS)}",
            f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
            f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
            f"--service-account-jwks-uri={self.server}/openid/v1/jwks",
            f"--service-account-key-file={pki.service_account_public_key}",
            f"--service-account-signing-key-file={pki.service_account_private_key}",
            "--allow-privileged=true",
            # The endpoint reconciler would publish 127.0.0.1 as the endpoint of
            # the kubernetes Service, which Endpoints validation rejects.
            "--endpoint-reconciler-type=none",
            "--profiling=false",
        ]

    def _controller_manager_args(self, pki: ClusterPKI, kubeconfig: Path) -> list[str]:
        return [
            f"--kubeconfig={kubeconfig}",
            # No HTTPS endpoint: readiness shows in the objects the controllers create.
            "--secure-port=0",
            "--leader-elect=false",
            "--controllers=*",
            "--use-service-account-credentials=true",
            f"--service-account-private-key-file={pki.service_account_private_key}",
            f"--root-ca-file={pki.ca.cert}",
            f"--cluster-signing-cert-file={pki.ca.cert}",
            f"--cluster-signing-key-file={pki.ca.key}",
            f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
            "--cluster-name=credbroker-e2e",
            # The default, /usr/libexec/kubernetes/..., would be created on the host.
            f"--flex-volume-plugin-dir={self.state_dir / 'flexvolume'}",
        ]

    def _start(self, name: str, args: list[str]) -> ComponentProcess:
        component = start_component(
            name=name,
            argv=[str(self.binary), name, *args],
            log_file=self.state_dir / "logs" / f"{name}.log",
            owner=self.owner,
            die_with_parent=not self.detached
            and threading.current_thread() is threading.main_thread(),
        )
        self.components.append(component)
        self._write_state()
        return component

    def _wait_until(
        self,
        component: ComponentProcess,
        condition: Callable[[], bool],
        *,
        timeout_seconds: float,
        description: str,
    ) -> None:
        deadline = time.monotonic() + timeout_seconds
        while True:
            if condition():
                return
            for running in self.components:
                if not running.is_running():
                    raise ClusterError(
                        f"{running.name} exited while waiting for {description}; "
                        f"end of {running.log_file}:\n{running.log_tail()}"
                    )
            if time.monotonic() > deadline:
                raise ClusterError(
                    f"timed out after {timeout_seconds:.0f} s waiting for {description}; "
                    f"end of {component.log_file}:\n{component.log_tail()}"
                )
            time.sleep(PROBE_INTERVAL_SECONDS)

    def _write_state(self) -> None:
        # Written before the first component starts and after each one, so a
        # later start or `down` can find the processes of a half-started cluster.
        state = {
            "owner": self.owner,
            "server": self.server,
            "issuer": self.issuer,
            "kubeconfig": str(self.kubeconfig),
            "ca_file": str(self.ca_file),
            "binary": str(self.binary),
            "helm": str(self.helm),
            "components": [
                {"name": c.name, "pid": c.pid, "log_file": str(c.log_file)} for c in self.components
            ],
        }
        (self.state_dir / STATE_FILE_NAME).write_text(json.dumps(state, indent=2) + "\n")

    @classmethod
    def from_state_dir(cls, state_dir: Path) -> LocalCluster | None:
        """Re-open the cluster recorded in ``state_dir``, or return None if there is none."""
        state_dir = state_dir.expanduser().resolve()
        state_file = state_dir / STATE_FILE_NAME
        if not state_file.is_file():
            return None
        state: dict[str, Any] = json.loads(state_file.read_text())
        cluster = cls(
            state_dir=state_dir,
            owns_state_dir=False,
            detached=True,
            binary=binaries.CachedBinary(path=Path(state["binary"]), from_cache=True),
            helm=binaries.CachedBinary(path=Path(state["helm"]), from_cache=True),
        )
        cluster.owner = state.get("owner", cluster.owner)
        cluster.server = state["server"]
        cluster.components = [
            ComponentProcess(name=c["name"], pid=c["pid"], log_file=Path(c["log_file"]))
            for c in state["components"]
            # A recorded pid that now runs another program was reused: skip it.
            if (executable_of(c["pid"]) or "").startswith(state["binary"])
        ]
        cluster._stopped = False
        return cluster

    def kubectl_options(self) -> list[str]:
        """Return the kubectl flags that select this cluster, with a discovery cache in its state.

        kubectl's default cache, ~/.kube/cache, would gain a folder for every
        port that a local cluster ever used.
        """
        return [*super().kubectl_options(), f"--cache-dir={self.state_dir / 'kubectl-cache'}"]

    def env(self) -> dict[str, str]:
        """Return the environment for helm and other tools, with KUBECONFIG and KUBECACHEDIR set."""
        return {**super().env(), "KUBECACHEDIR": str(self.state_dir / "kubectl-cache")}

    def is_running(self) -> bool:
        """Return whether all three components run (it does not probe readiness)."""
        names = {c.name for c in self.components if c.is_running()}
        return names == {"etcd", "kube-apiserver", "kube-controller-manager"}

    def any_running(self) -> bool:
        """Return whether at least one component still runs."""
        return any(c.is_running() for c in self.components)

    def memory_rss_bytes(self) -> dict[str, int]:
        """Return the resident set size of each running component, in bytes."""
        usage: dict[str, int] = {}
        for component in self.components:
            with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                for line in Path(f"/proc/{component.pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        usage[component.name] = int(line.split()[1]) * 1024
        return usage

    def stop(self) -> None:
        """Stop every component and remove the state this cluster created. Safe to call twice.

        With ``CREDBROKER_E2E_KEEP_STATE=1`` the state directory, with the
        component logs, is kept for inspection.
        """
        with self._stop_lock:
            if self._stopped:
                return
            self._stopped = True
            if self in _live_clusters:
                _live_clusters.remove(self)
            # The controller manager and apiserver stop first, because
            # kube-apiserver can hang in its graceful shutdown once etcd is gone.
            clients = [c for c in self.components if c.name != "etcd"]
            stop_components(clients)
            stop_components([c for c in self.components if c.name == "etcd"])
            self._remove_state()
            logger.info("control plane %s stopped", self.server or self.state_dir)

    def _remove_state(self) -> None:
        if os.environ.get(KEEP_STATE_ENV) == "1":
            logger.info("%s=1: keeping %s", KEEP_STATE_ENV, self.state_dir)
            (self.state_dir / STATE_FILE_NAME).unlink(missing_ok=True)
            return
        for entry in _STATE_ENTRIES:
            path = self.state_dir / entry
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        if self.owns_state_dir:
            shutil.rmtree(self.state_dir, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                self.state_dir.rmdir()  # Fails, and keeps the folder, unless it is empty.


def _clean_stale_state_dir(state_dir: Path) -> None:
    """Remove a previous cluster's state from ``state_dir`` if none of its components run."""
    previous = LocalCluster.from_state_dir(state_dir)
    if previous is None:
        return
    if previous.any_running() and owner_is_alive(previous.owner):
        raise ClusterError(
            f"{state_dir} belongs to a running cluster ({previous.server}): stop it with "
            f"`python -m localcluster down --state-dir {state_dir}` or choose another directory"
        )
    logger.warning("removing stale cluster state from %s (owner %s)", state_dir, previous.owner)
    previous.stop()


def remove_orphaned_clusters() -> None:
    """Kill the components of launchers that have exited and remove their temporary state.

    :meth:`LocalCluster.start` calls this first. Clusters whose launcher still
    runs, and detached clusters, are left alone.
    """
    stop_orphaned_components(binaries.cache_root() / "controlplane")
    _remove_orphaned_temporary_state_dirs()


def _remove_orphaned_temporary_state_dirs() -> None:
    """Remove temporary state directories of exited launchers whose components are gone."""
    for state_dir in Path(tempfile.gettempdir()).glob(f"{TEMPORARY_STATE_DIR_PREFIX}*"):
        try:
            previous = LocalCluster.from_state_dir(state_dir)
        except (OSError, ValueError, KeyError) as error:
            logger.warning("skipping unreadable cluster state in %s: %s", state_dir, error)
            continue
        if previous is None or owner_is_alive(previous.owner) or previous.any_running():
            continue
        logger.warning(
            "removing %s, left by launcher %s that has exited", state_dir, previous.owner
        )
        shutil.rmtree(state_dir, ignore_errors=True)


@contextlib.contextmanager
def start_cluster(*, state_dir: Path | None = None) -> Iterator[LocalCluster]:
    """Start a :class:`LocalCluster` for the ``with`` block and stop it afterwards."""
    cluster = LocalCluster.start(state_dir=state_dir)
    try:
        yield cluster
    finally:
        cluster.stop()
