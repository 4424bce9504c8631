"""The heartbeat thread: one per (process, run), stamping the run while it is in progress.

While its run waits for a pool (a write step queued after ``RetryRequested``) it also frees the pool's dead
holders, unless the run's payloads step is checking itself (``claiming``, held by ``pools.claim.hold_pool``);
when it sees its run finished it frees any slot the run still holds.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import dagster as dg

from trackstar_dagster.base.redaction import redacted_logger
from trackstar_dagster.pools.holders import free_dead_holders, holding_runs, is_waiting
from trackstar_dagster.pools.settings import PoolSettings
from trackstar_dagster.pools.stamp import beat

_log = redacted_logger(__name__)


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
            if any(self.run_id in holding_runs(self.instance, p) for p in self.pools):
                self.instance.event_log_storage.free_concurrency_slots_for_run(self.run_id)
            return False
        beat(self.instance, self.run_id)
        for pool in sorted(self.pools):
            if self.run_id not in _HOLDING and is_waiting(self.instance, pool, self.run_id):
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


@contextmanager
def claiming(run_id: str) -> Iterator[None]:
    """While the run's payloads step claims the pool (and frees dead holders itself), its heartbeat does not."""
    _HOLDING.add(run_id)
    try:
        yield
    finally:
        _HOLDING.discard(run_id)


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
