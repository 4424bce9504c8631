"""One sandbox per test module with generous rate limits; each test starts from an empty store, no faults."""

from __future__ import annotations

import pytest

from tests.writer import CLEAR
from trackstar_dagster.sandbox.server import run_sandbox


@pytest.fixture(scope="module")
def server():
    with run_sandbox(write_rate=1000.0, read_rate=1000.0) as sb:
        yield sb


@pytest.fixture
def sb(server):
    server.reset()
    server.configure(latency=0.0, jitter=0.0, faults=CLEAR)
    yield server
    server.configure(faults=CLEAR)
