"""The machine and software versions recorded with every result."""

from __future__ import annotations

import importlib.metadata
import os
import platform
from pathlib import Path
from typing import Any

from kubernetes import client

# Distribution name -> key in the results; "kubernetes" there is the cluster's version.
PACKAGES = {
    "credbroker": "credbroker",
    "kopf": "kopf",
    "kubernetes": "kubernetes_client",
    "psycopg": "psycopg",
    "PyJWT": "pyjwt",
    "cryptography": "cryptography",
}


def machine_info() -> dict[str, Any]:
    """Return the CPU count, CPU model, total memory and kernel of this machine."""
    cpu_model = ""
    for line in _read_lines(Path("/proc/cpuinfo")):
        if line.startswith("model name"):
            cpu_model = line.split(":", 1)[1].strip()
            break
    memory_bytes = 0
    for line in _read_lines(Path("/proc/meminfo")):
        if line.startswith("MemTotal:"):
            memory_bytes = int(line.split()[1]) * 1024
            break
    return {
        "cpu_count": os.cpu_count() or 0,
        "cpu_model": cpu_model,
        "memory_bytes": memory_bytes,
        "kernel": platform.release(),
    }


def load_average() -> list[float]:
    """Return the 1, 5 and 15 minute load averages, to show other work on the machine."""
    return [round(value, 2) for value in os.getloadavg()]


def package_versions() -> dict[str, str]:
    """Return the installed versions of Python and the packages that the results depend on."""
    versions = {"python": platform.python_version()}
    for package, key in PACKAGES.items():
        try:
            versions[key] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[key] = "not installed"
    return versions


def kubernetes_version(api_client: client.ApiClient) -> str:
    """Return the API server's ``gitVersion``, such as ``v1.37.2``."""
    return str(client.VersionApi(api_client).get_code().git_version)


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text().splitlines()
    except OSError:
        return []
