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
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import socket
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal

import dagster as dg

HEARTBEAT_TAG = "trackstar/heartbeat"
HEARTBEAT_BY_TAG = "trackstar/heartbeat_by"
ENV_HEARTBEAT_S = "TRACKSTAR_POOL_HEARTBEAT_S"
ENV_STALE_S = "TRACKSTAR_POOL_STALE_S"
ENV_CHECK_PID = "TRACKSTAR_POOL_CHECK_PID"
DEFAULT_HEARTBEAT_S = 15.0
DEFAULT_STALE_S = 90.0
WAIT_NOTE_EVERY_S = 60.0

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PoolSettings:
    """How often a running step beats, when a holder counts as dead, and whether a local pid may tell sooner."""

    heartbeat_s: float = DEFAULT_HEARTBEAT_S
    stale_s: float = DEFAULT_STALE_S
    check_pid: bool = True

    @classmethod
    def from_env(cls, **overrides: Any) -> PoolSettings:
        settings = cls(
            heartbeat_s=_env_float(ENV_HEARTBEAT_S, DEFAULT_HEARTBEAT_S),
            stale_s=_env_float(ENV_STALE_S, DEFAULT_STALE_S),
            check_pid=os.environ.get(ENV_CHECK_PID, "1").strip().lower() not in {"0", "false", "no", "off"},
        )
        return replace(settings, **{k: v for k, v in overrides.items() if v is not None})

    @property
    def poll_s(self) -> float:
        """How often a step waiting for the pool looks again."""
        return max(0.1, min(self.heartbeat_s, 5.0))


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        _log.warning(f"{name}={raw!r} is not a number; using {default}")
        return default
    return value if value > 0 else default


# ---------------------------------------------------------------------------------------------------------
# who is beating: host, pid namespace, pid, orchestrator pid


@dataclass(frozen=True)
class Beater:
    host: str
    pid_ns: str
    pid: int
    orchestrator_pid: int

    def encode(self) -> str:
        return f"{self.host}|{self.pid_ns}|{self.pid}|{self.orchestrator_pid}"

    @classmethod
    def decode(cls, text: str | None) -> Beater | None:
        try:
            host, pid_ns, pid, orchestrator = (text or "").split("|")
            return cls(host, pid_ns, int(pid), int(orchestrator))
        except ValueError:
            return None

    def is_local(self) -> bool:
        me = this_process()
        return self.host == me.host and self.pid_ns == me.pid_ns

    def __str__(self) -> str:
        orchestrator = (
            f", orchestrator pid {self.orchestrator_pid}" if self.orchestrator_pid != self.pid else ""
        )
        return f"pid {self.pid}{orchestrator} on {self.host}"


def this_process() -> Beater:
    """This process, and the one that runs its steps (the multiprocess executor's parent; else itself)."""
    parent = multiprocessing.parent_process()
    return Beater(
        socket.gethostname(),
        _pid_namespace(),
        os.getpid(),
        parent.pid if parent and parent.pid else os.getpid(),
    )


def _pid_namespace() -> str:
    try:
        return str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        return ""


def pid_alive(pid: int) -> bool:
    """Whether a local process exists (a zombie counts as gone). Unknown (not POSIX) counts as alive."""
    if os.name != "posix" or pid <= 0:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it exists, under another user
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state not in {"Z", "X"}
    except (OSError, IndexError):
        return True


# ---------------------------------------------------------------------------------------------------------
# the heartbeat


def beat(instance: dg.DagsterInstance, run_id: str) -> None:
    """Stamp the run's heartbeat tags now."""
    instance.add_run_tags(
        run_id,
        {
            HEARTBEAT_TAG: datetime.now(UTC).isoformat(timespec="milliseconds"),
            HEARTBEAT_BY_TAG: this_process().encode(),
        },
    )


def heartbeat_of(run: dg.DagsterRun) -> tuple[datetime | None, Beater | None]:
    raw = (run.tags or {}).get(HEARTBEAT_TAG)
    try:
        at = datetime.fromisoformat(raw) if raw else None
    except ValueError:
        at = None
    return at, Beater.decode((run.tags or {}).get(HEARTBEAT_BY_TAG))


