"""A real (temporary) Dagster instance per test."""

from __future__ import annotations

import dagster as dg
import pytest

#: runs' stdout/stderr are not under test: without capture, no `tail -F` per step. In the full suite the
#: local compute log manager's `tail` ignored SIGTERM at the end of some in-process runs (Dagster then waits
#: 2 x 30 s to clean it up), which made the pool tests' 30 s bounds fail; subsets never showed it.
NO_COMPUTE_LOGS = {
    "compute_logs": {
        "module": "dagster._core.storage.noop_compute_log_manager",
        "class": "NoOpComputeLogManager",
    }
}


@pytest.fixture
def instance(tmp_path):
    home = tmp_path / "dagster_home"
    home.mkdir()
    with dg.instance_for_test(temp_dir=str(home), overrides=NO_COMPUTE_LOGS) as inst:
        yield inst
