"""Component processes: start, stop and stale-process cleanup for the control plane.

Each component (etcd, kube-apiserver, kube-controller-manager) runs as the
leader of its own session and process group. Stopping a component signals the
whole group, and a Ctrl-C in the terminal reaches only the launcher, which
then stops the components in order.

Every component gets the environment variable ``CREDBROKER_CONTROLPLANE_OWNER``
set to the launcher's ``<pid>:<start time>`` (or to ``detached:<state dir>`` for
``python -m localcluster up``). On start, :func:`stop_orphaned_components` finds
control-plane processes whose owner is gone and kills them. That cleans up
after a launcher that died in a way the parent-death signal does not cover,
such as a worker thread that started the cluster and then exited.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

OWNER_ENV = "CREDBROKER_CONTROLPLANE_OWNER"
DETACHED_OWNER_PREFIX = "detached:"

STOP_TIMEOUT_SECONDS = 15.0
POLL_INTERVAL_SECONDS = 0.05

_PR_SET_PDEATHSIG = 1


def process_start_time(pid: int) -> str | None:
    """Return the start time of ``pid`` in clock ticks since boot, or None if it is gone.

    Together with the pid it names one process, because the kernel reuses pids.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # Field 2 (comm) may contain spaces, so split after its closing bracket.
    # Field 22 (starttime) is then the 20th field.
    fields = stat.rsplit(")", 1)[1].split()
    return fields[19]


def owner_token(pid: int | None = None) -> str:
    """Return the owner value that marks components started by ``pid`` (default: this process)."""
    pid = os.getpid() if pid is None else pid
    return f"{pid}:{process_start_time(pid)}"


def owner_is_alive(owner: str) -> bool:
    """Return whether the launcher named by an owner value still runs; detached owners always do."""
    if owner.startswith(DETACHED_OWNER_PREFIX):
        return True
    pid_text, _, start_time = owner.partition(":")
    try:
        pid = int(pid_text)
    except ValueError:
        return True  # Unknown format: leave the process alone.
    return process_start_time(pid) == start_time


def _die_with_parent() -> None:
    # Runs in the child between fork and exec. PR_SET_PDEATHSIG makes the kernel
    # send the signal when the thread that forked the child exits, so components
    # do not outlive a launcher killed by SIGKILL. It is SIGKILL, not SIGTERM,
    # because all components would get it at once, and kube-apiserver then
    # hangs in its graceful shutdown retrying the etcd that just exited.
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL))


@dataclass
class ComponentProcess:
    """One running control-plane component and its log file."""

    name: str
    pid: int
    log_file: Path
    popen: subprocess.Popen[bytes] | None = None

    def is_running(self) -> bool:
        """Return whether the component has not exited (a zombie counts as exited)."""
        if self.popen is not None:
            return self.popen.poll() is None
        state = _process_state(self.pid)
        return state is not None and state != "Z"

    def log_tail(self, max_chars: int = 3000) -> str:
        """Return the end of the component's log, for error messages."""
        try:
            return self.log_file.read_text(errors="replace")[-max_chars:]
        except FileNotFoundError:
            return f"(no log file at {self.log_file})"


def _process_state(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def start_component(
    *,
    name: str,
    argv: list[str],
    log_file: Path,
    owner: str,
    die_with_parent: bool,
) -> ComponentProcess:
    """Start ``argv`` in a new session with output to ``log_file``.

    With ``die_with_parent``, the kernel sends the component SIGKILL when the
    calling thread exits. Callers pass it only from the main thread, because a
    worker thread that ends would otherwise take the component with it.
    """
    env = {**os.environ, OWNER_ENV: owner}
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as log:
        popen = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
            preexec_fn=_die_with_parent if die_with_parent else None,  # noqa: PLW1509
        )
    logger.info("started %s (pid %d), log %s", name, popen.pid, log_file)
    return ComponentProcess(name=name, pid=popen.pid, log_file=log_file, popen=popen)


def _group_exists(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        # Not a group (any more); the pid alone may still run if it never led one.
        state = _process_state(pgid)
        return state is not None and state != "Z"
    except PermissionError:
        return True
    return True


def _signal_group(pgid: int, signum: signal.Signals) -> None:
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pgid, signum)


def _wait(condition: Callable[[], bool], timeout_seconds: float) -> bool:
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(POLL_INTERVAL_SECONDS)
    return condition()


def stop_components(
    components: Iterable[ComponentProcess],
    *,
    timeout_seconds: float = STOP_TIMEOUT_SECONDS,
    signum: signal.Signals = signal.SIGTERM,
) -> None:
    """Send ``signum`` to each component's process group, then SIGKILL what outlives the timeout.

    The components are signalled together. Each one leads its own group, so
    its pid is also the group id.
    """
    components = list(components)
    for component in components:
        logger.info("stopping %s (pid %d) with %s", component.name, component.pid, signum.name)
        _signal_group(component.pid, signum)

    def all_gone() -> bool:
        for component in components:
            if component.popen is not None:
                component.popen.poll()  # Reap the leader so its group can empty.
            if _group_exists(component.pid):
                return False
        return True

    if _wait(all_gone, timeout_seconds):
        return
    for component in components:
        if _group_exists(component.pid):
            logger.warning(
                "%s (pid %d) did not stop within %.0f s of %s: sending SIGKILL",
                component.name,
                component.pid,
                timeout_seconds,
                signum.name,
            )
            _signal_group(component.pid, signal.SIGKILL)
    if not _wait(all_gone, timeout_seconds):
        leftover = [c.pid for c in components if _group_exists(c.pid)]
        logger.error("process groups %s still exist after SIGKILL", leftover)


def _read_owner(pid: int) -> str | None:
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    prefix = OWNER_ENV.encode() + b"="
    for entry in environ.split(b"\0"):
        if entry.startswith(prefix):
            return entry[len(prefix) :].decode(errors="replace")
    return None


def executable_of(pid: int) -> str | None:
    """Return the path of the executable that ``pid`` runs, or None if it cannot be read."""
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None


def runs_binary_under(pid: int, directory: Path) -> bool:
    """Return whether ``pid`` runs an executable inside ``directory``.

    A replaced binary shows as ``<path> (deleted)``, which still matches.
    """
    exe = executable_of(pid)
    return exe is not None and exe.startswith(str(directory) + os.sep)


def stop_orphaned_components(binary_dir: Path) -> list[int]:
    """Kill control-plane processes whose launcher has exited, and return their pids.

    Only processes that run a binary under ``binary_dir`` are inspected, and
    only their own environment is read. Components of a detached cluster and
    of a launcher that is still running are left alone.
    """
    orphans: list[ComponentProcess] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        if pid == os.getpid() or not runs_binary_under(pid, binary_dir):
            continue
        owner = _read_owner(pid)
        if owner is None or owner_is_alive(owner):
            continue
        logger.warning(
            "found control-plane process %d left by launcher %s, which has exited: stopping it",
            pid,
            owner,
        )
        orphans.append(ComponentProcess(name=f"orphan {pid}", pid=pid, log_file=Path(os.devnull)))
    if orphans:
        # SIGKILL, because a graceful stop gains nothing for a cluster whose
        # launcher is gone, and kube-apiserver can hang in it when etcd is gone.
        stop_components(orphans, signum=signal.SIGKILL)
    return [orphan.pid for orphan in orphans]
