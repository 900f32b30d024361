"""A throwaway PostgreSQL server for tests, the demo and benchmarks.

``PostgresServer`` runs Debian's PostgreSQL binaries (the newest version under
``/usr/lib/postgresql/<version>/bin``) on a fresh data directory in a
temporary folder. The server listens on 127.0.0.1 on a free port, keeps its
unix socket in the temporary folder, and accepts only scram-sha-256 password
logins from 127.0.0.1. The superuser password is generated per server.

PostgreSQL refuses to run as root, so when this runs as root, initdb and the
server run as the ``postgres`` system user (created with ``useradd --system``
when missing), which owns the temporary folder.

Used from Python::

    with PostgresServer() as server:
        psycopg.connect(server.admin_dsn())

Used from a shell (the demo), the server keeps running after the command::

    python e2e/pgserver.py up --state-dir DIR
    python e2e/pgserver.py down --state-dir DIR

``up`` writes the connection details, password included, to
``DIR/postgres.json`` and a libpq password file ``DIR/pgpass`` (both mode
0600), and prints how to connect without printing the password.

This module imports nothing else from e2e/ so tests can put this folder on
``sys.path`` and import it alone.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import json
import logging
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

logger = logging.getLogger(__name__)

POSTGRES_INSTALL_ROOT = Path("/usr/lib/postgresql")
INSTALL_HINT = "install it: apt-get install postgresql"
SYSTEM_USER = "postgres"
LISTEN_HOST = "127.0.0.1"
DEFAULT_ADMIN_USER = "postgres"
DEFAULT_DATABASE = "postgres"

START_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 20.0
POLL_INTERVAL_SECONDS = 0.05
PORT_ATTEMPTS = 3
MAX_CONNECTIONS = 100

STATE_FILE_NAME = "postgres.json"
PGPASS_FILE_NAME = "pgpass"
SERVER_LOG_NAME = "postgres.log"
LOG_TAIL_CHARS = 2000

# Settings for a server whose data is thrown away: durability is switched
# off, which makes initdb and DDL-heavy tests faster.
THROWAWAY_SETTINGS = {
    "listen_addresses": f"'{LISTEN_HOST}'",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": str(MAX_CONNECTIONS),
    "password_encryption": "'scram-sha-256'",
    "log_min_messages": "warning",
}

PG_HBA = f"""\
# Written by e2e/pgserver.py: scram-sha-256 password logins over TCP from
# {LISTEN_HOST} only. The unix socket accepts no connections.
# TYPE  DATABASE  USER  ADDRESS        METHOD
host    all       all   {LISTEN_HOST}/32   scram-sha-256
"""


class PostgresServerError(RuntimeError):
    """The throwaway PostgreSQL server could not be set up, started or stopped."""


def find_postgres_bin() -> Path:
    """Return the bin folder of the newest PostgreSQL installed from Debian's packages."""
    candidates: list[tuple[int, Path]] = []
    if POSTGRES_INSTALL_ROOT.is_dir():
        for entry in POSTGRES_INSTALL_ROOT.iterdir():
            bin_dir = entry / "bin"
            has_binaries = (bin_dir / "postgres").is_file() and (bin_dir / "initdb").is_file()
            if entry.name.isdigit() and has_binaries:
                candidates.append((int(entry.name), bin_dir))
    if not candidates:
        raise PostgresServerError(
            f"no PostgreSQL server binaries found under {POSTGRES_INSTALL_ROOT}/<version>/bin; "
            f"{INSTALL_HINT}"
        )
    return max(candidates)[1]


def _ensure_system_user() -> pwd.struct_passwd:
    """Return the ``postgres`` system user, creating it when missing."""
    try:
        return pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        pass
    logger.info("creating the %s system user", SYSTEM_USER)
    completed = subprocess.run(
        [
            "useradd",
            "--system",
            "--user-group",
            "--no-create-home",
            "--home-dir",
            "/var/lib/postgresql",
            "--shell",
            "/usr/sbin/nologin",
            SYSTEM_USER,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if completed.returncode != 0:
        raise PostgresServerError(
            f"useradd --system {SYSTEM_USER} failed with exit code {completed.returncode}: "
            f"{completed.stderr.strip()}; create the user by hand or {INSTALL_HINT}"
        )
    return pwd.getpwnam(SYSTEM_USER)


def _free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LISTEN_HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def _read_tail(path: Path) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no output)"
    return text[-LOG_TAIL_CHARS:].strip() or "(no output)"


def _child_pids(parent_pid: int) -> list[int]:
    """Return the pids of the direct children of ``parent_pid``, read from /proc."""
    children: list[int] = []
    for stat_path in Path("/proc").glob("[0-9]*/stat"):
        try:
            stat = stat_path.read_text()
        except OSError:
            continue
        # The command name in brackets may contain spaces, so split after it.
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) > 1 and fields[1] == str(parent_pid):
            children.append(int(stat_path.parent.name))
    return children


