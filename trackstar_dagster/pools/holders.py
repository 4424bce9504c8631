"""Who holds a pool, whether each holder is alive, and freeing the slots of dead, finished or deleted ones.

The verdict rules are in the ``pools`` package docstring. Used by the heartbeat thread, the payloads step's
claim (``pools.claim``) and the ``trackstar-dagster pools`` command alike.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import dagster as dg

from trackstar_dagster.base.redaction import redacted_logger
from trackstar_dagster.pools.settings import PoolSettings
from trackstar_dagster.pools.stamp import heartbeat_of, pid_alive

_log = redacted_logger(__name__)
_FREEING = threading.Lock()  # one check at a time per process: a dead run is reported once


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


def holding_runs(instance: dg.DagsterInstance, pool: str) -> set[str]:
    """The runs with a slot of ``pool`` claimed, or assigned or queued for one."""
    info = instance.event_log_storage.get_concurrency_info(pool)
    return {s.run_id for s in info.claimed_slots} | {p.run_id for p in info.pending_steps}


def is_waiting(instance: dg.DagsterInstance, pool: str, run_id: str) -> bool:
    """Whether the run has a step queued for ``pool`` and not yet assigned a slot."""
    info = instance.event_log_storage.get_concurrency_info(pool)
    return any(p.run_id == run_id and p.assigned_timestamp is None for p in info.pending_steps)


def judge_run(
    instance: dg.DagsterInstance, run_id: str, settings: PoolSettings, now: datetime | None = None
) -> Verdict:
    """Is the run behind a slot alive? See the ``pools`` package docstring for the rules."""
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


def pools_of(instance: dg.DagsterInstance, names: Iterable[str] | None = None) -> list[str]:
    """The instance's limited pools (all, or those named)."""
    known = sorted(instance.event_log_storage.get_concurrency_keys())
    return [p for p in known if names is None or p in set(names)]
