"""A real Dagster deployment on this machine, for benchmarks: a DAGSTER_HOME, ``dagster-daemon`` and
``dagster-webserver`` processes, and a backfill launched the way the UI launches one.

``instance_yaml`` is the instance the benchmark runs on (QueuedRunCoordinator, concurrency pools, run
monitoring); ``dagster_stack`` starts the daemon and the webserver over one workspace file and waits until the
code location has loaded; ``launch_backfill`` sends the UI's GraphQL ``launchPartitionBackfill`` (an asset
backfill: the daemon's backfill daemon turns it into runs by the assets' ``BackfillPolicy`` and hands them to
the run queue); ``wait_backfill`` polls the instance until the backfill is over.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

BIN = Path(sys.executable).parent
TERMINAL = {"COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"}


def instance_yaml(max_concurrent_runs: int, pool_limit: int) -> str:
    """dagster.yaml: the daemon's run queue, a pool limit that lets that many runs write at once, monitoring."""
    return f"""\
run_coordinator:                      # the daemon dequeues submitted runs (also Dagster's default)
  module: dagster._core.run_coordinator
  class: QueuedRunCoordinator
  config:
    dequeue_interval_seconds: 1
    dequeue_use_threads: true         # launch several dequeued runs at once
    dequeue_num_workers: 4
backfills:
  use_threads: true
  num_submit_workers: 4               # the backfill daemon submits several runs at once
run_launcher:                         # one process per run on this machine
  module: dagster
  class: DefaultRunLauncher
concurrency:
  runs:
    max_concurrent_runs: {max_concurrent_runs}
  pools:
    default_limit: {pool_limit}       # trackstar_<sync>: every queued run may write at once
run_monitoring:
  enabled: true
  start_timeout_seconds: 180
  max_resume_run_attempts: 0
  poll_interval_seconds: 30
  free_slots_after_run_end_seconds: 30
telemetry:
  enabled: false
"""


def workspace_yaml(defs_file: Path, location: str) -> str:
    return f"""\
load_from:
  - python_file:
      relative_path: {defs_file}
      working_directory: {defs_file.parent}
      location_name: {location}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Stack:
    url: str  # the webserver's GraphQL endpoint
    daemon: subprocess.Popen[bytes]
    webserver: subprocess.Popen[bytes]

    def cpu_s(self) -> dict[str, float]:
        """CPU seconds of the daemon and the webserver, each with its live children (code servers)."""
        import psutil

        out = {}
        for name, proc in (("daemon", self.daemon), ("webserver", self.webserver)):
            with contextlib.suppress(psutil.Error):
                p = psutil.Process(proc.pid)
                total = 0.0
                for q in [p, *p.children(recursive=True)]:
                    with contextlib.suppress(psutil.Error):
                        t = q.cpu_times()
                        total += t.user + t.system
                out[name] = total
        return out


def _start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as f:
        return subprocess.Popen(
            args,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=f,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group this benchmark started (the process and its children), then SIGKILL."""
    for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
        if proc.poll() is not None:
            break
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=wait)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)  # whatever the group left behind (code servers, runs)


