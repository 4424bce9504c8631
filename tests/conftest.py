"""Shared fixtures: a real Trackstar sandbox over HTTP on a free port (latency 0), one per test."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from trackstar_dagster.sandbox.server import SandboxHandle, run_sandbox


@pytest.fixture
def sandbox() -> Iterator[SandboxHandle]:
    """A running sandbox with the default key, connections and rate limits, and no latency."""
    with run_sandbox(latency=0.0) as sb:
        yield sb


@pytest.fixture
def sandbox_factory() -> Iterator[Callable[..., SandboxHandle]]:
    """Start sandboxes with any ``run_sandbox`` options; all are stopped at teardown."""
    with contextlib.ExitStack() as stack:

        def start(**options: Any) -> SandboxHandle:
            options.setdefault("latency", 0.0)
            return stack.enter_context(run_sandbox(**options))

        yield start


# --- PostgreSQL: one real server per test session (started only if a test asks for it) ---


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """Admin SQLAlchemy URL of a private PostgreSQL server (``tests/postgres.py``), shared by the session."""
    from tests.postgres import run_postgres

    with run_postgres() as admin_url:
        yield admin_url


@pytest.fixture
def pg_url(postgres_server: str) -> Iterator[str]:
    """URL (``postgresql+psycopg://...``) of a fresh, uniquely named database, dropped after the test."""
    from tests.postgres import fresh_database

    with fresh_database(postgres_server) as url:
        yield url
