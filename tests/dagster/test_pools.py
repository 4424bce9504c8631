"""A killed run must not keep its sync's pool: the next run notices the dead holder, fails it and frees its slot.

Real Dagster throughout: an instance in a temp DAGSTER_HOME with the example's dagster.yaml (every pool limited to
1), a run of the sync in a subprocess that is SIGKILLed while its write step holds the pool (the sandbox hangs its
writes), then the next run in-process, and the ``trackstar-dagster pools`` command. Heartbeat and staleness are
shortened through the environment so this takes seconds, not minutes.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from tests.dagster.test_sync import make_sync, rows
from trackstar_dagster import (
    TrackstarConnection,
    TrackstarResource,
    build_trackstar_sync_assets,
)
from trackstar_dagster.pools import HEARTBEAT_BY_TAG, HEARTBEAT_TAG, this_process
from trackstar_dagster.sync import trackstar_io_manager_resources

ROOT = Path(__file__).resolve().parents[2]
POOL = "trackstar_s"
WRITE_STEP = "s__write_results"
FAST = {"TRACKSTAR_POOL_HEARTBEAT_S": "0.5", "TRACKSTAR_POOL_STALE_S": "3"}
BOUND_S = 30.0  # with the shortened settings; the defaults (15 s beats, 90 s stale) keep it under 3 minutes


@pytest.fixture
def home(tmp_path, monkeypatch):
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text((ROOT / "example_project" / "dagster.yaml").read_text())
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    for key, value in FAST.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("TRACKSTAR_POOL_CHECK_PID", raising=False)
    return home


@pytest.fixture
def instance(home):
    with dg.DagsterInstance.get() as inst:
        yield inst


def sync_resources(base_url: str, api_key: str, base: Path) -> dict[str, Any]:
    return {
        "trackstar": TrackstarResource(
            api_key=api_key,
            base_url=base_url,
            state_dir=str(base / "state"),
            connections=[
                TrackstarConnection(
                    name="acme", access_token="sandbox-token-wms", integration_name="wms_sandbox"
                )
            ],
        ),
        **trackstar_io_manager_resources(str(base / "io")),
    }


def run(sync, instance, resources, **kwargs) -> dg.ExecuteInProcessResult:
    """The sync's own assets only (its payloads step fetches the write-info document it needs)."""
    return dg.materialize(build_trackstar_sync_assets(sync), instance=instance, resources=resources, **kwargs)


def child_main() -> None:
    """The run that gets killed (run by the subprocess): the sync over the sandbox, in $DAGSTER_HOME."""
    spec = json.loads(sys.argv[1])
    with dg.DagsterInstance.get() as instance:
        run(
            make_sync(rows(spec["orders"])),
            instance,
            sync_resources(spec["base_url"], spec["api_key"], Path(spec["dir"])),
        )


def start_and_kill_a_holder(sandbox, instance, tmp_path) -> str:
    """Run the sync in a subprocess, SIGKILL it while its write step holds the pool; return the dead run's id."""
    sandbox.configure(faults={"hang": 1.0, "hang_s": 120})  # writes hang: the write step holds the pool
    log = tmp_path / "child.log"
    spec = {
        "orders": 3,
        "base_url": sandbox.base_url,
        "api_key": sandbox.api_key,
        "dir": str(tmp_path / "child"),
    }
    with log.open("w") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from tests.dagster.test_pools import child_main; child_main()",
                json.dumps(spec),
            ],
            cwd=ROOT,
            env=os.environ.copy(),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        run_id = None
        while run_id is None:
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, (
                "the child never reached its write step\n" + log.read_text()[-3000:]
            )
            holders = {
                (s.run_id, s.step_key)
                for s in instance.event_log_storage.get_concurrency_info(POOL).claimed_slots
            }
            for rid, step in holders:
                started = instance.all_logs(rid, of_type=dg.DagsterEventType.STEP_START)
                if step == WRITE_STEP and any(e.step_key == WRITE_STEP for e in started):
                    run_id = rid
            time.sleep(0.2)
        time.sleep(0.5)  # writes in flight, heartbeats written
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    sandbox.configure(faults={"hang": 0.0})
    assert (
        instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.STARTED
    )  # nothing noticed the death yet
    return run_id


