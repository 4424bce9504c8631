"""The payloads step's side: free the pool's dead holders, then claim the pool for this run's write step.

Dagster's claim for the write step later finds that slot already claimed, adopts it, and frees it when the write
step ends; see the ``pools`` package docstring.
"""

from __future__ import annotations

import time

import dagster as dg

from trackstar_dagster.pools.heartbeat import claiming, keep_heartbeat
from trackstar_dagster.pools.holders import free_dead_holders, judge_run, pool_holders
from trackstar_dagster.pools.settings import PoolSettings

WAIT_NOTE_EVERY_S = 60.0


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
    # Dagster's own claim logic (pool granularity, default limits, priority, back-off), for another step
    with claiming(run.run_id), InstanceConcurrencyContext(instance, run) as concurrency:
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