def graphql(url: str, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
    answer = httpx.post(url, json={"query": query, "variables": variables or {}}, timeout=120).json()
    if answer.get("errors"):
        raise RuntimeError(f"GraphQL errors: {answer['errors']}")
    return answer["data"]


LOCATIONS = """{ workspaceOrError { __typename ... on Workspace { locationEntries { name loadStatus
  locationOrLoadError { __typename ... on PythonError { message } } } } } }"""


def _wait_loaded(
    url: str, stack_procs: Sequence[subprocess.Popen[bytes]], log_dir: Path, timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        for proc in stack_procs:
            if proc.poll() is not None:
                raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode}; see {log_dir}")
        try:
            entries = graphql(url, LOCATIONS)["workspaceOrError"]["locationEntries"]
            last = entries
            if entries and all(e["loadStatus"] == "LOADED" for e in entries):
                errors = [e for e in entries if e["locationOrLoadError"]["__typename"] == "PythonError"]
                if errors:
                    raise RuntimeError(f"the code location failed to load: {errors}")
                return
        except (httpx.HTTPError, ValueError, KeyError, TypeError):
            pass
        time.sleep(1)
    raise RuntimeError(f"the code location did not load within {timeout:.0f} s ({last}); see {log_dir}")


def init_storage(home: Path) -> None:
    """Create the instance's storage once, before two processes race to (SQLite: two alembic heads)."""
    from dagster import DagsterInstance

    with DagsterInstance.from_config(str(home)) as instance:
        instance.run_storage.get_runs(limit=1)
        instance.event_log_storage.get_concurrency_keys()
        instance.schedule_storage.all_instigator_state()  # type: ignore[union-attr]


@contextlib.contextmanager
def dagster_stack(home: Path, workspace: Path, env: dict[str, str], log_dir: Path) -> Iterator[Stack]:
    """``dagster-daemon run`` and ``dagster-webserver`` over ``workspace`` in ``home``; stopped at exit."""
    env = {**env, "DAGSTER_HOME": str(home)}
    init_storage(home)
    port = free_port()
    daemon = _start([str(BIN / "dagster-daemon"), "run", "-w", str(workspace)], env, log_dir / "daemon.log")
    webserver = _start(
        [str(BIN / "dagster-webserver"), "-w", str(workspace), "-h", "127.0.0.1", "-p", str(port)],
        env,
        log_dir / "webserver.log",
    )
    try:
        url = f"http://127.0.0.1:{port}/graphql"
        _wait_loaded(url, [daemon, webserver], log_dir, timeout=180)
        yield Stack(url, daemon, webserver)
    finally:
        _stop(webserver)
        _stop(daemon)


LAUNCH = """mutation($params: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $params) {
  __typename ... on LaunchBackfillSuccess { backfillId } ... on Error { message } } }"""


def launch_backfill(
    url: str, asset_keys: Sequence[Sequence[str]], partitions: Sequence[str], title: str
) -> str:
    """The UI's "Materialize selected partitions" over ``asset_keys``: an asset backfill; its id."""
    params = {
        "assetSelection": [{"path": list(k)} for k in asset_keys],
        "partitionNames": list(partitions),
        "title": title,
    }
    answer = graphql(url, LAUNCH, {"params": params})["launchPartitionBackfill"]
    if answer["__typename"] != "LaunchBackfillSuccess":
        raise RuntimeError(f"launchPartitionBackfill: {answer}")
    return answer["backfillId"]


RETRY = """mutation($params: ReexecutionParams!) { reexecutePartitionBackfill(reexecutionParams: $params) {
  __typename ... on LaunchBackfillSuccess { backfillId } ... on Error { message } } }"""


def retry_backfill(url: str, backfill_id: str) -> str:
    """The UI's "Re-execute from failure" of a backfill: a new backfill of its failed partitions; its id."""
    params = {"parentRunId": backfill_id, "strategy": "FROM_FAILURE"}
    answer = graphql(url, RETRY, {"params": params})["reexecutePartitionBackfill"]
    if answer["__typename"] != "LaunchBackfillSuccess":
        raise RuntimeError(f"reexecutePartitionBackfill: {answer}")
    return answer["backfillId"]


def wait_backfill(instance: Any, backfill_id: str, timeout: float, every: float = 2.0) -> str:
    """Poll the instance until the backfill is over and none of its runs is still going; its final status."""
    from dagster import DagsterRunStatus, RunsFilter

    done = {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED}
    deadline = time.monotonic() + timeout
    noted = 0.0
    while True:
        backfill = instance.get_backfill(backfill_id)
        runs = instance.get_runs(RunsFilter(tags={"dagster/backfill": backfill_id}))
        status = backfill.status.value if backfill else "MISSING"
        if status in TERMINAL and all(r.status in done for r in runs):
            return status
        if time.monotonic() - noted > 30:
            noted = time.monotonic()
            states: dict[str, int] = {}
            for r in runs:
                states[r.status.value] = states.get(r.status.value, 0) + 1
            print(f"  backfill {backfill_id}: {status}, runs {states}", flush=True)
        if time.monotonic() > deadline:
            raise TimeoutError(f"backfill {backfill_id} still {status} after {timeout:.0f} s")
        time.sleep(every)
