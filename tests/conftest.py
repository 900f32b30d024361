"""Shared fixtures for the unit and target tests."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# e2e/pgserver.py imports nothing else from e2e/, so its folder can go on the path alone.
E2E_DIR = Path(__file__).resolve().parent.parent / "e2e"
if str(E2E_DIR) not in sys.path:
    sys.path.insert(0, str(E2E_DIR))

from pgserver import PostgresServer  # noqa: E402


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A throwaway PostgreSQL server on 127.0.0.1 shared by the whole test session.

    Fails (does not skip) with an install hint when PostgreSQL is missing.
    """
    with PostgresServer() as server:
        yield server
