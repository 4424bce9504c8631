"""The README's first promise: the demo runs end to end, re-runs as `unchanged`, and leaves nothing running."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import psutil


def test_demo_backfills_twice_and_leaves_no_process(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRACKSTAR_", "DAGSTER_"))}
    env["TRACKSTAR_EXAMPLE_DIR"] = str(tmp_path / "demo")
    out = subprocess.run(
        [sys.executable, "-m", "trackstar_example.demo"], env=env, capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    created = re.search(r"first time: success.*?write results: created=(\d+)", out.stdout, re.S)
    unchanged = re.search(r"second time: success.*?write results: unchanged=(\d+)", out.stdout, re.S)
    assert created and unchanged and created.group(1) == unchanged.group(1)
    assert f"The sandbox holds {created.group(1)} orders" in out.stdout
    assert "rejected records:" in out.stdout and "dagster dev -w workspace.yaml" in out.stdout
    # the sandbox ran with its state file in the demo dir: no process may still name it
    left = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if str(tmp_path) in " ".join(proc.info["cmdline"] or []):
                left.append(proc.pid)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    assert not left
    # what the UI plots: each day's write_results figures, which sum to the run's total
    import dagster as dg

    with dg.DagsterInstance.from_config(str(tmp_path / "demo" / "dagster_home")) as instance:
        key = next(k for k in instance.get_asset_keys() if k.path[-1] == "write_results")
        records = instance.fetch_materializations(key, limit=1000).records  # newest first
        first_run = records[-1].run_id
        per_day = [
            r.asset_materialization.metadata["status_created"].value for r in records if r.run_id == first_run
        ]
    assert len(per_day) >= 28 and sum(per_day) == int(created.group(1)) and max(per_day) < sum(per_day)