class _Heartbeat(threading.Thread):
    """One per (process, run): beats while the run is in progress, frees dead holders while the run waits."""

    def __init__(self, instance: dg.DagsterInstance, run_id: str, settings: PoolSettings) -> None:
        super().__init__(name=f"trackstar-heartbeat-{run_id[:8]}", daemon=True)
        self.instance = instance
        self.run_id = run_id
        self.settings = settings
        self.pools: set[str] = set()
        self.log: Any = _log
        self.stopping = threading.Event()

    def watch(self, pool: str, log: Any) -> None:
        self.pools.add(pool)
        self.log = log

    def run(self) -> None:
        failures = 0
        try:
            while not self.stopping.wait(self.settings.heartbeat_s):
                try:
                    if not self.tick():
                        return
                    failures = 0
                except Exception as exc:  # storage gone or busy: try again, give up after a few
                    failures += 1
                    _log.debug(f"heartbeat of run {self.run_id} failed: {exc!r}")
                    if failures >= 5:
                        return
        finally:
            with _BEATS_LOCK:
                if _BEATS.get(self.run_id) is self:
                    del _BEATS[self.run_id]

    def tick(self) -> bool:
        run = self.instance.get_run_by_id(self.run_id)
        if run is None:
            return False
        if run.is_finished:
            # a write step that never ran (skipped by a blocking check, or its payloads step failed) leaves the
            # slot its payloads step claimed for it
            if any(
                self.run_id in holders for holders in (_holding_runs(self.instance, p) for p in self.pools)
            ):
                self.instance.event_log_storage.free_concurrency_slots_for_run(self.run_id)
            return False
        beat(self.instance, self.run_id)
        for pool in sorted(self.pools):
            if self.run_id not in _HOLDING and _is_waiting(self.instance, pool, self.run_id):
                free_dead_holders(
                    self.instance,
                    pool,
                    self.settings,
                    exclude_run_id=self.run_id,
                    freed_by=f"run {self.run_id}",
                    log=self.log,
                )
        return True


_BEATS: dict[str, _Heartbeat] = {}
_BEATS_LOCK = threading.Lock()
_HOLDING: set[str] = set()  # runs whose payloads step is in hold_pool (it does the checking then)
_FREEING = threading.Lock()  # one check at a time per process: a dead run is reported once


def keep_heartbeat(
    context: dg.AssetExecutionContext | dg.OpExecutionContext, pool: str, settings: PoolSettings | None = None
) -> None:
    """Beat now, and from a background thread for as long as the run is in progress and this process lives."""
    settings = settings or PoolSettings.from_env()
    instance, run_id = context.instance, context.run.run_id
    beat(instance, run_id)
    with _BEATS_LOCK:
        heartbeat = _BEATS.get(run_id)
        if heartbeat is None or not heartbeat.is_alive():
            heartbeat = _BEATS[run_id] = _Heartbeat(instance, run_id, settings)
            heartbeat.watch(pool, context.log)
            heartbeat.start()
        else:
            heartbeat.watch(pool, context.log)


# ---------------------------------------------------------------------------------------------------------
# holders and verdicts


@dataclass(frozen=True)
class Holder:
    """A run with slots of a pool claimed (``steps``) or queued for one (``waiting``)."""

    pool: str
    run_id: str
    steps: tuple[str, ...] = ()
    waiting: tuple[str, ...] = ()

    def describe(self) -> str:
        parts = [f"step {', '.join(self.steps)}"] if self.steps else []
        if self.waiting:
            parts.append(f"waiting: {', '.join(self.waiting)}")
        return "; ".join(parts)


@dataclass(frozen=True)
class Verdict:
    state: Literal["alive", "dead", "finished", "missing", "unknown"]
    reason: str
    run: dg.DagsterRun | None = field(default=None, compare=False)
    heartbeat_age_s: float | None = None

    @property
    def freeable(self) -> bool:
        return self.state in {"dead", "finished", "missing"}


