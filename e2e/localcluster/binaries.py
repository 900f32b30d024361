"""Binary cache: builds the control-plane binary and installs the pinned helm.

Both live under ``${XDG_CACHE_HOME:-~/.cache}/credbroker``. The control-plane
binary sits in a folder named by a hash over its Go sources, so any change to
``e2e/controlplane`` builds a new binary and an unchanged tree reuses the old
one. A file lock keeps two processes from building the same thing at once.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .processes import executable_of

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
CONTROLPLANE_SOURCE_DIR = REPO_ROOT / "e2e" / "controlplane"
BINARY_NAME = "controlplane"

HELM_VERSION = "v3.21.4"
HELM_MODULE = "helm.sh/helm/v3/cmd/helm"
# Default Kubernetes version of `helm template`, as helm's release Makefile
# sets it: client-go's version plus one major. helm v3.21.4 requires client-go
# v0.36.2, so released binaries default to v1.36.
HELM_DEFAULT_KUBE_VERSION = ("1", "36")

# Part of the cache key with the -ldflags, so a change to the flags builds a new binary.
GO_BUILD_FLAGS = ("-trimpath",)


class BuildError(RuntimeError):
    """Raised when ``go build`` or ``go install`` fails or Go is missing."""


@dataclass(frozen=True)
class CachedBinary:
    """A binary in the cache and whether this call found it there."""

    path: Path
    from_cache: bool


def cache_root() -> Path:
    """Return ``${XDG_CACHE_HOME:-~/.cache}/credbroker``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "credbroker"


def kubernetes_version(source_dir: Path = CONTROLPLANE_SOURCE_DIR) -> str:
    """Return the ``k8s.io/kubernetes`` version that go.mod requires, such as ``v1.37.2``."""
    go_mod = (source_dir / "go.mod").read_text()
    match = re.search(r"^\s*k8s\.io/kubernetes\s+(v\d+\.\d+\.\d+\S*)", go_mod, re.MULTILINE)
    if match is None:
        raise BuildError(f"{source_dir / 'go.mod'} does not require k8s.io/kubernetes")
    return match.group(1)


def source_hash(source_dir: Path = CONTROLPLANE_SOURCE_DIR) -> str:
    """Hash go.mod, go.sum, every .go file and the build flags into a short hex key."""
    digest = hashlib.sha256()
    digest.update(" ".join(GO_BUILD_FLAGS).encode())
    digest.update(_ldflags(kubernetes_version(source_dir)).encode())
    files = [source_dir / "go.mod", source_dir / "go.sum", *sorted(source_dir.rglob("*.go"))]
    for file in files:
        digest.update(b"\0" + file.relative_to(source_dir).as_posix().encode() + b"\0")
        digest.update(file.read_bytes())
    return digest.hexdigest()[:16]


def _ldflags(version: str) -> str:
    # Without these, /version and `kubectl version` report v0.0.0-master, which
    # fails the kubeVersion constraints of Helm charts.
    major, minor = version.lstrip("v").split(".")[:2]
    package = "k8s.io/component-base/version"
    return " ".join(
        [
            f"-X {package}.gitVersion={version}",
            f"-X {package}.gitMajor={major}",
            f"-X {package}.gitMinor={minor}",
            f"-X {package}.gitTreeState=clean",
        ]
    )


@contextmanager
def _locked(lock_file: Path) -> Iterator[None]:
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with lock_file.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _go_executable() -> str:
    go = shutil.which("go")
    if go is None:
        raise BuildError(
            "go not found on PATH: install Go 1.26 or newer (https://go.dev/doc/install) "
            "to build the control plane and helm"
        )
    return go


def _run_go(args: list[str], *, cwd: Path, env: dict[str, str], log_file: Path) -> None:
    """Run one go command, sending its output to ``log_file``."""
    command = [_go_executable(), *args]
    logger.info("running %s (output in %s)", " ".join(command), log_file)
    with log_file.open("w") as log:
        result = subprocess.run(
            command, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, check=False
        )
    if result.returncode != 0:
        tail = log_file.read_text()[-4000:]
        raise BuildError(f"{' '.join(command)} failed with exit code {result.returncode}:\n{tail}")


