"""Local cluster: etcd, kube-apiserver and kube-controller-manager on loopback ports.

There is no kubelet and no scheduler, so Pods stay Pending, but everything an
operator talks to is real: RBAC, admission, CRDs, watches, TokenRequest and
TokenReview, the service-account issuer's JWKS, and the controllers for
namespaces, service accounts, garbage collection and the root CA ConfigMap.

:class:`LocalCluster` starts and stops one such cluster. :class:`ExternalCluster`
offers the same attributes and methods for a cluster that already exists, such
as kind, k3d or a real one, reached through an admin kubeconfig.
"""

from __future__ import annotations

import atexit
import contextlib
import http.client
import json
import logging
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any

from kubernetes import config as kubernetes_config
from kubernetes.client import ApiClient

from . import binaries
from .kubeconfig import read_current_cluster, write_kubeconfig
from .pki import ClusterPKI, write_cluster_pki
from .processes import (
    DETACHED_OWNER_PREFIX,
    ComponentProcess,
    executable_of,
    owner_token,
    start_component,
    stop_components,
    stop_orphaned_components,
)

logger = logging.getLogger(__name__)

DEFAULT_STATE_DIR = binaries.REPO_ROOT / ".cluster"
STATE_FILE_NAME = "cluster.json"
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
PROBE_TIMEOUT_SECONDS = 5.0
PROBE_INTERVAL_SECONDS = 0.2

# Entries that LocalCluster creates in a state directory. Stopping removes only
# these, so a --state-dir that points at a folder with other files keeps them.
_STATE_ENTRIES = (
    "pki",
    "etcd",
    "flexvolume",
    "logs",
    "admin.kubeconfig",
    "kube-controller-manager.kubeconfig",
    STATE_FILE_NAME,
)


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
        command = [str(self.binary), "kubectl", f"--kubeconfig={self.kubeconfig}", *args]
        result = subprocess.run(command, input=input, capture_output=True, text=True, check=False)
        if check and result.returncode != 0:
            raise KubectlError(result.returncode, command, result.stdout, result.stderr)
        return result

    def api_client(self) -> ApiClient:
        """Return a new ``kubernetes.client.ApiClient`` with admin rights; the caller closes it."""
        return kubernetes_config.new_client_from_config(config_file=str(self.kubeconfig))

    def stop(self) -> None:
        """Release the cluster; the base class owns nothing and does nothing."""


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


def _free_loopback_port() -> int:
    # NOTE: the port is free when this returns, but another process can take
    # it before the component binds it. The component then fails to start and
    # LocalCluster.start reports its log.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _loopback_ports(count: int) -> list[int]:
    ports: set[int] = set()
    while len(ports) < count:
        ports.add(_free_loopback_port())
    return sorted(ports)


class _AdminConnection:
    """HTTPS GETs to the apiserver with the admin client certificate, for readiness probes."""

    def __init__(self, *, port: int, pki: ClusterPKI) -> None:
        self._port = port
        self._context = ssl.create_default_context(cafile=str(pki.ca.cert))
        self._context.load_cert_chain(str(pki.admin.cert), str(pki.admin.key))

    def get(self, path: str) -> tuple[int, bytes]:
        """Return the status and body of GET ``path``, or status 0 if the connection failed."""
        connection = http.client.HTTPSConnection(
            "127.0.0.1", self._port, context=self._context, timeout=PROBE_TIMEOUT_SECONDS
        )
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            return response.status, response.read()
        except (OSError, http.client.HTTPException):
            return 0, b""
        finally:
            connection.close()