def pool_holders(instance: dg.DagsterInstance, pool: str) -> list[Holder]:
    """Every run holding a slot of ``pool``, or assigned or queued for one."""
    info = instance.event_log_storage.get_concurrency_info(pool)
    held: dict[str, list[str]] = {}
    waiting: dict[str, list[str]] = {}
    for slot in info.claimed_slots:
        held.setdefault(slot.run_id, []).append(slot.step_key)
    for step in info.pending_steps:
        if step.step_key not in held.get(step.run_id, []):
            waiting.setdefault(step.run_id, []).append(step.step_key)
    return [
        Holder(pool, run_id, tuple(held.get(run_id, ())), tuple(waiting.get(run_id, ())))
        for run_id in dict.fromkeys([*held, *waiting])
    ]


def _holding_runs(instance: dg.DagsterInstance, pool: str) -> set[str]:
    info = instance.event_log_storage.get_concurrency_info(pool)
    return {s.run_id for s in info.claimed_slots} | {p.run_id for p in info.pending_steps}


def _is_waiting(instance: dg.DagsterInstance, pool: str, run_id: str) -> bool:
    info = instance.event_log_storage.get_concurrency_info(pool)
    return any(p.run_id == run_id and p.assigned_timestamp is None for p in info.pending_steps)


def judge_run(
    instance: dg.DagsterInstance, run_id: str, settings: PoolSettings, now: datetime | None = None
) -> Verdict:
    """Is the run behind a slot alive? See the module docstring for the rules."""
    run = instance.get_run_by_id(run_id)
    if run is None:
        return Verdict("missing", "the run no longer exists")
    if run.is_finished:
        return Verdict("finished", f"the run already ended ({run.status.value})", run)
    at, beater = heartbeat_of(run)
    if at is None:
        return Verdict("unknown", f"the run is {run.status.value} and keeps no trackstar heartbeat", run)
    age = max(0.0, ((now or datetime.now(UTC)) - at).total_seconds())
    if (
        settings.check_pid
        and beater is not None
        and beater.is_local()
        and not pid_alive(beater.pid)
        and not pid_alive(beater.orchestrator_pid)
    ):
        return Verdict("dead", f"its process ({beater}) is gone; last heartbeat {age:.0f}s ago", run, age)
    if age > settings.stale_s:
        by = f" from {beater}" if beater else ""
        return Verdict(
            "dead",
            f"its last heartbeat{by} was {age:.0f}s ago (stale after {settings.stale_s:.0f}s)",
            run,
            age,
        )
    return Verdict("alive", f"heartbeat {age:.0f}s ago", run, age)


def free_run(instance: dg.DagsterInstance, holder: Holder, verdict: Verdict, *, freed_by: str) -> bool:
    """Mark a dead run failed (with the reason) and free all its slots; just free them if it already ended."""
    if verdict.state == "dead":
        run = instance.get_run_by_id(holder.run_id)  # again: it may have ended meanwhile
        if run is not None and not run.is_finished:
            instance.report_run_failed(
                run,
                f"Marked failed by {freed_by}: {verdict.reason}. Its slots in pool {holder.pool} were freed.",
            )
    instance.event_log_storage.free_concurrency_slots_for_run(holder.run_id)
    return True


def free_dead_holders(
    instance: dg.DagsterInstance,
    pool: str,
    settings: PoolSettings,
    *,
    exclude_run_id: str | None = None,
    freed_by: str,
    log: Any = None,
) -> list[tuple[Holder, Verdict]]:
    """Free the slots of every dead, finished or deleted run in ``pool``; log a WARNING for each dead one."""
    log = log or _log
    with _FREEING:
        return _free_dead_holders(instance, pool, settings, exclude_run_id, freed_by, log)


def _free_dead_holders(
    instance: dg.DagsterInstance,
    pool: str,
    settings: PoolSettings,
    exclude_run_id: str | None,
    freed_by: str,
    log: Any,
) -> list[tuple[Holder, Verdict]]:
    freed = []
    for holder in pool_holders(instance, pool):
        if holder.run_id == exclude_run_id:
            continue
        verdict = judge_run(instance, holder.run_id, settings)
        if not verdict.freeable:
            continue
        free_run(instance, holder, verdict, freed_by=freed_by)
        freed.append((holder, verdict))
        if verdict.state == "dead":
            log.warning(
                f"Pool {pool} was held by run {holder.run_id} ({holder.describe()}), which is dead: "
                f"{verdict.reason}. Marked run {holder.run_id} failed and freed its slots in pool {pool}."
            )
        else:
            log.info(
                f"Pool {pool}: freed the slots left by run {holder.run_id} ({holder.describe()}): "
                f"{verdict.reason}."
            )
    return freed