def ensure_controlplane_binary(source_dir: Path = CONTROLPLANE_SOURCE_DIR) -> CachedBinary:
    """Return the cached control-plane binary, building it first on a cache miss."""
    key = source_hash(source_dir)
    target_dir = cache_root() / "controlplane" / key
    binary = target_dir / BINARY_NAME

    if binary.is_file():
        logger.info("control-plane binary cache hit: %s", binary)
        return CachedBinary(path=binary, from_cache=True)

    with _locked(cache_root() / "controlplane" / f"{key}.lock"):
        # Another process may have finished the same build while this one waited.
        if binary.is_file():
            logger.info("control-plane binary cache hit after waiting for a build: %s", binary)
            return CachedBinary(path=binary, from_cache=True)

        logger.info("control-plane binary cache miss for %s: building %s", source_dir, binary)
        target_dir.mkdir(parents=True, exist_ok=True)
        partial = target_dir / f"{BINARY_NAME}.partial"
        version = kubernetes_version(source_dir)
        started = time.monotonic()
        _run_go(
            ["build", *GO_BUILD_FLAGS, f"-ldflags={_ldflags(version)}", "-o", str(partial), "."],
            cwd=source_dir,
            env=dict(os.environ),
            log_file=target_dir / "build.log",
        )
        partial.rename(binary)
        logger.info("built %s in %.1f s", binary, time.monotonic() - started)
    _prune_other_builds(keep=target_dir)
    return CachedBinary(path=binary, from_cache=False)


def _prune_other_builds(*, keep: Path) -> None:
    """Remove cached control-plane builds other than ``keep`` that nothing uses.

    Each build is about 250 MB, and every change to e2e/controlplane adds one.
    A build is in use while a process runs it or another process holds its
    lock, which it does while building.
    """
    in_use: set[Path] = set()
    for entry in Path("/proc").iterdir():
        executable = executable_of(int(entry.name)) if entry.name.isdigit() else None
        if executable is not None:
            in_use.add(Path(executable).parent)

    for build_dir in keep.parent.iterdir():
        if not build_dir.is_dir() or build_dir == keep or build_dir in in_use:
            continue
        lock_file = build_dir.with_name(f"{build_dir.name}.lock")
        with lock_file.open("a") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue
            logger.info("removing old control-plane build %s", build_dir)
            shutil.rmtree(build_dir, ignore_errors=True)
            lock_file.unlink(missing_ok=True)


def _helm_ldflags(version: str) -> str:
    # The -X flags of helm's release builds. Without them `helm version` shows
    # only "vMAJOR.MINOR" and `helm template` assumes Kubernetes v1.20.0, which
    # fails charts whose kubeVersion requires anything newer.
    major, minor = HELM_DEFAULT_KUBE_VERSION
    return " ".join(
        [
            f"-X helm.sh/helm/v3/internal/version.version={version}",
            f"-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor={major}",
            f"-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor={minor}",
            f"-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor={major}",
            f"-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor={minor}",
        ]
    )


def ensure_helm(version: str = HELM_VERSION) -> CachedBinary:
    """Return the cached helm binary, installing it with ``go install`` on a cache miss.

    A stamp file next to the binary records a finished install, so a binary
    left by an interrupted or older install is replaced.
    """
    gobin = cache_root() / f"helm-{version}"
    helm = gobin / "helm"
    stamp = gobin / "helm.installed"
    ldflags = _helm_ldflags(version)

    def cached() -> bool:
        return helm.is_file() and stamp.is_file() and stamp.read_text() == ldflags

    if cached():
        logger.info("helm cache hit: %s", helm)
        return CachedBinary(path=helm, from_cache=True)

    with _locked(cache_root() / f"helm-{version}.lock"):
        if cached():
            logger.info("helm cache hit after waiting for an install: %s", helm)
            return CachedBinary(path=helm, from_cache=True)

        logger.info("helm cache miss: installing %s@%s into %s", HELM_MODULE, version, gobin)
        gobin.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        _run_go(
            ["install", f"-ldflags={ldflags}", f"{HELM_MODULE}@{version}"],
            cwd=gobin,
            env={**os.environ, "GOBIN": str(gobin)},
            log_file=cache_root() / f"helm-{version}.install.log",
        )
        stamp.write_text(ldflags)
        logger.info("installed %s in %.1f s", helm, time.monotonic() - started)
        return CachedBinary(path=helm, from_cache=False)