def _http_get(url: str) -> tuple[int, bytes]:
    host_port = url.removeprefix("http://").split("/", 1)[0]
    host, _, port = host_port.partition(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=PROBE_TIMEOUT_SECONDS)
    try:
        connection.request("GET", "/" + url.removeprefix("http://").split("/", 1)[1])
        response = connection.getresponse()
        return response.status, response.read()
    except (OSError, http.client.HTTPException):
        return 0, b""
    finally:
        connection.close()


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
        stop_orphaned_components(binaries.cache_root() / "controlplane")
        binary = binaries.ensure_controlplane_binary()
        helm = binaries.ensure_helm()

        if state_dir is None:
            state_dir = Path(tempfile.mkdtemp(prefix="credbroker-cluster-"))
            owns_state_dir = True
        else:
            state_dir = state_dir.expanduser().resolve()
            if (state_dir / STATE_FILE_NAME).exists():
                raise ClusterError(
                    f"{state_dir} already holds a cluster's state: stop it with "
                    f"`python -m localcluster down --state-dir {state_dir}` first"
                )
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
        etcd_client_port, etcd_peer_port, apiserver_port = _loopback_ports(3)
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
            lambda: _http_get(f"{etcd_url}/health")[0] == 200,
            timeout_seconds=ETCD_READY_TIMEOUT_SECONDS,
            what=f"etcd to serve {etcd_url}/health",
        )

        apiserver = self._start(
            "kube-apiserver", self._apiserver_args(pki, etcd_url, apiserver_port)
        )
        admin = _AdminConnection(port=apiserver_port, pki=pki)
        self._wait_until(
            apiserver,
            lambda: admin.get("/readyz")[0] == 200,
            timeout_seconds=APISERVER_READY_TIMEOUT_SECONDS,
            what=f"{self.server}/readyz to return 200",
        )

        controller_manager = self._start(
            "kube-controller-manager",
            self._controller_manager_args(pki, controller_manager_kubeconfig),
        )
        self._wait_until(
            controller_manager,
            lambda: admin.get("/api/v1/namespaces/default/serviceaccounts/default")[0] == 200,
            timeout_seconds=DEFAULT_SERVICE_ACCOUNT_TIMEOUT_SECONDS,
            what="the serviceaccount controller to create default/default",
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
        owner = f"{DETACHED_OWNER_PREFIX}{self.state_dir}" if self.detached else owner_token()
        component = start_component(
            name=name,
            argv=[str(self.binary), name, *args],
            log_file=self.state_dir / "logs" / f"{name}.log",
            owner=owner,
            die_with_parent=not self.detached
            and threading.current_thread() is threading.main_thread(),
        )
        self.components.append(component)
        return component

    def _wait_until(
        self,
        component: ComponentProcess,
        condition: Callable[[], bool],
        *,
        timeout_seconds: float,
        what: str,
    ) -> None:
        deadline = time.monotonic() + timeout_seconds
        while True:
            if condition():
                return
            for running in self.components:
                if not running.is_running():
                    raise ClusterError(
                        f"{running.name} exited while waiting for {what}; "
                        f"end of {running.log_file}:\n{running.log_tail()}"
                    )
            if time.monotonic() > deadline:
                raise ClusterError(
                    f"timed out after {timeout_seconds:.0f} s waiting for {what}; "
                    f"end of {component.log_file}:\n{component.log_tail()}"
                )
            time.sleep(PROBE_INTERVAL_SECONDS)

    def _write_state(self) -> None:
        state = {
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
        cluster.server = state["server"]
        cluster.components = [
            ComponentProcess(name=c["name"], pid=c["pid"], log_file=Path(c["log_file"]))
            for c in state["components"]
            # A recorded pid that now runs another program was reused: skip it.
            if (executable_of(c["pid"]) or "").startswith(state["binary"])
        ]
        cluster._stopped = False
        return cluster

    def is_running(self) -> bool:
        """Return whether all three components run (it does not probe readiness)."""
        names = {c.name for c in self.components if c.is_running()}
        return names == {"etcd", "kube-apiserver", "kube-controller-manager"}

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
            # The controller manager and apiserver go first, so that etcd
            # does not log lost connections from clients shutting down.
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
                self.state_dir.rmdir()  # Only if nothing else is in it.


@contextlib.contextmanager
def start_cluster(*, state_dir: Path | None = None) -> Iterator[LocalCluster]:
    """Start a :class:`LocalCluster` for the ``with`` block and stop it afterwards."""
    cluster = LocalCluster.start(state_dir=state_dir)
    try:
        yield cluster
    finally:
        cluster.stop()