def _pid_running(pid: int) -> bool:
    """Return whether ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    state = stat.rsplit(")", 1)[-1].split()[0]
    return state != "Z"


def _signal_quietly(pid: int, signum: int, *, group: bool = False) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if group:
            os.killpg(pid, signum)
        else:
            os.kill(pid, signum)


def _wait_until_stopped(is_running: Callable[[], bool], timeout_seconds: float) -> bool:
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        if not is_running():
            return True
        time.sleep(POLL_INTERVAL_SECONDS)
    return not is_running()


def shut_down_postmaster(pid: int, *, is_running: Callable[[], bool]) -> None:
    """Stop the postmaster ``pid`` and every process it started.

    A fast shutdown (SIGINT) comes first. If the server is still up after
    ``STOP_TIMEOUT_SECONDS``, the postmaster's process group and its children
    get SIGKILL. The children are named one by one because each PostgreSQL
    backend calls setsid() and so leaves the postmaster's process group.
    """
    children = _child_pids(pid)
    _signal_quietly(pid, signal.SIGINT)
    if _wait_until_stopped(is_running, STOP_TIMEOUT_SECONDS):
        return
    logger.warning(
        "PostgreSQL postmaster %d did not stop within %s s of a fast shutdown; sending SIGKILL",
        pid,
        STOP_TIMEOUT_SECONDS,
    )
    children = sorted(set(children) | set(_child_pids(pid)))
    _signal_quietly(pid, signal.SIGKILL, group=True)
    for child in children:
        _signal_quietly(child, signal.SIGKILL)
    if not _wait_until_stopped(is_running, STOP_TIMEOUT_SECONDS):
        raise PostgresServerError(f"PostgreSQL postmaster {pid} is still running after SIGKILL")


class PostgresServer:
    """A throwaway PostgreSQL server on 127.0.0.1, deleted with its data by ``stop()``.

    ``start()`` also registers ``stop()`` with atexit unless
    ``stop_at_exit=False``, so a test run that fails or is interrupted with
    Ctrl-C still stops the server. A process killed by SIGKILL runs no
    atexit hook, and its server keeps running until killed by hand.
    """

    def __init__(
        self,
        *,
        admin_user: str = DEFAULT_ADMIN_USER,
        database: str = DEFAULT_DATABASE,
        stop_at_exit: bool = True,
    ) -> None:
        self.host = LISTEN_HOST
        self.port = 0
        self.admin_user = admin_user
        self.admin_password = secrets.token_urlsafe(24)
        self.database = database
        self.version = ""
        self.base_dir: Path | None = None
        self._stop_at_exit = stop_at_exit
        self._process: subprocess.Popen[bytes] | None = None
        self._bin_dir: Path | None = None
        self._run_as: pwd.struct_passwd | None = None

    def __repr__(self) -> str:
        return (
            f"PostgresServer(host={self.host!r}, port={self.port}, "
            f"admin_user={self.admin_user!r}, database={self.database!r}, "
            f"version={self.version!r}, running={self.running})"
        )

    def __enter__(self) -> PostgresServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def pid(self) -> int | None:
        """The postmaster's process id while the server runs."""
        return self._process.pid if self._process is not None else None

    @property
    def running(self) -> bool:
        """Whether the postmaster is alive."""
        return self._process is not None and self._process.poll() is None

    @property
    def data_dir(self) -> Path:
        """The PostgreSQL data directory inside ``base_dir``."""
        if self.base_dir is None:
            raise PostgresServerError("the server has not been started; call start() first")
        return self.base_dir / "data"

    def admin_dsn(self, database: str | None = None) -> str:
        """Return a libpq conninfo string for the superuser. It contains the password."""
        if not self.port:
            raise PostgresServerError("the server has not been started; call start() first")
        return make_conninfo(
            host=self.host,
            port=self.port,
            user=self.admin_user,
            password=self.admin_password,
            dbname=database or self.database,
        )

    def create_database(self, name: str) -> str:
        """Create the database ``name`` owned by the superuser and return its name."""
        with psycopg.connect(self.admin_dsn(), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        logger.info("created database %r on PostgreSQL at %s:%d", name, self.host, self.port)
        return name

    def start(self) -> None:
        """Create the data directory, start the server and wait until it accepts logins."""
        if self._process is not None:
            raise PostgresServerError(f"the server is already running on port {self.port}")
        self._bin_dir = find_postgres_bin()
        if os.geteuid() == 0:
            self._run_as = _ensure_system_user()
        self.base_dir = Path(tempfile.mkdtemp(prefix="credbroker-pg-"))
        if self._stop_at_exit:
            atexit.register(self.stop)
        try:
            self._give_to_run_as_user(self.base_dir)
            self._initdb()
            self._start_postmaster()
            self._check_login()
        except BaseException:
            self.stop()
            raise
        logger.info(
            "PostgreSQL %s started on %s:%d (data in %s)",
            self.version,
            self.host,
            self.port,
            self.base_dir,
        )

    def stop(self) -> None:
        """Stop the server, kill what is left of it and delete its folder. Idempotent."""
        if self._stop_at_exit:
            atexit.unregister(self.stop)
        process = self._process
        self._process = None
        if process is not None:

            def is_running() -> bool:
                return process.poll() is None

            shut_down_postmaster(process.pid, is_running=is_running)
            logger.info("PostgreSQL on %s:%d stopped", self.host, self.port)
        if self.base_dir is not None:
            shutil.rmtree(self.base_dir, ignore_errors=True)
            self.base_dir = None

    def _give_to_run_as_user(self, path: Path) -> None:
        if self._run_as is not None:
            os.chown(path, self._run_as.pw_uid, self._run_as.pw_gid)
        path.chmod(0o700)

    def _run_as_kwargs(self) -> dict[str, object]:
        if self._run_as is None:
            return {}
        return {
            "user": self._run_as.pw_uid,
            "group": self._run_as.pw_gid,
            "extra_groups": [],
            "env": {
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                "HOME": str(self.base_dir),
                "LC_ALL": "C",
            },
        }

    def _initdb(self) -> None:
        assert self._bin_dir is not None
        assert self.base_dir is not None
        password_file = self.base_dir / "initdb-password"
        password_file.write_text(self.admin_password + "\n")
        self._give_to_run_as_user(password_file)
        password_file.chmod(0o600)
        initdb_log = self.base_dir / "initdb.log"
        try:
            with initdb_log.open("wb") as output:
                completed = subprocess.run(
                    [
                        str(self._bin_dir / "initdb"),
                        "--pgdata",
                        str(self.data_dir),
                        "--username",
                        self.admin_user,
                        f"--pwfile={password_file}",
                        "--auth=scram-sha-256",
                        "--encoding=UTF8",
                        "--locale=C",
                        "--no-sync",
                    ],
                    stdin=subprocess.DEVNULL,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    check=False,
                    **self._run_as_kwargs(),  # type: ignore[arg-type]
                )
        finally:
            password_file.unlink(missing_ok=True)
        if completed.returncode != 0:
            raise PostgresServerError(
                f"initdb failed with exit code {completed.returncode}: {_read_tail(initdb_log)}"
            )
        (self.data_dir / "pg_hba.conf").write_text(PG_HBA)
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.write("\n# Added by e2e/pgserver.py for a throwaway server.\n")
            conf.write(f"unix_socket_directories = '{self.base_dir}'\n")
            for name, value in THROWAWAY_SETTINGS.items():
                conf.write(f"{name} = {value}\n")

    def _start_postmaster(self) -> None:
        assert self._bin_dir is not None
        assert self.base_dir is not None
        server_log = self.base_dir / SERVER_LOG_NAME
        for attempt in range(1, PORT_ATTEMPTS + 1):
            self.port = _free_port()
            with server_log.open("ab") as output:
                self._process = subprocess.Popen(
                    [
                        str(self._bin_dir / "postgres"),
                        "-D",
                        str(self.data_dir),
                        "-p",
                        str(self.port),
                    ],
                    stdin=subprocess.DEVNULL,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    **self._run_as_kwargs(),  # type: ignore[call-overload]
                )
            if self._wait_until_ready():
                return
            self._process = None
            tail = _read_tail(server_log)
            # Another process may have taken the port between the probe and the bind.
            if "could not bind" not in tail and "could not create any TCP/IP sockets" not in tail:
                raise PostgresServerError(f"PostgreSQL exited during start-up: {tail}")
            logger.warning(
                "port %d was taken before PostgreSQL bound it (attempt %d)", self.port, attempt
            )
        raise PostgresServerError(
            f"PostgreSQL could not bind a free port on {LISTEN_HOST} in {PORT_ATTEMPTS} attempts"
        )

    def _wait_until_ready(self) -> bool:
        """Return True once postmaster.pid reports "ready", False if the server exited."""
        assert self._process is not None
        pid_file = self.data_dir / "postmaster.pid"
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                return False
            with contextlib.suppress(OSError):
                lines = pid_file.read_text().splitlines()
                # Line 8 of postmaster.pid is the server status (PostgreSQL 10 and later).
                if len(lines) >= 8 and lines[7].strip() == "ready":
                    return True
            time.sleep(POLL_INTERVAL_SECONDS)
        process = self._process
        self._process = None
        shut_down_postmaster(process.pid, is_running=lambda: process.poll() is None)
        raise PostgresServerError(
            f"PostgreSQL did not become ready within {START_TIMEOUT_SECONDS} s: "
            f"{_read_tail(self.base_dir / SERVER_LOG_NAME) if self.base_dir else ''}"
        )

    def _check_login(self) -> None:
        """Log in as the superuser over TCP, read the version and create the database."""
        with psycopg.connect(self.admin_dsn(DEFAULT_DATABASE), autocommit=True) as conn:
            row = conn.execute("SHOW server_version").fetchone()
            self.version = str(row[0]) if row else ""
            if self.database != DEFAULT_DATABASE:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.database)))