# ---------------------------------------------------------------------------------------------------------
# the payloads step: free dead holders, then hold the pool for this run's write step


def _runs_step(context: dg.AssetExecutionContext | dg.OpExecutionContext, step_key: str) -> bool:
    """Whether this run will execute ``step_key`` (the job has it and the run is not a subset without it)."""
    if not context.job_def.graph.has_node_named(step_key):
        return False
    selected = context.run.step_keys_to_execute
    return selected is None or step_key in selected


def hold_pool(
    context: dg.AssetExecutionContext | dg.OpExecutionContext,
    pool: str,
    step_key: str,
    settings: PoolSettings | None = None,
) -> bool:
    """Free the pool's dead holders, then claim its slot for this run's ``step_key``, checking again while waiting.

    Returns whether a slot is held for ``step_key`` (False when the pool has no limit, or the run does not
    execute that step: then dead holders are freed and nothing is claimed).
    """
    from dagster._core.execution.plan.instance_concurrency_context import InstanceConcurrencyContext

    settings = settings or PoolSettings.from_env()
    instance, run = context.instance, context.run
    keep_heartbeat(context, pool, settings)
    freed_by = f"run {run.run_id} ({context.op_handle})"

    def free_dead() -> None:
        free_dead_holders(
            instance, pool, settings, exclude_run_id=run.run_id, freed_by=freed_by, log=context.log
        )

    free_dead()
    if not _runs_step(context, step_key):
        return False
    _HOLDING.add(run.run_id)
    try:
        # Dagster's own claim logic (pool granularity, default limits, priority, back-off), for another step
        with InstanceConcurrencyContext(instance, run) as concurrency:
            noted = 0.0
            while not concurrency.claim(pool, step_key):
                own = _own_steps_holding(instance, pool, run.run_id)
                if own:  # never wait for this run itself: in-process, its steps run one at a time
                    context.log.info(
                        f"Pool {pool} is held by this run's {', '.join(own)}: not waiting; "
                        f"{step_key} claims it when it runs"
                    )
                    break
                if time.monotonic() - noted > WAIT_NOTE_EVERY_S:
                    noted = time.monotonic()
                    context.log.info(
                        f"Waiting for a slot in pool {pool} for {step_key}; held by "
                        + _describe_holders(instance, pool, settings, exclude=run.run_id)
                    )
                time.sleep(settings.poll_s)
                free_dead()
            if noted:
                context.log.info(f"Pool {pool}: slot claimed for {step_key}")
    finally:
        _HOLDING.discard(run.run_id)
    return any(
        s.run_id == run.run_id and s.step_key == step_key
        for s in instance.event_log_storage.get_concurrency_info(pool).claimed_slots
    )


def _own_steps_holding(instance: dg.DagsterInstance, pool: str, run_id: str) -> list[str]:
    return [
        s.step_key
        for s in instance.event_log_storage.get_concurrency_info(pool).claimed_slots
        if s.run_id == run_id
    ]


def _describe_holders(instance: dg.DagsterInstance, pool: str, settings: PoolSettings, exclude: str) -> str:
    parts = []
    for holder in pool_holders(instance, pool):
        if holder.run_id == exclude or not holder.steps:
            continue
        verdict = judge_run(instance, holder.run_id, settings)
        hint = (
            " (if it is dead: trackstar-dagster pools free --run-id ...)"
            if verdict.state == "unknown"
            else ""
        )
        parts.append(f"run {holder.run_id} ({holder.describe()}): {verdict.reason}{hint}")
    return "; ".join(parts) or "nobody (slot being handed over)"


def pools_of(instance: dg.DagsterInstance, names: Iterable[str] | None = None) -> list[str]:
    """The instance's limited pools (all, or those named)."""
    known = sorted(instance.event_log_storage.get_concurrency_keys())
    return [p for p in known if names is None or p in set(names)]
