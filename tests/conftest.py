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
    import uuid

    import sqlalchemy as sa

    name = f"test_{uuid.uuid4().hex[:16]}"
    admin_url = sa.make_url(postgres_server)
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        yield admin_url.set(database=name).render_as_string(hide_password=False)
        with admin.connect() as conn:  # FORCE: ends sessions a test left open (engines not disposed)
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.dispose()