# The command line used by the demo.


def _state_paths(state_dir: Path) -> tuple[Path, Path]:
    return state_dir / STATE_FILE_NAME, state_dir / PGPASS_FILE_NAME


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` with mode 0600 from the first byte on."""
    path.unlink(missing_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(text)


def _pgpass_field(value: str) -> str:
    return value.replace("\\", "\\\\").replace(":", "\\:")


def command_up(state_dir: Path, database: str) -> int:
    """Start a detached server and write its connection details into ``state_dir``."""
    state_file, pgpass_file = _state_paths(state_dir)
    if state_file.exists():
        state = json.loads(state_file.read_text())
        if _pid_running(int(state["pid"])):
            print(
                f"PostgreSQL from {state_file} is already running on "
                f"{state['host']}:{state['port']}; run 'down --state-dir {state_dir}' first",
                file=sys.stderr,
            )
            return 1
        # The server recorded there is gone, so its folder is only clutter.
        _remove_base_dir(Path(state["base_dir"]))

    state_dir.mkdir(parents=True, exist_ok=True)
    server = PostgresServer(database=database, stop_at_exit=False)
    server.start()
    assert server.pid is not None
    assert server.base_dir is not None

    state = {
        "host": server.host,
        "port": server.port,
        "user": server.admin_user,
        "password": server.admin_password,
        "database": server.database,
        "version": server.version,
        "pid": server.pid,
        "base_dir": str(server.base_dir),
    }
    _write_private(state_file, json.dumps(state, indent=2) + "\n")
    pgpass_line = ":".join(
        _pgpass_field(str(part))
        for part in (server.host, server.port, "*", server.admin_user, server.admin_password)
    )
    _write_private(pgpass_file, pgpass_line + "\n")

    print(f"PostgreSQL {server.version} is running on {server.host}:{server.port}.")
    print(f"Connection details, password included: {state_file} (mode 0600)")
    print(
        f"Connect: PGPASSFILE={pgpass_file} psql "
        f"'host={server.host} port={server.port} dbname={server.database} "
        f"user={server.admin_user}'"
    )
    print(f"Stop it: python {Path(__file__).resolve()} down --state-dir {state_dir}")
    return 0


def _remove_base_dir(base_dir: Path) -> None:
    """Delete a server folder, but only one whose name this module gave it."""
    if re.fullmatch(r"credbroker-pg-[A-Za-z0-9_]+", base_dir.name):
        shutil.rmtree(base_dir, ignore_errors=True)


def command_down(state_dir: Path) -> int:
    """Stop the server recorded in ``state_dir`` and delete its data and state files."""
    state_file, pgpass_file = _state_paths(state_dir)
    if not state_file.exists():
        print(f"no PostgreSQL state in {state_dir}; nothing to stop")
        return 0
    state = json.loads(state_file.read_text())
    pid = int(state["pid"])
    base_dir = Path(state["base_dir"])
    data_dir = base_dir / "data"
    try:
        command_line = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        command_line = []
    # Check that the pid still belongs to this server and was not reused.
    if _pid_running(pid) and str(data_dir).encode() in command_line:
        shut_down_postmaster(pid, is_running=lambda: _pid_running(pid))
        print(f"stopped PostgreSQL on {state['host']}:{state['port']}")
    else:
        print(f"PostgreSQL from {state_file} was not running")
    _remove_base_dir(base_dir)
    state_file.unlink(missing_ok=True)
    pgpass_file.unlink(missing_ok=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the ``up`` or ``down`` command."""
    parser = argparse.ArgumentParser(
        description="Start or stop a throwaway PostgreSQL server on 127.0.0.1."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="start a server that keeps running after this command")
    up.add_argument(
        "--state-dir",
        type=Path,
        required=True,
        help="folder for the connection details and the libpq password file",
    )
    up.add_argument(
        "--database",
        default=DEFAULT_DATABASE,
        help="database to create for clients (default: postgres)",
    )
    down = commands.add_parser("down", help="stop the server and delete its data")
    down.add_argument("--state-dir", type=Path, required=True, help="the folder given to 'up'")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        if args.command == "up":
            return command_up(args.state_dir.resolve(), args.database)
        return command_down(args.state_dir.resolve())
    except PostgresServerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