def run_within(bound_s: float, fn) -> tuple[Any, float]:
    """fn() in a thread; its result (None if still running after bound_s) and the time it took."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["result"] = fn()
        except BaseException as exc:  # surfaced below
            box["error"] = exc

    t0 = time.monotonic()
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(bound_s)
    if "error" in box:
        raise box["error"]
    return box.get("result"), time.monotonic() - t0


def holders_of(instance) -> set[str]:
    info = instance.event_log_storage.get_concurrency_info(POOL)
    return {s.run_id for s in info.claimed_slots} | {p.run_id for p in info.pending_steps}


@pytest.mark.parametrize("detected_by", ["pid", "heartbeat"])
def test_a_killed_run_does_not_block_the_next_one(detected_by, sandbox, instance, tmp_path, monkeypatch):
    dead = start_and_kill_a_holder(sandbox, instance, tmp_path)
    assert dead in holders_of(instance)
    if detected_by == "heartbeat":  # as if the dead run had run on another host: only its heartbeat tells
        monkeypatch.setenv("TRACKSTAR_POOL_CHECK_PID", "0")

    frame = rows(3).assign(order_id=lambda f: f["order_id"] + "-next")
    resources = sync_resources(sandbox.base_url, sandbox.api_key, tmp_path / "next")
    result, elapsed = run_within(
        BOUND_S, lambda: run(make_sync(frame), instance, resources, raise_on_error=False)
    )

    assert result is not None, f"the next run was still waiting for pool {POOL} after {BOUND_S:.0f}s"
    assert result.success
    assert set(result.asset_value(dg.AssetKey(["s", "write_results"]))["status"]) == {"created"}
    assert instance.get_run_by_id(dead).status == dg.DagsterRunStatus.FAILURE
    assert dead not in holders_of(instance)
    warnings = [
        e.user_message
        for e in instance.all_logs(result.run_id)
        if e.level == logging.WARNING and dead in e.user_message and POOL in e.user_message
    ]
    assert warnings, "no WARNING naming the dead run and the pool"
    assert ("pid" if detected_by == "pid" else "heartbeat") in warnings[0]
    failure = instance.all_logs(dead, of_type=dg.DagsterEventType.RUN_FAILURE)
    assert (
        failure and result.run_id in failure[-1].dagster_event.message
    )  # the dead run says who failed it, and why
    if detected_by == "heartbeat":
        assert elapsed >= 1.0  # it waited for the heartbeat to go stale (3 s after the last beat)


def a_started_run(
    instance, *, holds: str | None = None, beat_age_s: float | None = None, pid: int | None = None
) -> str:
    """A run as a run worker leaves it in storage: STARTED, maybe with a heartbeat, maybe holding the pool."""
    run_id = str(uuid.uuid4())
    tags = {}
    if beat_age_s is not None:
        me = this_process()
        beater = dataclasses.replace(me, pid=pid, orchestrator_pid=pid) if pid else me
        tags = {
            HEARTBEAT_TAG: (datetime.now(UTC) - timedelta(seconds=beat_age_s)).isoformat(),
            HEARTBEAT_BY_TAG: beater.encode(),
        }
    instance.add_run(
        dg.DagsterRun(
            job_name="orders_sync_job", run_id=run_id, status=dg.DagsterRunStatus.STARTED, tags=tags
        )
    )
    if holds:
        assert instance.event_log_storage.claim_concurrency_slot(POOL, run_id, holds).is_claimed
    return run_id


def a_gone_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_pools_command_lists_and_frees_dead_runs(instance, monkeypatch, capsys):
    from trackstar_dagster import cli

    instance.event_log_storage.initialize_concurrency_limit_to_default(POOL)  # as a sync's first claim does
    killed = a_started_run(instance, holds=WRITE_STEP, beat_age_s=1, pid=a_gone_pid())

    assert cli.main(["pools", "list"]) == 0
    out = capsys.readouterr().out
    assert (
        f"pool {POOL}: limit 1, 1 slot(s) held" in out
        and killed in out
        and WRITE_STEP in out
        and "dead" in out
    )

    # a fresh heartbeat and (without the pid check) nothing else to go by: left alone
    monkeypatch.setenv("TRACKSTAR_POOL_CHECK_PID", "0")
    assert cli.main(["pools", "free", "--dead", "--stale-seconds", "600"]) == 0
    assert "alive" in capsys.readouterr().out
    assert killed in holders_of(instance)
    assert instance.get_run_by_id(killed).status == dg.DagsterRunStatus.STARTED

    # its process is gone (this host): failed and freed
    monkeypatch.delenv("TRACKSTAR_POOL_CHECK_PID")
    assert cli.main(["pools", "free", "--dead"]) == 0
    assert f"run {killed}" in capsys.readouterr().out
    assert killed not in holders_of(instance)
    assert instance.get_run_by_id(killed).status == dg.DagsterRunStatus.FAILURE

    # its process is alive (this one) but its heartbeat is stale (TRACKSTAR_POOL_STALE_S=3): failed and freed
    stale = a_started_run(instance, holds=WRITE_STEP, beat_age_s=10)
    assert cli.main(["pools", "free", "--dead"]) == 0
    out = capsys.readouterr().out
    assert stale in out and "10s ago" in out
    assert instance.get_run_by_id(stale).status == dg.DagsterRunStatus.FAILURE
    assert holders_of(instance) == set()

    # a slot left by a finished run: freed
    assert instance.event_log_storage.claim_concurrency_slot(POOL, killed, "leftover").is_claimed
    assert cli.main(["pools", "free", "--dead"]) == 0
    assert "finished" in capsys.readouterr().out
    assert holders_of(instance) == set()

    # no heartbeat: never judged; --run-id frees it
    silent = a_started_run(instance, holds=WRITE_STEP)
    assert cli.main(["pools", "free", "--dead"]) == 0
    assert f"pools free --run-id {silent}" in capsys.readouterr().out
    assert silent in holders_of(instance)
    assert cli.main(["pools", "free", "--run-id", silent]) == 0
    assert "still marked STARTED" in capsys.readouterr().out
    assert holders_of(instance) == set()

    monkeypatch.delenv("DAGSTER_HOME")
    assert cli.main(["pools", "list"]) == 2


def test_two_syncs_sharing_a_pool_in_one_run_do_not_wait_for_each_other(sandbox, instance, tmp_path):
    """In-process steps run one at a time: a payloads step waiting for its own run's slot would wait forever."""
    first = make_sync(rows(2), pool="trackstar_shared")
    second = dataclasses.replace(
        make_sync(rows(2).assign(order_id=lambda f: f["order_id"] + "-2"), pool="trackstar_shared"), name="t"
    )
    resources = sync_resources(sandbox.base_url, sandbox.api_key, tmp_path)
    assets = [*build_trackstar_sync_assets(first), *build_trackstar_sync_assets(second)]
    result, _ = run_within(BOUND_S, lambda: dg.materialize(assets, instance=instance, resources=resources))
    assert result is not None, "the run waited for a slot its own other step held"
    assert result.success
    info = instance.event_log_storage.get_concurrency_info("trackstar_shared")
    assert info.claimed_slots == [] and info.pending_steps == []
