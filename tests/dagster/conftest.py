"""A real (temporary) Dagster instance per test."""

from __future__ import annotations

import dagster as dg
import pytest

#: runs' stdout/stderr are not under test: without capture, no `tail -F` (and watcher) per step. Where the test
#: process inherits SIGTERM ignored (a job started in the background by some shells), Dagster's clean-up of each
#: such `tail` waits out its 30 s timeout twice per run.
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
