"""Pool slots of dead runs: heartbeats, detection and freeing, with or without the Dagster daemon.

A sync's write step runs in a Dagster pool (``trackstar_<sync>``, limit 1 in the example). Dagster frees a step's
slot when the step ends; when the process running it is SIGKILLed (OOM killer, a node lost), nothing does: run
monitoring frees slots only of runs already marked finished, the default run launcher cannot tell a killed run
worker, and an in-process ``materialize``/``execute_in_process`` has no daemon at all. The next run would wait
for the pool forever. So the sync looks after its pool itself:

- **Heartbeat.** While a step of a sync runs, a daemon thread of its process stamps the run's tags every
  ``heartbeat_s`` (15 s): ``trackstar/heartbeat`` (UTC time) and ``trackstar/heartbeat_by`` (host, pid namespace,
  pid and orchestrator pid). Run tags live in the instance's run storage, which every process of one Dagster
  instance reads (webserver, daemon, run workers, this package's CLI), on SQLite or Postgres alike; they need no
  table of our own, go away with the run, and show on the run's page in the UI. The status column, not the run
  body, is what Dagster trusts for a run's status, so a tag write racing a status change is harmless.
- **Verdict.** A run holding (or queued for) a slot is *dead* when it is still marked in progress but its last
  heartbeat is older than ``stale_s`` (90 s), or when the process that beat last and its orchestrator both ran on
  this host (same pid namespace) and are gone. A run already finished, or deleted, is freed without a verdict. A
  run with no heartbeat tag (not a sync step, or a run of older code) is never judged: ``pools free --run-id``.
- **Who checks.** The payloads step is deliberately *not* in the pool: it cannot be blocked by a dead holder. It
  first frees dead holders (marks them failed with ``report_run_failed``, frees every slot of theirs with
  ``free_concurrency_slots_for_run``, logs a WARNING naming the run and the pool), then claims the pool slot for
  its own run's write step (``hold_pool``), checking again while it waits. Dagster's claim for the write step
  finds that slot already claimed, adopts it, and frees it when the write step ends. So a run holds the pool from
  the start of its payloads step to the end of its write step: the DuckDB results sink (rejects written by the
  payloads step, results by the write step) still has one writer at a time. It never waits for a slot its own
  run holds (two syncs given one pool, in one run: in-process steps run one at a time); its write step then
  claims the slot through Dagster when it runs.
- **Waiting later.** While the run is in progress, the heartbeat thread also frees dead holders whenever its
  run has a step queued for the pool (a write step retried after ``RetryRequested``); when it sees its run
  finished it frees any slot the run still holds (a write step skipped by a blocking check leaves the slot
  claimed for it).

Without the pid check (another host), a dead holder is freed at most ``stale_s`` + 15 s (Dagster's claim back-off)
after its last beat: about 2 minutes with the defaults. Settings come from the environment:
``TRACKSTAR_POOL_HEARTBEAT_S``, ``TRACKSTAR_POOL_STALE_S``, ``TRACKSTAR_POOL_CHECK_PID`` (``0`` to turn the pid
check off). Hosts must agree on the time within a few seconds (NTP).

A module per job, each importing only those above it in this list: ``settings`` (the settings above),
``stamp`` (the heartbeat tags on a run: writing, reading, whose process), ``holders`` (who holds a pool, the
verdict, freeing), ``heartbeat`` (the thread), ``claim`` (the payloads step's ``hold_pool``). Their public names
are re-exported here.
"""

from trackstar_dagster.pools.claim import WAIT_NOTE_EVERY_S, hold_pool
from trackstar_dagster.pools.heartbeat import claiming, keep_heartbeat
from trackstar_dagster.pools.holders import (
    Holder,
    Verdict,
    free_dead_holders,
    free_run,
    holding_runs,
    is_waiting,
    judge_run,
    pool_holders,
    pools_of,
)
from trackstar_dagster.pools.settings import (
    DEFAULT_HEARTBEAT_S,
    DEFAULT_STALE_S,
    ENV_CHECK_PID,
    ENV_HEARTBEAT_S,
    ENV_STALE_S,
    PoolSettings,
)
from trackstar_dagster.pools.stamp import (
    HEARTBEAT_BY_TAG,
    HEARTBEAT_TAG,
    Beater,
    beat,
    heartbeat_of,
    pid_alive,
    this_process,
)

__all__ = [
    "DEFAULT_HEARTBEAT_S",
    "DEFAULT_STALE_S",
    "ENV_CHECK_PID",
    "ENV_HEARTBEAT_S",
    "ENV_STALE_S",
    "HEARTBEAT_BY_TAG",
    "HEARTBEAT_TAG",
    "WAIT_NOTE_EVERY_S",
    "Beater",
    "Holder",
    "PoolSettings",
    "Verdict",
    "beat",
    "claiming",
    "free_dead_holders",
    "free_run",
    "heartbeat_of",
    "hold_pool",
    "holding_runs",
    "is_waiting",
    "judge_run",
    "keep_heartbeat",
    "pid_alive",
    "pool_holders",
    "pools_of",
    "this_process",
]
